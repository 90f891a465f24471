"""The embedded capabilities task: items from held-out articles only, a true next paragraph among distractors."""

import json

import yaml

from eval.next_passage_task import NextPassageTaskConfig, paragraphs, run
from stage_io.manifest import read_manifest
from stage_io.records import RecordSource, load_records


def test_items_are_next_paragraphs_of_held_out_articles_among_same_section_distractors(tmp_path):
    run(NextPassageTaskConfig(output_dir=str(tmp_path / "a")))
    data = (tmp_path / "a" / "bbc_next_passage.jsonl").read_text()
    items = [json.loads(line) for line in data.splitlines()]
    held = {r["id"]: r for r in load_records(RecordSource(source="embedded:bbc_news_heldout"))}
    assert 150 <= len(items) <= 200
    endings_of = {aid: [" ".join(p.split()) for p in paragraphs(r["title"], r["text"])] for aid, r in held.items()}
    for item in items:
        article = held[item["article_id"]]  # only held-out articles
        index = int(item["id"].split("#")[1])
        assert len(item["endings"]) == 4 == len(set(item["endings"])) and 0 <= item["label"] < 4
        true = item["endings"][item["label"]]
        assert endings_of[article["id"]][index].startswith(true) and len(true) <= 120
        assert item["context"].startswith(article["title"].strip() + "\n\n")
        for i, ending in enumerate(item["endings"]):
            if i != item["label"]:  # from another held-out article of the same section
                owners = [aid for aid, paras in endings_of.items() if any(p.startswith(ending) for p in paras)]
                assert owners and article["id"] not in owners
                assert any(held[o]["topic"] == article["topic"] for o in owners)
    labels = [i["label"] for i in items]
    assert all(labels.count(k) > len(items) / 8 for k in range(4))  # the answer is not always in one place

    task = yaml.safe_load((tmp_path / "a" / "bbc_next_passage.yaml").read_text())
    assert task["output_type"] == "multiple_choice" and task["target_delimiter"] == "\n\n"
    assert task["dataset_kwargs"]["data_files"]["test"] == str((tmp_path / "a" / "bbc_next_passage.jsonl").resolve())
    manifest = read_manifest(tmp_path / "a")
    assert manifest["counts"]["items"] == len(items) and manifest["counts"]["articles"] == 100
    assert manifest["inputs"]["articles"]["embedded"]["held_out_excluded"] is False

    run(NextPassageTaskConfig(output_dir=str(tmp_path / "b")))  # deterministic
    assert (tmp_path / "b" / "bbc_next_passage.jsonl").read_text() == data
