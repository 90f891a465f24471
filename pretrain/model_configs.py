"""Model sizes: standard transformers architectures, so checkpoints load with
``AutoModelForCausalLM`` and serve with vLLM.

OLMo-2 (``Olmo2ForCausalLM``) is the paper's family: RMSNorm on the outputs of attention
and MLP (OLMo-2's reordered norm), QK-norm, SwiGLU, RoPE, untied embeddings. The paper's sizes
(0.6B, 1B, 2.5B) are *total* parameter counts here, embeddings included, with OLMo-2's
tokenizer (100,278 tokens + 2 annotation delimiters, padded to 100,352 rows); trained at
20 tokens per parameter: 12B, 20B and 50B tokens. ``150m`` is for GPU benchmarks; ``tiny``
(tests) and ``embedded`` (the CPU demo) take their vocabulary from the trained tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Olmo2Config, PretrainedConfig

OLMO2_VOCAB = 100_352


@dataclass(frozen=True)
class Preset:
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    tie_word_embeddings: bool
    rope_theta: float
    # Vocabulary the nominal size assumes (None: whatever the tokenizer has).
    vocab_size: int | None = None
    # The size the preset is named for, in parameters (None: not a target).
    nominal_params: float | None = None
    # Tokens per the paper's 20-tokens-per-parameter rule (None: not a paper run).
    paper_train_tokens: int | None = None


PRESETS: dict[str, Preset] = {
    # About 1M parameters with a 2k vocabulary: tests, seconds.
    "tiny": Preset(128, 2, 4, 4, 512, False, 10_000.0),
    # About 5.5M parameters with a 4k vocabulary: the CPU demo, minutes.
    "embedded": Preset(256, 4, 4, 4, 768, False, 10_000.0),
    # About 150M (tied embeddings): GPU throughput benchmarks.
    "150m": Preset(768, 8, 12, 12, 3072, True, 500_000.0, OLMO2_VOCAB, 150e6),
    # The paper's three sizes, OLMo-2 style (head dim 64 or 128, MLP about 4x).
    "0.6b": Preset(1024, 24, 16, 16, 4096, False, 500_000.0, OLMO2_VOCAB, 0.6e9, 12_000_000_000),
    "1b": Preset(1536, 18, 12, 12, 6144, False, 500_000.0, OLMO2_VOCAB, 1.0e9, 20_000_000_000),
    "2.5b": Preset(2560, 20, 20, 20, 9728, False, 500_000.0, OLMO2_VOCAB, 2.5e9, 50_000_000_000),
}


def resolve_preset(model_cfg) -> Preset:
    """The preset named by ``model.preset`` with any size the config sets explicitly."""
    if model_cfg.preset not in PRESETS:
        raise ValueError(f"model.preset '{model_cfg.preset}' is unknown (known: {', '.join(PRESETS)})")
    base = PRESETS[model_cfg.preset]
    overrides = {
        "hidden_size": model_cfg.hidden_size,
        "num_layers": model_cfg.num_layers,
        "num_heads": model_cfg.num_heads,
        "num_kv_heads": model_cfg.num_kv_heads,
        "intermediate_size": model_cfg.intermediate_size,
        "tie_word_embeddings": model_cfg.tie_word_embeddings,
        "rope_theta": model_cfg.rope_theta,
    }
    values = {**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}}
    if values["hidden_size"] % values["num_heads"] or values["num_heads"] % values["num_kv_heads"]:
        raise ValueError("model.hidden_size must divide by model.num_heads, and num_heads by model.num_kv_heads")
    return Preset(**values)


def padded_vocab_size(n_tokens: int, multiple: int) -> int:
    return -(-n_tokens // multiple) * multiple if multiple > 1 else n_tokens


def build_hf_config(
    model_cfg,
    vocab_size: int,
    max_position_embeddings: int,
    bos_token_id: int | None,
    eos_token_id: int,
    pad_token_id: int,
) -> PretrainedConfig:
    """A transformers config for ``model_cfg`` (a ``ModelSection``) and the tokenizer's ids."""
    preset = resolve_preset(model_cfg)
    common = dict(
        vocab_size=vocab_size,
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        num_key_value_heads=preset.num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=model_cfg.init_std,
        tie_word_embeddings=preset.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": preset.rope_theta},
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        attention_bias=False,
        rms_norm_eps=1e-6,
    )
    cls = Olmo2Config if model_cfg.architecture == "olmo2" else LlamaConfig
    return cls(**common)


def count_parameters_meta(config: PretrainedConfig) -> int:
    """Parameters of the model ``config`` describes, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return parameter_count(model)


def numel(param) -> int:
    """Elements of a parameter, also when ZeRO-3 has partitioned it (then ``numel()`` is 0)."""
    return getattr(param, "ds_numel", None) or param.numel()


def parameter_count(model) -> int:
    return sum(numel(p) for p in model.parameters())  # shared (tied) tensors are counted once


def matmul_parameters(model) -> int:
    """Parameters that cost 2 FLOPs per token forward: all but the input embedding lookup
    (unless tied, when the same matrix is the output projection)."""
    total = parameter_count(model)
    if model.config.tie_word_embeddings:
        return total
    return total - numel(model.get_input_embeddings().weight)
