"""The vLLM engine settings every stage that runs vLLM shares (annotate's LLM, eval's sampling and judge).

A stage's section inherits these fields, so its YAML keys stay flat (``llm.batch_size``,
``sampling.tensor_parallel_size``, ``metrics.quality.judge.gpu_memory_utilization`` ...); a
section may redeclare a field to change its default or say what it means there.
"""

from __future__ import annotations

from dataclasses import dataclass

from stage_io.config import PositiveInt, ProperFraction


@dataclass
class VLLMEngineConfig:
    # Prompts per generate call.
    batch_size: PositiveInt = 16
    # vLLM: GPUs per engine (tensor parallelism).
    tensor_parallel_size: PositiveInt = 1
    # vLLM: fraction of GPU memory the engine may take.
    gpu_memory_utilization: ProperFraction = 0.9
    # vLLM: longest prompt+generation in tokens (None: the model's own limit).
    max_model_len: PositiveInt | None = None
    # Weight dtype ("auto", "bfloat16", "float16", "float32").
    dtype: str = "auto"

    def engine_kwargs(self) -> dict:
        """The engine's keyword arguments of ``vllm.LLM`` (and of eval's vLLM backend):
        tensor_parallel_size, gpu_memory_utilization, dtype, and max_model_len when set (unset,
        vLLM takes the model's own limit). ``batch_size`` is not one: it is how a stage batches prompts."""
        kwargs = {
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "dtype": self.dtype,
        }
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        return kwargs
