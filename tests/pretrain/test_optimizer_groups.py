"""AdamW's weight-decay groups: matrices decay, norms and (by default) embeddings do not, also under ZeRO-3."""

from __future__ import annotations

import torch
from model_fixtures import tiny_lm_config
from transformers import AutoModelForCausalLM, Olmo2Config

from pretrain.config import PretrainConfig, TrainSection
from pretrain.train import make_optimizer


def tiny_model():
    torch.manual_seed(0)
    config = tiny_lm_config(Olmo2Config, 97, heads=4, max_position_embeddings=64)
    return AutoModelForCausalLM.from_config(config)


def group_names(model, optimizer) -> list[set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [{names[id(p)] for p in group["params"]} for group in optimizer.param_groups]


def test_zero3_partitioned_parameters_keep_their_weight_decay_group():
    """Under deepspeed.zero.Init every parameter is an empty partition; its shape is in ds_shape."""
    model = tiny_model()
    config = PretrainConfig(train=TrainSection(max_steps=1))
    decay, no_decay = group_names(model, make_optimizer(model, config))
    assert "model.layers.0.mlp.up_proj.weight" in decay and "model.norm.weight" in no_decay
    assert "model.embed_tokens.weight" in no_decay  # OLMo-2 does not decay embeddings
    for param in model.parameters():  # what zero.Init leaves behind
        param.ds_shape = param.shape
        param.data = torch.empty(0)
    assert group_names(model, make_optimizer(model, config)) == [decay, no_decay]
