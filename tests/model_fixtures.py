"""The tiny causal LM configs the tests build (imported by tests and conftests): the shapes a test needs to
run fast; the vocabulary, and the eos and pad ids, of the tokenizer the model is built for."""

from __future__ import annotations


def tiny_lm_config(config_cls, vocab, hidden: int = 32, layers: int = 2, heads: int = 2, **extra):
    """``config_cls`` (LlamaConfig, Olmo2Config ...) at a tiny size. ``vocab``: a tokenizer (its length, eos and
    pad ids) or a vocabulary size; ``extra`` sets the rest (max_position_embeddings, bos_token_id ...) or
    replaces a default."""
    sizes = {
        "vocab_size": vocab if isinstance(vocab, int) else len(vocab),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
    }
    if not isinstance(vocab, int):
        sizes.update(eos_token_id=vocab.eos_token_id, pad_token_id=vocab.pad_token_id)
    return config_cls(**{**sizes, **extra})
