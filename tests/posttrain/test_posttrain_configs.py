"""Every posttrain YAML loads into its config dataclass, with the arm its name promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from posttrain.config import PosttrainConfig
from posttrain.embedded_sft import EmbeddedSFTConfig
from stage_io.cli import describe_config
from stage_io.config import ConfigError, load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "posttrain"
YAMLS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_the_expected_configs_exist():
    names = {p.name for p in YAMLS}
    assert {
        "tiny_plain.yaml",
        "tiny_anchored.yaml",
        "embedded_plain.yaml",
        "embedded_anchored.yaml",
        "tulu3_plain.yaml",
        "tulu3_anchored.yaml",
        "embedded_sft.yaml",
    } <= names


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_yaml_loads(path):
    if path.name == "embedded_sft.yaml":
        config = load_config(EmbeddedSFTConfig, path)
        assert config.topics == ["sports"]
        return
    config = load_config(PosttrainConfig, path)
    arm = "anchored" if "anchored" in path.name else "plain"
    assert config.arm == arm
    if path.name.endswith("_on_plain.yaml"):  # ablation (a): anchored SFT of the plain-pretrained model
        assert config.output_dir.endswith("anchored_on_plain") and config.model_path.endswith("plain")
    else:
        assert config.output_dir.endswith(arm) and config.model_path.endswith(arm)
    if arm == "anchored":
        assert config.data.annotations, "the anchored arm reads the annotate stage's output"
    if path.name.startswith("tulu3"):
        assert config.training.bf16 and config.training.epochs == 1.0 and config.max_seq_len == 4096


def test_bad_values_are_config_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("arm: anchored\nkeys_only_fraction: 1.5\n")
    with pytest.raises(ConfigError, match="keys_only_fraction"):
        load_config(PosttrainConfig, path)
    with pytest.raises(ConfigError, match="invalid_annotation_policy"):
        load_config(PosttrainConfig, None, ["invalid_annotation_policy=drop"])
    assert any("training.learning_rate" in line for line in describe_config(PosttrainConfig))
