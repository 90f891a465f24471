"""Packing: rows, positions, labels, and attention that never crosses a document."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import tiny_lm_config
from transformers import AutoModelForCausalLM, Olmo2Config

from pretrain.packing import IGNORE_INDEX, PackedStream, forward_packed, pack_sequences, uses_varlen_flash
from pretrain.sequences import TokenizedCorpus

VOCAB = 97


def tiny_model(attn: str):
    torch.manual_seed(0)
    config = tiny_lm_config(
        Olmo2Config, VOCAB, heads=4, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2
    )
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
        leak2 = model(input_ids=torch.from_numpy(rows_changed.input_ids), position_ids=plain, use_cache=False).logits[
            0, 9:20
        ]
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


def chunked_corpus(seed: int, n_docs: int = 12, ann_len: int = 3, max_chunk: int = 40):
    """Documents of chunks with known lengths: a bos-like content token opens each document, then
    every chunk is ``ann_len`` annotation tokens and text, except every third chunk (no annotation).

    Token ids are the flat token index + 3, so every slot of a packed row names its corpus position.
    """
    rng = np.random.default_rng(seed)
    chunk_lengths = [rng.integers(ann_len + 2, max_chunk, rng.integers(1, 6)).tolist() for _ in range(n_docs)]
    masks, k = [], 0
    for chunks in chunk_lengths:
        mask = []
        for j, length in enumerate(chunks):
            bos = int(j == 0)
            annotated = k % 3 != 2
            mask += [bos <= i < bos + ann_len and annotated for i in range(length)]
            k += 1
        masks.append(mask)
    n = sum(map(sum, chunk_lengths))
    tokens = (np.arange(n) + 3).tolist()
    offsets = np.cumsum([0] + [sum(c) for c in chunk_lengths])
    sequences = [tokens[offsets[i] : offsets[i + 1]] for i in range(n_docs)]
    return TokenizedCorpus.from_sequences(sequences, masks, chunk_lengths)


def pieces_of(rows) -> list[np.ndarray]:
    """Flat corpus indices of every piece in ``rows`` (a piece starts at position 0, padding excluded)."""
    pieces = []
    for r in range(len(rows.input_ids)):
        real = rows.input_ids[r] >= 3
        for seg in np.split(np.arange(rows.input_ids.shape[1]), np.flatnonzero(rows.position_ids[r] == 0)[1:]):
            seg = seg[real[seg]]
            if len(seg):
                pieces.append(rows.input_ids[r, seg] - 3)
    return pieces


def expected_in_view(corpus: TokenizedCorpus, pieces: list[np.ndarray]) -> tuple[int, int]:
    """By brute force: content tokens whose chunk starts in their piece, and whose annotation precedes them there."""
    starts, ann = corpus.chunk_starts, np.asarray(corpus.is_annotation).astype(bool)
    chunk_start_in_view = annotation_in_view = 0
    for piece in pieces:
        inside = set(piece.tolist())
        for t in piece:
            if ann[t]:
                continue
            cs = starts[np.searchsorted(starts, t, side="right") - 1]
            if cs in inside:
                chunk_start_in_view += 1
                annotation_in_view += bool(ann[cs:t].any())
    return chunk_start_in_view, annotation_in_view


@pytest.mark.parametrize("seq_len", [16, 48])
def test_rows_start_at_chunks_keeps_every_chunk_that_fits_in_one_piece(seq_len):
    corpus = chunked_corpus(seed=seq_len)
    starts, ends = corpus.chunk_starts, np.append(corpus.chunk_starts[1:], corpus.n_tokens)
    stream = PackedStream(corpus, seq_len, seed=1, rows_start_at_chunks=True)
    rows = stream.next_rows(3 * corpus.n_tokens // seq_len)  # a few epochs, shuffled
    pieces = pieces_of(rows)
    piece_of = {}
    for i, piece in enumerate(pieces):
        assert (np.diff(piece) == 1).all()  # a piece is a contiguous run of one document
        for t in piece:
            piece_of.setdefault(int(t), set()).add(i)
    fitting = 0
    for cs, ce in zip(starts, ends):
        if ce - cs > seq_len:  # longer than a row: cut at row ends, as without the option
            continue
        owners = set.union(*(piece_of.get(t, set()) for t in range(cs, ce)))
        seen_whole = [i for i in owners if pieces[i][0] <= cs and pieces[i][-1] >= ce - 1]
        assert len(seen_whole) == len(owners) > 0, (cs, ce)  # every time it was trained on, it was whole
        fitting += 1
    assert fitting > 10
    c = stream.counters
    assert c.padding_slots == c.slots - c.tokens > 0 and c.chunks_moved_to_next_row > 0
    assert (rows.labels[rows.input_ids < 3] == IGNORE_INDEX).all()  # padding has no labels
    # The shares are exact; when no chunk is longer than a row, every content token sees its chunk start.
    assert (c.content_tokens_chunk_start_in_view, c.content_tokens_annotation_in_view) == expected_in_view(
        corpus, pieces
    )
    if (ends - starts).max() <= seq_len:
        assert c.content_tokens_chunk_start_in_view == c.content_tokens


def test_annotation_in_view_is_counted_without_the_option_too():
    corpus = chunked_corpus(seed=5, max_chunk=14)  # every chunk fits a row
    stream = PackedStream(corpus, 16, seed=2)
    rows = stream.next_rows(2 * corpus.n_tokens // 16)
    c = stream.counters
    assert c.padding_slots == 0 and c.chunks_moved_to_next_row == 0 and c.packing_efficiency == 1.0
    assert (c.content_tokens_chunk_start_in_view, c.content_tokens_annotation_in_view) == expected_in_view(
        corpus, pieces_of(rows)
    )
    assert 0 < c.annotation_in_view_share < c.chunk_start_in_view_share < 1
    moved = PackedStream(corpus, 16, seed=2, rows_start_at_chunks=True)
    moved_rows = moved.next_rows(2 * corpus.n_tokens // 16)
    assert moved.counters.chunk_start_in_view_share == 1.0
    assert moved.counters.annotation_in_view_share > c.annotation_in_view_share
    assert moved.counters.content_tokens_annotation_in_view == expected_in_view(corpus, pieces_of(moved_rows))[1]
    plain = PackedStream(TokenizedCorpus.from_sequences([random_doc(30, 1)]), 16)
    plain.next_rows(2)
    assert plain.counters.annotation_in_view_share is None and plain.counters.chunk_start_in_view_share is not None


def test_rows_start_at_chunks_pads_and_restarts_positions():
    # One document: chunks of 5, 6 and 4 tokens in rows of 8: [5 + pad 3] [6 + pad 2] [4 ...]
    doc = list(range(3, 18))
    rows = pack_sequences([doc], 8, chunk_lengths=[[5, 6, 4]], rows_start_at_chunks=True)
    assert rows.input_ids.tolist() == [doc[:5] + [0] * 3, doc[5:11] + [0] * 2, doc[11:] + [0] * 4]
    assert rows.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 4, 5, 0, 1], [0, 1, 2, 3, 0, 1, 2, 3]]
    assert rows.labels[1].tolist() == [IGNORE_INDEX] + doc[6:11] + [IGNORE_INDEX] * 2
    # A chunk longer than a row is cut at the row end, as without the option.
    long = pack_sequences([doc], 8, chunk_lengths=[[2, 13]], rows_start_at_chunks=True)
    assert long.input_ids.reshape(-1)[:15].tolist() == doc
    # Without the option: packed full.
    assert pack_sequences([doc], 8, chunk_lengths=[[5, 6, 4]]).input_ids.reshape(-1)[:15].tolist() == doc


def test_rows_start_at_chunks_resumes_exactly():
    corpus = chunked_corpus(seed=7)
    stream = PackedStream(corpus, 16, seed=3, rows_start_at_chunks=True)
    stream.next_rows(7)
    saved = stream.state_dict()
    rest = stream.next_rows(20)
    again = PackedStream(corpus, 16, seed=3, rows_start_at_chunks=True)
    again.load_state_dict(saved)
    assert np.array_equal(again.next_rows(20).input_ids, rest.input_ids)
    assert again.counters == stream.counters


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
