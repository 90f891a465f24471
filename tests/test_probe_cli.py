"""The robustness probe (scripts/probe_cli.py) on a few quick cases; the full run is not part of pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import probe_cli  # noqa: E402


def test_the_probe_judges_outcomes():
    case = probe_cli.Case("x", lambda fx: [], expect_error="key 'a'")
    library = "Traceback (most recent call last):\n  File ...\nsafetensors_rust.SafetensorError: bad header\n"
    assert probe_cli.classify(case, 1, library, None)[0] == "library_traceback"
    own = "Traceback (most recent call last):\n  File ...\npublish.preflight.PublishError: nothing was sent\n"
    assert probe_cli.classify(case, 1, own, None)[0] == "own_message_traceback"
    assert probe_cli.classify(case, 0, "", None)[0] == "silent_failure"
    assert probe_cli.classify(case, 2, "x: config error: key 'a' must be >= 0", None)[0] == "ok"


def test_a_few_cases_end_to_end(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/probe_cli.py",
            "--work",
            str(tmp_path),
            "--only",
            "eval: sampling.temperatures",
            "annotate: source.limit",
            "publish: source_dir",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "ok 5 | silent_failure 0 | library_traceback 0 | own_message_traceback 0 | rows_lost_or_duplicated 0"
        in proc.stdout
    )
