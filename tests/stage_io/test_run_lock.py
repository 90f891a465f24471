"""One writer per output directory, with real processes; a killed holder leaves no stale lock.

The holder is a child process that takes the lock and says so on its stdout; the stages
are started only after that line is read, so nothing depends on timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stage_io.run_lock import LOCK_NAME, DirectoryLock, RunLockError, hold_lock

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
HOLDER = (
    "import sys; from stage_io.run_lock import hold_lock\n"
    "with hold_lock(sys.argv[1], 'holder'):\n"
    "    print('locked', flush=True); sys.stdin.readline()\n"
)


def start_holder(directory: Path, script: str = HOLDER) -> tuple[subprocess.Popen, list[str]]:
    """A process holding ``directory``'s lock, and the words it printed after 'locked'."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(directory)],
        cwd=REPO,
        env=ENV,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    word, *rest = holder.stdout.readline().split()
    assert word == "locked"
    return holder, rest


@pytest.mark.parametrize(
    "stage, config",
    [
        ("pretrain", "configs/pretrain/tiny.yaml"),
        ("posttrain", "configs/posttrain/tiny_plain.yaml"),
        ("eval", "configs/eval/tiny.yaml"),
    ],
)
def test_a_second_writer_is_refused_while_the_first_holds_the_directory(tmp_path, stage, config):
    """Two pretrains (or evals) in one directory would both exit 0 with interleaved rows."""
    out = tmp_path / "run"
    holder, _ = start_holder(out)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", stage, config, f"output_dir={out}"],
            cwd=REPO,
            env=ENV,
            capture_output=True,
            text=True,
        )
    finally:
        holder.communicate("\n")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        f"another process (pid {holder.pid}) holds its lock (.lock), so this one cannot start running {stage}"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder, _ = start_holder(tmp_path)
    with pytest.raises(RunLockError, match=f"pid {holder.pid}"):
        DirectoryLock(tmp_path / LOCK_NAME, "x").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert holder.returncode == -signal.SIGKILL
    with hold_lock(tmp_path, "next run"):  # the kernel released it with the process
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())


FORKING_HOLDER = (
    "import os, signal, sys; from stage_io.run_lock import hold_lock\n"
    "with hold_lock(sys.argv[1], 'holder'):\n"
    "    started, ready = os.pipe()\n"
    "    child = os.fork()\n"
    "    if child == 0:  # the fork handlers have run once the child runs Python code\n"
    "        os.write(ready, b'.')\n"
    "        signal.pause()  # idle until killed, as a multiprocess manager outlives its killed parent\n"
    "    os.read(started, 1)\n"
    "    print('locked', child, flush=True); sys.stdin.readline()\n"
)


def test_a_forked_child_that_outlives_its_killed_parent_does_not_hold_the_lock(tmp_path):
    holder, (child,) = start_holder(tmp_path, FORKING_HOLDER)
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        os.kill(int(child), 0)  # the child is alive (raises if not)
        with hold_lock(tmp_path, "next run"):
            assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        os.kill(int(child), signal.SIGKILL)


def test_only_the_main_rank_takes_the_lock(tmp_path, monkeypatch):
    with hold_lock(tmp_path, "rank 0"):
        monkeypatch.setenv("RANK", "1")
        with hold_lock(tmp_path, "rank 1"):  # the same job's other ranks write through rank 0's lock
            pass


def test_an_output_dir_that_is_a_file_is_one_line_naming_the_key(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a directory\n")
    proc = subprocess.run(
        [sys.executable, "-m", "eval", "configs/eval/tiny.yaml", f"output_dir={taken}"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == (
        f"eval: error: output_dir '{taken}' is an existing file, not a directory: "
        "choose another output_dir or move the file"
    )


def test_an_output_dir_that_cannot_be_made_names_the_key(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(
        OSError,
        match=rf"staging_dir '{tmp_path}/file/run': cannot create or write it "
        r"\(NotADirectoryError",
    ):
        with hold_lock(tmp_path / "file" / "run", "publish", key="staging_dir"):
            pass


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_an_output_dir_in_an_unwritable_folder_names_the_key(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    with pytest.raises(OSError, match=r"output_dir '.*ro/run': cannot create or write it \(PermissionError"):
        with hold_lock(locked / "run", "pretrain"):
            pass


def test_a_second_annotate_of_the_same_shard_is_refused(tmp_path):
    from annotate import AnnotateConfig, run
    from stage_io.config import load_config

    out = tmp_path / "ann"
    config = load_config(AnnotateConfig, REPO / "configs/annotate/tiny.yaml", [f"output_dir={out}", "source.limit=2"])
    with hold_lock(out, "annotate"):
        with pytest.raises(RunLockError, match="holds its lock"):
            run(config)
    assert not (out / "work").exists()
