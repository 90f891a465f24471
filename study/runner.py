"""Run the whole study: annotate, pretrain both arms, SFT every arm per seed, evaluate, report.

With ``entropy_sweep`` set, the study also runs the controlled entropy sweep on the same
pretrained models: per topic subset, its own SFT set (``sweep_NAME_sft_set``), annotation,
plain and anchored SFT per seed and one evaluation per seed, all below OUTPUT_DIR/sweep/NAME
(study.sweep_report reports it). With ``fit_frontier`` set, every SFT arm is also trained at
each fit point per seed below OUTPUT_DIR/frontier and evaluated once per seed
(study.frontier_report reports it). ``main_comparison: false`` leaves the sweep and the
frontier only. What runs, and where it writes, is planned in study.plan; this module only
executes the steps and keeps their state.

Each step is one stage run as its own process (``python -m STAGE CONFIG key=value ...``,
training steps optionally under ``accelerate launch``), so a step gets a clean process,
its memory is freed, and the exact command is in its manifest. Steps talk only through
their output directories.

A step is skipped when it is complete and still current: its ``manifest.json`` exists
(stages write it last), the config fingerprint in it equals the fingerprint of the
config the study would run now, and the steps it reads from are the same runs as when
it ran (``study_state.json`` records their manifests' identities). A changed config
reruns that step and everything downstream of it; nothing else. A rerun for a changed
config or changed inputs starts from an empty output directory; a rerun after an
interruption (same config, same inputs) lets the stage resume where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stage_io.manifest import config_fingerprint, read_manifest, verify_outputs
from study.config import StudyConfig
from study.plan import Step, plan_steps, scoring_gaps, stage_overrides
from study.report import write_study_report
from study.validate import validate_plan

STATE_FILE = "study_state.json"


def check_paired_sft(steps: list[Step], seed: int, group: str = "") -> None:
    """The SFT arms of one seed (of the main comparison, or of one sweep subset: ``group``) must train on
    the same example ids for the same number of steps
    (posttrain's manifest: counts.trained_ids_sha256, counts.optimizer_steps); else the
    comparison of their collapses is not a comparison of the methods."""
    arms = {}
    for step in steps:
        if step.module == "posttrain" and step.group == group and step.seed == seed:
            counts = (read_manifest(step.output_dir) or {}).get("counts", {})
            arms[step.name] = (counts.get("trained_ids_sha256"), counts.get("optimizer_steps"), counts.get("trained"))
    if len(set(arms.values())) > 1:
        listing = "; ".join(
            f"{name}: {n} examples (ids {str(ids)[:19]}), {steps_} steps" for name, (ids, steps_, n) in arms.items()
        )
        raise RuntimeError(
            f"the SFT arms of {group or ''}seed {seed} trained on different examples or for different step counts "
            f"({listing}); set data.pair_with_anchored=true and the same training settings in both arms"
        )


def _identity(step: Step) -> str | None:
    manifest = read_manifest(step.output_dir)
    if manifest is None:
        return None
    return f"{manifest.get('config_fingerprint')}@{manifest.get('created')}"


def start_marker(step: Step, by_name: dict[str, Step]) -> dict:
    """What a step runs from: its config's fingerprint and its inputs' runs."""
    return {
        "config_fingerprint": config_fingerprint(step.load()),
        "upstream": {name: _identity(by_name[name]) for name in step.needs},
    }


def is_current(step: Step, state: dict, marker: dict) -> tuple[bool, str]:
    """Whether ``step``'s output is complete and still matches ``marker`` (its config and inputs)."""
    manifest = read_manifest(step.output_dir)
    if manifest is None:
        return False, "no manifest"
    if manifest.get("config_fingerprint") != marker["config_fingerprint"]:
        return False, "config changed"
    problems = verify_outputs(step.output_dir, manifest)
    if problems:
        return False, "outputs differ from the manifest (" + "; ".join(problems) + ")"
    recorded = state.get(step.name, {}).get("upstream")
    if recorded is None and not step.needs:
        return True, "complete (made outside the study)"  # e.g. annotation sharded over nodes first
    if recorded != marker["upstream"]:
        return False, "an input was rerun"
    return True, "complete"


def clear_stale_output(step: Step, state: dict, marker: dict) -> None:
    """Remove a step's output that was started from another config or other inputs.

    Stages resume what they find in their output directory (checkpoints, generations by
    id). That is right after an interruption, and wrong after a config change: a trainer
    would resume the old run's last checkpoint, eval would keep the old models' samples.
    """
    if step.output_dir.exists() and state.get(step.name, {}).get("started") != marker:
        print(f"[study] {step.name}: clearing {step.output_dir} (started from another config or inputs)", flush=True)
        shutil.rmtree(step.output_dir)


def step_command(step: Step, cfg: StudyConfig) -> list[str]:
    """The exact command the study runs for ``step``."""
    launcher = cfg.train_launcher if step.trains and cfg.train_launcher else [sys.executable]
    return [*launcher, "-m", step.module, step.ref.config, *step.overrides]


def _shell(command: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(part) for part in command)


def print_overrides(step: Step) -> None:
    """Say which keys of the step's stage YAML the study replaces (and their YAML values when they differ)."""
    for key, value in stage_overrides(step).items():
        print(f"[study] {step.name}: study sets {key}={value}", flush=True)


def run_step(step: Step, cfg: StudyConfig, log_dir: Path) -> None:
    """Run one stage in its own process, its output shown and kept in logs/STEP.log."""
    command = step_command(step, cfg)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{step.name}.log"
    print(f"[study] {step.name}: {' '.join(command)}", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with (
        open(log_path, "w", encoding="utf-8") as log,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            bufsize=1,
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"study step '{step.name}' failed with exit code {code}; its log: {log_path}")


class SubmittedStepPending(RuntimeError):
    """A step exited without its manifest, its work submitted to a scheduler: the study stops until it lands."""


def step_pending_message(step: Step, cfg: StudyConfig) -> str:
    return (
        f"study step '{step.name}' exited without writing {step.output_dir}/manifest.json: its work was submitted "
        "to a scheduler (e.g. annotate's executor.kind=slurm) and has not finished. Run the study again once the "
        "jobs are done; it goes on from there and will not submit them again. If they failed, rerun the step by hand "
        f"(it resubmits only unfinished tasks): {_shell(step_command(step, cfg))}"
    )


def print_arms(steps: list[Step]) -> None:
    """The evaluated arms as the study resolves them: name, model, sampling mode, collapse reference."""
    for step in steps:
        if step.module != "eval":
            continue
        for arm in step.load().arms:
            print(
                f"[study] {step.name}: arm {arm.name}: model={arm.model} mode={arm.mode} base_arm={arm.base_arm}",
                flush=True,
            )


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def run(cfg: StudyConfig) -> dict:
    """Run every step that is not complete and current; then write the study report."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    steps = plan_steps(cfg)
    validate_plan(steps)  # what would fail late, refused before any step runs
    for gap in scoring_gaps():
        print(f"[study] {gap}", flush=True)
    by_name = {s.name: s for s in steps}
    rerun: set[str] = set()
    ran, skipped = [], []
    for step in steps:
        marker = start_marker(step, by_name)
        current, why = is_current(step, state, marker)
        if why == "no manifest" and state.get(step.name, {}).get("submitted") == marker and not cfg.plan_only:
            raise SubmittedStepPending(step_pending_message(step, cfg))
        if current and not rerun.intersection(step.needs):
            print(f"[study] {step.name}: {why}, skipped", flush=True)
            skipped.append(step.name)
            continue
        print_overrides(step)
        if cfg.plan_only:
            print(f"[study] {step.name}: would run ({why}): {_shell(step_command(step, cfg))}", flush=True)
            rerun.add(step.name)
            continue
        for group in step.pair_groups:
            check_paired_sft(steps, step.seed, group)
        clear_stale_output(step, state, marker)
        state[step.name] = {"started": marker}
        _write_state(state_path, state)
        run_step(step, cfg, out / "logs")
        rerun.add(step.name)
        ran.append(step.name)
        state[step.name]["upstream"] = marker["upstream"]
        if read_manifest(step.output_dir) is None:
            # The stage handed its work to a scheduler (annotate's executor.kind=slurm): what reads its output
            # must wait for the jobs, and running the study again must not submit them twice.
            state[step.name]["submitted"] = marker
            _write_state(state_path, state)
            raise SubmittedStepPending(step_pending_message(step, cfg))
        _write_state(state_path, state)
    if cfg.plan_only:
        print_arms(steps)
        return {"ran": [], "skipped": skipped, "planned": sorted(rerun)}
    report = write_study_report(cfg, out)
    return {"ran": ran, "skipped": skipped, "report": str(report)}
