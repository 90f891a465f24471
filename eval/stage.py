"""``run(config)``: the eval stage's stages in order, then manifest.json.

Every stage reads what the previous one left in the run directory, so each can be
rerun alone (``stages=[score]``) and each resumes by id. ``run.json`` in the run
directory says what those ids were made under: each arm's sampling settings (a change
is refused before any work, ``eval.generate.check_arm_identity``) and the scoring
settings (a change starts scores.jsonl over, ``eval.score.run_score``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from eval.annotation_budget import resolve_max_annotation_tokens
from eval.capabilities import CAPABILITIES, load_tasks, run_capabilities
from eval.config import EvalConfig
from eval.generate import GENERATIONS, check_arm_identity, run_generate
from eval.jsonl_store import read_rows
from eval.metrics.ngram import corpus_files
from eval.report import REPORT, run_report
from eval.score import SCORES, check_scores_current, run_score
from eval.summary import SUMMARY
from eval.tracking import check_trackers, log_results
from stage_io.manifest import write_manifest
from stage_io.model_paths import check_model
from stage_io.run_lock import hold_lock

logger = logging.getLogger(__name__)


def _local_inputs(config: EvalConfig) -> dict[str, str]:
    inputs = {"prompts": config.prompts.source.source}
    for arm in config.arms:
        inputs[f"arm:{arm.name}"] = arm.model
    metrics = config.metrics
    if metrics.semantic_entropy.labels == "annotator" and metrics.semantic_entropy.annotator_dir:
        inputs["annotator"] = metrics.semantic_entropy.annotator_dir
    if metrics.drift.pretraining_annotations:
        inputs["pretraining_annotations"] = metrics.drift.pretraining_annotations
    if metrics.quality.kind == "proxy" and metrics.quality.reference_model:
        inputs["quality_reference_model"] = metrics.quality.reference_model
    if metrics.quality.kind == "ngram":
        inputs["quality_ngram_corpus"] = metrics.quality.ngram.corpus
    if "capabilities" in config.stages:  # local lm-eval task directories (their YAMLs and data)
        for i, path in enumerate(config.capabilities.include_path):
            inputs[f"capability_tasks_{i}"] = path
    return inputs


def run(config: EvalConfig) -> Path:
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(max(1, config.num_threads))
    # One writer per run directory; numpy/sklearn thread limits too.
    with hold_lock(config.output_dir, "eval"), threadpool_limits(limits=max(1, config.num_threads)):
        return _run(config)


def _run(configured: EvalConfig) -> Path:
    # Data-derived settings resolved once, here; the manifest keeps the configured values (the study
    # compares its fingerprint) and records how each was derived.
    config, annotation_cap = resolve_max_annotation_tokens(configured)
    check_trackers(config.report_to)  # before any work: the results go to them at the end
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for arm in config.arms:  # every stage reads the samples: refuse any drawn with other settings
        check_arm_identity(config, arm, run_dir, record=False)
    metrics = config.metrics
    if "score" in config.stages and metrics.quality.kind == "proxy" and metrics.quality.reference_model:
        check_model(metrics.quality.reference_model, "metrics.quality.reference_model")
    if "score" in config.stages and metrics.quality.kind == "ngram":  # before any sample is drawn
        corpus_files(metrics.quality.ngram.corpus)
    if "report" in config.stages and "score" not in config.stages:
        check_scores_current(config, run_dir)
    # lm-eval tasks are resolved and their data loaded before any model: a bad task fails here.
    capability_tasks = load_tasks(config.capabilities) if "capabilities" in config.stages else None
    counts: dict = {}
    for stage in config.stages:
        if stage == "generate":
            counts["generate"] = run_generate(config, run_dir)
        elif stage == "score":
            counts["score"] = run_score(config, run_dir)
        elif stage == "capabilities":
            counts["capabilities"] = run_capabilities(config, run_dir, capability_tasks)
        elif stage == "report":
            counts["report"] = run_report(config, run_dir)
        logger.info(f"eval: {stage} done: {counts[stage]}")
    gen_rows, _ = read_rows(run_dir / GENERATIONS, repair=False)
    score_rows, _ = read_rows(run_dir / SCORES, repair=False)
    counts["files"] = {
        GENERATIONS: len(gen_rows),
        SCORES: len(score_rows),
        SUMMARY: (run_dir / SUMMARY).exists(),
        REPORT: (run_dir / REPORT).exists(),
        CAPABILITIES: (run_dir / CAPABILITIES).exists(),
    }
    counts["tracking"] = log_results(config, run_dir)
    write_manifest(
        run_dir,
        stage="eval",
        config=configured,
        inputs=_local_inputs(config),
        counts=counts,
        extra={"stages_run": list(config.stages), "max_annotation_tokens": annotation_cap},
        outputs={name: name for name in (GENERATIONS, SCORES, SUMMARY) if (run_dir / name).is_file()},
    )
    return run_dir
