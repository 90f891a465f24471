"""The vLLM engine settings shared by annotate's LLM, eval's sampling and its judge."""

from __future__ import annotations

from stage_io.vllm_engine import VLLMEngineConfig


def test_engine_kwargs_are_the_engine_keys_without_the_batch_size():
    config = VLLMEngineConfig(batch_size=4, tensor_parallel_size=2, gpu_memory_utilization=0.5, dtype="bfloat16")
    assert config.engine_kwargs() == {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "dtype": "bfloat16"}


def test_an_unset_context_length_is_left_to_the_model_and_a_set_one_is_passed():
    assert "max_model_len" not in VLLMEngineConfig().engine_kwargs()
    assert VLLMEngineConfig(max_model_len=4096).engine_kwargs()["max_model_len"] == 4096
