"""One micro study per session: the end-to-end test checks it, the entropy sweep runs on its pretraining."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from stage_io.config import load_config
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
