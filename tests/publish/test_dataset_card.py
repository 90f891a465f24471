"""Dataset dry runs on a real tiny annotated dataset: parquet shards, card, stats, format."""

from __future__ import annotations

import json
import shutil

import datasets
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from publish_fixtures import RecordingHub, assert_card_cites, publish_dry_run, write_annotated_dataset

from annotate.format import DEFAULT_KEYS, parse_annotation
from publish import PublishError


def load_staged(folder, cache):
    """Load the staged folder as the hub would: through the card's `configs` metadata."""
    return datasets.load_dataset(str(folder), cache_dir=str(cache))


def test_dataset_dry_run_stages_parquet_and_card(dataset_dir, tmp_path):
    hub = RecordingHub()
    staging = tmp_path / "stage"
    result = publish_dry_run("dataset", dataset_dir, staging, hub)
    folder = staging / "repo"
    assert hub.calls == [] and result["receipt"] is None
    assert not (staging / "upload_receipt.json").exists()
    assert sorted(f["path"] for f in result["files"]) == [
        "README.md",
        "annotation_stats.json",
        "data/data-00000-of-00002.parquet",
        "data/data-00001-of-00002.parquet",
        "manifest.json",
    ]
    assert [s["path"] for s in result["skipped"]] == ["work/"]
    for name in ("data-00000-of-00002.parquet", "data-00001-of-00002.parquet"):  # copied byte for byte
        assert (folder / "data" / name).read_bytes() == (dataset_dir / "data" / name).read_bytes()

    loaded = load_staged(folder, tmp_path / "cache")
    assert list(loaded) == ["train"]
    original = [
        row
        for name in ("data-00000-of-00002.parquet", "data-00001-of-00002.parquet")
        for row in pq.read_table(dataset_dir / "data" / name).to_pylist()
    ]
    assert loaded["train"].to_list() == original
    assert parse_annotation(loaded["train"][0]["annotation"])[0].key == "topic"

    card = DatasetCard.load(folder / "README.md")
    assert card.data.license == "other"
    assert "annotation-anchored" in card.data.tags
    assert card.data.size_categories == ["n<1K"]
    text = (folder / "README.md").read_text()
    phrases = (
        "`<|ann|>`",
        "`<|/ann|>`",
        "from the annotate config (`config.schema.keys`)",
        "`topic`, `entity`, `location`",
        "<|ann|>topic:topic_0 location:Baghdad<|/ann|>",
        "| train | 6 | 2 |",
        "`tags`",
        "2605.09995",
        "### overall",
        "| mean_tags_per_ok_chunk | 2 |",
        "### overall.failure_reasons",
        "| timeout | 0 |",
        "| entry | coverage | distinct_values | entropy_bits | top_values |",
        "| topic | 1 | 3 | 1.585 | topic_0 (2), topic_1 (2), topic_2 (2) |",
        "`examples`",
    )
    assert_card_cites(text, phrases, dataset_dir, "documents")


def test_save_to_disk_data_is_converted_and_sharded(tmp_path):
    source = write_annotated_dataset(tmp_path / "annotate" / "out", layout="saved")
    result = publish_dry_run("dataset", source, tmp_path / "stage", shard_rows=4)
    shards = sorted(f["path"] for f in result["files"] if f["path"].startswith("data/"))
    assert shards == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    loaded = load_staged(tmp_path / "stage" / "repo", tmp_path / "cache")
    assert loaded["train"].to_list() == datasets.load_from_disk(str(source / "data")).to_list()
    assert "save_to_disk directory, converted to parquet" in (tmp_path / "stage" / "repo" / "README.md").read_text()


def test_parquet_shards_in_split_folders_keep_their_splits(tmp_path):
    source = write_annotated_dataset(tmp_path / "annotate" / "out", rows=4)
    flat = [row for p in sorted((source / "data").glob("*.parquet")) for row in pq.read_table(p).to_pylist()]
    shutil.rmtree(source / "data")
    (source / "data" / "train").mkdir(parents=True)
    (source / "data" / "validation").mkdir()
    data = datasets.Dataset.from_list(flat)
    data.select(range(3)).to_parquet(str(source / "data" / "train" / "part-0.parquet"))
    data.select(range(3, 4)).to_parquet(str(source / "data" / "validation" / "part-0.parquet"))
    (source / "data" / "README.txt").write_text("notes")
    result = publish_dry_run("dataset", source, tmp_path / "stage")
    assert {"path": "data/README.txt", "reason": "not a parquet shard"} in result["skipped"]
    card = DatasetCard.load(tmp_path / "stage" / "repo" / "README.md")
    assert card.data.configs[0]["data_files"] == [
        {"split": "train", "path": "data/train/*.parquet"},
        {"split": "validation", "path": "data/validation/*.parquet"},
    ]
    loaded = load_staged(tmp_path / "stage" / "repo", tmp_path / "cache")
    assert {k: v.num_rows for k, v in loaded.items()} == {"train": 3, "validation": 1}


def test_default_keys_when_the_manifest_has_none(tmp_path):
    source = write_annotated_dataset(tmp_path / "annotate" / "out")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["config"] = {"annotator": "offline"}
    (source / "manifest.json").write_text(json.dumps(manifest))
    publish_dry_run("dataset", source, tmp_path / "stage")
    text = (tmp_path / "stage" / "repo" / "README.md").read_text()
    assert "the annotate manifest records no key list" in text
    assert ", ".join(f"`{k}`" for k in DEFAULT_KEYS) in text


def test_odd_stats_shapes_do_not_crash(tmp_path):
    source = write_annotated_dataset(tmp_path / "annotate" / "out")
    for stats in ([1, 2], {"a": {"b": {"c": [{"d": 1}]}}, "n": 3}, {}):
        (source / "annotation_stats.json").write_text(json.dumps(stats))
        publish_dry_run("dataset", source, tmp_path / "stage")
        assert "## Annotation statistics" in (tmp_path / "stage" / "repo" / "README.md").read_text()


def test_missing_pieces_are_errors_naming_the_path(tmp_path):
    source = write_annotated_dataset(tmp_path / "annotate" / "out")
    (source / "annotation_stats.json").unlink()
    with pytest.raises(PublishError, match="annotation_stats.json"):
        publish_dry_run("dataset", source, tmp_path / "stage")
    (source / "manifest.json").unlink()
    with pytest.raises(PublishError, match="manifest.json"):
        publish_dry_run("dataset", source, tmp_path / "stage")
    (source / "annotation_stats.json").write_text(json.dumps({"overall": {}}))
    (source / "manifest.json").write_text(json.dumps({"stage": "annotate"}))
    shutil.rmtree(source / "data")
    (source / "data").mkdir()
    with pytest.raises(PublishError, match="neither a datasets save_to_disk directory nor parquet shards"):
        publish_dry_run("dataset", source, tmp_path / "stage")
