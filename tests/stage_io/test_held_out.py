"""The BBC articles held out for the capabilities task: one rule, read by every stage that trains."""

import json
from pathlib import Path

import yaml

from posttrain.embedded_sft import EmbeddedSFTConfig
from posttrain.embedded_sft import run as build_sft_set
from stage_io.config import load_config
from stage_io.held_out import HELD_OUT_PER_SECTION, held_out_ids
from stage_io.manifest import read_manifest
from stage_io.records import RecordSource, bbc_news_articles, load_records

REPO = Path(__file__).resolve().parents[2]


def ids(source: str, limit: int | None = None) -> list[str]:
    return list(load_records(RecordSource(source=source, limit=limit))["id"])


def test_train_and_heldout_split_the_corpus_with_20_articles_per_section():
    everything, train, held = ids("embedded:bbc_news"), ids("embedded:bbc_news_train"), ids("embedded:bbc_news_heldout")
    assert len(held) == 5 * HELD_OUT_PER_SECTION == 100 and len(train) == 2125
    assert not set(train) & set(held) and set(train) | set(held) == set(everything)
    assert train == [i for i in everything if i not in set(held)]  # corpus order kept
    sections = [i.split("/")[0] for i in held]
    assert {s: sections.count(s) for s in set(sections)} == dict.fromkeys(
        ["business", "entertainment", "politics", "sports", "tech"], HELD_OUT_PER_SECTION
    )
    # The rule is over the whole corpus: a limit takes the first articles of the split, not another split.
    assert ids("embedded:bbc_news_train", limit=50) == train[:50]
    assert held_out_ids(bbc_news_articles()) == set(held)


def test_embedded_training_configs_read_the_train_split():
    annotate = yaml.safe_load((REPO / "configs" / "annotate" / "embedded.yaml").read_text())
    sft = yaml.safe_load((REPO / "configs" / "posttrain" / "embedded_sft.yaml").read_text())
    assert annotate["source"]["source"] == sft["source"]["source"] == "embedded:bbc_news_train"
    assert EmbeddedSFTConfig().source.source == "embedded:bbc_news_train"


def test_embedded_sft_set_has_no_held_out_article_and_its_manifest_says_so(tmp_path):
    cfg = load_config(
        EmbeddedSFTConfig, REPO / "configs" / "posttrain" / "embedded_sft.yaml", [f"output_dir={tmp_path}"]
    )
    build_sft_set(cfg)
    rows = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    held = set(ids("embedded:bbc_news_heldout"))
    assert rows and not {r["source_doc_id"] for r in rows} & held
    assert len(rows) == 511 - HELD_OUT_PER_SECTION  # every sports article but the held-out ones
    corpus = read_manifest(tmp_path)["inputs"]["corpus"]["embedded"]
    assert corpus["held_out_excluded"] is True and corpus["held_out_articles"] == 100 and corpus["articles"] == 2125
    assert len(corpus["held_out_ids_sha256"]) == 64
