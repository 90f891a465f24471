"""One micro study per session: the end-to-end test checks it, the entropy sweep runs on its pretraining.

Only the micro study runs its steps the way a user's study does, each stage its own process. The other
studies the tests run (the sweep beside it, the study ``init`` writes) run each step's exact command in
this process (``steps_in_process``): their subject is what is planned and chained, which the process
adds nothing to, and each process would import torch and transformers again.
"""

from __future__ import annotations

import contextlib
import runpy
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import study.runner
from stage_io.config import load_config
from stage_io.log import set_verbosity
from study import StudyConfig, run

MICRO = Path(__file__).resolve().parents[2] / "configs" / "study" / "micro.yaml"


@dataclass
class MicroStudy:
    # The study's output_dir.
    out: Path
    # What study.run returned (steps ran and skipped, the report's path).
    result: dict
    # report.md as the run wrote it (later runs in the same directory rewrite it).
    report: str


@pytest.fixture(scope="session")
def micro_study(tmp_path_factory) -> MicroStudy:
    """configs/study/micro.yaml run once, every stage for real. Tests may run more of the study in its
    directory (a rerun, the entropy sweep on the same pretrained models) but must not rely on the order."""
    out = tmp_path_factory.mktemp("micro_study") / "study"
    result = run(load_config(StudyConfig, MICRO, [f"output_dir={out}"]))
    return MicroStudy(out, result, (out / "report.md").read_text())


def run_step_in_process(step, cfg: StudyConfig, log_dir: Path) -> None:
    """``study.runner.run_step`` without the process: ``python -m STAGE ...`` as runpy runs it, its stdout and
    stderr in logs/STEP.log; the same error for a non-zero exit. Torch's thread count and the log level, which a
    stage sets for its process, are put back for the tests after it."""
    command = study.runner.step_command(step, cfg)
    module, argv = command[command.index("-m") + 1], command[command.index("-m") + 2 :]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{step.name}.log"
    threads, saved_argv = torch.get_num_threads(), sys.argv
    code = 0
    try:
        with (
            open(log_path, "w", encoding="utf-8") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
            warnings.catch_warnings(),
        ):
            # runpy's note that a stage module (posttrain.embedded_sft) was imported before: it runs afresh.
            warnings.filterwarnings("ignore", "'.*' found in sys.modules after import of package", RuntimeWarning)
            sys.argv = [module, *argv]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code or 0
    finally:
        sys.argv = saved_argv
        torch.set_num_threads(threads)
        set_verbosity("normal")
    if code != 0:
        raise RuntimeError(f"study step '{step.name}' failed with exit code {code}; its log: {log_path}")


@pytest.fixture
def steps_in_process(monkeypatch):
    """Studies run in this test execute each step's command in this process (see the module's docstring)."""
    monkeypatch.setattr(study.runner, "run_step", run_step_in_process)
