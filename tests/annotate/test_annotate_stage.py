"""The stage end to end: output contract, shards, bad inputs."""

import json

import pytest

from annotate import run
from annotate.consolidate import STATS_FILE
from annotate.stage import AnnotateError, shard_bounds
from annotate.work_file import WorkFileError
from stage_io.manifest import read_manifest
from stage_io.records import RecordSource, RecordSourceError, load_records

CORPUS_COLUMNS = {"id", "doc_id", "chunk_index", "text", "tags", "annotation", "status", "error", "raw_output",
                  "annotator", "annotator_version"}


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


def test_shards_partition_the_documents_and_merge_to_the_single_run(tmp_path, fitted_run, tiny_config):
    fitted = fitted_run[0]
    single = load_records(RecordSource(source=str(fitted / "data")))
    out = tmp_path / "sharded"
    overrides = ["source.limit=12", "num_shards=3", f"annotator.offline.fitted_state_from={fitted}"]
    bounds = [shard_bounds(12, 3, i) for i in range(3)]
    assert bounds == [(0, 4), (4, 8), (8, 12)]
    assert run(tiny_config(out, *overrides, "shard_index=2")) is None  # others not done yet
    with pytest.raises(WorkFileError, match=r"shards \[0, 1\] of 3 have not finished"):
        run(tiny_config(out, *overrides, "merge_only=true"))
    assert run(tiny_config(out, *overrides, "shard_index=0")) is None
    stats = run(tiny_config(out, *overrides, "shard_index=1"))  # the last one consolidates
    assert stats is not None and read_manifest(out)["consolidated_by"] == "shard 1"
    merged = load_records(RecordSource(source=str(out / "data")))
    assert merged["id"] == single["id"] and merged["tags"] == single["tags"]
    shard_docs = []
    for i in range(3):
        lines = (out / "work" / f"shard-{i:05d}-of-00003.jsonl").read_text().splitlines()
        shard_docs.append({json.loads(line)["doc_index"] for line in lines})
    assert shard_docs == [set(range(a, b)) for a, b in bounds]
    again = run(tiny_config(out, *overrides, "merge_only=true"))
    assert again == stats and read_manifest(out)["consolidated_by"] == "merge_only"


def test_empty_documents_are_recorded_skips(tmp_path, fitted_run, tiny_config):
    docs = tmp_path / "docs.jsonl"
    rows = [{"id": "a", "text": "Tony Blair visited Paris in 2004 to meet the French president."},
            {"id": "b", "text": "   \n\n  "}, {"id": "c", "text": None}, {"id": "d", "text": "Shares rose."}]
    docs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    stats = run(tiny_config(out, f"source.source={docs}", "source.limit=null", "keep_columns=[]",
                            f"annotator.offline.fitted_state_from={fitted_run[0]}"))
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
        [sys.executable, "-m", "annotate", str(repo / "configs" / "annotate" / "tiny.yaml"), f"source.source={latin1}", f"output_dir={tmp_path / 'o'}",
         "keep_columns=[]"],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert f"annotate: error: {latin1}:2: not valid UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_key_the_offline_annotator_cannot_produce_is_an_error_naming_it(tiny_config, tmp_path):
    with pytest.raises(AnnotateError, match=r"schema.keys: the offline annotator cannot produce mood"):
        run(tiny_config(tmp_path / "out", "source.limit=2", "schema.keys=[topic,mood]"))
