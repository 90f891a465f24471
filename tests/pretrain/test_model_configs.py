"""Model sizes on the meta device, every pretrain YAML, the accelerate files, the schedules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pretrain.config import ModelSection, PretrainConfig, ScheduleSection
from pretrain.model_configs import PRESETS, build_hf_config, count_parameters_meta, resolve_preset
from pretrain.schedule import lr_multiplier
from stage_io.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("preset", ["150m", "0.6b", "1b", "2.5b"])
def test_parameter_counts_match_the_nominal_sizes(preset):
    p = PRESETS[preset]
    config = build_hf_config(ModelSection(preset=preset), p.vocab_size, 4096, 0, 0, 1)
    n = count_parameters_meta(config)
    assert abs(n - p.nominal_params) / p.nominal_params < 0.05, f"{preset}: {n / 1e6:.1f}M parameters"


def test_paper_budgets_are_20_tokens_per_parameter():
    for name, preset in (("olmo2_0.6b", "0.6b"), ("olmo2_1b", "1b"), ("olmo2_2.5b", "2.5b")):
        config = load_config(PretrainConfig, CONFIGS / "pretrain" / f"{name}.yaml")
        assert config.model.preset == preset
        assert config.train.train_tokens == PRESETS[preset].paper_train_tokens == 20 * PRESETS[preset].nominal_params


@pytest.mark.parametrize("path", sorted((CONFIGS / "pretrain").glob("*.yaml")), ids=lambda p: p.name)
def test_every_pretrain_yaml_loads(path):
    config = load_config(PretrainConfig, path)
    resolve_preset(config.model)  # the preset exists and its sizes are consistent


def test_overrides_change_the_preset():
    p = resolve_preset(ModelSection(preset="tiny", num_layers=3, hidden_size=96, num_heads=3, num_kv_heads=1))
    assert (p.num_layers, p.hidden_size, p.num_heads, p.num_kv_heads) == (3, 96, 3, 1)
    with pytest.raises(ValueError, match="divide"):
        resolve_preset(ModelSection(preset="tiny", num_heads=5))
    with pytest.raises(ValueError, match="unknown"):
        resolve_preset(ModelSection(preset="7b"))


def test_accelerate_files_parse_with_accelerate():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    kinds = {}
    for name in ("ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp"):
        cluster = load_config_from_file(str(CONFIGS / "accelerate" / f"{name}.yaml"))
        kinds[name] = str(cluster.distributed_type.value)
        if cluster.deepspeed_config:
            ds_file = Path(cluster.deepspeed_config["deepspeed_config_file"])
            assert ds_file.parts[:2] == ("configs", "accelerate")
            ds = HfDeepSpeedConfig(json.loads((CONFIGS.parent / ds_file).read_text()))
            assert ds.is_zero3() == name.endswith("zero3")
            assert ds.get_value("train_micro_batch_size_per_gpu") == "auto"  # pretrain fills it
    assert kinds == {"ddp": "MULTI_GPU", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED", "fsdp": "FSDP"}


def test_schedules():
    cosine = ScheduleSection(kind="cosine", warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_multiplier(s, 100, cosine) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1) and all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    wsd = ScheduleSection(kind="wsd", warmup_steps=10, min_lr_ratio=0.0, decay_fraction=0.2)
    lrs = [lr_multiplier(s, 100, wsd) for s in range(100)]
    assert lrs[50] == lrs[79] == 1.0 and lrs[-1] == pytest.approx(0.0) and lrs[85] < 1.0


def test_llama_is_an_alternative_architecture():
    config = build_hf_config(
        ModelSection(architecture="llama", preset="0.6b"), PRESETS["0.6b"].vocab_size, 4096, 0, 0, 1
    )
    assert config.model_type == "llama"
    assert abs(count_parameters_meta(config) - 0.6e9) / 0.6e9 < 0.05  # no QK-norm: a few thousand fewer


def test_budget_is_train_tokens_or_max_steps_not_both():
    from stage_io.config import ConfigError

    with pytest.raises(ConfigError, match="exactly one"):
        load_config(PretrainConfig, CONFIGS / "pretrain" / "tiny.yaml", ["train.max_steps=5"])
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(PretrainConfig, CONFIGS / "pretrain" / "tiny.yaml", ["train.train_tokens=null"])
