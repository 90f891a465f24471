"""The one error path of every stage CLI: one line, exit 2, no traceback; --debug shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pretrain.checkpoint import checkpoint_to_resume
from publish.preflight import resolve_token
from stage_io.cli import DEBUG_ENV, stage_main

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Tiny:
    # A value the stub run ignores.
    value: int = 0


def call(run, *extra, monkeypatch=None):
    return stage_main("stub", Tiny, run, ["value=1", *extra])


def test_a_plain_error_raised_by_project_code_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    # FileNotFoundError-free: a plain ValueError subclass raised in pretrain.checkpoint, not exit 1 or a traceback.
    assert call(lambda c: checkpoint_to_resume(str(tmp_path / "nope"), tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("stub: error: train.resume=") and "Traceback" not in err and err.count("\n") == 1


def test_a_project_runtime_error_is_one_line(capsys, monkeypatch):
    """PublishError is a RuntimeError: one line, not a full traceback."""
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    assert call(lambda c: resolve_token("NO_SUCH_TOKEN_VAR")) == 2
    assert "stub: error: no hub token: environment variable NO_SUCH_TOKEN_VAR" in capsys.readouterr().err


def test_an_oserror_from_project_code_names_the_file(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    from stage_io.manifest import fingerprint_files

    assert call(lambda c: fingerprint_files(tmp_path, ["missing.bin"])) == 2
    assert "FileNotFoundError" in capsys.readouterr().err


def test_a_library_error_keeps_its_traceback():
    with pytest.raises(json.JSONDecodeError):
        call(lambda c: json.loads("{"))


def test_debug_flag_and_variable_show_the_traceback(monkeypatch, tmp_path):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(ValueError, match="train.resume"):
        call(lambda c: checkpoint_to_resume(str(tmp_path / "nope"), tmp_path), "--debug")
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(ValueError, match="train.resume"):
        call(lambda c: checkpoint_to_resume(str(tmp_path / "nope"), tmp_path))


def test_a_real_stage_process_prints_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "publish", "configs/publish/model.yaml", f"source_dir={tmp_path}/none", "repo_id=me/x"],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert "publish: error: config key 'source_dir'" in proc.stderr and "Traceback" not in proc.stderr
    debug = subprocess.run(
        [
            sys.executable,
            "-m",
            "publish",
            "configs/publish/model.yaml",
            f"source_dir={tmp_path}/none",
            "repo_id=me/x",
            "--debug",
        ],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "PublishError" in debug.stderr
