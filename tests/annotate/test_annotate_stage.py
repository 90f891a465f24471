"""The stage end to end: output contract, the pre-engine outputs, tasks, bad inputs."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from annotate_fixtures import ANNOTATION_COLUMNS, records_config

from annotate import run
from annotate.finalize import STATS_FILE, FinalizeError
from annotate.pipeline import task_bounds
from annotate.stage import AnnotateError
from stage_io.manifest import read_manifest
from stage_io.records import RecordSource, RecordSourceError, load_records

CORPUS_COLUMNS = {"id", "doc_id", "chunk_index", "text", *ANNOTATION_COLUMNS}


def test_output_contract(fitted_run):
    out, stats = fitted_run
    ds = load_records(RecordSource(source=str(out / "data")))
    assert CORPUS_COLUMNS | {"doc_topic"} == set(ds.column_names)
    assert len(set(ds["id"])) == len(ds) == stats["overall"]["chunks"]
    assert ds["id"] == [f"{d}#{i}" for d, i in zip(ds["doc_id"], ds["chunk_index"])]
    source = load_records(RecordSource(source="embedded:bbc_news", limit=12))
    order = {doc_id: i for i, doc_id in enumerate(source["id"])}
    keys = [(order[d], i) for d, i in zip(ds["doc_id"], ds["chunk_index"])]
    assert keys == sorted(keys) and {d for d, _ in keys} == set(range(12))
    row = ds[0]
    assert row["status"] == "ok" and row["error"] == "" and row["annotation"].startswith("<|ann|>topic:")
    assert row["doc_topic"] == "business" and row["annotator"] == "offline"
    saved = json.loads((out / STATS_FILE).read_text())
    assert saved == stats and stats["overall"]["mean_tags_per_ok_chunk"] >= 3
    assert saved["keys"]["topic"]["coverage"] == 1.0
    manifest = read_manifest(out)
    assert manifest["stage"] == "annotate" and manifest["counts"]["chunks"] == len(ds)
    assert (out / "annotator" / "annotator.json").is_file()


GOLDEN = Path(__file__).parent / "data"


def test_outputs_are_identical_to_the_stage_before_datatrove(fitted_run):
    """golden_tiny12*: the tiny config on 12 articles, written by the stage's own sharding code."""
    out, stats = fitted_run
    expected = pq.read_table(GOLDEN / "golden_tiny12.parquet")
    actual = pq.read_table(out / "data" / "data-00000-of-00001.parquet")
    assert actual.schema.names == expected.schema.names and actual.schema.equals(expected.schema)
    for column in expected.schema.names:
        if column != "annotator_version":  # carries a digest of the annotator's code
            assert actual[column].to_pylist() == expected[column].to_pylist(), column
    assert stats == json.loads((GOLDEN / "golden_tiny12_stats.json").read_text())


def test_tasks_partition_the_documents_and_finalize_to_the_single_run(tmp_path, fitted_run, tiny_config):
    fitted = fitted_run[0]
    single = load_records(RecordSource(source=str(fitted / "data")))
    out = tmp_path / "tasks"
    overrides = ["source.limit=12", "executor.tasks=3", f"annotator.offline.fitted_state_from={fitted}"]
    bounds = [task_bounds(12, 3, i) for i in range(3)]
    assert bounds == [(0, 4), (4, 8), (8, 12)]
    with pytest.raises(AnnotateError, match="no annotate work to finalize"):
        run(tiny_config(out, *overrides, "finalize_only=true"))
    stats = run(tiny_config(out, *overrides))
    assert read_manifest(out)["finalized_by"] == "local run"
    merged = load_records(RecordSource(source=str(out / "data")))
    assert merged["id"] == single["id"] and merged["tags"] == single["tags"]
    documents = load_records(RecordSource(source="embedded:bbc_news", limit=12))["id"]
    for i, (start, end) in enumerate(bounds):
        part = pq.read_table(out / "data" / f"data-{i:05d}-of-00003.parquet")
        assert set(part["doc_id"].to_pylist()) == set(documents[start:end])
    assert not (out / "work" / "data").exists()
    again = run(tiny_config(out, *overrides, "finalize_only=true"))
    assert again == stats and read_manifest(out)["finalized_by"] == "finalize_only"
    (out / "work" / "logs" / "completions" / "00001").unlink()
    with pytest.raises(FinalizeError, match=r"tasks \[1\] of 3 have not completed"):
        run(tiny_config(out, *overrides, "finalize_only=true"))


def test_empty_documents_are_recorded_skips(tmp_path, fitted_run):
    docs = tmp_path / "docs.jsonl"
    rows = [
        {"id": "a", "text": "Tony Blair visited Paris in 2004 to meet the French president."},
        {"id": "b", "text": "   \n\n  "},
        {"id": "c", "text": None},
        {"id": "d", "text": "Shares rose."},
    ]
    docs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    stats = run(records_config(out, docs, f"annotator.offline.fitted_state_from={fitted_run[0]}"))
    ds = load_records(RecordSource(source=str(out / "data")))
    assert ds["id"] == ["a#0", "b#0", "c#0", "d#0"]
    assert ds["status"] == ["ok", "skipped", "skipped", "ok"]
    assert ds["error"][1:3] == ["empty document", "'text' is NoneType"]
    assert stats["overall"]["skipped"] == 2 and stats["overall"]["documents"] == 4


def test_bad_inputs_fail_with_clear_errors(tmp_path, tiny_config):
    with pytest.raises(RecordSourceError, match="absent.jsonl: no such file"):
        run(tiny_config(tmp_path / "o1", f"source.source={tmp_path / 'absent.jsonl'}"))
    wrong_field = tmp_path / "body.jsonl"
    wrong_field.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(RecordSourceError, match=r"field 'text' not found \(columns: body\)"):
        run(tiny_config(tmp_path / "o2", f"source.source={wrong_field}", "keep_columns=[]"))
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(RecordSourceError, match=r"latin1.jsonl:2: not valid UTF-8"):
        run(tiny_config(tmp_path / "o3", f"source.source={latin1}", "keep_columns=[]"))
    empty_only = tmp_path / "empty.jsonl"
    empty_only.write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(AnnotateError, match="nothing to fit the offline annotator on"):
        run(tiny_config(tmp_path / "o4", f"source.source={empty_only}", "keep_columns=[]"))


def test_resuming_with_a_different_config_is_refused(tmp_path, fitted_run, tiny_config):
    out = tmp_path / "out"
    base = ["source.limit=2", f"annotator.offline.fitted_state_from={fitted_run[0]}"]
    run(tiny_config(out, *base))
    run(tiny_config(out, *base, "batch_size=3"))  # batch size changes no output: fine
    with pytest.raises(AnnotateError, match=r"changed: chunking.max_chars: 1200 -> 900"):
        run(tiny_config(out, *base, "chunking.max_chars=900"))


def test_an_annotator_saved_by_other_code_is_refused(tmp_path, fitted_run, tiny_config):
    import shutil

    stale = tmp_path / "stale"
    shutil.copytree(fitted_run[0] / "annotator", stale / "annotator")
    info = json.loads((stale / "annotator" / "annotator.json").read_text())
    info["version"] = info["version"].rsplit("+code:", 1)[0] + "+code:00000000"  # saved by older code
    (stale / "annotator" / "annotator.json").write_text(json.dumps(info))
    with pytest.raises(AnnotateError, match="annotate again into a new output_dir"):
        run(tiny_config(tmp_path / "out", "source.limit=2", f"annotator.offline.fitted_state_from={stale}"))


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "annotate",
            str(repo / "configs" / "annotate" / "tiny.yaml"),
            f"source.source={latin1}",
            f"output_dir={tmp_path / 'o'}",
            "keep_columns=[]",
        ],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert f"annotate: error: {latin1}:2: not valid UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_key_the_offline_annotator_cannot_produce_is_an_error_naming_it(tiny_config, tmp_path):
    with pytest.raises(AnnotateError, match=r"schema.keys: the offline annotator cannot produce mood"):
        run(tiny_config(tmp_path / "out", "source.limit=2", "schema.keys=[topic,mood]"))
