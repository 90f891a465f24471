"""Killed after a task completed, started again: exactly one annotation per chunk."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from annotate import run
from stage_io.records import RecordSource, load_records

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "annotate" / "tiny.yaml"


def test_a_run_killed_after_a_task_completed_resumes_to_the_uninterrupted_result(tmp_path, fitted_run, tiny_config):
    fitted = fitted_run[0]
    expected = load_records(RecordSource(source=str(fitted / "data")))  # the same 12 articles, uninterrupted
    overrides = ["source.limit=12", "executor.tasks=4", f"annotator.offline.fitted_state_from={fitted}"]
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "annotate", str(TINY_CONFIG), f"output_dir={out}", *overrides]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    # Its own process group: the kill takes the run and datatrove's helper process, as a node failure does.
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    lines = []
    try:
        for raw in process.stdout:  # task 1 starts after task 0's file is closed and marked complete
            lines.append(raw.decode(errors="replace"))
            if "annotate: task 1 of 4:" in lines[-1]:
                break
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        log = "".join(lines) + process.communicate()[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, log
    completed = sorted(p.name for p in (out / "work" / "logs" / "completions").iterdir())
    assert completed[0] == "00000" and len(completed) < 4, "the process must be killed mid-run"
    assert not (out / "data").exists()
    first = (out / "work" / "data" / "data-00000-of-00004.parquet").stat().st_ino

    stats = run(tiny_config(out, *overrides))  # started again (in this process)
    resumed = load_records(RecordSource(source=str(out / "data")))
    assert len(set(resumed["id"])) == len(resumed) == stats["overall"]["chunks"]
    assert resumed["id"] == expected["id"] and resumed["tags"] == expected["tags"]
    assert resumed["annotation"] == expected["annotation"] and resumed["text"] == expected["text"]
    assert (out / "data" / "data-00000-of-00004.parquet").stat().st_ino == first  # the completed task was kept


def test_a_task_file_left_by_a_killed_task_is_rewritten_not_appended(tmp_path, fitted_run, tiny_config):
    overrides = ["source.limit=4", "executor.tasks=2", f"annotator.offline.fitted_state_from={fitted_run[0]}"]
    out = tmp_path / "out"
    stats = run(tiny_config(out, *overrides))
    part = out / "data" / "data-00001-of-00002.parquet"
    # As a task killed mid-write leaves it: a torn file, no completion marker, data/ not final yet.
    (out / "work").joinpath("data").mkdir()
    (out / "data").rename(out / "work" / "parts")
    for name in ("data-00000-of-00002.parquet", "data-00001-of-00002.parquet"):
        (out / "work" / "parts" / name).rename(out / "work" / "data" / name)
    torn = out / "work" / "data" / part.name
    torn.write_bytes(torn.read_bytes()[:100])
    (out / "work" / "logs" / "completions" / "00001").unlink()
    assert run(tiny_config(out, *overrides)) == stats
    assert len(load_records(RecordSource(source=str(out / "data")))) == stats["overall"]["chunks"]
