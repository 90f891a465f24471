"""Percentile bootstrap over prompts (seeded), single and paired.

Prompts are the unit of resampling: samples of one prompt are not independent of each
other, prompts are (approximately). Each resample draws as many prompts as there are,
with replacement; the interval is the (alpha/2, 1 - alpha/2) percentiles of the
resampled statistic. Undefined per-prompt values (None/NaN: e.g. effective diversity
with fewer than two passing samples) are left out, and ``n`` says how many prompts count.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


def mean_ci(values: Sequence[float | None], resamples: int, confidence: float, seed: int) -> dict:
    """Mean over prompts with a percentile bootstrap interval: {mean, ci_low, ci_high, n}."""
    x = _finite(values)
    if x.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    if x.size == 1 or resamples < 1:
        return {"mean": float(x.mean()), "ci_low": float(x.mean()), "ci_high": float(x.mean()), "n": int(x.size)}
    means = x[resample_indices(x.size, resamples, seed)].mean(axis=1)
    low, high = percentile_interval(means, confidence)
    return {"mean": float(x.mean()), "ci_low": low, "ci_high": high, "n": int(x.size)}


def percentile_interval(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(stats, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def paired_statistic_ci(
    columns: Sequence[np.ndarray],
    statistic: Callable[..., float | None],
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """A statistic of several per-prompt columns (aligned on the same prompts), with the
    same prompt resample applied to every column (a paired bootstrap).

    ``statistic`` returns None when undefined on a resample (e.g. a ratio whose
    denominator is ~0); those resamples are counted, and the interval uses the rest.
    """
    n = len(columns[0])
    point = statistic(*columns) if n else None
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0, "undefined_resamples": 0}
    stats, undefined = [], 0
    if n > 1 and resamples > 0:
        for idx in resample_indices(n, resamples, seed):
            value = statistic(*(c[idx] for c in columns))
            if value is None or not math.isfinite(value):
                undefined += 1
            else:
                stats.append(value)
    if stats:
        low, high = percentile_interval(np.array(stats), confidence)
    elif point is not None and n == 1:
        low = high = point
    else:
        low = high = None
    return {"value": point, "ci_low": low, "ci_high": high, "n": n, "undefined_resamples": undefined}
