"""The fit frontier's arithmetic: an arm's collapse as a function of its validation loss, and the
difference between two arms at equal validation loss, with intervals over seeds and prompts.

Every quantity is a statistic of aligned columns of shape (n_seeds, n_prompts): a per-prompt value
(a collapse) varies along a row; a per-point value that is not per prompt (a validation loss) is a
column whose rows are constant. A statistic takes the columns and averages over both axes first,
so the same function gives the point value, each seed's value (one row) and each bootstrap resample
(resampled rows and prompts).

Equal-fit difference at an anchored point A of validation loss L_A and collapse C_A:

    difference = F_plain(L_A) - C_A

where F_plain is plain SFT's frontier: its points (mean loss, mean collapse) sorted by loss and
joined by straight lines. Positive: the anchored arm collapses less than plain SFT does at the same
fit. Undefined (None) when L_A lies outside the range of plain's losses: a frontier is not
extrapolated. The interpolation is inside the statistic, so the bootstrap re-places the frontier in
every resample.

Intervals (``seed_prompt_intervals``): eval.bootstrap's hierarchical bootstrap (seeds resampled, and
one prompt resample shared by every seed, since the seeds are sampled on the same prompts) and a
Student t interval over the seed-level values; the training seed is the replication unit of both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from eval import bootstrap

Statistic = Callable[..., "float | None"]


def frontier_at(losses: Sequence[float], collapses: Sequence[float], at: float) -> float | None:
    """The frontier's collapse at validation loss ``at``: linear between the neighbouring points.

    Points of equal loss are averaged into one. None outside [min loss, max loss], or with no point.
    """
    if not len(losses):
        return None
    by_loss: dict[float, list[float]] = {}
    for loss, value in zip(losses, collapses):
        by_loss.setdefault(float(loss), []).append(float(value))
    xs = sorted(by_loss)
    ys = [sum(by_loss[x]) / len(by_loss[x]) for x in xs]
    if at < xs[0] or at > xs[-1]:
        return None
    return float(np.interp(at, xs, ys))


def mean_statistic(column: np.ndarray) -> float:
    """Mean over seeds and prompts of one column."""
    return float(np.mean(column))


def equal_fit_difference(n_plain_points: int) -> Statistic:
    """The statistic plain frontier at the anchored loss minus the anchored collapse.

    Its columns, in order: the plain points' loss columns (n_plain_points of them), the plain points'
    collapse columns (as many), the anchored point's loss column, the anchored point's collapse column.
    """

    def statistic(*columns: np.ndarray) -> float | None:
        if len(columns) != 2 * n_plain_points + 2:
            raise ValueError(
                f"equal_fit_difference: {len(columns)} columns for {n_plain_points} plain points "
                f"(expected {2 * n_plain_points + 2})"
            )
        losses = [mean_statistic(c) for c in columns[:n_plain_points]]
        collapses = [mean_statistic(c) for c in columns[n_plain_points : 2 * n_plain_points]]
        plain = frontier_at(losses, collapses, mean_statistic(columns[-2]))
        return None if plain is None else plain - mean_statistic(columns[-1])

    return statistic


def constant_column(per_seed: Sequence[float], n_prompts: int) -> np.ndarray:
    """A per-seed value (a validation loss) as a (n_seeds, n_prompts) column of constant rows."""
    return np.repeat(np.asarray(per_seed, dtype=np.float64)[:, None], n_prompts, axis=1)


def per_seed_values(columns: Sequence[np.ndarray], statistic: Statistic) -> list[float | None]:
    """The statistic on each seed's row alone (None where it is undefined for that seed)."""
    n_seeds = columns[0].shape[0]
    values = []
    for i in range(n_seeds):
        value = statistic(*(c[i : i + 1] for c in columns))
        values.append(None if value is None or not math.isfinite(value) else float(value))
    return values


def seed_prompt_intervals(
    columns: Sequence[np.ndarray], statistic: Statistic, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """The statistic's value, its hierarchical bootstrap interval and its seed t interval.

    ``hierarchical``: eval.bootstrap.hierarchical_statistic_ci's result (value, ci_low, ci_high, n_seeds,
    n_prompts, undefined_resamples). ``seed_t``: eval.bootstrap.seed_t_interval over the seeds where the
    statistic is defined (value = their mean), with ``undefined_seeds`` counting the others. Either is
    None, with ``missing`` saying why, where this eval package does not provide it.
    """
    columns = [np.asarray(c, dtype=np.float64) for c in columns]
    n_seeds, n_prompts = columns[0].shape if columns and columns[0].ndim == 2 else (0, 0)
    out: dict = {
        "value": None,
        "hierarchical": None,
        "seed_t": None,
        "per_seed": [],
        "undefined_seeds": 0,
        "n_seeds": int(n_seeds),
        "n_prompts": int(n_prompts),
        "missing": [],
    }
    if not n_seeds or not n_prompts:
        return out
    out["value"] = statistic(*columns)
    hierarchical = getattr(bootstrap, "hierarchical_statistic_ci", None)
    seed_t = getattr(bootstrap, "seed_t_interval", None)
    if hierarchical is None:
        out["missing"].append("eval.bootstrap.hierarchical_statistic_ci")
    else:
        out["hierarchical"] = hierarchical(columns, statistic, resamples, confidence, seed)
    out["per_seed"] = per_seed_values(columns, statistic)
    defined = [v for v in out["per_seed"] if v is not None]
    out["undefined_seeds"] = len(out["per_seed"]) - len(defined)
    if seed_t is None:
        out["missing"].append("eval.bootstrap.seed_t_interval")
    elif defined:
        out["seed_t"] = seed_t(defined, confidence)
    return out


def verdict(intervals: dict) -> str:
    """above / below / indistinguishable: where the anchored point lies against plain's frontier.

    "above": it collapses less than plain at equal fit (the difference's hierarchical and seed t intervals
    both exclude 0 on the positive side); "below": both exclude 0 on the negative side; otherwise
    "indistinguishable" (also when an interval is missing). "outside": no equal-fit comparison (the anchored
    loss is outside plain's range).
    """
    if intervals.get("value") is None:
        return "outside"
    bounds = [intervals.get(k) or {} for k in ("hierarchical", "seed_t")]
    lows = [b.get("ci_low") for b in bounds]
    highs = [b.get("ci_high") for b in bounds]
    if all(v is not None and v > 0 for v in lows):
        return "above"
    if all(v is not None and v < 0 for v in highs):
        return "below"
    return "indistinguishable"
