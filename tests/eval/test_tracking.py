"""The eval run's summary, plots and config reach its tracker (TensorBoard, read back from its event files)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from eval.config import ArmConfig, EvalConfig
from eval.stage import run
from eval.tracking import TrackingError, scalars
from stage_io.config import load_config

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "eval" / "tiny.yaml"


def tracked_config(tmp_path, tiny_models, prompts_file, **overrides) -> EvalConfig:
    config = load_config(
        EvalConfig,
        TINY,
        [f"output_dir={tmp_path / 'run'}", f"prompts.source.source={prompts_file}", "report_to=[tensorboard]"],
    )
    arms = [
        ArmConfig(name="base", model=tiny_models["plain"], mode="plain"),
        ArmConfig(name="plain_sft", model=tiny_models["plain"], mode="plain", base_arm="base"),
    ]
    sampling = dataclasses.replace(config.sampling, temperatures=[1.0])
    return dataclasses.replace(config, arms=arms, sampling=sampling, **overrides)


def test_an_eval_run_leaves_its_summary_plots_and_config_in_tensorboard(tmp_path, tiny_models, prompts_file):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = run(tracked_config(tmp_path, tiny_models, prompts_file))
    summary = json.loads((run_dir / "summary.json").read_text())
    events = EventAccumulator(str(run_dir / "logs"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    logged = {tag: events.Scalars(tag)[0].value for tag in events.Tags()["scalars"]}
    expected = scalars(summary)
    assert expected and logged.keys() == expected.keys()
    for tag, value in expected.items():
        assert logged[tag] == pytest.approx(value, rel=1e-6), tag
    metric = summary["metric_names"]["diversity"][0]
    stat = summary["arms"]["plain_sft"]["temperatures"]["1"]["metrics"][metric]
    for bound in ("ci_low", "ci_high"):  # the value with its interval
        assert logged[f"arms/plain_sft/temperatures/1/metrics/{metric}/{bound}"] == pytest.approx(stat[bound])
    assert {f"plots/{p.stem}" for p in (run_dir / "plots").glob("*.png")} <= set(events.Tags()["images"])
    assert "config/text_summary" in events.Tags()["tensors"]


def test_an_unknown_tracker_is_refused_before_any_sample(tmp_path, tiny_models, prompts_file):
    with pytest.raises(TrackingError, match="report_to: 'tensorbord'"):
        run(tracked_config(tmp_path, tiny_models, prompts_file, report_to=["tensorbord"]))
    assert not (tmp_path / "run" / "generations.jsonl").exists()
