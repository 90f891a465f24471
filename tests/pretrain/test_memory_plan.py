"""The memory plan's arithmetic on hand-computed cases, and the paper configs under 80 GB.

How close the plan comes to a measured peak is a property of the machine, not of the code:
``scripts/bench_memory_plan.py`` measures it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pretrain_fixtures import plan_1b

from pretrain.memory_plan import GIB, MemoryInputs, check_plan, estimate

REPO = Path(__file__).resolve().parents[2]
# Hand-computed plans of a toy shape: 2 layers, hidden 4, MLP 8, vocabulary 10, 3 tokens per micro-batch.
# Saved activations per layer: 3 tokens x (63 x 4 + 16 x 8) = 1,140 bytes in fp32, 3 x (56 x 4 + 8 x 8) = 864
# in bf16; the rest of the model 3 x 16 x 4 = 192; logits 3 x 10 x 8 (fp32) or x 12 (bf16).
TOY = dict(num_layers=2, hidden_size=4, intermediate_size=8, vocab_size=10, tokens_per_micro_batch=3)
KNOWN_PLANS = {
    # name: (inputs besides TOY, (weights, gradients, optimizer, activations, logits, overhead))
    "fp32 single process": (
        dict(parameters=1000, trainable_parameters=1000),
        (4000, 4000, 8000, 2 * 1140 + 1140 + 192, 240, 0),
    ),
    # Layer inputs (3 x 4 x 4 bytes per layer) plus one layer recomputed, plus backward's layer.
    "fp32 gradient checkpointing": (
        dict(parameters=1000, trainable_parameters=1000, gradient_checkpointing=True),
        (4000, 4000, 8000, 2 * 48 + 1140 + 1140 + 192, 240, 0),
    ),
    # DDP replicates every state, and its gradient buckets are a second fp32 copy of the gradients.
    "fp32 ddp over 8": (
        dict(parameters=1000, trainable_parameters=1000, world_size=8),
        (4000, 4000 + 4000, 8000, 3612, 240, 0),
    ),
    # LoRA: the frozen weights are held, only the adapter has gradients and moments.
    "fp32 lora": (dict(parameters=1000, trainable_parameters=10), (4000, 40, 80, 3612, 240, 0)),
    # DeepSpeed bf16: bf16 weights whole, the fp32 master copy and moments sharded.
    "bf16 zero1 over 4 on cuda": (
        dict(parameters=8000, trainable_parameters=8000, world_size=4, sharding="zero1", bf16=True, cuda=True),
        # ZeRO-1 under bf16: bf16 and fp32 gradients, unsharded (6 bytes per parameter).
        (16000 + 8000, 6 * 8000, 16000, 3 * 864 + 192, 360, 2 * GIB),
    ),
    "bf16 zero2 over 8 on cuda": (
        dict(parameters=8000, trainable_parameters=8000, world_size=8, sharding="zero2", bf16=True, cuda=True),
        (16000 + 4000, 2000, 8000, 3 * 864 + 192, 360, 2 * GIB),
    ),
    "bf16 zero3 over 4": (
        dict(parameters=8000, trainable_parameters=8000, world_size=4, sharding="zero3", bf16=True),
        (4000 + 8000, 4000, 16000, 2784, 360, 0),
    ),
    # FSDP: fp32 master weights and autocast's bf16 casts, all sharded, except the root's embeddings and lm_head
    # (2 x 10 x 4 parameters), gathered for the whole step: the three quarters not held by this rank come back,
    # in bf16 (2 bytes) for the weights and fp32 (4 bytes) for the gradients; TRL's metrics read the logits once more.
    "bf16 fsdp over 4, sft metrics": (
        dict(parameters=8000, trainable_parameters=8000, world_size=4, sharding="fsdp", bf16=True, extra_logit_bytes=4),
        (8000 + 4000 + 80 * 2 * 3 / 4, 8000 + 80 * 4 * 3 / 4, 16000, 2784, 3 * 10 * 16, 0),
    ),
}


@pytest.mark.parametrize("name", list(KNOWN_PLANS))
def test_the_plan_of_a_known_case_adds_up_by_hand(name):
    inputs, expected = KNOWN_PLANS[name]
    plan = estimate(MemoryInputs(**TOY, **inputs))
    parts = (plan.weights, plan.gradients, plan.optimizer, plan.activations, plan.logits, plan.overhead)
    assert parts == pytest.approx(expected), name
    assert plan.total == pytest.approx(sum(expected))


def test_activations_grow_with_tokens_and_layers_as_the_slopes_say():
    one = estimate(MemoryInputs(parameters=1, trainable_parameters=1, **TOY))
    longer = estimate(MemoryInputs(parameters=1, trainable_parameters=1, **{**TOY, "tokens_per_micro_batch": 6}))
    deeper = estimate(MemoryInputs(parameters=1, trainable_parameters=1, **{**TOY, "num_layers": 3}))
    assert longer.activations == 2 * one.activations and longer.logits == 2 * one.logits
    assert deeper.activations - one.activations == 1140  # one more layer's saved activations


def test_an_unknown_sharding_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="sharding 'zero4' is not one of none, zero1, zero2, zero3, fsdp"):
        estimate(MemoryInputs(parameters=1, trainable_parameters=1, sharding="zero4", **TOY))


def test_describe_states_the_total_and_the_setting():
    plan = plan_1b(tokens_per_micro_batch=4096, world_size=8, sharding="zero2", cuda=True)
    text = plan.describe()
    assert text.startswith(f"memory plan: {plan.total / GIB:.1f} GiB per device (weights ")
    assert "1000M parameters, 4,096 tokens per micro-batch, sharding zero2 over 8, bf16" in text
    assert "gradient checkpointing off" in text
    assert text.endswith("estimated, not measured: logits (12 bytes per logit under bf16))")


# The launches the paper configs document: DeepSpeed ZeRO-2 on 8 GPUs, and the worst case, one GPU without sharding.
LAUNCHES = [("zero2", 8), ("none", 1)]
LIMIT_BYTES = 80e9  # an 80 GB H100


@pytest.mark.parametrize("name", ["olmo2_0.6b", "olmo2_1b", "olmo2_2.5b"])
def test_every_paper_pretrain_config_plans_under_80_gb(name):
    from pretrain.config import PretrainConfig
    from pretrain.memory_plan import plan_for_pretrain_config
    from stage_io.config import load_config

    config = load_config(PretrainConfig, REPO / "configs" / "pretrain" / f"{name}.yaml")
    for sharding, world in LAUNCHES:
        plan = plan_for_pretrain_config(config, world, sharding)
        print(f"{name} ({sharding} x {world}): {plan.describe()}")
        assert plan.total < LIMIT_BYTES, plan.describe()


@pytest.mark.parametrize("name", ["tulu3_plain", "tulu3_anchored", "tulu3_anchored_on_plain"])
def test_every_paper_posttrain_config_plans_under_80_gb(name, monkeypatch):
    from posttrain.config import PosttrainConfig
    from posttrain.train import memory_plan
    from pretrain.config import ModelSection
    from pretrain.model_configs import OLMO2_VOCAB, build_hf_config
    from stage_io.config import load_config

    config = load_config(PosttrainConfig, REPO / "configs" / "posttrain" / f"{name}.yaml")
    model_config = build_hf_config(ModelSection(preset="1b"), OLMO2_VOCAB, config.max_seq_len, 0, 0, 1)  # olmo2_1b
    for sharding, world in LAUNCHES:
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", str(sharding != "none").lower())
        monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
        plan = memory_plan(config, model_config)
        assert plan.inputs.sharding == sharding and plan.inputs.world_size == world and plan.inputs.bf16
        print(f"{name} ({sharding} x {world}): {plan.describe()}")
        assert plan.total + (0 if plan.inputs.cuda else 2 * GIB) < LIMIT_BYTES, plan.describe()


def test_a_plan_over_the_device_memory_is_refused_with_the_key_to_change():
    plan = plan_1b(num_layers=18, hidden_size=1536, intermediate_size=6144, tokens_per_micro_batch=32768)
    lines = []
    with pytest.raises(
        MemoryError, match=r"exceeds the device's 80.0 GiB; lower train.micro_batch.*train.memory_plan=warn"
    ):
        check_plan(
            plan,
            "enforce",
            "train.memory_plan",
            "lower train.micro_batch",
            device_bytes=80 * GIB,
            print_fn=lines.append,
        )
    assert lines[0].startswith("memory plan: ")
    check_plan(
        plan, "warn", "train.memory_plan", "lower train.micro_batch", device_bytes=80 * GIB, print_fn=lines.append
    )
    assert lines[-1].startswith("warning: the memory plan")
