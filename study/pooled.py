"""One (plain, anchored) pair of the main comparison pooled over seeds, from each seed's per-prompt collapses.

The training seed is the replication unit. Columns (n_seeds, n_prompts) over the prompts every seed has
give eval.collapse's pair figures twice: with the intervals of the hierarchical bootstrap (status and ratio
from them) and with those of the seed t interval (its point value is the mean of the seed-level values).
The study report renders what this returns; nothing here writes text beyond eval.collapse's status reasons.
"""

from __future__ import annotations

import numpy as np

from eval.bootstrap import seed_t_interval
from eval.collapse import STATUS_TEXT, pair_status
from study.frontier import mean_statistic, seed_prompt_intervals

KINDS = ("hierarchical", "seed_t")


def aligned_collapses(per_seed: list[dict]) -> tuple[list[str], dict[str, np.ndarray]]:
    """The prompts every seed has, and each collapse's (n_seeds, n_prompts) column over them."""
    prompts = sorted(set.intersection(*(set(s["prompt_ids"]) for s in per_seed)))
    columns = {
        name: np.array([[dict(zip(s["prompt_ids"], s[name]))[p] for p in prompts] for s in per_seed])
        for name in ("collapse_plain", "collapse_anchored")
    }
    return prompts, columns


def pooled_over_seeds(
    per_seed: list[dict], min_denominator: float, resamples: int, confidence: float, seed: int
) -> dict:
    """``{"hierarchical": entry, "seed_t": entry}``, each entry shaped like eval.collapse's pair statistics."""
    prompts, cols = aligned_collapses(per_seed)
    plain, anchored = (cols["collapse_plain"], cols["collapse_anchored"])

    def intervals(columns: list[np.ndarray], statistic) -> dict:
        return seed_prompt_intervals(columns, statistic, resamples, confidence, seed)

    def ratio(a: np.ndarray, c: np.ndarray) -> float | None:
        return None if np.mean(c) <= min_denominator else float(np.mean(a) / np.mean(c))

    figures = {
        "plain": intervals([plain], mean_statistic),
        "anchored": intervals([anchored], mean_statistic),
        "diff": intervals([plain, anchored], lambda a, c: float(np.mean(a) - np.mean(c))),
    }
    out = {}
    for kind in KINDS:
        entry = _pair_entry(figures, kind, len(prompts), min_denominator)
        if entry["status"] == "ok":
            entry.update(_ratio_entry(intervals([plain, anchored], ratio), kind, entry))
        out[kind] = entry
    return out


def _point(result: dict, kind: str) -> float | None:
    """The point value of one kind: the statistic itself (hierarchical) or the mean of the seed values (t)."""
    return result["value"] if kind == "hierarchical" else (result.get("seed_t") or {}).get("value")


def _pair_entry(figures: dict, kind: str, n_prompts: int, min_denominator: float) -> dict:
    """Both collapses and their difference with one kind's intervals, and the status they give."""
    ci = {name: ((r.get(kind) or {}).get("ci_low"), (r.get(kind) or {}).get("ci_high")) for name, r in figures.items()}
    entry = {
        "collapse_plain": _point(figures["plain"], kind),
        "collapse_plain_ci": list(ci["plain"]),
        "collapse_anchored": _point(figures["anchored"], kind),
        "collapse_anchored_ci": list(ci["anchored"]),
        "difference": _point(figures["diff"], kind),
        "difference_ci": list(ci["diff"]),
        "n_prompts": n_prompts,
    }
    if None in (*ci["plain"], *ci["anchored"]):
        missing = figures["plain"]["missing"]
        reason = "interval not available (" + ", ".join(missing) + ")" if missing else "interval not available"
        entry.update(status="no_interval", reason=reason)
    else:
        entry["status"] = pair_status(ci["plain"], ci["anchored"], min_denominator)
        entry["reason"] = STATUS_TEXT[entry["status"]]
    return entry


def _ratio_entry(result: dict, kind: str, entry: dict) -> dict:
    """The ratio with one kind's interval, and the share of plain's collapse the anchored arm closes."""
    rci = result.get(kind) or {}
    return {
        "ratio": _point(result, kind),
        "ci_low": rci.get("ci_low"),
        "ci_high": rci.get("ci_high"),
        "gap_closed": 1.0 - entry["collapse_anchored"] / entry["collapse_plain"],
        "gap_closed_ci": None,
    }


# The comparisons of the restricted value's share: plain SFT against each arm that should shift less.
SHARE_COMPARISONS = ("anchored", "anchored_no_annotation", "anchored_sft_on_plain")


def restricted_share_over_seeds(per_seed_shares: dict[str, list[float | None]], confidence: float) -> dict:
    """Each arm's share of the restricted value over seeds, and plain SFT's share minus each other arm's, per
    seed and pooled (seed t interval: the seed is the replication unit). ``per_seed_shares``: arm -> one share
    per seed (None where that seed has none)."""
    arms = {arm: seed_t_interval(shares, confidence) for arm, shares in per_seed_shares.items()}
    differences = {}
    plain = per_seed_shares.get("plain_sft")
    for other in SHARE_COMPARISONS:
        if plain is None or other not in per_seed_shares:
            continue
        per_seed = [
            None if p is None or o is None else p - o for p, o in zip(plain, per_seed_shares[other], strict=True)
        ]
        differences[other] = {"per_seed": per_seed, **seed_t_interval(per_seed, confidence)}
    return {"arms": arms, "differences": differences}
