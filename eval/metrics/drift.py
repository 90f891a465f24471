"""Annotation drift: are the annotations an anchored model samples distributed like the
annotations its pretraining corpus carried?

For every key k, each tag ``k:v`` is one observation of value v (an annotation with two
entities counts twice). With c_s(v), c_p(v) the sampled and pretraining counts over the
union V of values seen in either, and additive smoothing a (drift.smoothing):

    p_s(v) = (c_s(v) + a) / (N_s + a |V|),   p_p(v) = (c_p(v) + a) / (N_p + a |V|)
    KL(sampled || pretraining) = sum_v p_s(v) log2(p_s(v) / p_p(v))    [bits]

Smoothing keeps the KL finite when the model samples a value pretraining never had
(it still counts, with the weight a gives it). Entropies (bits) are of the raw
(unsmoothed) counts. The pseudo-key ``<keys>`` is the same comparison over which keys
annotations use at all.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from eval.metrics.entropy import entropy_of_counts
from stage_io.records import RecordSource, RecordSourceError, load_records

KEYS_PSEUDO_KEY = "<keys>"


def tag_counts(tag_lists: Iterable[Sequence[dict] | None]) -> dict[str, Counter]:
    """Per key, a Counter of values; plus ``<keys>`` counting how often each key is used."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for tags in tag_lists:
        for tag in tags or ():
            counts[tag["key"]][tag["value"]] += 1
            counts[KEYS_PSEUDO_KEY][tag["key"]] += 1
    return dict(counts)


def smoothed_kl_bits(sampled: Counter, reference: Counter, smoothing: float) -> float:
    """KL(sampled || reference) in bits with additive smoothing over the union of values."""
    support = set(sampled) | set(reference)
    if not support or sum(sampled.values()) == 0:
        return float("nan")
    if smoothing <= 0 and any(reference[v] == 0 and sampled[v] > 0 for v in support):
        return float("inf")
    n_s = sum(sampled.values()) + smoothing * len(support)
    n_r = sum(reference.values()) + smoothing * len(support)
    kl = 0.0
    for v in support:
        p = (sampled[v] + smoothing) / n_s
        q = (reference[v] + smoothing) / n_r
        if p > 0:
            kl += p * math.log2(p / q)
    return kl


def annotation_drift(sampled: dict[str, Counter], pretraining: dict[str, Counter], smoothing: float) -> dict:
    """Per key of the pretraining annotations (and ``<keys>``): entropies of both
    distributions, KL, counts. Keys the model sampled that pretraining never used are
    not given a row of their own (they would be noise such as misspelt keys); they are
    listed with their counts under ``sampled_keys_not_in_pretraining`` and already
    weigh in the ``<keys>`` KL."""
    per_key = {}
    for key in sorted(pretraining):
        s, p = sampled.get(key, Counter()), pretraining[key]
        per_key[key] = {
            "entropy_sampled": entropy_of_counts(s.values()) if s else float("nan"),
            "entropy_pretraining": entropy_of_counts(p.values()) if p else float("nan"),
            "kl_sampled_vs_pretraining": smoothed_kl_bits(s, p, smoothing) if s else float("nan"),
            "n_sampled": sum(s.values()),
            "n_pretraining": sum(p.values()),
            "distinct_sampled": len(s),
            "distinct_pretraining": len(p),
        }
    unseen = {k: sum(c.values()) for k, c in sampled.items() if k not in pretraining}
    return {"per_key": per_key, "sampled_keys_not_in_pretraining": unseen}


def load_pretraining_tags(annotate_dir: str, max_rows: int | None) -> tuple[dict[str, Counter], dict]:
    """Tag counts of the annotate stage's output (ANN/data), with what was read and skipped.

    Only chunks whose ``status`` is ``ok`` count (when the column exists); others are
    counted by status, not silently dropped.
    """
    data = Path(annotate_dir) / "data"
    if not data.exists():
        raise RecordSourceError(
            f"{data}: not found (metrics.drift.pretraining_annotations must be the annotate output dir)"
        )
    records = load_records(RecordSource(source=str(data), limit=max_rows), required_fields=("tags",))
    statuses: Counter = Counter()
    kept = []
    has_status = "status" in records.column_names
    for row in records:
        status = row["status"] if has_status else "ok"
        statuses[str(status)] += 1
        if status == "ok":
            kept.append(row["tags"])
    return tag_counts(kept), {"rows_read": len(records), "rows_by_status": dict(statuses), "source": str(data)}
