"""The shared tokenizer: delimiters as single special tokens, built once, reused, never silently rebuilt."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, SPECIAL_TOKENS
from pretrain.config import TokenizerSection
from pretrain.tokenizer import BOS, EOS, PAD, TokenizerMismatchError, prepare_tokenizer, save_tokenizer, train_bpe
from stage_io.records import RecordSource, load_records


@pytest.fixture(scope="module")
def texts():
    ds = load_records(RecordSource(source="embedded:bbc_news"))
    return [ds[i]["text"] for i in range(0, 2000, 80)]


def test_delimiters_are_single_special_tokens(tmp_path, texts):
    tok = prepare_tokenizer(TokenizerSection(path=str(tmp_path / "tok"), vocab_size=600), lambda: texts)
    for token in SPECIAL_TOKENS:
        assert token in tok.all_special_tokens
        assert len(tok.encode(token, add_special_tokens=False)) == 1
    text = f"{ANNOTATION_OPEN}topic:business entity:Mrs_Sinclair{ANNOTATION_CLOSE}Shares rose."
    ids = tok(text).input_ids
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[0] == BOS  # documents and prompts start with bos
    assert pieces.count(ANNOTATION_OPEN) == 1 and pieces.count(ANNOTATION_CLOSE) == 1
    assert tok.decode(ids, skip_special_tokens=False) == BOS + text
    # Plain text never produces a delimiter id, even text that almost spells one.
    near = tok("<|an n|> <| /ann|>", add_special_tokens=False).input_ids
    assert not set(near) & set(tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
    assert tok.pad_token is not None and tok.eos_token is not None


def test_built_once_then_reused_and_a_mismatch_is_an_error(tmp_path, texts):
    cfg = TokenizerSection(path=str(tmp_path / "tok"), vocab_size=600)
    first = prepare_tokenizer(cfg, lambda: texts)
    manifest = (tmp_path / "tok" / "manifest.json").read_text()
    second = prepare_tokenizer(cfg, lambda: texts)  # the other arm: loads, does not retrain
    assert (tmp_path / "tok" / "manifest.json").read_text() == manifest
    assert first.get_vocab() == second.get_vocab()
    with pytest.raises(TokenizerMismatchError, match="vocab_size"):
        prepare_tokenizer(TokenizerSection(path=str(tmp_path / "tok"), vocab_size=700), lambda: texts)
    with pytest.raises(TokenizerMismatchError, match="training_text"):
        prepare_tokenizer(cfg, lambda: texts[:-1])


def test_pretrained_tokenizer_gets_the_delimiters(tmp_path, texts):
    """Real runs load an existing tokenizer (a local folder stands in for a hub id here)."""
    base = train_bpe(texts, vocab_size=500, special_tokens=(PAD, BOS, EOS))
    base.save_pretrained(str(tmp_path / "base"))
    assert ANNOTATION_OPEN not in AutoTokenizer.from_pretrained(str(tmp_path / "base")).get_vocab()
    cfg = TokenizerSection(pretrained=str(tmp_path / "base"), path=str(tmp_path / "tok"))
    tok = prepare_tokenizer(cfg, lambda: [])
    assert len(tok) == len(base) + 2
    assert all(len(tok.encode(t, add_special_tokens=False)) == 1 for t in SPECIAL_TOKENS)


def test_saved_config_loads_in_transformers_4_style(tmp_path, texts):
    tok = train_bpe(texts, vocab_size=400)
    save_tokenizer(tok, tmp_path / "t")
    config = json.loads((tmp_path / "t" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert AutoTokenizer.from_pretrained(str(tmp_path / "t")).get_vocab() == tok.get_vocab()


def test_training_on_annotations_makes_tags_short_and_changes_the_identity(tmp_path, ann_dir):
    """With tokenizer.train_on_annotations, a frequent tag is a few whole tokens, not word-internal pieces."""
    from pretrain_fixtures import tiny_config

    from pretrain.train import chunk_texts

    off = tiny_config(tmp_path, ann_dir, tokenizer_dir=tmp_path / "off")
    on = tiny_config(tmp_path, ann_dir, "tokenizer.train_on_annotations=true", tokenizer_dir=tmp_path / "on")
    texts_off, texts_on = list(chunk_texts(off)), list(chunk_texts(on))
    assert len(texts_on) > len(texts_off) and not any(ANNOTATION_OPEN in t for t in texts_on)
    tok_off = prepare_tokenizer(off.tokenizer, lambda: chunk_texts(off))
    tok_on = prepare_tokenizer(on.tokenizer, lambda: chunk_texts(on))
    tag = "topic:sport domain:news"  # as it follows <|ann|> in every anchored chunk of the fixture
    n_off = len(tok_off.encode(tag, add_special_tokens=False))
    n_on = len(tok_on.encode(tag, add_special_tokens=False))
    assert n_on * 3 <= n_off * 2, (n_on, n_off)  # measured: 7 tokens instead of 13 at this tiny vocabulary
    assert tok_on.tokenize("topic:sport")[:2] == ["topic", ":"] and len(tok_off.tokenize("topic")) > 1
    assert tok_on.decode(tok_on.encode(tag, add_special_tokens=False)) == tag
    # A saved tokenizer built with the other setting is refused, never silently reused.
    with pytest.raises(TokenizerMismatchError, match="train_on_annotations"):
        prepare_tokenizer(
            off.tokenizer.__class__(**{**off.tokenizer.__dict__, "path": str(tmp_path / "on")}),
            lambda: chunk_texts(off),
        )
    with pytest.raises(TokenizerMismatchError, match="train_on_annotations"):
        prepare_tokenizer(
            on.tokenizer.__class__(**{**on.tokenizer.__dict__, "path": str(tmp_path / "off")}), lambda: chunk_texts(on)
        )
