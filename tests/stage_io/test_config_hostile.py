"""Config values a careless or hostile user gives are refused at load, naming the key and where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotate.config import AnnotateConfig
from eval.config import EvalConfig
from posttrain.config import PosttrainConfig
from pretrain.config import PretrainConfig
from publish.config import PublishConfig
from stage_io.config import ConfigError, load_config
from study.config import StudyConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    "cls, path, override, message",
    [
        (PretrainConfig, "pretrain/tiny.yaml", "optim.lr=.inf", "key 'optim.lr' expects a finite number"),
        (PretrainConfig, "pretrain/tiny.yaml", "optim.lr=.nan", "key 'optim.lr' expects a finite number"),
        (PretrainConfig, "pretrain/tiny.yaml", "optim.weight_decay=.inf", "key 'optim.weight_decay' expects a finite"),
        (PretrainConfig, "pretrain/tiny.yaml", "optim.lr=1e999", "key 'optim.lr' expects a finite number"),
        (PretrainConfig, "pretrain/tiny.yaml", "optim.lr=1e30", "key 'optim.lr' must be > 0 and <= 1"),
        (PretrainConfig, "pretrain/tiny.yaml", "model.attn_implementation=bogus", "key 'model.attn_implementation'"),
        (
            PosttrainConfig,
            "posttrain/tiny_plain.yaml",
            "training.learning_rate=.inf",
            "'training.learning_rate' expects a finite",
        ),
        (
            PosttrainConfig,
            "posttrain/tiny_plain.yaml",
            "training.learning_rate=5",
            "'training.learning_rate' must be > 0 and <= 1",
        ),
        (
            PosttrainConfig,
            "posttrain/tiny_plain.yaml",
            "training.max_steps=0",
            "key 'training.max_steps' must be >= -1 and != 0",
        ),
        (
            EvalConfig,
            "eval/tiny.yaml",
            "sampling.temperatures=[.inf]",
            "key 'sampling.temperatures[0]' expects a finite",
        ),
        (AnnotateConfig, "annotate/tiny.yaml", "source.limit=0", "key 'source.limit' must be >= 1"),
    ],
)
def test_non_finite_absurd_and_empty_values_are_refused_naming_the_override(cls, path, override, message):
    with pytest.raises(ConfigError) as err:
        load_config(cls, CONFIGS / path, [override])
    assert message in str(err.value) and f"command-line override '{override}'" in str(err.value)


@pytest.mark.parametrize(
    "cls, path",
    [
        (PretrainConfig, "pretrain/tiny.yaml"),
        (PosttrainConfig, "posttrain/tiny_plain.yaml"),
        (EvalConfig, "eval/tiny.yaml"),
        (AnnotateConfig, "annotate/tiny.yaml"),
        (StudyConfig, "study/micro.yaml"),
    ],
)
def test_an_empty_output_dir_is_refused_in_every_stage(cls, path):
    with pytest.raises(ConfigError, match="key 'output_dir' expects a non-empty path"):
        load_config(cls, CONFIGS / path, ["output_dir="])


def test_an_empty_publish_staging_dir_is_refused():
    with pytest.raises(ConfigError, match="key 'staging_dir' expects a non-empty path"):
        load_config(PublishConfig, CONFIGS / "publish/model.yaml", ["source_dir=x", "staging_dir= "])


def test_a_non_finite_float_in_the_file_names_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("optim:\n  lr: .inf\ntrain:\n  max_steps: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}: key 'optim.lr' expects a finite number"):
        load_config(PretrainConfig, path)


def test_a_key_set_twice_in_a_yaml_file_is_refused_naming_the_key_and_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  max_steps: 4\n  seq_len: 64\n  max_steps: 8\n")
    with pytest.raises(ConfigError, match=rf"{path}: line 4: key 'max_steps' is set twice \(first on line 2\)"):
        load_config(PretrainConfig, path)


def test_the_file_is_checked_with_the_overrides_applied(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  seq_len: 64\n")  # neither train_tokens nor max_steps
    with pytest.raises(ConfigError, match=rf"{path}: set exactly one of"):
        load_config(PretrainConfig, path)
    assert load_config(PretrainConfig, path, ["train.max_steps=3"]).train.max_steps == 3


def test_a_rule_broken_only_by_the_overrides_names_the_overrides():
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, CONFIGS / "pretrain/tiny.yaml", ["train.max_steps=3"])
    assert "command-line override 'train.max_steps=3' (on " in str(err.value)
    assert "set exactly one of train.train_tokens and train.max_steps" in str(err.value)
