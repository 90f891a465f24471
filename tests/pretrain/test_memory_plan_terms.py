"""The memory plan's terms for DDP, ZeRO-1 under bf16 and FSDP2, and what it marks as an estimate."""

from __future__ import annotations

from pretrain_fixtures import BILLION, SHAPE_1B, plan_1b


def test_ddp_adds_its_fp32_gradient_buckets_only_with_more_than_one_process():
    assert plan_1b(world_size=8).gradients - plan_1b(world_size=1).gradients == 4 * BILLION


def test_zero1_under_bf16_keeps_bf16_gradients_and_an_unsharded_fp32_buffer():
    assert plan_1b(sharding="zero1", world_size=8).gradients == 6 * BILLION
    assert plan_1b(sharding="zero2", world_size=8).gradients == 2 * BILLION / 8


def test_fsdp_counts_the_gathered_embeddings_and_lm_head_whole():
    root = 2 * SHAPE_1B["vocab_size"] * SHAPE_1B["hidden_size"]  # OLMo-2: untied
    fsdp, zero3_like = plan_1b(sharding="fsdp", world_size=8), 6 * BILLION / 8
    assert fsdp.weights == zero3_like + 2 * root * (1 - 1 / 8)
    tied = plan_1b(sharding="fsdp", world_size=8, tied_embeddings=True)
    assert fsdp.weights - tied.weights == 2 * (root / 2) * (1 - 1 / 8)


def test_the_bf16_logit_bytes_are_labelled_an_estimate():
    assert plan_1b().estimated() and "estimated, not measured" in plan_1b().describe()
    assert plan_1b(bf16=False).estimated() == [] and "estimated" not in plan_1b(bf16=False).describe()
    assert set(plan_1b().terms()) == {"weights", "gradients", "optimizer", "activations", "logits", "overhead", "total"}
