"""One scores.jsonl row from a group's samples and what the scoring models said about them.

Pure: no model is loaded or asked here (``eval.scoring_models`` does that), so a row is a
function of its ``GroupRowInput`` alone. Diversity metrics, quality and its pass rate,
semantic entropy, the restricted-value share, the split by annotation status and the
parse and stop counts; a NaN metric is written as None.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from eval.config import MetricsConfig
from eval.metrics.embedding import distinct_k, mean_pairwise_dissimilarity, vendi_score
from eval.metrics.entropy import semantic_entropy
from eval.metrics.lexical import compression_ratio, distinct_n

# Labels per sample: attribute -> label (None: the sample has no label for it).
Labels = list[dict[str, str | None]]


@dataclass(frozen=True)
class RowSettings:
    """What every row of a scoring run shares: the metric settings and the run's state."""

    # The metric settings (distinct-n orders, semantic entropy estimator, restricted value ...).
    metrics: MetricsConfig
    # sampling.samples_per_prompt: a group with fewer samples is marked incomplete.
    samples_per_prompt: int
    # The quality bar in force (the absolute one or the resolved quantile).
    quality_bar: float
    # The primary labeller's attribute keys (empty: no labeller).
    label_keys: tuple[str, ...]
    # The secondary (annotator) labeller's keys (empty: none).
    secondary_label_keys: tuple[str, ...]
    # What produced the scores, recorded in every row.
    scorer: dict


@dataclass(frozen=True)
class GroupRowInput:
    """One group's samples and the models' outputs on them, aligned with the samples."""

    # The group's id, arm|t=T|prompt_id.
    group_id: str
    # The group's generations.jsonl rows, in sample index order.
    samples: list[dict]
    # One sentence embedding per sample (rows of a 2-d array).
    embeddings: np.ndarray
    # The distinct-k equivalence class of each sample.
    classes: list[int]
    # Quality per sample (None: not scored or unparsed); None when quality is off.
    quality: list[float | None] | None
    # Primary attribute labels per sample; None when semantic entropy is off.
    labels: Labels | None
    # Per sample: whether the labeller gave it no label at all; None when semantic entropy is off.
    label_failed: list[bool] | None
    # The annotator's labels per sample beside an independent labeller; None when off.
    secondary_labels: Labels | None
    settings: RowSettings


def group_row(group: GroupRowInput) -> dict:
    """The scores.jsonl row of one group."""
    first = group.samples[0]
    row = {
        "id": group.group_id,
        "arm": first["arm"],
        "mode": first["mode"],
        "temperature": first["temperature"],
        "prompt_id": first["prompt_id"],
        "n_samples": len(group.samples),
        "complete": len(group.samples) == group.settings.samples_per_prompt,
        "distinct_k_classes": group.classes,
    }
    metrics = diversity_metrics(group)
    metrics.update(_quality_part(group, row))
    metrics.update(_entropy_part(group, row))
    restricted = restricted_flags(group.settings.metrics, group.labels)
    if restricted is not None:
        judged = [flag for flag in restricted if flag is not None]
        metrics["restricted_share"] = sum(judged) / len(judged) if judged else float("nan")
        row["restricted_per_sample"] = restricted
    if first["mode"] == "anchored":
        row["by_annotation_status"] = by_annotation_status(group, restricted)
    row.update(sample_counts(group.samples))
    row["metrics"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    row["scorer"] = group.settings.scorer
    return row


def diversity_metrics(group: GroupRowInput) -> dict[str, float]:
    """Embedding and lexical diversity of the group's responses."""
    texts = [sample["response"] for sample in group.samples]
    metrics = {
        "pairwise_dissimilarity": mean_pairwise_dissimilarity(group.embeddings),
        "vendi": vendi_score(group.embeddings),
        "distinct_k": float(distinct_k(group.classes)),
    }
    for n in group.settings.metrics.distinct_n:
        metrics[f"distinct_{n}"] = distinct_n(texts, n)
    metrics["compression_ratio"] = compression_ratio(texts)
    return metrics


def _quality_part(group: GroupRowInput, row: dict) -> dict[str, float]:
    """Mean quality, pass rate and the diversity among passing samples; per-sample values go in ``row``."""
    quality = group.quality
    if quality is None:
        return {}
    passes = [value is not None and value >= group.settings.quality_bar for value in quality]
    finite = [value for value in quality if value is not None]
    passing = group.embeddings[np.array(passes, dtype=bool)] if passes else group.embeddings[:0]
    row.update(quality_per_sample=quality, passes=passes, quality_failures=sum(v is None for v in quality))
    return {
        "quality": sum(finite) / len(finite) if finite else float("nan"),
        "pass_rate": sum(passes) / len(passes),
        "effective_pairwise_dissimilarity": mean_pairwise_dissimilarity(passing),
    }


def _entropy_part(group: GroupRowInput, row: dict) -> dict[str, float]:
    """Semantic entropy of the primary labels and the annotator's; their details go in ``row``."""
    settings, metrics = group.settings, {}
    estimator = settings.metrics.semantic_entropy.estimator
    if group.labels is not None:
        entropy = semantic_entropy(group.labels, list(settings.label_keys), estimator)
        metrics["semantic_entropy"] = headline_entropy(settings.metrics, entropy)
        row["semantic"] = {
            "per_key": entropy["per_key"],
            "coverage": entropy["coverage"],
            "labels": group.labels,
            "label_failures": int(sum(group.label_failed)),
        }
    if group.secondary_labels is not None:
        entropy = semantic_entropy(group.secondary_labels, list(settings.secondary_label_keys), estimator)
        metrics["annotator_entropy"] = entropy["mean"]
        row["annotator_semantic"] = {"per_key": entropy["per_key"], "coverage": entropy["coverage"]}
    return metrics


def headline_entropy(metrics: MetricsConfig, entropy: dict) -> float:
    """The primary key's entropy, or the mean over keys when no primary key is set."""
    primary = metrics.semantic_entropy.primary_key()
    return entropy["per_key"][primary] if primary else entropy["mean"]


def restricted_flags(metrics: MetricsConfig, labels: Labels | None) -> list[bool | None] | None:
    """Per sample: whether its judged label is the restricted value (None: not labelled)."""
    restricted = metrics.restricted_value
    if labels is None or restricted.attribute is None:
        return None
    return [
        None if label.get(restricted.attribute) is None else label[restricted.attribute] == restricted.value
        for label in labels
    ]


def by_annotation_status(group: GroupRowInput, restricted: list[bool | None] | None) -> dict:
    """The group's samples split by whether their annotation parsed: per part the sample
    count, diversity within the part (fewer samples: plug-in entropy reads lower), the
    restricted-value hits and the quality sums, for the summary to pool over prompts."""
    settings = group.settings
    out = {}
    for status, parsed in (("parsed", True), ("failed", False)):
        idx = [i for i, sample in enumerate(group.samples) if bool(sample.get("parse_ok")) == parsed]
        part: dict = {
            "n_samples": len(idx),
            "pairwise_dissimilarity": _finite_or_none(mean_pairwise_dissimilarity(group.embeddings[idx])),
        }
        if group.labels is not None:
            entropy = None
            if idx:
                labels = [group.labels[i] for i in idx]
                result = semantic_entropy(
                    labels, list(settings.label_keys), settings.metrics.semantic_entropy.estimator
                )
                entropy = _finite_or_none(headline_entropy(settings.metrics, result))
            part["semantic_entropy"] = entropy
        if restricted is not None:
            flags = [restricted[i] for i in idx if restricted[i] is not None]
            part.update(restricted_hits=int(sum(flags)), restricted_judged=len(flags))
        if group.quality is not None:
            values = [group.quality[i] for i in idx if group.quality[i] is not None]
            part.update(quality_sum=float(sum(values)), quality_n=len(values))
        out[status] = part
    return out


def sample_counts(samples: list[dict]) -> dict:
    """Parse outcomes (anchored arms), stray inner annotations, empty responses and length stops."""
    parse_expected = samples[0]["mode"] == "anchored"
    reasons = Counter(parse_error_category(s.get("parse_error")) for s in samples) if parse_expected else Counter()
    return {
        "parse": {
            "expected": parse_expected,
            "ok": sum(1 for s in samples if s.get("parse_ok") is True),
            "failed": sum(1 for s in samples if s.get("parse_ok") is False),
            "by_reason": {k: v for k, v in reasons.items() if k != "ok"},
            # Annotations sampled under the syntax constraint, and those of them where the model put
            # most of its probability outside the syntax at some step (it would likely have left it).
            "syntax_constrained": sum(1 for s in samples if s.get("annotation_mass_outside_syntax") is not None),
            "mostly_outside_syntax": sum(1 for s in samples if (s.get("annotation_mass_outside_syntax") or 0) > 0.5),
        },
        "inner_annotations": sum(int(s.get("inner_annotations") or 0) for s in samples),
        "empty_responses": sum(1 for s in samples if not s["response"].strip()),
        "length_stops": sum(1 for s in samples if s.get("finish_reason") == "length"),
    }


def parse_error_category(error: str | None) -> str:
    """A short bucket for a parse error message (the full message stays in generations.jsonl)."""
    if error is None:
        return "ok"
    if error.startswith("annotation truncated"):
        return "truncated"
    if "ended its turn inside" in error:
        return "ended_inside_annotation"
    if error.startswith("no annotation at the start"):
        return "no_annotation"
    if error.startswith("no <|/ann|>"):
        return "no_close_delimiter"
    return "malformed_tags"


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
