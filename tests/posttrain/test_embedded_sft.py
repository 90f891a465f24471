"""The embedded default SFT set: the low-entropy slice is respected, eval prompts are held out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from posttrain.embedded_sft import EVAL_PROMPTS_FILE, SFT_FILE, EmbeddedSFTConfig, article_response, run
from posttrain.prompt_format import check_conversation
from stage_io.cli import stage_main
from stage_io.config import ConfigError, load_config
from stage_io.held_out import held_out_ids

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "posttrain" / "embedded_sft.yaml"


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_default_set_is_the_sports_slice_with_held_out_eval_prompts(tmp_path, bbc):
    assert stage_main("posttrain.embedded_sft", EmbeddedSFTConfig, run, [str(CONFIG), f"output_dir={tmp_path}"]) == 0
    config = load_config(EmbeddedSFTConfig, CONFIG)
    rows = read_jsonl(tmp_path / SFT_FILE)
    docs = {d["id"]: d for d in bbc}
    held_out = held_out_ids(list(bbc))  # the capabilities task's articles stay out of the SFT set
    assert len(rows) == sum(d["topic"] == "sports" and d["id"] not in held_out for d in bbc) == 491
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        doc = docs[row["source_doc_id"]]
        assert row["topic"] == doc["topic"] == "sports"
        check_conversation(row["messages"], expect_final_assistant=True)
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["messages"][0]["content"] in config.instructions
        response = row["messages"][1]["content"]
        assert len(response) <= config.max_response_chars
        assert response.startswith(doc["title"] + "\n\n")
        body = response[len(doc["title"]) + 2 :]
        paragraphs = body.split("\n\n")
        assert paragraphs and all(p and p in doc["text"] for p in paragraphs)  # verbatim leading paragraphs
        assert doc["text"].find(paragraphs[0]) < doc["text"].find(paragraphs[-1]) + 1
    eval_prompts = read_jsonl(tmp_path / EVAL_PROMPTS_FILE)
    assert [set(p) for p in eval_prompts] == [{"id", "prompt"}] * len(config.eval_instructions)
    training_instructions = {r["messages"][0]["content"] for r in rows}
    assert len(training_instructions) == len(config.instructions)  # every paraphrase is used
    assert not {p["prompt"] for p in eval_prompts} & training_instructions
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["counts"]["examples_by_topic"] == {"sports": 491}
    assert manifest["counts"]["topic_entropy_bits"] == 0.0


def test_the_slice_is_a_config_option(tmp_path):
    def build(name, **kwargs):
        run(EmbeddedSFTConfig(output_dir=str(tmp_path / name), **kwargs))
        return read_jsonl(tmp_path / name / SFT_FILE)

    two = build("two", topics=["sports", "tech"], max_documents=40)
    assert len(two) == 40 and {r["topic"] for r in two} == {"sports", "tech"}
    smaller = build("smaller", topics=["sports", "tech"], max_documents=10)
    assert {r["id"] for r in smaller} < {r["id"] for r in two}  # nested slices: a sweep shrinks one set
    everything = build("all", topics=None, max_documents=100)
    assert len({r["topic"] for r in everything}) == 5
    manifest = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert manifest["counts"]["topic_entropy_bits"] > 2.0  # near log2(5) = 2.32 for the full corpus
    with pytest.raises(ValueError, match="'weather' is not a topic"):
        run(EmbeddedSFTConfig(output_dir=str(tmp_path / "bad"), topics=["weather"]))


def test_eval_prompts_must_be_held_out(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "instructions: [Write a news article.]\neval_instructions: [write a news article, Draft a news piece.]\n"
    )
    with pytest.raises(ConfigError, match="held out"):
        load_config(EmbeddedSFTConfig, path)


def test_article_response_keeps_whole_paragraphs_within_the_limit():
    text = "Title\n\n" + "A" * 100 + ".\n\n" + "B" * 100 + ".\n\n" + "C" * 300 + "."
    response, cut = article_response("Title", text, 260)
    assert response == "Title\n\n" + "A" * 100 + ".\n\n" + "B" * 100 + "." and not cut
    long_first = "Title\n\nOne sentence here. Another sentence that runs on " + "x" * 300
    response, cut = article_response("Title", long_first, 120)
    assert response == "Title\n\nOne sentence here." and cut


def test_balanced_topics_split_max_documents_equally(tmp_path):
    def build(name, **kwargs):
        run(EmbeddedSFTConfig(output_dir=str(tmp_path / name), balance_topics=True, **kwargs))
        return read_jsonl(tmp_path / name / SFT_FILE)

    three = build("three", topics=["sports", "business", "politics"], max_documents=31)
    by_topic = {t: sorted(r["id"] for r in three if r["topic"] == t) for t in ("sports", "business", "politics")}
    assert {t: len(ids) for t, ids in by_topic.items()} == {"sports": 10, "business": 10, "politics": 10}
    manifest = json.loads((tmp_path / "three" / "manifest.json").read_text())
    assert manifest["counts"]["documents_per_topic_balanced"] == 10
    assert manifest["counts"]["topic_entropy_bits"] == pytest.approx(math.log2(3))
    # Within a topic: the lowest by the same hash rank, so a topic's examples are nested across subsets.
    one = build("one", topics=["sports"], max_documents=10)
    assert sorted(r["id"] for r in one) == by_topic["sports"]
    run(EmbeddedSFTConfig(output_dir=str(tmp_path / "plain"), topics=["sports"], max_documents=10))
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "plain" / SFT_FILE)) == by_topic["sports"]
    # tech has 381 training articles (401 less the 20 held out for the capabilities task): short of 450.
    with pytest.raises(ValueError, match="topics: 'tech' has 381 articles"):
        run(
            EmbeddedSFTConfig(
                output_dir=str(tmp_path / "bad"), topics=["sports", "tech"], max_documents=900, balance_topics=True
            )
        )
    with pytest.raises(ValueError, match="balance_topics=true needs both"):
        EmbeddedSFTConfig(topics=["sports"], max_documents=None, balance_topics=True)
