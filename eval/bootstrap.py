"""Percentile bootstrap over prompts (seeded), single and paired; and over training seeds.

Prompts are the unit of resampling: samples of one prompt are not independent of each
other, prompts are (approximately). Each resample draws as many prompts as there are,
with replacement; the interval is the (alpha/2, 1 - alpha/2) percentiles of the
resampled statistic. Undefined per-prompt values (None/NaN: e.g. effective diversity
with fewer than two passing samples) are left out, and ``n`` says how many prompts count.

When the same prompts are evaluated on models trained with several seeds, the seed is the
replication unit and a prompt-only bootstrap never sees seed-to-seed variance.
``hierarchical_statistic_ci`` resamples both levels: each resample draws the seeds with
replacement and ONE prompt resample shared by every drawn seed (the prompts are the same
prompts in every seed, so they are crossed with seeds, not nested in them).
``seed_t_interval`` is the Student t interval over per-seed values beside it.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from scipy import stats as scipy_stats


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
        resampled = (statistic(*(c[idx] for c in columns)) for idx in resample_indices(n, resamples, seed))
        stats, undefined = _defined_values(resampled)
    if stats:
        low, high = percentile_interval(np.array(stats), confidence)
    elif point is not None and n == 1:
        low = high = point
    else:
        low = high = None
    return {"value": point, "ci_low": low, "ci_high": high, "n": n, "undefined_resamples": undefined}


def hierarchical_statistic_ci(
    columns: Sequence[np.ndarray],
    statistic: Callable[..., float | None],
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """A statistic of (seed, prompt) columns, with seeds and prompts resampled together.

    ``columns``: aligned arrays of shape (n_seeds, n_prompts) (row = training seed, column =
    prompt; a per-seed quantity such as a validation loss is a column with constant rows).
    Each resample draws n_seeds seed indices with replacement and one resample of the
    prompts (n_prompts indices with replacement) applied to every drawn seed, and calls
    ``statistic(*[c[seed_idx][:, prompt_idx] for c in columns])``. ``value`` is the statistic
    of the columns as they are. A resample whose statistic is None or not finite is counted
    in ``undefined_resamples`` and the interval uses the rest. One seed: only prompts are
    resampled (the interval cannot see seed variance; ``n_seeds`` says so).
    """
    arrays = [np.asarray(c, dtype=np.float64) for c in columns]
    if not arrays or arrays[0].ndim != 2:
        raise ValueError("hierarchical_statistic_ci: columns must be 2-d arrays (n_seeds, n_prompts)")
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ValueError(f"hierarchical_statistic_ci: columns are not aligned (shapes {[a.shape for a in arrays]})")
    n_seeds, n_prompts = shape
    out = {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "n_seeds": n_seeds,
        "n_prompts": n_prompts,
        "undefined_resamples": 0,
    }
    if n_seeds == 0 or n_prompts == 0:
        return out
    point = statistic(*arrays)
    out["value"] = None if point is None or not math.isfinite(point) else float(point)
    if resamples < 1 or n_seeds * n_prompts == 1:
        out["ci_low"] = out["ci_high"] = out["value"]
        return out
    draws, out["undefined_resamples"] = _defined_values(
        statistic(*resample) for resample in _seed_and_prompt_resamples(arrays, resamples, seed)
    )
    if draws:
        out["ci_low"], out["ci_high"] = percentile_interval(np.array(draws), confidence)
    return out


def _seed_and_prompt_resamples(arrays: list[np.ndarray], resamples: int, seed: int) -> Iterator[list[np.ndarray]]:
    """Each resample: the seeds drawn with replacement, and one prompt resample shared by every drawn seed."""
    n_seeds, n_prompts = arrays[0].shape
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        seed_idx = rng.integers(0, n_seeds, size=n_seeds)
        prompt_idx = rng.integers(0, n_prompts, size=n_prompts)
        yield [a[seed_idx][:, prompt_idx] for a in arrays]


def _defined_values(values: Iterable[float | None]) -> tuple[list[float], int]:
    """The finite values, and how many were None or not finite (undefined on their resample)."""
    defined, undefined = [], 0
    for value in values:
        if value is None or not math.isfinite(value):
            undefined += 1
        else:
            defined.append(value)
    return defined, undefined


def seed_t_interval(values: Sequence[float | None], confidence: float) -> dict:
    """Mean of per-seed values with a Student t interval (n - 1 degrees of freedom).

    Undefined values (None/NaN) are left out and ``n_seeds`` counts the rest; under two
    seeds there is no spread to estimate, so the bounds and ``sd`` are None.
    """
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "sd": None, "n_seeds": 0}
    mean = float(x.mean())
    if n < 2:
        return {"value": mean, "ci_low": None, "ci_high": None, "sd": None, "n_seeds": n}
    sd = float(x.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * sd / math.sqrt(n)
    return {"value": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd, "n_seeds": n}
