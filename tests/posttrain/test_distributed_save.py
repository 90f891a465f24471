"""The final save under FSDP and the LoRA merge under ZeRO-3, reached on CPU."""

from __future__ import annotations

import types
import weakref

import pytest
import torch
from model_fixtures import tiny_lm_config
from transformers import AutoModelForCausalLM, LlamaConfig

from posttrain.train import check_weights_written, full_state_dict_for_save, merge_adapter, zero3_loading_disabled


def test_fsdp_final_save_gathers_a_full_state_dict():
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType

    plugin = FullyShardedDataParallelPlugin(state_dict_type="SHARDED_STATE_DICT", fsdp_version=2)
    trainer = types.SimpleNamespace(
        is_fsdp_enabled=True, accelerator=types.SimpleNamespace(state=types.SimpleNamespace(fsdp_plugin=plugin))
    )
    full_state_dict_for_save(trainer)
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert isinstance(plugin.state_dict_config, FullStateDictConfig)


def test_a_save_without_weights_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="wrote no weights.*FULL_STATE_DICT"):
        check_weights_written(tmp_path)


class ZeRO3Switch:
    """What ``HfDeepSpeedConfig`` leaves registered in transformers under a ZeRO-3 launch."""

    config = {"zero_optimization": {"stage": 3}}

    def is_zero3(self) -> bool:
        return True


def test_lora_merge_loads_whole_models_while_zero3_is_registered(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers.integrations import deepspeed as hf_deepspeed

    torch.manual_seed(0)
    config = tiny_lm_config(LlamaConfig, 64, hidden=16, layers=1)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    expected = peft_model.merge_and_unload().state_dict()

    switch = ZeRO3Switch()
    hf_deepspeed._hf_deepspeed_config_weak_ref = weakref.ref(switch)
    try:
        assert hf_deepspeed.is_deepspeed_zero3_enabled()  # a plain from_pretrained would enter zero.Init here
        with zero3_loading_disabled():
            assert not hf_deepspeed.is_deepspeed_zero3_enabled()
        assert hf_deepspeed.is_deepspeed_zero3_enabled()  # restored afterwards
        merge_adapter(str(tmp_path / "base"), tmp_path / "adapter", tmp_path / "merged")
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").state_dict()
    for name, tensor in expected.items():
        torch.testing.assert_close(merged[name], tensor)
