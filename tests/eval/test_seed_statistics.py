"""The seed-level intervals: the hierarchical (seed x prompt) bootstrap and the seed t interval."""

import math

import numpy as np
import pytest

from eval.bootstrap import hierarchical_statistic_ci, paired_statistic_ci, seed_t_interval


def mean_of(x):
    return float(x.mean())


def test_seed_variance_without_prompt_variance_widens_the_hierarchical_interval():
    # Every prompt has the same value within a seed, seeds differ: only the seed level varies.
    seed_values = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    column = np.repeat(seed_values[:, None], 8, axis=1)
    hier = hierarchical_statistic_ci([column], mean_of, resamples=500, confidence=0.95, seed=0)
    assert hier["value"] == pytest.approx(2.0) and hier["n_seeds"] == 5 and hier["n_prompts"] == 8
    assert hier["ci_high"] - hier["ci_low"] > 1.5
    # Resampling prompts only (seed means pooled per prompt) sees no spread at all.
    prompt_only = paired_statistic_ci([column.mean(axis=0)], mean_of, resamples=500, confidence=0.95, seed=0)
    assert prompt_only["ci_low"] == prompt_only["ci_high"] == pytest.approx(2.0)


def test_one_prompt_resample_is_shared_by_every_seed():
    # Two seeds with identical prompt values: a shared prompt resample keeps their difference 0 in
    # every resample; independent resamples per seed would not.
    rng = np.random.default_rng(1)
    row = rng.normal(size=10)
    a = np.stack([row, row])
    b = np.stack([row + 1.0, row + 1.0])
    seen = []

    def statistic(x, y):
        seen.append(x.shape)
        assert np.allclose(x[0], x[1]) and np.allclose(y - x, 1.0)
        return float((y - x).mean())

    out = hierarchical_statistic_ci([a, b], statistic, resamples=50, confidence=0.9, seed=3)
    assert out["ci_low"] == pytest.approx(1.0) == out["ci_high"]
    assert set(seen) == {(2, 10)} and len(seen) == 51


def test_undefined_resamples_are_counted_and_left_out():
    column = np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [5.0, 6.0, 7.0]])
    out = hierarchical_statistic_ci(
        [column], lambda x: None if x[:, 0].max() > 4 else float(x.mean()), resamples=300, confidence=0.95, seed=0
    )
    assert out["value"] is None  # the unresampled columns include the seed that makes it undefined
    assert 0 < out["undefined_resamples"] < 300
    assert out["ci_high"] <= 4.0


def test_hierarchical_interval_is_seeded_and_refuses_misaligned_columns():
    rng = np.random.default_rng(0)
    column = rng.normal(size=(3, 6))
    first = hierarchical_statistic_ci([column], mean_of, 200, 0.95, seed=7)
    assert first == hierarchical_statistic_ci([column], mean_of, 200, 0.95, seed=7)
    assert first["ci_low"] <= first["value"] <= first["ci_high"]
    with pytest.raises(ValueError, match="not aligned"):
        hierarchical_statistic_ci([column, column[:, :5]], lambda a, b: 0.0, 10, 0.95, 0)


def test_seed_t_interval_matches_the_student_t_formula():
    values = [1.0, 2.0, 3.0]
    out = seed_t_interval(values, 0.95)
    # mean 2, sd 1, t(0.975, 2 dof) = 4.302653, half width 4.302653 / sqrt(3).
    half = 4.302653 / math.sqrt(3)
    assert out["value"] == pytest.approx(2.0) and out["sd"] == pytest.approx(1.0) and out["n_seeds"] == 3
    assert out["ci_low"] == pytest.approx(2.0 - half, rel=1e-5) and out["ci_high"] == pytest.approx(
        2.0 + half, rel=1e-5
    )


def test_seed_t_interval_has_no_bounds_under_two_seeds_and_skips_undefined():
    assert seed_t_interval([0.4], 0.95) == {"value": 0.4, "ci_low": None, "ci_high": None, "sd": None, "n_seeds": 1}
    assert seed_t_interval([None, float("nan")], 0.95)["value"] is None
    assert seed_t_interval([1.0, None, 3.0], 0.95)["n_seeds"] == 2
