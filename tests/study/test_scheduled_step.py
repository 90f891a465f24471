"""A step whose stage hands its work to a scheduler (annotate on Slurm) stops the study until its output lands."""

from __future__ import annotations

from pathlib import Path

import pytest

import study.runner as runner
from stage_io.config import load_config
from study import StudyConfig, run

MICRO = Path(__file__).resolve().parents[2] / "configs" / "study" / "micro.yaml"


def test_a_submitted_step_stops_the_study_and_is_neither_resubmitted_nor_rerun(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    config = load_config(StudyConfig, MICRO, [f"output_dir={out}"])
    real_run_step = runner.run_step
    submitted: list[str] = []

    def submit(step, cfg, log_dir):  # a scheduler accepted the job: the stage exits 0, nothing is written yet
        submitted.append(step.name)

    monkeypatch.setattr(runner, "run_step", submit)
    with pytest.raises(runner.SubmittedStepPending, match=r"'annotate_corpus' exited without writing .*manifest"):
        run(config)
    assert submitted == ["annotate_corpus"]

    with pytest.raises(runner.SubmittedStepPending, match="will not submit them again"):
        run(config)
    assert submitted == ["annotate_corpus"], "a pending step was submitted twice"

    # The jobs finish: the annotation and its manifest land where the study expects them.
    step = next(s for s in runner.plan_steps(config) if s.name == "annotate_corpus")
    real_run_step(step, config, tmp_path / "logs")
    capsys.readouterr()
    result = run(load_config(StudyConfig, MICRO, [f"output_dir={out}", "plan_only=true"]))
    assert "annotate_corpus" in result["skipped"]
    assert "annotate_corpus: complete, skipped" in capsys.readouterr().out
