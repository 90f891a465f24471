"""Config values a careless or hostile user gives are refused at load, naming the key and where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from pretrain.config import PretrainConfig
from publish.config import PublishConfig
from stage_io.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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
