"""The memory plan's terms for DDP, ZeRO-1 under bf16 and FSDP2, and what it marks as an estimate."""

from __future__ import annotations

from pretrain.memory_plan import MemoryInputs, estimate

P = 1_000_000_000
SHAPE = dict(
    parameters=P,
    trainable_parameters=P,
    num_layers=16,
    hidden_size=2048,
    intermediate_size=8192,
    vocab_size=100_352,
    tokens_per_micro_batch=8192,
    bf16=True,
)


def plan(**kwargs):
    return estimate(MemoryInputs(**{**SHAPE, **kwargs}))


def test_ddp_adds_its_fp32_gradient_buckets_only_with_more_than_one_process():
    assert plan(world_size=8).gradients - plan(world_size=1).gradients == 4 * P


def test_zero1_under_bf16_keeps_bf16_gradients_and_an_unsharded_fp32_buffer():
    assert plan(sharding="zero1", world_size=8).gradients == 6 * P
    assert plan(sharding="zero2", world_size=8).gradients == 2 * P / 8


def test_fsdp_counts_the_gathered_embeddings_and_lm_head_whole():
    root = 2 * SHAPE["vocab_size"] * SHAPE["hidden_size"]  # OLMo-2: untied
    fsdp, zero3_like = plan(sharding="fsdp", world_size=8), 6 * P / 8
    assert fsdp.weights == zero3_like + 2 * root * (1 - 1 / 8)
    tied = plan(sharding="fsdp", world_size=8, tied_embeddings=True)
    assert fsdp.weights - tied.weights == 2 * (root / 2) * (1 - 1 / 8)


def test_the_bf16_logit_bytes_are_labelled_an_estimate():
    assert plan().estimated() and "estimated, not measured" in plan().describe()
    assert plan(bf16=False).estimated() == [] and "estimated" not in plan(bf16=False).describe()
    assert set(plan().terms()) == {"weights", "gradients", "optimizer", "activations", "logits", "overhead", "total"}
