"""Anchored SFT refuses SFT annotations made with another schema or annotator than pretraining's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_sft_training import tiny_config

from posttrain.annotation_match import AnnotationMismatchError, check_annotation_match
from posttrain.config import DataConfig

CORPUS_SCHEMA = {"keys": ["topic", "entity"], "min_tags": 1, "max_tags": 8, "max_value_chars": 48}


def annotate_dir(folder: Path, schema: dict, version: str) -> Path:
    """An annotate output dir as the stage leaves it: manifest with the config, annotator/annotator.json."""
    (folder / "annotator").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "annotator" / "annotator.json").write_text(json.dumps({"kind": "offline", "version": version}))
    (folder / "manifest.json").write_text(
        json.dumps({"stage": "annotate", "config": {"schema": schema, "annotator": {"kind": "offline"}}})
    )
    return folder


def pretrained_on(folder: Path, corpus: Path) -> Path:
    """A model dir whose pretrain manifest names the annotations it was trained on (as pretrain writes it)."""
    folder.mkdir(parents=True)
    inputs = {"annotations": {"path": str(corpus / "data"), "fingerprint": "sha256:0"}}
    (folder / "manifest.json").write_text(json.dumps({"stage": "pretrain", "inputs": inputs}))
    return folder


def test_same_schema_and_annotator_pass_and_are_recorded(tmp_path):
    corpus = annotate_dir(tmp_path / "corpus", CORPUS_SCHEMA, "offline-1+abc")
    sft = annotate_dir(tmp_path / "sft", CORPUS_SCHEMA, "offline-1+abc")
    match = check_annotation_match(str(pretrained_on(tmp_path / "model", corpus)), str(sft))
    assert match["checked"] and match["schema"]["keys"] == ["topic", "entity"]


def test_other_schema_is_refused_naming_both(tmp_path):
    corpus = annotate_dir(tmp_path / "corpus", CORPUS_SCHEMA, "offline-1+abc")
    sft = annotate_dir(tmp_path / "sft", {**CORPUS_SCHEMA, "keys": ["topic", "domain", "entity"]}, "offline-1+abc")
    with pytest.raises(AnnotationMismatchError) as err:
        check_annotation_match(str(pretrained_on(tmp_path / "model", corpus)), str(sft))
    assert "keys=[topic,domain,entity]" in str(err.value) and "keys=[topic,entity]" in str(err.value)
    assert str(corpus) in str(err.value)


def test_other_annotator_is_refused_before_training(tmp_path):
    corpus = annotate_dir(tmp_path / "corpus", CORPUS_SCHEMA, "offline-1+abc")
    sft = annotate_dir(tmp_path / "sft", CORPUS_SCHEMA, "offline-1+def")
    model = pretrained_on(tmp_path / "model", corpus)  # a manifest only: the check reads nothing else
    # posttrain's run() calls this before it loads data or trains (after checking the model path).
    with pytest.raises(AnnotationMismatchError, match=r"annotator offline-1\+def \(SFT\) vs offline-1\+abc"):
        check_annotation_match(str(model), str(sft))


def test_unknown_provenance_is_recorded_as_unchecked(tmp_path):
    sft = annotate_dir(tmp_path / "sft", CORPUS_SCHEMA, "offline-1+abc")
    match = check_annotation_match("some/hub-model", str(sft))
    assert match["checked"] is False and "no pretrain manifest" in match["reason"]


def test_a_max_seq_len_beyond_the_pretraining_context_is_said_once_not_warned_per_example(tokenizer, tmp_path, capsys):
    from posttrain.train import load_tokenizer

    tokenizer.save_pretrained(tmp_path / "tok")
    saved = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    saved["model_max_length"] = 64  # what pretrain writes: its seq_len
    (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps(saved))
    config = tiny_config(tmp_path / "tok", tmp_path / "out", "plain", DataConfig())  # max_seq_len 192
    loaded = load_tokenizer(config)
    assert loaded.model_max_length == 192
    assert "max_seq_len=192 is longer than the model's pretraining context (64 tokens)" in capsys.readouterr().out
