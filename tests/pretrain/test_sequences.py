"""Per-arm sequences, exact token accounting, and the matched budget of the two arms."""

from __future__ import annotations

import numpy as np
import pytest
from pretrain_fixtures import tiny_config

from annotate.format import ANNOTATION_OPEN, Tag, render_annotation
from pretrain.config import DataSection
from pretrain.packing import PackedStream
from pretrain.sequences import (
    Chunk,
    Document,
    annotation_mask,
    build_corpus,
    corpus_key,
    iter_documents,
    render_document,
)
from pretrain.tokenizer import annotation_token_ids, prepare_tokenizer
from pretrain.train import chunk_texts


def test_render_anchored_and_plain():
    z1 = render_annotation((Tag("topic", "economy"), Tag("entity", "Bank_of_England")))
    z3 = render_annotation((Tag("topic", "rates"),))
    doc = Document(
        "d", [Chunk("Rates held.", z1, "ok"), Chunk("No tag here.", "", "failed"), Chunk("Markets calm.", z3, "ok")]
    )
    anchored, missing = render_document(doc, "anchored", "\n\n")
    assert anchored == f"{z1}Rates held.\n\nNo tag here.\n\n{z3}Markets calm."
    assert missing == {"failed": 1}
    plain, missing_plain = render_document(doc, "plain", "\n\n")
    assert plain == "Rates held.\n\nNo tag here.\n\nMarkets calm."
    assert missing_plain == missing  # counted the same in both arms
    malformed = Document("m", [Chunk("x", "<|ann|>not a tag<|/ann|>", "ok"), Chunk(f"a{ANNOTATION_OPEN}b", z3, "ok")])
    text, notes = render_document(malformed, "anchored")
    assert text == f"x\n\n{z3}ab" and notes == {"malformed": 1, "delimiter_in_text": 1}


def test_annotation_mask_covers_delimiters_and_tags():
    ids = np.array([1, 7, 8, 9, 3, 4, 5, 7, 6, 8, 2])  # 7 opens, 8 closes
    assert annotation_mask(ids, 7, 8).astype(int).tolist() == [0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0]


def test_documents_come_in_order(ann_dir):
    docs = list(iter_documents(ann_dir))
    assert len(docs) == 40 and len({d.doc_id for d in docs}) == 40
    assert sum(len(d.chunks) for d in docs) > 100
    assert len(list(iter_documents(ann_dir, max_documents=3))) == 3


@pytest.fixture(scope="module")
def corpora(ann_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpora")
    config = tiny_config(tmp, ann_dir)
    tok = prepare_tokenizer(config.tokenizer, lambda: chunk_texts(config))
    out = {}
    for arm in ("plain", "anchored"):
        data = DataSection(annotations=str(ann_dir), arm=arm)
        out[arm] = build_corpus(data, tok, True, tmp / arm, corpus_key(data, config.tokenizer.path))
    return tok, out


def test_corpus_counts_annotation_tokens_exactly(corpora):
    tok, c = corpora
    open_id, close_id = annotation_token_ids(tok)
    plain, anchored = c["plain"], c["anchored"]
    assert plain.n_documents == anchored.n_documents == 40
    assert plain.info["annotation_tokens"] == 0 and int(plain.is_annotation.sum()) == 0
    n_ann = int(anchored.is_annotation.sum())
    assert n_ann == anchored.info["annotation_tokens"] > 0
    assert anchored.n_tokens == anchored.info["annotation_tokens"] + anchored.info["content_tokens"]
    # Every annotated chunk contributes one open and one close delimiter.
    tokens = np.asarray(anchored.tokens)
    chunks = anchored.info["chunks"] - sum(anchored.info["chunks_without_annotation"].values())
    assert int((tokens == open_id).sum()) == int((tokens == close_id).sum()) == chunks
    assert anchored.info["chunks_without_annotation"]["failed"] > 0  # the fixture fails every 7th chunk
    # Each document is bos + text + eos.
    first = tokens[anchored.offsets[0] : anchored.offsets[1]]
    assert first[0] == tok.bos_token_id and first[-1] == tok.eos_token_id


def test_arms_train_on_the_same_number_of_tokens(corpora):
    """Same budget, same slots: annotation tokens replace content tokens; a short stream repeats."""
    _, c = corpora
    budget_rows = 2 * c["anchored"].n_tokens // 64  # two epochs of the longer arm
    counters = {}
    for arm, corpus in c.items():
        stream = PackedStream(corpus, seq_len=64, seed=0)
        stream.next_rows(budget_rows)
        counters[arm] = stream.counters
    plain, anchored = counters["plain"], counters["anchored"]
    assert plain.tokens == anchored.tokens == plain.slots == anchored.slots == budget_rows * 64
    assert anchored.annotation_tokens > 0 and plain.annotation_tokens == 0
    assert anchored.content_tokens == anchored.tokens - anchored.annotation_tokens < plain.content_tokens
    # The anchored arm's documents are longer, so the same budget covers fewer of them.
    assert anchored.documents_completed < plain.documents_completed
    assert anchored.epochs_completed >= 1 and plain.epochs_completed >= 2


def test_cached_corpus_is_reused(corpora, ann_dir, tmp_path):
    tok, c = corpora
    data = DataSection(annotations=str(ann_dir), arm="anchored")
    key = c["anchored"].info["key"]
    first = build_corpus(data, tok, True, tmp_path / "cache", key)
    stamp = (tmp_path / "cache" / "tokens.bin").stat().st_mtime_ns
    again = build_corpus(data, tok, True, tmp_path / "cache", key)
    assert (tmp_path / "cache" / "tokens.bin").stat().st_mtime_ns == stamp
    assert np.array_equal(np.asarray(first.tokens), np.asarray(again.tokens))
    plain = DataSection(annotations=str(ann_dir), arm="plain")
    rebuilt = build_corpus(plain, tok, True, tmp_path / "cache", {**key, "arm": "plain"})  # another key: rebuilt
    assert rebuilt.info["key"]["arm"] == "plain" and rebuilt.n_tokens < first.n_tokens


def test_chunk_starts_cut_each_document_into_its_rendered_chunks(corpora, ann_dir):
    """chunk_starts.npy: decoding from one chunk start to the next gives that chunk (annotation first) and the separator."""
    from pretrain.sequences import render_chunks

    tok, c = corpora
    docs = list(iter_documents(ann_dir))
    open_id, _ = annotation_token_ids(tok)
    for arm, corpus in c.items():
        assert len(corpus.chunk_starts) == corpus.info["chunk_starts"] == corpus.info["chunks"]  # no empty chunks here
        tokens = np.asarray(corpus.tokens)
        for d in (0, 7, 39):
            lo, hi = int(corpus.offsets[d]), int(corpus.offsets[d + 1])
            starts = corpus.chunk_starts[(corpus.chunk_starts >= lo) & (corpus.chunk_starts < hi)]
            text, char_starts, _ = render_chunks(docs[d], arm)
            assert starts[0] == lo and len(starts) == len(char_starts)
            bounds = list(starts) + [hi]
            for i in range(len(starts)):
                piece = tok.decode(tokens[bounds[i] : bounds[i + 1]], skip_special_tokens=False)
                end = char_starts[i + 1] if i + 1 < len(char_starts) else len(text)
                expected = (
                    ("<|bos|>" if i == 0 else "")
                    + text[char_starts[i] : end]
                    + ("<|eos|>" if i == len(starts) - 1 else "")
                )
                assert piece == expected
            if arm == "anchored":  # a later chunk with an annotation starts with its opening delimiter
                annotated = [i for i, ch in enumerate(docs[d].chunks) if ch.status == "ok" and i > 0]
                assert all(tokens[starts[i]] == open_id for i in annotated)
