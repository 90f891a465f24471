"""Packing: rows, positions, labels, and attention that never crosses a document."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, Olmo2Config

from pretrain.packing import IGNORE_INDEX, PackedStream, forward_packed, pack_sequences, uses_varlen_flash
from pretrain.sequences import TokenizedCorpus

VOCAB = 97


def tiny_model(attn: str):
    torch.manual_seed(0)
    config = Olmo2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn).eval()


def random_doc(n: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(3, VOCAB, n).tolist()


def test_positions_restart_and_labels_skip_piece_starts_and_padding():
    a, b = random_doc(5, 1), random_doc(7, 2)
    rows = pack_sequences([a, b], seq_len=16)
    assert rows.input_ids.shape == (1, 16)
    assert rows.input_ids[0, :12].tolist() == a + b
    assert rows.position_ids[0].tolist() == list(range(5)) + list(range(7)) + list(range(4))
    assert rows.labels[0, 0] == IGNORE_INDEX and rows.labels[0, 5] == IGNORE_INDEX  # piece starts
    assert rows.labels[0, 1:5].tolist() == a[1:] and rows.labels[0, 6:12].tolist() == b[1:]
    assert (rows.labels[0, 12:] == IGNORE_INDEX).all()  # padding


def test_long_document_is_split_into_pieces_that_restart_positions():
    doc = random_doc(20, 3)
    rows = pack_sequences([doc], seq_len=8)
    assert rows.input_ids.shape == (3, 8)
    assert rows.input_ids.reshape(-1)[:20].tolist() == doc
    assert rows.position_ids[0].tolist() == list(range(8)) and rows.position_ids[1].tolist() == list(range(8))
    assert rows.position_ids[2, :4].tolist() == [0, 1, 2, 3]
    assert (rows.labels[:, 0] == IGNORE_INDEX).all()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_document_b_does_not_see_document_a(attn):
    model = tiny_model(attn)
    a, a_changed, b = random_doc(9, 4), random_doc(9, 5), random_doc(11, 6)
    seq_len = 24

    def packed_logits_of_b(first):
        rows = pack_sequences([first, b], seq_len)
        with torch.no_grad():
            return forward_packed(model, rows.to_model_inputs("cpu")).logits[0, 9:20]

    with_a, with_changed_a = packed_logits_of_b(a), packed_logits_of_b(a_changed)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([b]), use_cache=False).logits[0]
    torch.testing.assert_close(with_a, with_changed_a, rtol=0, atol=1e-6)
    torch.testing.assert_close(with_a, alone, rtol=0, atol=1e-5)

    # The check is sensitive: with ordinary causal attention over the row, B does see A.
    rows = pack_sequences([a, b], seq_len)
    rows_changed = pack_sequences([a_changed, b], seq_len)
    plain = torch.arange(seq_len)[None]
    with torch.no_grad():
        leak = model(input_ids=torch.from_numpy(rows.input_ids), position_ids=plain, use_cache=False).logits[0, 9:20]
        leak2 = model(input_ids=torch.from_numpy(rows_changed.input_ids), position_ids=plain,
                      use_cache=False).logits[0, 9:20]
    assert (leak - leak2).abs().max() > 1e-3


def test_flattened_batch_equals_row_batch():
    """The flash-attention layout (all rows in one) keeps documents and rows apart too."""
    model = tiny_model("sdpa")
    docs = [random_doc(n, 10 + n) for n in (7, 13, 5, 9, 14)]
    rows = pack_sequences(docs, seq_len=16)
    with torch.no_grad():
        by_row = forward_packed(model, rows.to_model_inputs("cpu"))
        flat = forward_packed(model, rows.to_model_inputs("cpu", flatten=True))
    torch.testing.assert_close(by_row.logits.reshape(1, -1, VOCAB), flat.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(by_row.loss, flat.loss, rtol=0, atol=1e-6)
    assert not uses_varlen_flash(model.config)


def test_stream_repeats_epochs_in_a_seeded_order_and_resumes_exactly():
    corpus = TokenizedCorpus.from_sequences([random_doc(n, n) for n in (30, 17, 45, 8)])  # 100 tokens
    stream = PackedStream(corpus, seq_len=16, seed=3)
    first = stream.next_rows(5)
    saved = stream.state_dict()
    rest = stream.next_rows(10)  # 240 tokens in all: more than two epochs
    c = stream.counters
    assert c.tokens == c.slots == 240 and c.packing_efficiency == 1.0
    assert c.epochs_completed == 2 and c.documents_completed >= 8
    assert c.loss_tokens == c.tokens - c.pieces

    again = PackedStream(corpus, seq_len=16, seed=3)
    again.load_state_dict(saved)
    assert np.array_equal(again.next_rows(10).input_ids, rest.input_ids)
    other_seed = PackedStream(corpus, seq_len=16, seed=4)
    assert not np.array_equal(other_seed.next_rows(5).input_ids, first.input_ids)


def test_flattened_batch_carries_the_varlen_boundaries_transformers_would_compute():
    """Precomputed cu_seq_lens / max_length (no per-layer GPU sync) equal transformers' own."""
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    docs = [random_doc(n, 10 + n) for n in (7, 13, 5, 9, 14, 40)]
    rows = pack_sequences(docs, seq_len=16)
    flat = rows.to_model_inputs("cpu", flatten=True)
    (cu_q, cu_k), (max_q, max_k) = prepare_fa_kwargs_from_position_ids(flat["position_ids"])
    assert flat["cu_seq_lens_q"].tolist() == cu_q.tolist() and flat["cu_seq_lens_k"].tolist() == cu_k.tolist()
    assert flat["cu_seq_lens_q"].dtype == torch.int32
    assert flat["max_length_q"] == flat["max_length_k"] == int(max_q) == 16
    assert isinstance(flat["max_length_q"], int)  # a Python int: flash-attn reads it without a device sync
    assert "cu_seq_lens_q" not in rows.to_model_inputs("cpu")  # rows of sdpa/eager carry none

