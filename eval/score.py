"""Stage 2: score every (arm, temperature, prompt) group of samples into scores.jsonl.

One row per group, id ``arm|t=T|prompt_id``. Groups already in the file are skipped
(``rescore=true`` starts the file over); new rows are appended per chunk of groups, so a
killed scoring run resumes where it stopped. Every metric is computed on the
responses with their annotations stripped (generations.jsonl ``response``).

Scores are cheap next to generation, so they are redone rather than refused when what
they were computed from changed: the file starts over when the scoring settings
(``scoring_identity``, recorded in run.json) differ from the ones it was scored under, and
a group whose samples grew since it was scored (a partial run resumed, more samples per
prompt) is scored again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eval.config import EvalConfig, QualityConfig, SemanticEntropyConfig
from eval.generate import GENERATIONS, temperature_key
from eval.group_row import GroupRowInput, RowSettings, group_row
from eval.jsonl_store import append_rows, dedupe, read_rows, replace_rows, write_json
from eval.metrics.embedding import classifier_partition, threshold_partition
from eval.scoring_models import ScoringModels
from stage_io.manifest import package_versions
from stage_io.run_identity import (
    RUN_FILE,
    Identity,
    compare_identity,
    config_identity,
    describe_changes,
    read_identity,
    write_identity,
)

logger = logging.getLogger(__name__)

SCORES = "scores.jsonl"
SCORING_PROVENANCE = "scoring_provenance.json"
GROUPS_PER_CHUNK = 32
# The run.json entry holding the settings scores.jsonl was scored under.
SCORING_ENTRY = "scoring"
# metrics keys that change no score: batch sizes, devices, judge engine placement, and
# drift (the report computes it from generations.jsonl).
RESUMABLE_METRICS = (
    "drift",
    "embedder.batch_size",
    "embedder.device",
    "quality.batch_size",
    "quality.judge.batch_size",
    "quality.judge.tensor_parallel_size",
    "quality.judge.gpu_memory_utilization",
    "semantic_entropy.judge.batch_size",
    "semantic_entropy.judge.tensor_parallel_size",
    "semantic_entropy.judge.gpu_memory_utilization",
)


def group_id(arm: str, temperature: float, prompt_id: str) -> str:
    return f"{arm}|t={temperature_key(temperature)}|{prompt_id}"


def diversity_metric_names(config: EvalConfig) -> list[str]:
    """Every diversity metric this config computes (higher = more diverse)."""
    names = ["pairwise_dissimilarity", "vendi", "distinct_k"]
    names += [f"distinct_{n}" for n in config.metrics.distinct_n] + ["compression_ratio"]
    if config.metrics.semantic_entropy.labels != "none":
        names.append("semantic_entropy")
    if config.metrics.semantic_entropy.annotator_secondary:
        names.append("annotator_entropy")
    if config.metrics.quality.kind != "none":
        names.append("effective_pairwise_dissimilarity")
    return names


def quality_metric_names(config: EvalConfig) -> list[str]:
    return [] if config.metrics.quality.kind == "none" else ["quality", "pass_rate"]


@dataclass
class QualityBar:
    """The quality bar in force: metrics.quality.bar, or the quantile bar once resolved."""

    # The bar a sample's quality must reach to pass.
    value: float
    # How the bar was set (recorded in the scorer description and the manifest).
    rule: dict


def absolute_bar(config: EvalConfig) -> QualityBar:
    bar = config.metrics.quality.bar
    return QualityBar(bar, {"kind": "absolute", "bar": bar})


def resolve_quantile_bar(
    config: EvalConfig, models: ScoringModels, groups: dict[str, list[dict]], existing: list[dict]
) -> QualityBar:
    """The bar at ``bar_quantile`` of the reference arm's quality scores (scale-free), or the
    absolute bar when no quantile is set.

    Scores already in scores.jsonl are reused; the reference arm's other samples are scored
    once here and kept by ``models``, so scoring its groups afterwards does not score them again.
    """
    quality_config = config.metrics.quality
    if quality_config.kind == "none" or quality_config.bar_quantile is None:
        return absolute_bar(config)
    reference = quality_config.bar_reference_arm
    scored = {row["id"]: row for row in existing}
    values: list[float] = []
    unscored: list[dict] = []
    for gid, samples in groups.items():
        if samples[0]["arm"] != reference:
            continue
        if gid in scored and scored[gid].get("quality_per_sample") is not None:
            values += [v for v in scored[gid]["quality_per_sample"] if v is not None]
        else:
            unscored += samples
    if unscored:
        values += [v for v in models.quality_of(unscored) if v is not None]
    if not values:
        raise ValueError(
            f"metrics.quality.bar_quantile: arm '{reference}' (metrics.quality.bar_reference_arm) has no "
            "scored samples to take the quantile of"
        )
    bar = float(np.quantile(values, quality_config.bar_quantile))
    logger.info(
        f"eval: quality bar = {bar:.4f}, the {quality_config.bar_quantile} quantile of {len(values)} "
        f"'{reference}' samples' quality"
    )
    rule = {
        "kind": "quantile",
        "quantile": quality_config.bar_quantile,
        "reference_arm": reference,
        "reference_samples": len(values),
        "bar": bar,
    }
    return QualityBar(bar, rule)


def describe_scoring(config: EvalConfig, bar: QualityBar) -> dict:
    """What produced the scores (recorded in every row and in scoring_provenance.json)."""
    metrics = config.metrics
    out = {
        "embedder": metrics.embedder.model,
        "distinct_k": {"classifier": metrics.distinct_k.classifier}
        if metrics.distinct_k.classifier
        else {"threshold": metrics.distinct_k.threshold},
        "quality": {**_describe_quality(metrics.quality), "bar": bar.value, "bar_rule": bar.rule},
        "semantic_entropy": _describe_labels(metrics.semantic_entropy),
    }
    if metrics.restricted_value.attribute is not None:
        out["restricted_value"] = {
            "attribute": metrics.restricted_value.attribute,
            "value": metrics.restricted_value.value,
        }
    return out


def _describe_quality(quality_config: QualityConfig) -> dict:
    quality = {"kind": quality_config.kind}
    if quality_config.kind == "proxy":
        quality.update(
            reference_model=quality_config.reference_model or "<each arm's own model>",
            note="PROXY: mean token log-likelihood minus a repetition penalty, not a judgement of quality",
        )
    elif quality_config.kind == "ngram":
        quality.update(
            corpus=quality_config.ngram.corpus,
            max_rows=quality_config.ngram.max_rows,
            note="mean per-word log-prob (nats) under an interpolated Kneser-Ney word trigram model of the corpus "
            "text minus a repetition penalty; no arm's model is involved",
        )
    elif quality_config.kind == "judge":
        quality.update(judge=quality_config.judge.model, backend=quality_config.judge.backend)
    if quality_config.kind in ("proxy", "ngram"):
        quality.update(
            degeneration_ngram=quality_config.degeneration_ngram,
            degeneration_weight=quality_config.degeneration_weight,
        )
    return quality


def _describe_labels(entropy_config: SemanticEntropyConfig) -> dict:
    labels = {
        "labels": entropy_config.labels,
        "primary": entropy_config.primary_key(),
        "estimator": entropy_config.estimator,
    }
    if entropy_config.annotator_secondary:
        labels["secondary"] = {
            "labels": "annotator",
            "annotator_dir": entropy_config.annotator_dir,
            "note": "not independent of the anchored arm",
        }
    if entropy_config.labels == "classifier":
        classifier = entropy_config.classifier
        labels["classifier"] = {
            "source": classifier.source.source,
            "label_field": classifier.label_field,
            "attribute": classifier.attribute,
        }
    if entropy_config.labels == "annotator":
        labels["annotator_dir"] = entropy_config.annotator_dir
    elif entropy_config.labels == "judge":
        labels["judge"] = entropy_config.judge.model
    return labels


def check_restricted_value(config: EvalConfig, models: ScoringModels) -> None:
    """A classifier has a closed set of labels: refuse a restricted value outside it before
    scoring (a misspelt value would read as a share of 0 in every arm)."""
    restricted = config.metrics.restricted_value
    if restricted.attribute is None or config.metrics.semantic_entropy.labels != "classifier":
        return
    known = [str(v) for v in models.labeller.describe().get("labels") or ()]
    if known and restricted.value not in known:
        raise ValueError(
            f"metrics.restricted_value.value={restricted.value!r} is not a label the {restricted.attribute} "
            f"classifier gives ({', '.join(sorted(known))})"
        )


def row_settings(config: EvalConfig, models: ScoringModels, bar: QualityBar) -> RowSettings:
    secondary = models.secondary_labeller
    return RowSettings(
        metrics=config.metrics,
        samples_per_prompt=config.sampling.samples_per_prompt,
        quality_bar=bar.value,
        label_keys=tuple(models.labeller.keys) if models.labeller is not None else (),
        secondary_label_keys=tuple(secondary.keys) if secondary is not None else (),
        scorer=describe_scoring(config, bar),
    )


def score_groups(
    config: EvalConfig, models: ScoringModels, bar: QualityBar, groups: list[tuple[str, list[dict]]]
) -> list[dict]:
    """The score rows of ``groups`` (all of one arm): every model runs once over all their samples."""
    samples = [sample for _, members in groups for sample in members]
    prompts, responses = [s["prompt"] for s in samples], [s["response"] for s in samples]
    ids = [s["id"] for s in samples]
    embeddings = models.embedder.encode(responses)
    quality = models.quality_of(samples) if config.metrics.quality.kind != "none" else None
    labels = label_failed = secondary = None
    if models.labeller is not None:
        labels = models.labeller.label(prompts, responses, ids)[0]
        label_failed = [all(v is None for v in label.values()) for label in labels]
    if models.secondary_labeller is not None:
        secondary = models.secondary_labeller.label(prompts, responses, ids)[0]
    settings = row_settings(config, models, bar)
    rows, start = [], 0
    for gid, members in groups:
        part = slice(start, start + len(members))
        start = part.stop
        group = GroupRowInput(
            group_id=gid,
            samples=members,
            embeddings=embeddings[part],
            classes=distinct_k_classes(config, models, members, embeddings[part]),
            quality=None if quality is None else quality[part],
            labels=None if labels is None else labels[part],
            label_failed=None if label_failed is None else label_failed[part],
            secondary_labels=None if secondary is None else secondary[part],
            settings=settings,
        )
        rows.append(group_row(group))
    return rows


def distinct_k_classes(config: EvalConfig, models: ScoringModels, samples: list[dict], embeddings) -> list[int]:
    """The group's distinct-k partition: by the classifier when one is set, else by embedding distance."""
    distinct_k_config = config.metrics.distinct_k
    if distinct_k_config.classifier:
        return classifier_partition([s["response"] for s in samples], models.same_class)
    return threshold_partition(embeddings, distinct_k_config.threshold)


def load_generation_groups(run_dir: Path) -> tuple[dict[str, list[dict]], dict]:
    """generations.jsonl grouped by (arm, temperature, prompt), samples in index order."""
    rows, torn = read_rows(run_dir / GENERATIONS, repair=False)
    rows, duplicates = dedupe(rows)
    if not rows:
        raise ValueError(f"{run_dir / GENERATIONS}: no generations (run the generate stage first)")
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[group_id(row["arm"], row["temperature"], row["prompt_id"])].append(row)
    for members in groups.values():
        members.sort(key=lambda r: r["sample_index"])
    return dict(groups), {
        "generation_rows": len(rows),
        "torn_generation_lines": torn,
        "duplicate_generation_rows": duplicates,
    }


def scoring_identity(config: EvalConfig) -> Identity:
    """What a score row depends on besides its group's samples: the metric settings, and
    samples_per_prompt (each row says whether its group is complete)."""
    metrics = config_identity(config.metrics, RESUMABLE_METRICS)
    return {
        **{f"metrics.{k}": v for k, v in metrics.items()},
        "sampling.samples_per_prompt": config.sampling.samples_per_prompt,
    }


def scoring_changes(config: EvalConfig, run_dir: Path) -> str | None:
    """Why scores.jsonl must start over under this config's scoring settings, or None."""
    if not (run_dir / SCORES).exists():
        return None
    saved = read_identity(run_dir / RUN_FILE, SCORING_ENTRY)
    if saved is None:
        return "no scoring settings are recorded for it (scored by older code)"
    changes = describe_changes(saved, scoring_identity(config))
    return f"scoring settings changed: {changes}" if changes else None


def check_scores_current(config: EvalConfig, run_dir: Path) -> None:
    """Before a report without the score stage: refuse scores made under other scoring
    settings (scores from before run.json recorded them are taken as they are)."""
    saved = read_identity(run_dir / RUN_FILE, SCORING_ENTRY)
    if saved is not None:
        compare_identity(
            str(run_dir / SCORES),
            saved,
            scoring_identity(config),
            start_over="run the score stage too (stages=[score,report]) to rescore",
        )


def run_score(config: EvalConfig, run_dir: Path) -> dict:
    groups, counts = load_generation_groups(run_dir)
    models = ScoringModels(config)
    try:
        check_restricted_value(config, models)  # before scores.jsonl may be started over
        existing = _current_scores(config, run_dir, groups, counts)
        pending = _pending_groups(config, groups, existing, counts)
        bar = resolve_quantile_bar(config, models, groups, existing)  # reads scores.jsonl; scores only what it lacks
        counts["quality_bar"] = bar.rule
        for chunk in tqdm(_chunks_by_arm(pending, groups), desc="score", unit="chunk"):
            rows = score_groups(config, models, bar, [(gid, groups[gid]) for gid in chunk])
            counts["groups_scored"] += append_rows(run_dir / SCORES, rows)
        if pending:
            provenance = {**describe_scoring(config, bar), **models.details(), "versions": package_versions()}
            write_json(run_dir / SCORING_PROVENANCE, provenance)
        return counts
    finally:
        models.close()


def _current_scores(config: EvalConfig, run_dir: Path, groups: dict[str, list[dict]], counts: dict) -> list[dict]:
    """The rows of scores.jsonl still valid under this config: the file started over when the
    scoring settings changed (or rescore=true), rows of groups that grew since dropped."""
    path = run_dir / SCORES
    why = "rescore=true" if config.rescore and path.exists() else scoring_changes(config, run_dir)
    if why is not None:
        logger.info(f"eval: starting {path} over: {why}")
        path.unlink()
    write_identity(run_dir / RUN_FILE, scoring_identity(config), SCORING_ENTRY)
    existing, torn = read_rows(path)
    existing, duplicates = dedupe(existing)
    grown = {row["id"] for row in existing if row["id"] in groups and row["n_samples"] != len(groups[row["id"]])}
    if grown:  # scored before all its samples were there: drop the row, score the group again
        existing = [row for row in existing if row["id"] not in grown]
        replace_rows(path, existing)
    counts.update(started_over_because=why, groups_grown_since_scored=len(grown))
    counts.update(torn_score_lines_removed=torn, duplicate_score_rows_ignored=duplicates)
    return existing


def _pending_groups(config: EvalConfig, groups: dict[str, list[dict]], existing: list[dict], counts: dict) -> list[str]:
    """The ids of the groups left to score, by arm (in config order), temperature and id; groups
    of arms the config does not name are counted and skipped."""
    done = {row["id"] for row in existing}
    arm_order = {arm.name: i for i, arm in enumerate(config.arms)}
    unknown = sorted({samples[0]["arm"] for samples in groups.values()} - set(arm_order))
    pending = [gid for gid in groups if gid not in done and groups[gid][0]["arm"] in arm_order]
    # Group by arm so a per-arm quality model loads once.
    pending.sort(key=lambda gid: (arm_order[groups[gid][0]["arm"]], groups[gid][0]["temperature"], gid))
    counts.update(
        groups_total=len(groups),
        groups_already_scored=len(done),
        groups_scored=0,
        groups_skipped_unknown_arm=sum(1 for samples in groups.values() if samples[0]["arm"] in unknown),
        unknown_arms=unknown,
        incomplete_groups=sum(1 for samples in groups.values() if len(samples) != config.sampling.samples_per_prompt),
    )
    return pending


def _chunks_by_arm(pending: list[str], groups: dict[str, list[dict]]) -> list[list[str]]:
    """``pending`` cut into chunks of at most GROUPS_PER_CHUNK groups, each of one arm."""
    chunks: list[list[str]] = []
    for gid in pending:
        arm = groups[gid][0]["arm"]
        if not chunks or len(chunks[-1]) >= GROUPS_PER_CHUNK or groups[chunks[-1][0]][0]["arm"] != arm:
            chunks.append([])
        chunks[-1].append(gid)
    return chunks
