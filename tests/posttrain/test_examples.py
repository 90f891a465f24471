"""Per-arm SFT examples: the label mask checked token by token."""

from __future__ import annotations

import copy
import random

import pytest
from posttrain_fixtures import sft_rows

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, annotation_char_spans, parse_annotation
from posttrain.config import DataConfig, PosttrainConfig
from posttrain.examples import build_examples, choose_keys_only
from posttrain.prompt_format import PromptFormat, encode_prompt
from posttrain.sft_records import SFTDataError, check_columns


def config(arm="plain", **kwargs) -> PosttrainConfig:
    return PosttrainConfig(model_path="unused", arm=arm, max_seq_len=kwargs.pop("max_seq_len", 256), **kwargs)


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def split_by_mask(example):
    trained = [t for t, m in zip(example.input_ids, example.label_mask) if m]
    masked = [t for t, m in zip(example.input_ids, example.label_mask) if not m]
    return trained, masked


def test_plain_trains_exactly_the_response_and_end_of_turn(tokenizer, bbc):
    rows = sft_rows(bbc, 20)
    cfg = config("plain")
    built = build_examples(rows, tokenizer, cfg)
    assert built.counts["trained"] == 20 and built.counts["skipped"] == 0
    fmt = cfg.prompt_format
    for row, example in zip(rows, built.examples):
        prompt_ids = encode_prompt(tokenizer, fmt.render_prompt(row["messages"][:1], tokenizer))
        response_ids = ids_of(tokenizer, row["response"]) + [tokenizer.eos_token_id]
        assert prompt_ids[0] == tokenizer.bos_token_id  # the tokenizer's BOS, as eval adds it
        assert example.input_ids == prompt_ids + response_ids
        assert example.label_mask == [0] * len(prompt_ids) + [1] * len(response_ids)
        trained, masked = split_by_mask(example)
        assert trained == response_ids
        assert masked == prompt_ids
        assert example.kind == "plain"
    assert built.counts["trained_tokens"] == sum(sum(e.label_mask) for e in built.examples)


def test_anchored_trains_the_response_and_none_of_the_prompt_or_annotation(tokenizer, bbc):
    rows = sft_rows(bbc, 20)
    cfg = config("anchored", keys_only_fraction=0.0)
    built = build_examples(rows, tokenizer, cfg)
    open_id, close_id = tokenizer.convert_tokens_to_ids([ANNOTATION_OPEN, ANNOTATION_CLOSE])
    for row, example in zip(rows, built.examples):
        prompt_ids = encode_prompt(tokenizer, cfg.prompt_format.render_prompt(row["messages"][:1], tokenizer))
        annotation_ids = ids_of(tokenizer, row["annotation"])
        response_ids = ids_of(tokenizer, row["response"]) + [tokenizer.eos_token_id]
        assert annotation_ids[0] == open_id and annotation_ids[-1] == close_id
        assert example.input_ids == prompt_ids + annotation_ids + response_ids
        for position, (token, trained) in enumerate(zip(example.input_ids, example.label_mask)):
            in_response = position >= len(prompt_ids) + len(annotation_ids)
            assert trained == int(in_response), (position, tokenizer.convert_ids_to_tokens(token))
        # The pieces decode to exactly the text eval would see.
        assert tokenizer.decode(example.input_ids) == (
            tokenizer.bos_token
            + cfg.prompt_format.render_prompt(row["messages"][:1])
            + row["annotation"]
            + row["response"]
            + tokenizer.eos_token
        )
        assert example.kind == "anchored"
    assert built.counts["trained_by_kind"]["anchored"] == 20
    assert built.counts["keys_only"] == 0


def test_keys_only_examples_train_keys_delimiters_separators_and_no_value(tokenizer, bbc):
    rows = sft_rows(bbc, 12)
    built = build_examples(rows, tokenizer, config("anchored", keys_only_fraction=1.0))
    assert built.counts["keys_only"] == 12
    for row, example in zip(rows, built.examples):
        assert example.kind == "keys_only"
        annotation = row["annotation"]
        spans = annotation_char_spans(parse_annotation(annotation))
        encoded = tokenizer(annotation, add_special_tokens=False, return_offsets_mapping=True)
        start = example.annotation_start
        ann_mask = example.label_mask[start : start + len(encoded["input_ids"])]
        assert example.input_ids[start : start + len(encoded["input_ids"])] == encoded["input_ids"]
        trained_text = ""
        for (s, e), trained in zip(encoded["offset_mapping"], ann_mask):
            roles = {role for vs, ve, role in spans if s < ve and e > vs}
            assert trained == int("value" not in roles), (annotation[s:e], roles)
            if trained:
                trained_text += annotation[s:e]
        # Everything but the values is trained: the annotation with its values emptied.
        without_values = "".join(annotation[s:e] for s, e, role in spans if role != "value")
        assert trained_text == without_values
        assert trained_text.startswith(ANNOTATION_OPEN) and trained_text.endswith(ANNOTATION_CLOSE)
        assert "topic:" in trained_text and " entity:" in trained_text
        # The prompt stays masked, the response and end of turn stay trained.
        assert example.label_mask[:start] == [0] * start
        n_response = len(ids_of(tokenizer, row["response"])) + 1
        assert example.label_mask[-n_response:] == [1] * n_response


def test_keys_only_fraction_is_exact_and_deterministic(tokenizer, bbc):
    rows = sft_rows(bbc, 600, chars=60)
    cfg = config("anchored", keys_only_fraction=0.003, keys_only_seed=7)
    built = build_examples(rows, tokenizer, cfg)
    chosen = {e.id for e in built.examples if e.kind == "keys_only"}
    assert len(chosen) == 2  # floor(0.003 * 600 + 0.5) = floor(2.3) = 2
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    again = build_examples(shuffled, tokenizer, cfg)
    assert {e.id for e in again.examples if e.kind == "keys_only"} == chosen  # order does not matter
    assert {
        e.id
        for e in build_examples(rows, tokenizer, config("anchored", keys_only_fraction=0.05)).examples
        if e.kind == "keys_only"
    }.__len__() == 30
    ids = [f"x{i}" for i in range(1000)]
    assert len(choose_keys_only(ids, 0.003, 0)) == 3
    assert len(choose_keys_only(ids[:500], 0.003, 0)) == 2  # 1.5 rounds half up
    assert len(choose_keys_only(ids[:100], 0.003, 0)) == 0
    assert choose_keys_only(ids, 0.01, 0) != choose_keys_only(ids, 0.01, 1)  # the seed matters


def malformed_rows(bbc):
    good = sft_rows(bbc, 6)
    rows = [dict(r) for r in good]
    rows[0]["messages"] = [{"content": "no role"}, {"role": "assistant", "content": "x"}]
    rows[0]["response"] = None
    rows[1]["messages"] = [
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "then"},
        {"role": "assistant", "content": "reply"},
    ]
    rows[1]["response"] = None
    rows[2]["messages"] = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]
    rows[2]["response"] = None
    rows[3]["response"] = " ".join(["word"] * 400)  # far beyond max_seq_len
    return rows


@pytest.mark.parametrize("arm", ["plain", "anchored"])
def test_malformed_records_are_counted_skips_with_reasons(tokenizer, bbc, arm):
    rows = malformed_rows(bbc)
    built = build_examples(rows, tokenizer, config(arm, max_skip_fraction=1.0))
    assert built.counts["skipped_by_reason"] == {"empty_response": 1, "malformed_conversation": 2, "too_long": 1}
    assert built.counts["records_in"] == 6 and built.counts["trained"] == 2
    reasons = {issue["id"]: issue["reason"] for issue in built.issues}
    assert reasons == {
        "ex0000": "malformed_conversation",
        "ex0001": "malformed_conversation",
        "ex0002": "empty_response",
        "ex0003": "too_long",
    }
    assert "role" in next(i["detail"] for i in built.issues if i["id"] == "ex0000")
    assert "max_seq_len=256" in next(i["detail"] for i in built.issues if i["id"] == "ex0003")


def test_whole_dataset_problems_are_errors(tokenizer, bbc):
    rows = malformed_rows(bbc)
    with pytest.raises(SFTDataError, match="max_skip_fraction"):
        build_examples(rows, tokenizer, config("plain", max_skip_fraction=0.5))
    with pytest.raises(SFTDataError, match="no trainable example"):
        build_examples(rows[:3], tokenizer, config("plain", max_skip_fraction=1.0))
    with pytest.raises(SFTDataError, match="data.messages_field"):
        check_columns(["id", "text"], DataConfig(), "x.jsonl", need_annotations=False)
    with pytest.raises(SFTDataError, match="'annotation' is missing"):
        check_columns(["id", "messages", "response"], DataConfig(), "x.jsonl", need_annotations=True)


@pytest.mark.parametrize("policy", ["skip", "plain"])
def test_invalid_annotation_policy(tokenizer, bbc, policy):
    rows = sft_rows(bbc, 8)
    rows[0].update(status="failed", annotation="", error="annotator returned no tags")
    rows[1].update(status="ok", annotation="<|ann|>topic sport<|/ann|>")  # ok but unparseable
    built = build_examples(
        rows, tokenizer, config("anchored", invalid_annotation_policy=policy, keys_only_fraction=0.0)
    )
    by_id = {e.id: e for e in built.examples}
    issues = {i["id"]: i for i in built.issues}
    assert set(issues) == {"ex0000", "ex0001"}
    assert "annotator returned no tags" in issues["ex0000"]["detail"]
    assert issues["ex0001"]["detail"].startswith("unparseable")
    if policy == "skip":
        assert built.counts["skipped_by_reason"] == {"invalid_annotation": 2}
        assert "ex0000" not in by_id and "ex0001" not in by_id and len(by_id) == 6
    else:
        assert built.counts["skipped"] == 0
        assert built.counts["invalid_annotation_trained_plain"] == 2
        open_id = tokenizer.convert_tokens_to_ids(ANNOTATION_OPEN)
        for rid in ("ex0000", "ex0001"):
            example = by_id[rid]
            assert example.kind == "plain_fallback" and open_id not in example.input_ids
            trained, _ = split_by_mask(example)
            assert trained == ids_of(tokenizer, rows[int(rid[-1])]["response"]) + [tokenizer.eos_token_id]
        assert all(issues[r]["action"] == "trained_plain" for r in issues)


def test_prompt_completion_rows_and_multi_turn(tokenizer):
    rows = [
        {"id": "a", "prompt": "Summarise the match.", "completion": "Chelsea won."},
        {
            "id": "b",
            "prompt": [{"role": "user", "content": "Hi"}],
            "completion": [{"role": "assistant", "content": "Hello."}],
        },
        {
            "id": "c",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "One?"},
                {"role": "assistant", "content": "Yes."},
                {"role": "user", "content": "Two?"},
                {"role": "assistant", "content": "No."},
            ],
        },
    ]
    cfg = config("plain")
    built = build_examples(rows, tokenizer, cfg)
    assert [e.id for e in built.examples] == ["a", "b", "c"]
    decoded = [tokenizer.decode([t for t, m in zip(e.input_ids, e.label_mask) if m]) for e in built.examples]
    assert decoded == ["Chelsea won.<|eos|>", "Hello.<|eos|>", "No.<|eos|>"]  # only the final reply
    masked_c = tokenizer.decode([t for t, m in zip(built.examples[2].input_ids, built.examples[2].label_mask) if not m])
    assert "Yes." in masked_c and "Be brief." in masked_c  # earlier turns are masked context


def test_chat_template_prompt_format(tokenizer, bbc):
    tok = copy.deepcopy(tokenizer)  # keep the shared fixture untouched
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>\n{% endif %}"
    )
    cfg = config("anchored", prompt_format=PromptFormat(kind="chat"), keys_only_fraction=0.0)
    rows = sft_rows(bbc, 3)
    built = build_examples(rows, tok, cfg)
    for row, example in zip(rows, built.examples):
        prompt = tok.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
        prompt_ids = ids_of(tok, prompt)
        assert prompt_ids.count(tok.bos_token_id) == 1  # BOS from the template, not added twice
        assert example.input_ids[: len(prompt_ids)] == prompt_ids
        assert sum(example.label_mask) == len(ids_of(tok, row["response"])) + 1


def test_plain_and_anchored_arms_train_on_the_same_example_ids(tokenizer, bbc):
    rows = sft_rows(bbc, 12)
    rows[3] = dict(rows[3], annotation="", status="failed", error="annotator gave up")  # invalid annotation
    many = " ".join(f"entity:Name{k}" for k in range(40))  # a valid but very long annotation
    rows[5] = dict(rows[5], annotation=rows[5]["annotation"].replace(ANNOTATION_CLOSE, " " + many + ANNOTATION_CLOSE))
    cfg_data = DataConfig(annotations="annotated-set")  # any value: the rows are passed in directly
    lengths = {
        e.id: len(e.input_ids)
        for e in build_examples(
            rows, tokenizer, config("anchored", data=cfg_data, max_seq_len=4096, keys_only_fraction=0.0)
        ).examples
    }
    limit = max(n for i, n in lengths.items() if i != "ex0005")
    assert lengths["ex0005"] > limit  # row 5 fits only without its annotation
    plain = build_examples(rows, tokenizer, config("plain", data=cfg_data, max_seq_len=limit))
    anchored = build_examples(
        rows, tokenizer, config("anchored", data=cfg_data, max_seq_len=limit, keys_only_fraction=0.0)
    )
    assert {e.id for e in plain.examples} == {e.id for e in anchored.examples}
    assert plain.counts["trained_ids_sha256"] == anchored.counts["trained_ids_sha256"]
    assert "ex0003" not in {e.id for e in plain.examples} and "ex0005" not in {e.id for e in plain.examples}
    assert (
        plain.counts["skipped_by_reason"]
        == anchored.counts["skipped_by_reason"]
        == {"invalid_annotation": 1, "too_long": 1}
    )
    assert plain.counts["paired_with_anchored"] is True
    # Unpaired (the old behaviour, data.pair_with_anchored=false): the plain arm keeps both.
    unpaired = build_examples(
        rows, tokenizer, config("plain", data=DataConfig(annotations="x", pair_with_anchored=False), max_seq_len=limit)
    )
    assert (
        unpaired.counts["trained"] == 12 and unpaired.counts["trained_ids_sha256"] != plain.counts["trained_ids_sha256"]
    )
