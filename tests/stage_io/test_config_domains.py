"""Numeric keys with a domain, and values no key accepts, are checked when the config loads, naming the key."""

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
from study.config import StudyConfig

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


# The stage YAMLs the refusals below override.
STAGES = {
    "pretrain": (PretrainConfig, "pretrain/tiny.yaml"),
    "posttrain": (PosttrainConfig, "posttrain/tiny_plain.yaml"),
    "eval": (EvalConfig, "eval/tiny.yaml"),
    "annotate": (AnnotateConfig, "annotate/tiny.yaml"),
    "study": (StudyConfig, "study/micro.yaml"),
}
# (stage, override, what the error says): out of the key's domain, not finite, absurd or empty.
REFUSED = [
    ("eval", "sampling.temperatures=[1.0,-1.0]", "key 'sampling.temperatures[1]' must be"),
    ("eval", "sampling.top_p=0", "key 'sampling.top_p' must be"),
    ("eval", "sampling.limit=-1", "key 'sampling.limit' must be"),
    ("eval", "sampling.temperatures=[.inf]", "key 'sampling.temperatures[0]' expects a finite"),
    ("annotate", "source.limit=-5", "key 'source.limit' must be"),
    ("annotate", "source.limit=0", "key 'source.limit' must be >= 1"),
    ("annotate", "executor.tasks=0", "key 'executor.tasks' must be"),
    ("annotate", "llm.temperature=-0.5", "key 'llm.temperature' must be"),
    ("pretrain", "train.max_steps=0", "key 'train.max_steps' must be"),
    ("pretrain", "optim.betas=[0.9,1.0]", "key 'optim.betas[1]' must be"),
    ("pretrain", "optim.lr=.inf", "key 'optim.lr' expects a finite number"),
    ("pretrain", "optim.lr=.nan", "key 'optim.lr' expects a finite number"),
    ("pretrain", "optim.weight_decay=.inf", "key 'optim.weight_decay' expects a finite"),
    ("pretrain", "optim.lr=1e999", "key 'optim.lr' expects a finite number"),
    ("pretrain", "optim.lr=1e30", "key 'optim.lr' must be > 0 and <= 1"),
    ("pretrain", "model.attn_implementation=bogus", "key 'model.attn_implementation'"),
    ("posttrain", "training.learning_rate=-1e-4", "key 'training.learning_rate' must be"),
    ("posttrain", "training.learning_rate=.inf", "'training.learning_rate' expects a finite"),
    ("posttrain", "training.learning_rate=5", "'training.learning_rate' must be > 0 and <= 1"),
    ("posttrain", "training.max_steps=-2", "key 'training.max_steps' must be"),
    ("posttrain", "training.max_steps=0", "key 'training.max_steps' must be >= -1 and != 0"),
]


def load_stage(stage: str, *overrides: str):
    cls, path = STAGES[stage]
    return load_config(cls, CONFIGS / path, list(overrides))


@pytest.mark.parametrize("stage, override, message", REFUSED)
def test_out_of_domain_non_finite_and_absurd_values_are_refused_naming_the_key_and_override(stage, override, message):
    with pytest.raises(ConfigError) as err:
        load_stage(stage, override)
    assert message in str(err.value) and f"command-line override '{override}'" in str(err.value)


@pytest.mark.parametrize("stage", list(STAGES))
def test_an_empty_output_dir_is_refused_in_every_stage(stage):
    with pytest.raises(ConfigError, match="key 'output_dir' expects a non-empty path"):
        load_stage(stage, "output_dir=")


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
