"""The fit levers without training: the validation split, replayed pretraining chunks and
their labels, the trained closing delimiter, and training.sft_extra's refusals."""

from __future__ import annotations

import datasets
import pytest
from posttrain_fixtures import sft_rows

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, make_tags, render_annotation
from posttrain.config import DataConfig, PosttrainConfig, TrainingConfig
from posttrain.examples import build_examples, is_held_out
from posttrain.prompt_format import with_bos
from posttrain.replay import add_replay, load_replay
from posttrain.train import check_sft_extra, sft_args
from posttrain.validation import without_annotation
from stage_io.config import ConfigError, load_config


def config(arm="plain", fraction=0.0, **data) -> PosttrainConfig:
    return PosttrainConfig(
        model_path="unused",
        arm=arm,
        max_seq_len=256,
        keys_only_fraction=0.0,
        data=DataConfig(validation_fraction=fraction, **data),
    )


def test_both_arms_hold_out_and_train_the_same_ids(tokenizer, bbc):
    rows = sft_rows(bbc, 60)
    rows[3].update(status="failed", annotation="", error="no tags")
    plain = build_examples(rows, tokenizer, config("plain", 0.2, annotations="set"))
    anchored = build_examples(rows, tokenizer, config("anchored", 0.2))
    held = {e.id for e in anchored.validation}
    assert held == {e.id for e in plain.validation} == {r["id"] for r in rows if is_held_out(r["id"], 0.2)} - {"ex0003"}
    assert 0 < len(held) < 30 and not held & {e.id for e in anchored.examples}
    for key in ("trained", "validation_examples", "trained_ids_sha256", "validation_ids_sha256"):
        assert plain.counts[key] == anchored.counts[key], key
    assert anchored.counts["trained"] + len(held) == 59
    # Membership depends on the id alone: a smaller set keeps the same held-out ids.
    fewer = build_examples(rows[:30], tokenizer, config("anchored", 0.2))
    assert {e.id for e in fewer.validation} == {i for i in held if i < "ex0030"}


def test_no_validation_fraction_holds_nothing_out(tokenizer, bbc):
    built = build_examples(sft_rows(bbc, 10), tokenizer, config("anchored", 0.0))
    assert built.validation == [] and built.counts["trained"] == 10 and built.counts["validation_examples"] == 0


def test_held_out_anchored_example_scores_the_same_response_without_its_annotation(tokenizer, bbc):
    built = build_examples(sft_rows(bbc, 40), tokenizer, config("anchored", 0.3))
    example = built.validation[0]
    bare, start = without_annotation(example)
    assert bare[start:] == example.input_ids[example.response_start :]
    assert bare[:start] == example.input_ids[: example.annotation_start]
    assert ANNOTATION_OPEN not in tokenizer.convert_ids_to_tokens(bare)


def test_closing_delimiter_is_the_only_annotation_token_trained(tokenizer, bbc):
    rows = sft_rows(bbc, 8)
    close_id = tokenizer.convert_tokens_to_ids(ANNOTATION_CLOSE)
    masked = build_examples(rows, tokenizer, config("anchored"))
    trained = build_examples(rows, tokenizer, config("anchored", train_closing_delimiter=True))
    for before, after in zip(masked.examples, trained.examples):
        close_at = after.response_start - 1
        assert after.input_ids[close_at] == close_id
        changed = [i for i, (a, b) in enumerate(zip(before.label_mask, after.label_mask)) if a != b]
        assert changed == [close_at] and after.label_mask[close_at] == 1
    plain = build_examples(rows, tokenizer, config("plain", train_closing_delimiter=True))
    assert all(close_id not in e.input_ids for e in plain.examples)


def corpus_rows(bbc, n_docs=6):
    rows = []
    for d in range(n_docs):
        for c, text in enumerate(bbc[d]["text"].split("\n\n")[:3]):
            tags = make_tags([("topic", bbc[d]["topic"]), ("style", "news")])
            rows.append(
                {
                    "id": f"doc{d}-{c}",
                    "doc_id": f"doc{d}",
                    "chunk_index": c,
                    "text": text[:200],
                    "annotation": render_annotation(tags),
                    "status": "ok",
                    "error": None,
                }
            )
    rows[1].update(status="failed", annotation="")
    return rows


@pytest.fixture
def corpus(tmp_path, bbc):
    (tmp_path / "corpus" / "data").mkdir(parents=True)
    rows = corpus_rows(bbc)
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "corpus" / "data" / "part-00000.parquet"))
    return tmp_path / "corpus", rows


def test_replay_renders_the_same_chunks_per_arm_with_loss_on_every_token(tokenizer, corpus):
    folder, rows = corpus
    by_id = {f"replay:{r['doc_id']}:{r['chunk_index']}": r for r in rows}
    n = len(rows)  # every chunk, the one whose annotation failed included
    plain, plain_counts = load_replay(config("plain", replay_chunks=n, replay_annotations=str(folder)), tokenizer)
    anchored, anchored_counts = load_replay(
        config("anchored", replay_chunks=n, replay_annotations=str(folder)), tokenizer
    )
    assert [e.id for e in plain] == [e.id for e in anchored] and {e.id for e in plain} == set(by_id)
    assert [
        e.id for e in load_replay(config("plain", replay_chunks=4, replay_annotations=str(folder)), tokenizer)[0]
    ] == [e.id for e in plain[:4]]  # fewer chunks: a prefix of the same hash order
    assert plain_counts["replay_ids_sha256"] == anchored_counts["replay_ids_sha256"]
    eos = [tokenizer.eos_token_id]
    for p, a in zip(plain, anchored):
        row = by_id[p.id]
        text_ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"]
        annotation = row["annotation"] if row["status"] == "ok" else ""
        assert p.input_ids == with_bos(tokenizer, text_ids) + eos
        assert (
            a.input_ids
            == with_bos(tokenizer, tokenizer(annotation + row["text"], add_special_tokens=False)["input_ids"]) + eos
        )
        assert p.label_mask == [1] * len(p.input_ids) and a.label_mask == [1] * len(a.input_ids)
        assert p.kind == a.kind == "replay"
    assert (
        plain_counts["replay_without_annotation"]
        == anchored_counts["replay_without_annotation"]
        == {"status_failed": 1}
    )


def test_replay_enters_the_counts_and_the_trained_ids(tokenizer, bbc, corpus):
    folder, _ = corpus
    cfg = config("anchored", replay_chunks=4, replay_annotations=str(folder))
    built = build_examples(sft_rows(bbc, 10), tokenizer, cfg)
    before = built.counts["trained_ids_sha256"]
    add_replay(built, *load_replay(cfg, tokenizer))
    assert built.counts["trained"] == 14 and built.counts["trained_by_kind"]["replay"] == 4
    assert built.counts["replay_chunks"] == 4 and built.counts["trained_ids_sha256"] != before


def test_replay_asking_for_more_chunks_than_exist_is_an_error(tokenizer, corpus):
    folder, rows = corpus
    with pytest.raises(ValueError, match="data.replay_chunks=999: only"):
        load_replay(config("plain", replay_chunks=999, replay_annotations=str(folder)), tokenizer)
    with pytest.raises(ConfigError, match="data.replay_annotations"):
        load_config(PosttrainConfig, None, ["data.replay_chunks=3"])


def test_sft_extra_passes_unnamed_fields_and_refuses_named_or_unknown_ones():
    cfg = config()
    cfg.training = TrainingConfig(sft_extra={"adam_beta2": 0.95, "neftune_noise_alpha": 5.0})
    args = sft_args(cfg)
    assert args.adam_beta2 == 0.95 and args.neftune_noise_alpha == 5.0
    cfg.training.sft_extra = {"learning_rate": 1e-3}
    with pytest.raises(ValueError, match=r"training.sft_extra.learning_rate: set by training.learning_rate"):
        check_sft_extra(cfg)
    cfg.training.sft_extra = {"no_such_field": 1}
    with pytest.raises(ValueError, match=r"training.sft_extra.no_such_field: not a field of TRL's SFTConfig"):
        sft_args(cfg)


def test_validation_fraction_domain_is_checked_at_load():
    with pytest.raises(ConfigError, match="data.validation_fraction"):
        load_config(PosttrainConfig, None, ["data.validation_fraction=0.5"])
