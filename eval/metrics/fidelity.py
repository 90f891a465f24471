"""Why an anchored arm kept its diversity or lost it: annotation preservation and fidelity.

Anchored SFT should leave p(annotation | prompt) as pretraining left it (masking), and
the response should follow its annotation. Two figures split the two failure modes:

**Preservation** (per anchored arm): the values of ``annotation_key`` (embedded: topic) in
the arm's sampled annotations against the same values sampled by a reference arm (its base
when that base samples annotations: the anchored base before SFT):

- ``value_entropy``: entropy (bits, plug-in) of the values over the samples whose
  annotation has the key; ``mapped_entropy``: of the judge labels those values stand for
  (see the map below) over the samples whose value is known;
- ``js_divergence``: Jensen-Shannon divergence (bits, 0 to 1) between the arm's and the
  reference's value distributions: JS(P, Q) = KL(P || M)/2 + KL(Q || M)/2, M = (P + Q)/2;
- ``share_value_in_pretraining``: share of ALL the arm's samples (unparsed ones included)
  whose annotation carries a value of the key that occurs in the pretraining annotations.

**Fidelity**: among samples whose annotation value is known, the share whose response the
judge labels with the label that value stands for; ``chance`` = sum_l P_ann(l) P_judged(l)
over the same samples, the agreement expected if responses ignored their annotations.

**The value map**: an annotation value stands for the judge label most of its pretraining
chunks carry (``label_column`` of the annotate output, e.g. the gold BBC section kept as
``doc_topic``); its ``purity`` is that majority's share.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable, Sequence

from eval.metrics.entropy import entropy_of_counts


def value_label_map(rows: Iterable[tuple[Sequence[dict] | None, str | None]], key: str) -> tuple[dict[str, str], dict]:
    """From (tags, gold label) per pretraining chunk: value -> majority label, and stats."""
    by_value: dict[str, Counter] = defaultdict(Counter)
    for tags, label in rows:
        if label is None:
            continue
        for tag in tags or ():
            if tag["key"] == key:
                by_value[tag["value"]][str(label)] += 1
    mapping, agree, total = {}, 0, 0
    for value, counts in by_value.items():
        label, n = counts.most_common(1)[0]
        mapping[value] = label
        agree += n
        total += sum(counts.values())
    return mapping, {"values": len(mapping), "purity": agree / total if total else None, "tagged_chunks": total}


def js_divergence_bits(p: Counter, q: Counter) -> float:
    """Jensen-Shannon divergence in bits of two count distributions (NaN if one is empty)."""
    np_, nq = sum(p.values()), sum(q.values())
    if np_ == 0 or nq == 0:
        return float("nan")
    js = 0.0
    for v in set(p) | set(q):
        a, b = p[v] / np_, q[v] / nq
        m = (a + b) / 2
        if a > 0:
            js += 0.5 * a * math.log2(a / m)
        if b > 0:
            js += 0.5 * b * math.log2(b / m)
    return max(js, 0.0)


def annotation_values(tag_lists: Sequence[Sequence[dict] | None], key: str) -> list[str | None]:
    """Each sample's first value of ``key`` (None: unparsed, or no such tag)."""
    out = []
    for tags in tag_lists:
        values = [t["value"] for t in tags or () if t["key"] == key]
        out.append(values[0] if values else None)
    return out


def preservation(
    values: Sequence[str | None], reference: Sequence[str | None] | None, known: set[str], mapping: dict[str, str]
) -> dict:
    counts = Counter(v for v in values if v is not None)
    mapped = Counter(mapping[v] for v in values if v in mapping)
    out = {
        "n_samples": len(values),
        "with_value": sum(counts.values()),
        "share_value_in_pretraining": sum(1 for v in values if v in known) / len(values) if values else None,
        "value_entropy": entropy_of_counts(counts.values()) if counts else None,
        "distinct_values": len(counts),
        "mapped_entropy": entropy_of_counts(mapped.values()) if mapped else None,
        "mapped_distribution": dict(sorted(mapped.items())),
    }
    if reference is not None:
        ref_counts = Counter(v for v in reference if v is not None)
        ref_mapped = Counter(mapping[v] for v in reference if v in mapping)
        js = js_divergence_bits(counts, ref_counts)
        out.update(
            reference_value_entropy=entropy_of_counts(ref_counts.values()) if ref_counts else None,
            reference_mapped_entropy=entropy_of_counts(ref_mapped.values()) if ref_mapped else None,
            js_divergence=None if math.isnan(js) else js,
            mapped_js_divergence=None if not mapped or not ref_mapped else js_divergence_bits(mapped, ref_mapped),
        )
    return out


def fidelity(annotated: Sequence[str | None], judged: Sequence[str | None]) -> dict:
    """Agreement of the label each annotation asked for with the judge's label of the response."""
    pairs = [(a, j) for a, j in zip(annotated, judged) if a is not None and j is not None]
    if not pairs:
        return {"n": 0, "fidelity": None, "chance": None}
    hits = sum(a == j for a, j in pairs)
    n = len(pairs)
    p_ann, p_judged = Counter(a for a, _ in pairs), Counter(j for _, j in pairs)
    chance = sum(p_ann[label] * p_judged[label] for label in p_ann) / (n * n)
    return {"n": n, "fidelity": hits / n, "chance": chance}
