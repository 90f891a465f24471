"""The controlled entropy sweep: planned inside the study, run at micro sizes, reported with slopes."""

import json
import math
from pathlib import Path

import pytest

from stage_io.config import ConfigError, load_config
from study import StudyConfig, plan_steps, run
from study.sweep_report import least_squares_slope

REPO = Path(__file__).resolve().parents[2]
MICRO = REPO / "configs" / "study" / "micro.yaml"
SWEEP = "entropy_sweep={subsets: [[sports], [sports, business]], documents: 12}"


def sweep_config(out: Path, *overrides: str) -> StudyConfig:
    return load_config(StudyConfig, MICRO, [f"output_dir={out}", SWEEP, *overrides])


def test_slope_of_an_exact_line_and_of_known_points():
    exact = least_squares_slope([0.0, 1.0, 1.585, 2.322], [0.5 + 2 * x for x in [0.0, 1.0, 1.585, 2.322]])
    assert exact["slope"] == pytest.approx(2.0) and exact["intercept"] == pytest.approx(0.5)
    assert exact["se"] == pytest.approx(0.0, abs=1e-9)
    # x = 0, 1, 2, 3; y = 1, 3, 2, 5: slope 1.1, intercept 1.1, RSS 2.7, se = sqrt(2.7 / 2 / 5).
    fit = least_squares_slope([0, 1, 2, 3], [1, 3, 2, 5])
    se = math.sqrt(2.7 / 2 / 5)
    assert (
        fit["slope"] == pytest.approx(1.1) and fit["intercept"] == pytest.approx(1.1) and fit["se"] == pytest.approx(se)
    )
    assert fit["ci_high"] - fit["slope"] == pytest.approx(4.302653 * se, rel=1e-5)  # t(2 df, 0.975)
    assert fit["n_points"] == 4
    # Two points: a slope but no interval; x that does not vary: no slope.
    assert least_squares_slope([0, 1], [0, 2])["slope"] == pytest.approx(2.0)
    assert least_squares_slope([0, 1], [0, 2])["ci_low"] is None
    assert least_squares_slope([1, 1, 1], [0, 2, 3])["slope"] is None


def test_sweep_is_planned_after_the_shared_pretraining(tmp_path):
    steps = {s.name: s for s in plan_steps(sweep_config(tmp_path, "seeds=[0,1]"))}
    assert "pretrain_plain" in steps and "eval_seed0" in steps  # the main comparison stays
    sft_set = steps["sweep_k2_sft_set"].load()
    assert sft_set.topics == ["sports", "business"] and sft_set.max_documents == 12 and sft_set.balance_topics
    assert sft_set.max_response_chars == 300  # the study's own sft_set overrides are kept
    assert sft_set.output_dir == str(tmp_path / "sweep" / "k2" / "sft_set")
    annotate = steps["sweep_k2_annotate_sft"].load()
    assert annotate.source.source == str(tmp_path / "sweep" / "k2" / "sft_set" / "sft.jsonl")
    assert annotate.schema == steps["annotate_sft"].load().schema
    plain = steps["sweep_k1_posttrain_plain_sft_seed1"].load()
    assert plain.model_path == str(tmp_path / "pretrain" / "plain") and plain.training.seed == 1
    assert plain.data.annotations == str(tmp_path / "sweep" / "k1" / "annotate" / "sft")
    assert steps["sweep_k1_posttrain_anchored_seed1"].load().model_path == str(tmp_path / "pretrain" / "anchored")
    evaluation = steps["sweep_k2_eval_seed1"].load()
    assert [a.name for a in evaluation.arms] == ["base", "anchored_base", "plain_sft", "anchored"]
    assert evaluation.prompts.source.source == str(tmp_path / "sweep" / "k2" / "sft_set" / "eval_prompts.jsonl")
    # The same judge as the main comparison: one classifier for the whole study.
    main_eval = steps["eval_seed1"].load()
    assert evaluation.metrics.semantic_entropy.classifier.dir == main_eval.metrics.semantic_entropy.classifier.dir
    # Without the main comparison: annotation, pretraining and the sweep only.
    only = [s.name for s in plan_steps(sweep_config(tmp_path, "main_comparison=false"))]
    assert only[:3] == ["annotate_corpus", "pretrain_plain", "pretrain_anchored"]
    assert all(name.startswith("sweep_") for name in only[3:]) and len(only) == 3 + 2 * 5


def test_sweep_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="entropy_sweep.subsets"):
        sweep_config(tmp_path, "entropy_sweep={subsets: [[sports, sports]], documents: 12}")
    with pytest.raises(ConfigError, match="main_comparison=false"):
        load_config(StudyConfig, MICRO, [f"output_dir={tmp_path}", "main_comparison=false"])


def test_entropy_sweep_config_plans_the_paper_subsets(tmp_path):
    cfg = load_config(StudyConfig, REPO / "configs" / "study" / "entropy_sweep.yaml", [f"output_dir={tmp_path}"])
    steps = plan_steps(cfg)
    configs = {s.name: s.load() for s in steps}  # every stage YAML + the study's overrides type-check
    assert not cfg.main_comparison and "eval_seed0" not in configs
    assert [configs[f"sweep_k{k}_sft_set"].topics for k in (1, 2, 3, 5)] == cfg.entropy_sweep.subsets


@pytest.mark.slow
@pytest.mark.xdist_group("micro_study")
def test_micro_sweep_runs_on_the_studys_pretrained_models_and_reports_slopes(micro_study, steps_in_process):
    """The sweep alone (main_comparison=false) in the micro study's directory: the annotated corpus and
    both pretrained models, made under the same configs, are reused; every sweep step runs."""
    out = micro_study.out
    cfg = sweep_config(out, "main_comparison=false")
    result = run(cfg)
    shared = ["annotate_corpus", "pretrain_plain", "pretrain_anchored"]
    assert result["skipped"] == shared
    assert result["ran"] == [s.name for s in plan_steps(cfg) if s.name not in shared]
    assert all(name.startswith("sweep_") for name in result["ran"]) and len(result["ran"]) == 2 * 5
    for name in ("k1", "k2"):
        summary = json.loads((out / "sweep" / name / "eval" / "seed0" / "summary.json").read_text())
        assert set(summary["arms"]) == {"base", "anchored_base", "plain_sft", "anchored"}
    data = json.loads((out / "sweep.json").read_text())
    assert [s["subset_entropy_bits"] for s in data["subsets"]] == [0.0, pytest.approx(1.0)]
    assert [s["examples_by_topic"] for s in data["subsets"]][1] == {"business": 6, "sports": 6}
    (fits,) = data["slopes"].values()  # one temperature
    assert set(fits) == {"base", "anchored_base", "plain_sft", "anchored"}
    assert all(math.isfinite(fit["slope"]) and fit["n_points"] == 2 for fit in fits.values())
    # The bases are the same models sampled with the same seed on the same prompts: flat.
    assert fits["base"]["slope"] == pytest.approx(0.0, abs=1e-9)
    # The micro study's own report.md stays as it is; the sweep-only run reports beside it.
    assert Path(result["report"]) == out / "report_main_comparison_off.md"
    report = Path(result["report"]).read_text()
    assert "## Controlled entropy sweep" in report and "sweep_entropy.png" in report
    assert (out / "sweep_entropy.png").stat().st_size > 0
