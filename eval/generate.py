"""Stage 1: sample every (arm, temperature, prompt, sample index) into generations.jsonl.

Work is laid out in a fixed order (arm, temperature, prompt, sample index) and cut into
fixed batches of ``sampling.batch_size`` rows within each (arm, temperature). A batch
whose rows are all in the file is skipped; a batch missing any row is regenerated
whole, with the same composition as the first time, and only its missing rows are
appended. So a resumed run writes exactly the rows an uninterrupted run would have
written (the transformers backend is deterministic for a given batch), with no
duplicates. Rows are appended and fsynced per batch.

Resuming by id is only right while an id still means the same draw. ``run.json`` in the
run directory records, per arm, the settings that decide its samples (``arm_identity``);
a run with other settings for an arm that is already recorded is refused before any
work, and a prompt whose text changed under the same id is refused here. Adding arms,
prompts, temperatures or samples per prompt, and partial runs (``sampling.limit``), only
add ids, so they resume.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from eval.backends import load_backend
from eval.config import ArmConfig, EvalConfig
from eval.jsonl_store import append_rows, dedupe, read_rows
from eval.prompt_budget import prompt_token_budget, prompts_that_fit
from eval.prompts import Prompt, load_prompts
from eval.sampling import SampleSpec, sample_batch
from eval.seeds import sample_seed
from stage_io.manifest import fingerprint_files, weight_files
from stage_io.model_paths import check_model, check_tokenizer, looks_local
from stage_io.run_identity import (
    RUN_FILE,
    Identity,
    RunIdentityError,
    check_run_identity,
    config_identity,
    read_identity,
)

logger = logging.getLogger(__name__)

GENERATIONS = "generations.jsonl"
# Sampling keys a run may resume with changed: they decide which ids exist (more prompts,
# temperatures or samples per prompt add ids; `limit` stops early) or only where and in which
# batches samples are drawn (a sample's seed and settings do not depend on them; the rows
# are bit-exact to an uninterrupted run only with the same batch size and device).
RESUMABLE_SAMPLING = (
    "samples_per_prompt",
    "temperatures",
    "limit",
    "batch_size",
    "device",
    "tensor_parallel_size",
    "gpu_memory_utilization",
)
# Sampling keys an arm's mode never reads (changing them leaves its samples as they are).
UNREAD_BY_MODE = {
    "plain": (
        "annotation_temperature",
        "annotation_top_p",
        "max_annotation_tokens",
        "no_annotation",
        "annotation_syntax",
    ),
    "anchored": ("no_annotation",),
    "no_annotation": ("annotation_temperature", "annotation_top_p", "max_annotation_tokens", "annotation_syntax"),
}
# Share of an anchored arm's annotations that may hit max_annotation_tokens before eval warns:
# above it the cap, not the model, is likely deciding the parse-failure rate.
TRUNCATION_WARN_SHARE = 0.10


def temperature_key(temperature: float) -> str:
    """How a temperature is written in ids and tables (1.0 -> "1", 0.7 -> "0.7")."""
    return f"{temperature:g}"


def sample_id(arm: str, temperature: float, prompt_id: str, sample_index: int) -> str:
    return f"{arm}|t={temperature_key(temperature)}|{prompt_id}|{sample_index}"


def plan_batches(config: EvalConfig, arm: ArmConfig, prompts: list[Prompt]) -> list[list[SampleSpec]]:
    """Every sample of one arm, in fixed batches (the same batches on every run)."""
    batches = []
    for temperature in config.sampling.temperatures:
        specs = [
            SampleSpec(
                id=sample_id(arm.name, temperature, p.id, k),
                prompt_id=p.id,
                prompt=p.text,
                sample_index=k,
                seed=sample_seed(config.sampling.seed, p.id, k),
                temperature=temperature,
            )
            for p in prompts
            for k in range(config.sampling.samples_per_prompt)
        ]
        size = config.sampling.batch_size
        batches.extend(specs[i : i + size] for i in range(0, len(specs), size))
    return batches


def open_backend(config: EvalConfig, arm: ArmConfig):
    s = config.sampling
    return load_backend(
        s.backend,
        arm.model,
        tokenizer=arm.tokenizer,
        revision=arm.revision,
        device=s.device,
        batch_size=s.batch_size,
        seed=s.seed,
        **s.engine_kwargs(),
    )


def check_arm_model(arm: ArmConfig, index: int) -> None:
    """The arm's model (and tokenizer) is loadable, checked before any library is handed it."""
    key = f"arms[{index}].model (arm '{arm.name}')"
    check_model(arm.model, key, arm.revision)
    if arm.tokenizer:
        check_tokenizer(arm.tokenizer, f"arms[{index}].tokenizer (arm '{arm.name}')")
    else:
        check_tokenizer(arm.model, key + " (its tokenizer; set the arm's tokenizer if it has none)", arm.revision)


def weights_fingerprint(model: str, revision: str | None) -> str:
    """What the arm's samples were drawn from: the sha256 of a local model's config.json and
    weight files (the same path can hold new weights), or the hub id and revision."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return f"hub:{model}@{revision or 'default'}"
    files = weight_files(path)
    key = (
        str(path.resolve()),
        tuple((name, (path / name).stat().st_size, (path / name).stat().st_mtime_ns) for name in files),
    )
    if key not in _WEIGHTS_FINGERPRINTS:
        _WEIGHTS_FINGERPRINTS[key] = fingerprint_files(path, files.values())
    return _WEIGHTS_FINGERPRINTS[key]


# Fingerprints computed in this process, by path and the files' sizes and mtimes (hashing
# large weights once per run, not once per check).
_WEIGHTS_FINGERPRINTS: dict[tuple, str] = {}


def arm_identity(config: EvalConfig, arm: ArmConfig) -> Identity:
    """What decides each of ``arm``'s samples besides its id (prompt, temperature, index):
    the model (its path and the fingerprint of its weights) and how it is prompted and run,
    and the sampling settings its mode reads.
    ``base_arm`` only pairs arms in the summary, so it is not part of it."""
    sampling = config_identity(config.sampling, RESUMABLE_SAMPLING + UNREAD_BY_MODE[arm.mode])
    return {
        **config_identity(arm, ("name", "base_arm")),
        **{f"sampling.{k}": v for k, v in sampling.items()},
        "model_weights": weights_fingerprint(arm.model, arm.revision),
    }


def check_arm_identity(config: EvalConfig, arm: ArmConfig, run_dir: Path, *, record: bool) -> None:
    """Refuse to go on with ``arm`` if its samples in ``run_dir`` were drawn with other settings.

    run.json holds one identity per arm, recorded (``record``) when the arm is sampled
    there (or found with samples but no record), so an arm added later is recorded then,
    an arm left out keeps its record, and a model path that fails to load is not recorded.
    A local model that is gone cannot be fingerprinted: scoring or reporting samples it
    drew keeps the recorded fingerprint (generating from it fails on the path check).
    """
    identity = arm_identity(config, arm)
    if looks_local(arm.model) and not Path(arm.model).expanduser().is_dir():
        saved = read_identity(run_dir / RUN_FILE, f"arm:{arm.name}") or {}
        identity["model_weights"] = saved.get("model_weights", identity["model_weights"])
    check_run_identity(
        run_dir / RUN_FILE,
        identity,
        entry=f"arm:{arm.name}",
        create=record,
        start_over=f"its samples are resumed by id, so old and new ones would mix: use a new output_dir, "
        f"give the changed arm a new name, or delete {run_dir} to start over",
    )


def check_prompt_texts(path: Path, rows: list[dict], prompts: list[Prompt]) -> None:
    """Refuse rows whose prompt id now names another text (ids are what resuming matches)."""
    texts = {p.id: p.text for p in prompts}
    changed = sorted({r["prompt_id"] for r in rows if r["prompt_id"] in texts and r["prompt"] != texts[r["prompt_id"]]})
    if changed:
        raise RunIdentityError(
            f"{path}: {len(changed)} prompt ids ({', '.join(changed[:5])}) now name other text than when their "
            "samples were drawn; samples are resumed by prompt id: give changed prompts new ids, or use a new "
            "output_dir"
        )


@dataclass
class _Progress:
    """generations.jsonl as the run goes: its rows (one per id), their ids, and the counts."""

    path: Path
    rows: list[dict]
    done: set[str]
    counts: dict
    # sampling.limit: stop once this many rows were written (None: no limit).
    limit: int | None

    def at_limit(self) -> bool:
        return self.limit is not None and self.counts["rows_written"] >= self.limit

    def append(self, rows: list[dict]) -> None:
        new = [row for row in rows if row["id"] not in self.done]
        append_rows(self.path, new)
        self.rows.extend(new)
        self.done.update(row["id"] for row in new)
        self.counts["rows_written"] += len(new)
        self.counts["batches_run"] += 1


def run_generate(config: EvalConfig, run_dir: Path) -> dict:
    """Generate what is missing; returns counts for the manifest."""
    if not config.arms:
        raise ValueError("no arms configured (arms: [...] in the config)")
    for i, arm in enumerate(config.arms):
        check_arm_model(arm, i)
    prompts, prompt_skips = load_prompts(config.prompts)
    progress = _read_progress(config, run_dir, prompts)
    progress.counts = {"prompts": len(prompts), "prompts_skipped": prompt_skips, **progress.counts}
    for arm in config.arms:
        batches = plan_batches(config, arm, prompts)
        pending = [b for b in batches if any(spec.id not in progress.done for spec in b)]
        progress.counts["batches_skipped"] += len(batches) - len(pending)
        if not pending:
            continue
        if progress.at_limit():
            progress.counts["stopped_at_limit"] = True
            break
        _generate_arm(config, arm, prompts, run_dir, progress)
        if progress.counts["stopped_at_limit"]:
            break
    counts = progress.counts
    counts["rows_total"] = len(progress.done)
    counts["annotations_truncated"] = warn_truncated_annotations(config, progress.rows)  # every row, old and new
    counts["rows_expected"] = (
        len(config.arms) * len(config.sampling.temperatures) * len(prompts) * config.sampling.samples_per_prompt
    )
    return counts


def _read_progress(config: EvalConfig, run_dir: Path, prompts: list[Prompt]) -> _Progress:
    """The rows already in generations.jsonl, checked against the prompts and the arms' recorded settings."""
    path = run_dir / GENERATIONS
    existing, torn = read_rows(path)
    existing, duplicates = dedupe(existing)
    check_prompt_texts(path, existing, prompts)
    sampled = {row["arm"] for row in existing}
    for arm in config.arms:
        if arm.name in sampled:  # recorded already, or sampled by code older than run.json: record it now
            check_arm_identity(config, arm, run_dir, record=True)
    done = {row["id"] for row in existing}
    counts = {
        "rows_present_before": len(done),
        "torn_lines_removed": torn,
        "duplicate_rows_ignored": duplicates,
        "rows_written": 0,
        "batches_skipped": 0,
        "batches_run": 0,
        "stopped_at_limit": False,
        # Per arm: prompts left out because they do not fit the engine's max_model_len (eval.prompt_budget).
        "prompts_too_long": {},
    }
    return _Progress(path, existing, done, counts, config.sampling.limit)


def _generate_arm(
    config: EvalConfig, arm: ArmConfig, prompts: list[Prompt], run_dir: Path, progress: _Progress
) -> None:
    """Load the arm's model and sample its missing batches (of the prompts that fit its context)."""
    backend = open_backend(config, arm)
    try:
        check_arm_identity(config, arm, run_dir, record=True)  # the model loads: its samples start now
        budget = prompt_token_budget(getattr(backend, "max_model_len", None), config.sampling, arm.mode)
        fitting, too_long = prompts_that_fit(prompts, arm, backend.tokenizer, budget)
        if too_long:
            progress.counts["prompts_too_long"][arm.name] = len(too_long)
            logger.warning(
                f"eval: arm '{arm.name}': {len(too_long)} prompts skipped, longer than {budget} tokens "
                f"(max_model_len {backend.max_model_len} minus generation): {', '.join(too_long[:5])}"
            )
        pending = [b for b in plan_batches(config, arm, fitting) if any(spec.id not in progress.done for spec in b)]
        for batch in tqdm(pending, desc=f"generate {arm.name}", unit="batch"):
            progress.append(sample_batch(backend, arm, config.sampling, batch))
            if progress.at_limit():
                progress.counts["stopped_at_limit"] = True
                break
    finally:
        backend.close()


def warn_truncated_annotations(config: EvalConfig, rows: list[dict]) -> dict[str, int]:
    """Per anchored arm, how many sampled annotations hit ``max_annotation_tokens`` (``rows``:
    one per id); warns when that share is large, since the cap then decides the parse
    failures, not the model."""
    anchored = {arm.name for arm in config.arms if arm.mode == "anchored"}
    rows = [row for row in rows if row["arm"] in anchored]
    totals = Counter(row["arm"] for row in rows)
    truncated = Counter(row["arm"] for row in rows if row.get("annotation_finish") == "length")
    cap = config.sampling.max_annotation_tokens
    for arm in sorted(totals):
        if truncated[arm] > TRUNCATION_WARN_SHARE * totals[arm]:
            logger.warning(
                f"eval: warning: arm '{arm}': {truncated[arm]} of {totals[arm]} annotations reached "
                f"sampling.max_annotation_tokens={cap} and count as parse failures ('truncated'). If this "
                f"model's annotations are longer than that (compare the pretraining annotations' lengths "
                f"under its tokenizer), raise sampling.max_annotation_tokens.",
            )
    return {arm: truncated[arm] for arm in sorted(totals)}
