"""Collapse: how much diversity an arm lost against its base, and how two arms compare.

For a diversity metric D and per-prompt values D_a(p):

    collapse(arm) = mean_p [ D_base(p) - D_arm(p) ]        base = the arm's ``base_arm``

over the prompts both arms have (paired), with a paired bootstrap interval. Positive =
the arm is less diverse than its base. Each arm names its own base (arms[].base_arm):
plain_sft against the plain-pretrained base, anchored against the annotated-pretrained
base, or every arm against one common base; the summary records which.

A (plain, anchored) pair, on the prompts all four arms share, is summarised by
``pair_statistics``:

- **difference** = collapse(plain) - collapse(anchored), the primary figure: how much
  more diversity plain SFT lost than the anchored arm, with its paired interval. It has a
  meaning whatever the signs are.
- **ratio** = collapse(plain) / collapse(anchored) (paper: about 6 on Stories at 2.5B) and
  **gap closed** = 1 - collapse(anchored) / collapse(plain), only when both collapses are
  positive with intervals that exclude 0. Otherwise the ratio is not a number but a status
  saying why (``STATUS_TEXT``): a ratio of two collapses of which one is ~0 or negative
  reads backwards (two arms that both *gained* diversity give a large "ratio") or explodes
  (a denominator interval crossing 0 gives intervals like [-26, 20]).

Intervals are percentile bootstraps over prompts with the same resample for every column.
Pooling over seeds (``strata``): the point is the mean over seeds of each seed's mean, and
each resample draws prompts within every seed (a stratified bootstrap), so the pooled
interval reflects the spread of prompts in every seed; the status rules are the same.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from eval.bootstrap import paired_statistic_ci, percentile_interval, resample_indices

# Why a ratio is not reported; "ok" is the only status with a ratio.
STATUS_TEXT = {
    "ok": "both collapses positive, intervals exclude 0",
    "plain_not_collapsed": "plain SFT did not collapse (its collapse interval reaches 0 or below)",
    "anchored_gained": "anchored gained diversity (its collapse interval is below 0)",
    "anchored_not_distinguishable_from_0": "anchored collapse not distinguishable from 0",
    "no_prompts": "no prompt has values for all four arms",
}


def _aligned(values_by_arm: dict[str, dict[str, float | None]], arms: list[str]) -> tuple[list[str], list[np.ndarray]]:
    """Prompt ids where every arm has a finite value, and the value columns."""
    common = None
    for arm in arms:
        ids = {p for p, v in values_by_arm.get(arm, {}).items() if v is not None and not math.isnan(v)}
        common = ids if common is None else common & ids
    prompts = sorted(common or ())
    return prompts, [np.array([values_by_arm[a][p] for p in prompts], dtype=np.float64) for a in arms]


def collapse(
    values_by_arm: dict[str, dict[str, float | None]], arm: str, base: str, resamples: int, confidence: float, seed: int
) -> dict:
    """collapse(arm) = mean(D_base - D_arm) over shared prompts, with a paired interval."""
    prompts, (base_col, arm_col) = _aligned(values_by_arm, [base, arm])
    result = paired_statistic_ci([base_col - arm_col], lambda d: float(d.mean()), resamples, confidence, seed)
    return {
        "base_arm": base,
        "mean": result["value"],
        "ci_low": result["ci_low"],
        "ci_high": result["ci_high"],
        "n_prompts": len(prompts),
    }


def pair_status(plain: tuple[float, float], anchored: tuple[float, float], min_denominator: float) -> str:
    """The status of a pair from the (low, high) intervals of both collapses."""
    if plain[0] <= 0:
        return "plain_not_collapsed"
    if anchored[1] < 0:
        return "anchored_gained"
    if anchored[0] <= 0 or anchored[0] < min_denominator:
        return "anchored_not_distinguishable_from_0"
    return "ok"


def pair_statistics(
    strata: Sequence[tuple[np.ndarray, np.ndarray]],
    min_denominator: float,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """Collapses, their difference, and the ratio or the status saying why there is none.

    ``strata``: one (plain collapse per prompt, anchored collapse per prompt) pair of aligned
    columns per seed (one stratum within a seed's evaluation).
    """
    strata = [(np.asarray(p, dtype=np.float64), np.asarray(a, dtype=np.float64)) for p, a in strata if len(p)]
    if not strata:
        return {"status": "no_prompts", "reason": STATUS_TEXT["no_prompts"], "ratio": None, "n_prompts": 0}
    point_plain = float(np.mean([plain.mean() for plain, _ in strata]))
    point_anchored = float(np.mean([anchored.mean() for _, anchored in strata]))
    draws_plain, draws_anchored = _stratified_draws(strata, resamples, seed)
    plain_ci = _interval(point_plain, draws_plain, confidence)
    anchored_ci = _interval(point_anchored, draws_anchored, confidence)
    diff_ci = _interval(point_plain - point_anchored, draws_plain - draws_anchored, confidence)
    status = pair_status(plain_ci, anchored_ci, min_denominator)
    out = {
        "n_prompts": int(sum(len(plain) for plain, _ in strata)),
        "n_strata": len(strata),
        "collapse_plain": point_plain,
        "collapse_plain_ci": list(plain_ci),
        "collapse_anchored": point_anchored,
        "collapse_anchored_ci": list(anchored_ci),
        "difference": point_plain - point_anchored,
        "difference_ci": list(diff_ci),
        "status": status,
        "reason": STATUS_TEXT[status],
        "ratio": None,
        "ci_low": None,
        "ci_high": None,
        "gap_closed": None,
        "gap_closed_ci": None,
        "undefined_resamples": 0,
        "resamples": resamples,
    }
    if status == "ok":
        out.update(_ratio(point_plain, point_anchored, draws_plain, draws_anchored, min_denominator, confidence))
    return out


def _stratified_draws(
    strata: list[tuple[np.ndarray, np.ndarray]], resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap draws of the mean plain and anchored collapse over strata: prompts resampled
    within each stratum (the same prompts for both columns), stratum means averaged."""
    draws_plain = np.zeros(max(resamples, 0))
    draws_anchored = np.zeros(max(resamples, 0))
    for k, (plain, anchored) in enumerate(strata):
        if len(plain) > 1 and resamples > 0:
            idx = resample_indices(len(plain), resamples, seed + k)
            draws_plain += plain[idx].mean(axis=1)
            draws_anchored += anchored[idx].mean(axis=1)
        else:  # one prompt: no spread to resample
            draws_plain += plain.mean()
            draws_anchored += anchored.mean()
    return draws_plain / len(strata), draws_anchored / len(strata)


def _interval(point: float, draws: np.ndarray, confidence: float) -> tuple[float, float]:
    return percentile_interval(draws, confidence) if draws.size else (point, point)


def _ratio(
    point_plain: float,
    point_anchored: float,
    draws_plain: np.ndarray,
    draws_anchored: np.ndarray,
    min_denominator: float,
    confidence: float,
) -> dict:
    """The collapse ratio and the share of the gap closed, with intervals; resamples whose
    anchored collapse is at most ``min_denominator`` give no ratio and are counted."""
    usable = draws_anchored > min_denominator
    ratio = point_plain / point_anchored
    ci_low, ci_high = _interval(ratio, draws_plain[usable] / draws_anchored[usable], confidence)
    gap_closed = 1.0 - point_anchored / point_plain
    return {
        "ratio": ratio,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "gap_closed": gap_closed,
        "gap_closed_ci": list(_interval(gap_closed, 1.0 - draws_anchored / draws_plain, confidence)),
        "undefined_resamples": int((~usable).sum()),
    }


def collapse_ratio(
    values_by_arm: dict[str, dict[str, float | None]],
    plain: str,
    plain_base: str,
    anchored: str,
    anchored_base: str,
    min_denominator: float,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """``pair_statistics`` of one seed's (plain, anchored) pair, with the per-prompt collapses
    kept (``per_prompt``) so that seeds can be pooled later."""
    arms = list(dict.fromkeys([plain, plain_base, anchored, anchored_base]))
    prompts, columns = _aligned(values_by_arm, arms)
    col = dict(zip(arms, columns))
    numerator = col[plain_base] - col[plain]
    denominator = col[anchored_base] - col[anchored]
    out = {"plain_arm": plain, "plain_base": plain_base, "anchored_arm": anchored, "anchored_base": anchored_base}
    out.update(pair_statistics([(numerator, denominator)], min_denominator, resamples, confidence, seed))
    out["per_prompt"] = {
        "prompt_ids": prompts,
        "collapse_plain": numerator.tolist(),
        "collapse_anchored": denominator.tolist(),
    }
    return out


def pooled_pair_statistics(
    per_seed: Sequence[dict], min_denominator: float, resamples: int, confidence: float, seed: int
) -> dict:
    """``pair_statistics`` over seeds from each seed's ``collapse_ratio(...)["per_prompt"]``."""
    strata = [
        (np.array(s["collapse_plain"]), np.array(s["collapse_anchored"])) for s in per_seed if s and s.get("prompt_ids")
    ]
    return pair_statistics(strata, min_denominator, resamples, confidence, seed)
