"""Numeric keys with a domain are checked when the config loads, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotate.config import AnnotateConfig
from annotate.stage import run as annotate_run
from eval.config import EvalConfig
from posttrain.config import PosttrainConfig
from pretrain.config import PretrainConfig
from stage_io.cli import stage_main
from stage_io.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


@pytest.mark.parametrize(
    "cls, path, override, key",
    [
        (EvalConfig, "eval/tiny.yaml", "sampling.temperatures=[1.0,-1.0]", "sampling.temperatures[1]"),
        (EvalConfig, "eval/tiny.yaml", "sampling.top_p=0", "sampling.top_p"),
        (EvalConfig, "eval/tiny.yaml", "sampling.limit=-1", "sampling.limit"),
        (AnnotateConfig, "annotate/tiny.yaml", "source.limit=-5", "source.limit"),
        (AnnotateConfig, "annotate/tiny.yaml", "executor.tasks=0", "executor.tasks"),
        (AnnotateConfig, "annotate/tiny.yaml", "llm.temperature=-0.5", "llm.temperature"),
        (PretrainConfig, "pretrain/tiny.yaml", "train.max_steps=0", "train.max_steps"),
        (PretrainConfig, "pretrain/tiny.yaml", "optim.betas=[0.9,1.0]", "optim.betas[1]"),
        (PosttrainConfig, "posttrain/tiny_plain.yaml", "training.learning_rate=-1e-4", "training.learning_rate"),
        (PosttrainConfig, "posttrain/tiny_plain.yaml", "training.max_steps=-2", "training.max_steps"),
    ],
)
def test_out_of_domain_values_name_the_key(cls, path, override, key):
    with pytest.raises(ConfigError, match=rf"key '{key.replace('[', '.').replace(']', '.')}' must be"):
        load_config(cls, CONFIGS / path, [override])


def test_zero_temperature_is_greedy_and_allowed():
    config = load_config(EvalConfig, CONFIGS / "eval/tiny.yaml", ["sampling.temperatures=[0,1.0]"])
    assert config.sampling.temperatures == [0.0, 1.0]


def test_a_negative_limit_stops_before_work_run_json(tmp_path, capsys):
    """Refused at load: otherwise "every record is empty", and a work/run.json left behind refuses the rerun."""
    # The CLI's entry in this process (scripts/probe_cli.py runs the same case as a real `python -m annotate`).
    out = tmp_path / "out"
    code = stage_main(
        "annotate",
        AnnotateConfig,
        annotate_run,
        [str(CONFIGS / "annotate/tiny.yaml"), "source.limit=-5", f"output_dir={out}"],
    )
    err = capsys.readouterr().err
    assert code == 2 and "key 'source.limit' must be >= 1, got -5" in err, err
    assert "Traceback" not in err and not out.exists()
