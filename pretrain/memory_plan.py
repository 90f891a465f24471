"""Peak memory per GPU of a training step, estimated before training starts.

``pretrain`` and ``posttrain`` print this plan before their first step and refuse to start
when it exceeds the device's memory (``train.memory_plan`` / ``training.memory_plan``:
``enforce``, or ``warn`` to go on anyway). It is an estimate from the resolved config, in
five parts:

- weights, gradients, optimizer states (AdamW: two fp32 moments) by sharding: none (DDP,
  single process), DeepSpeed ZeRO-1/2/3, FSDP. Mixed precision keeps fp32 master weights
  (accelerate's autocast; DeepSpeed keeps bf16 weights and an fp32 master copy in the
  optimizer partition) and, with autocast, the bf16 casts of the weights (up to 2 bytes per
  parameter, held from forward to backward). DDP (more than one process, no sharding) adds
  its gradient buckets: a second fp32 copy of the gradients, 4 bytes per trainable parameter.
  DeepSpeed ZeRO-1 under bf16 (its BF16_Optimizer) keeps an unsharded fp32 gradient
  accumulation buffer beside the bf16 gradients: 6 bytes per trainable parameter, unsharded.
  FSDP2 (accelerate's ``fully_shard`` per decoder layer, then on the root model) shards
  the embeddings and lm_head at rest with the root, but the root is not resharded after
  forward: they stay gathered, unsharded, from the forward to the end of backward, with their
  unsharded gradients before the reduce-scatter; the plan counts them whole;
- activations saved for backward, per token per decoder layer: ``63 h + 16 i`` bytes in fp32
  and ``56 h + 8 i`` bytes under bf16 autocast (h the width, i the MLP width), measured on CPU
  with OLMo-2 layers through ``saved_tensors_hooks`` (sdpa; the slopes in h and in i); with
  gradient checkpointing, the layer inputs instead (4 h bytes per token per layer: the
  residual stream is fp32) plus one layer's activations during its recomputation; and in
  either case the gradients backward holds inside the layer it is working through, about
  one layer's activations again;
- the rest of the model per token (embedding output, final norm): 16 h bytes;
- logits: transformers upcasts them to fp32 before the loss. Per token and vocabulary
  entry, 8 bytes at the peak in fp32 (measured on CPU: the log-softmax output kept for
  backward and one fp32 gradient); in bf16, 12, an ESTIMATE never measured (the bf16 logits,
  their fp32 upcast kept by log-softmax, the fp32 gradient and its bf16 cast): the first
  number scripts/gpu_check.sh measures (``MemoryPlan.estimated``); TRL's SFT metrics
  (entropy, token accuracy) add one fp32 copy (4);
- on CUDA, a fixed 2 GiB for the CUDA context, NCCL and the allocator's fragmentation.

scripts/bench_memory_plan.py compares it with the measured peak of a CPU run (over a tiny
reference run; tests/pretrain/test_memory_plan.py checks the arithmetic); ``scripts/gpu_check.sh`` compares it with ``torch.cuda.max_memory_allocated`` on a GPU.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

GIB = 1024**3
SHARDINGS = ("none", "zero1", "zero2", "zero3", "fsdp")
# Saved activations per token per decoder layer, bytes = H * hidden + I * intermediate (CPU-measured).
ACTIVATION_SLOPES = {"fp32": (63, 16), "bf16": (56, 8)}
# Embedding output, final norm and their gradients per token, in units of hidden bytes.
NON_LAYER_BYTES_PER_HIDDEN = 16
CUDA_OVERHEAD_BYTES = 2 * GIB
# Bytes per logit in fp32 (measured on CPU) and under bf16 autocast (estimated, not measured).
LOGIT_BYTES = {"fp32": 8, "bf16": 12}
# DDP's gradient buckets: one fp32 copy of the gradients (gradient_as_bucket_view off).
DDP_BUCKET_BYTES = 4


@dataclass(frozen=True)
class MemoryInputs:
    # Parameters of the model (all of them, embeddings included).
    parameters: int
    # Parameters that train (fewer with LoRA; the same otherwise).
    trainable_parameters: int
    num_layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    # Tokens in one forward pass on one device (micro-batch rows x sequence length).
    tokens_per_micro_batch: int
    # Processes sharing the sharded states.
    world_size: int = 1
    # none, zero1, zero2, zero3, fsdp.
    sharding: str = "none"
    # bf16 autocast (True) or fp32 throughout.
    bf16: bool = False
    gradient_checkpointing: bool = False
    # Extra fp32 bytes per logit (TRL's SFT metrics read the logits once more).
    extra_logit_bytes: int = 0
    # Whether the device is a GPU (adds the CUDA context and allocator overhead).
    cuda: bool = False
    # Whether lm_head shares the embedding matrix (OLMo-2: no, two vocab x hidden matrices).
    tied_embeddings: bool = False


@dataclass(frozen=True)
class MemoryPlan:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    overhead: float
    inputs: MemoryInputs

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits + self.overhead

    def terms(self) -> dict[str, float]:
        """Each term in bytes, and the total, by name."""
        names = ("weights", "gradients", "optimizer", "activations", "logits", "overhead")
        return {**{name: getattr(self, name) for name in names}, "total": self.total}

    def estimated(self) -> list[str]:
        """The terms that rest on an estimate rather than a measurement, for this plan."""
        return ["logits (12 bytes per logit under bf16)"] if self.inputs.bf16 else []

    def describe(self) -> str:
        i = self.inputs
        parts = ", ".join(
            f"{name} {getattr(self, name) / GIB:.1f}"
            for name in ("weights", "gradients", "optimizer", "activations", "logits", "overhead")
        )
        unmeasured = f"; estimated, not measured: {', '.join(self.estimated())}" if self.estimated() else ""
        return (
            f"memory plan: {self.total / GIB:.1f} GiB per device ({parts} GiB; {i.parameters / 1e6:.0f}M "
            f"parameters, {i.tokens_per_micro_batch:,} tokens per micro-batch, sharding {i.sharding} over "
            f"{i.world_size}, {'bf16' if i.bf16 else 'fp32'}, gradient checkpointing "
            f"{'on' if i.gradient_checkpointing else 'off'}{unmeasured})"
        )


def estimate(i: MemoryInputs) -> MemoryPlan:
    if i.sharding not in SHARDINGS:
        raise ValueError(f"sharding '{i.sharding}' is not one of {', '.join(SHARDINGS)}")
    P, T, W = i.parameters, i.trainable_parameters, max(1, i.world_size)
    shard = {"none": 1, "zero1": 1, "zero2": 1, "zero3": W, "fsdp": W}[i.sharding]
    if i.sharding.startswith("zero") and i.bf16:  # DeepSpeed: bf16 weights, fp32 master copy in the optimizer partition
        weights = 2 * P / shard + 4 * T / W
        # ZeRO-1's BF16_Optimizer: bf16 gradients plus an unsharded fp32 accumulation buffer.
        gradients = 6 * T if i.sharding == "zero1" else 2 * T / W
    else:  # fp32 master weights (+ autocast's bf16 casts), fp32 gradients
        weights = 4 * P / shard + (2 * P / shard if i.bf16 else 0)
        gradients = 4 * T / (W if i.sharding in ("zero2", "zero3", "fsdp") else 1)
        if i.sharding == "none" and W > 1:
            gradients += DDP_BUCKET_BYTES * T
    if i.sharding == "fsdp" and W > 1:  # the root's embeddings and lm_head, gathered for the whole step
        root = i.vocab_size * i.hidden_size * (1 if i.tied_embeddings else 2)
        weights += (2 if i.bf16 else 4) * root * (1 - 1 / W)
        gradients += 4 * min(root, T) * (1 - 1 / W)
    optimizer = 8 * T / (1 if i.sharding == "none" else W)

    precision = "bf16" if i.bf16 else "fp32"
    per_h, per_i = ACTIVATION_SLOPES[precision]
    layer = i.tokens_per_micro_batch * (per_h * i.hidden_size + per_i * i.intermediate_size)
    if i.gradient_checkpointing:
        activations = i.num_layers * i.tokens_per_micro_batch * 4 * i.hidden_size + layer
    else:
        activations = i.num_layers * layer
    activations += layer  # backward's gradients inside the layer it is working through
    activations += i.tokens_per_micro_batch * NON_LAYER_BYTES_PER_HIDDEN * i.hidden_size
    per_logit = LOGIT_BYTES[precision] + i.extra_logit_bytes
    logits = i.tokens_per_micro_batch * i.vocab_size * per_logit
    overhead = CUDA_OVERHEAD_BYTES if i.cuda else 0
    return MemoryPlan(weights, gradients, optimizer, activations, logits, overhead, i)


def launcher_sharding() -> tuple[str, int]:
    """The sharding and world size ``accelerate launch`` set up, read from its environment
    (the same before and after the Accelerator exists)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
        config_file = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
        if config_file and os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as handle:
                stage = json.load(handle).get("zero_optimization", {}).get("stage", stage)
        return f"zero{stage if stage is not None else 2}", world
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp", world
    return "none", world


def device_memory_bytes() -> int | None:
    """Total memory of the current CUDA device (None without one: nothing is enforced on CPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def check_plan(
    plan: MemoryPlan, mode: str, key: str, fixes: str, device_bytes: int | None = None, print_fn=print
) -> None:
    """Print the plan; refuse (``mode`` enforce) when it exceeds the device's memory."""
    print_fn(plan.describe())
    device_bytes = device_memory_bytes() if device_bytes is None else device_bytes
    if device_bytes is None or plan.total <= device_bytes:
        return
    message = (
        f"the memory plan ({plan.total / GIB:.1f} GiB) exceeds the device's {device_bytes / GIB:.1f} GiB; "
        f"{fixes}, or set {key}=warn to start anyway"
    )
    if mode == "enforce":
        raise MemoryError(message)
    print_fn("warning: " + message)


def plan_for_pretrain_config(
    config, world_size: int, sharding: str, bf16: bool = True, cuda: bool = True, vocab_size: int | None = None
) -> MemoryPlan:
    """The plan of a pretrain config (``PretrainConfig``) before any model or tokenizer exists:
    the preset's sizes, counted on the meta device, with the preset's vocabulary (or ``vocab_size``)."""
    from pretrain.model_configs import build_hf_config, count_parameters_meta, resolve_preset

    vocab = vocab_size or resolve_preset(config.model).vocab_size
    if vocab is None:
        raise ValueError(
            f"model.preset '{config.model.preset}' takes its vocabulary from the tokenizer: pass vocab_size"
        )
    model_config = build_hf_config(config.model, vocab, config.train.seq_len, 0, 0, 1)
    return plan_for_model(config, model_config, count_parameters_meta(model_config), world_size, sharding, bf16, cuda)


def plan_for_model(
    config, model_config, parameters: int, world_size: int, sharding: str, bf16: bool, cuda: bool
) -> MemoryPlan:
    """The plan of a pretrain config's (``PretrainConfig``) training step, every parameter trained, for a
    model of ``parameters`` described by ``model_config`` (a transformers config)."""
    return estimate(
        MemoryInputs(
            parameters=parameters,
            trainable_parameters=parameters,
            num_layers=model_config.num_hidden_layers,
            hidden_size=model_config.hidden_size,
            intermediate_size=model_config.intermediate_size,
            vocab_size=model_config.vocab_size,
            tokens_per_micro_batch=config.train.micro_batch * config.train.seq_len,
            world_size=world_size,
            sharding=sharding,
            bf16=bf16,
            gradient_checkpointing=config.model.gradient_checkpointing,
            cuda=cuda,
        )
    )
