"""Bootstrap intervals, collapse and collapse-ratio arithmetic on known inputs."""

import numpy as np
import pytest

from eval.bootstrap import mean_ci, paired_statistic_ci
from eval.collapse import STATUS_TEXT, collapse, collapse_ratio, pooled_pair_statistics


def test_bootstrap_ci_contains_the_point_estimate_and_is_seeded():
    values = list(np.random.default_rng(0).normal(3.0, 1.0, size=40))
    a = mean_ci(values, resamples=500, confidence=0.95, seed=1)
    assert a["ci_low"] < a["mean"] < a["ci_high"]
    assert a["mean"] == pytest.approx(np.mean(values))
    assert a == mean_ci(values, resamples=500, confidence=0.95, seed=1)
    assert mean_ci(values, resamples=500, confidence=0.95, seed=2) != a
    narrow = mean_ci(values, resamples=500, confidence=0.5, seed=1)
    assert a["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < a["ci_high"]


def test_bootstrap_leaves_out_undefined_values_and_says_how_many_count():
    stat = mean_ci([1.0, None, float("nan"), 3.0], resamples=100, confidence=0.9, seed=0)
    assert stat["n"] == 2 and stat["mean"] == 2.0
    assert mean_ci([None], resamples=100, confidence=0.9, seed=0)["mean"] is None


def _by_prompt(values):
    return {f"p{i}": v for i, v in enumerate(values)}


def test_collapse_is_base_minus_arm_paired_over_prompts():
    values = {"base": _by_prompt([0.9, 0.8, 0.7]), "sft": _by_prompt([0.5, 0.4, 0.4])}
    values["sft"]["p9"] = 0.0  # a prompt the base lacks is not paired
    result = collapse(values, "sft", "base", resamples=200, confidence=0.95, seed=0)
    assert result["mean"] == pytest.approx((0.4 + 0.4 + 0.3) / 3)
    assert result["n_prompts"] == 3 and result["base_arm"] == "base"
    assert result["ci_low"] <= result["mean"] <= result["ci_high"]


def test_collapse_ratio_known_inputs_with_separate_bases():
    values = {
        "base_plain": _by_prompt([1.0, 1.0, 1.0, 1.0]),
        "plain_sft": _by_prompt([0.4, 0.4, 0.4, 0.4]),  # collapse 0.6
        "base_anchored": _by_prompt([0.95, 0.95, 0.95, 0.95]),
        "anchored": _by_prompt([0.85, 0.85, 0.85, 0.85]),  # collapse 0.1
    }
    r = collapse_ratio(
        values,
        "plain_sft",
        "base_plain",
        "anchored",
        "base_anchored",
        min_denominator=1e-6,
        resamples=200,
        confidence=0.95,
        seed=0,
    )
    assert r["status"] == "ok"
    assert r["ratio"] == pytest.approx(6.0)
    assert r["gap_closed"] == pytest.approx(1 - 1 / 6)
    assert r["ci_low"] == pytest.approx(6.0) and r["ci_high"] == pytest.approx(6.0)  # no spread, no width
    assert r["plain_base"] == "base_plain" and r["anchored_base"] == "base_anchored"


def _pair(
    values, plain="plain_sft", plain_base="base", anchored="anchored", anchored_base="anchored_base", resamples=500
):
    return collapse_ratio(
        values,
        plain,
        plain_base,
        anchored,
        anchored_base,
        min_denominator=1e-6,
        resamples=resamples,
        confidence=0.95,
        seed=0,
    )


def test_both_arms_gaining_diversity_gives_no_ratio():
    # Base 0.5, plain SFT 0.6, anchored base 0.5, anchored 0.51: both arms gained diversity (negative
    # collapses), so a ratio (10) or a gap closed (0.9) would read as a success that means nothing.
    values = {
        "base": _by_prompt([0.5] * 6),
        "plain_sft": _by_prompt([0.6] * 6),
        "anchored_base": _by_prompt([0.5] * 6),
        "anchored": _by_prompt([0.51] * 6),
    }
    r = _pair(values)
    assert r["ratio"] is None and r["gap_closed"] is None
    assert r["status"] == "plain_not_collapsed"
    assert r["reason"] == STATUS_TEXT["plain_not_collapsed"]
    assert r["difference"] == pytest.approx(-0.1 + 0.01)  # the difference is always reported


def test_anchored_collapse_interval_crossing_zero_is_not_distinguishable():
    rng = np.random.default_rng(0)
    n = 24
    base = rng.uniform(1.5, 2.2, n)
    anchored_delta = rng.normal(0.0, 0.3, n)  # anchored collapse centred on 0, wide
    anchored_delta -= anchored_delta.mean() - 0.02  # mean slightly above 0
    values = {
        "base": _by_prompt(base),
        "plain_sft": _by_prompt(base - 0.8),
        "anchored_base": _by_prompt(base),
        "anchored": _by_prompt(base - anchored_delta),
    }
    r = _pair(values)
    low, high = r["collapse_anchored_ci"]
    assert low < 0 < high
    assert r["status"] == "anchored_not_distinguishable_from_0" and r["ratio"] is None
    assert r["difference"] == pytest.approx(0.8 - 0.02)
    assert r["difference_ci"][0] > 0  # plain collapsed more, with an interval that excludes 0


def test_anchored_gaining_diversity_has_its_own_status():
    values = {
        "base": _by_prompt([1.0, 0.9, 0.8, 1.1]),
        "plain_sft": _by_prompt([0.5, 0.4, 0.4, 0.5]),
        "anchored_base": _by_prompt([1.0, 0.9, 0.8, 1.1]),
        "anchored": _by_prompt([1.3, 1.2, 1.2, 1.35]),
    }
    r = _pair(values)
    assert r["status"] == "anchored_gained" and r["ratio"] is None


def test_anchored_not_collapsing_at_all_is_a_status_not_infinity():
    values = {
        "base": _by_prompt([1.0, 0.9, 0.8]),
        "plain_sft": _by_prompt([0.5, 0.5, 0.5]),
        "anchored": _by_prompt([1.0, 0.9, 0.8]),
    }
    r = _pair(values, anchored_base="base", resamples=100)
    assert r["ratio"] is None and r["status"] == "anchored_not_distinguishable_from_0"
    empty = collapse_ratio({}, "a", "b", "c", "d", 1e-6, 10, 0.95, 0)
    assert empty["status"] == "no_prompts" and empty["n_prompts"] == 0


def test_ratio_and_gap_closed_when_both_collapses_are_clearly_positive():
    rng = np.random.default_rng(1)
    base = rng.uniform(1.5, 2.2, 30)
    values = {
        "base": _by_prompt(base),
        "plain_sft": _by_prompt(base - 0.9 - rng.normal(0, 0.05, 30)),
        "anchored_base": _by_prompt(base),
        "anchored": _by_prompt(base - 0.3 - rng.normal(0, 0.05, 30)),
    }
    r = _pair(values)
    assert r["status"] == "ok"
    assert r["ci_low"] < r["ratio"] < r["ci_high"]
    assert r["ratio"] == pytest.approx(r["collapse_plain"] / r["collapse_anchored"])
    assert r["gap_closed"] == pytest.approx(1 - r["collapse_anchored"] / r["collapse_plain"])
    assert len(r["per_prompt"]["prompt_ids"]) == 30


def test_pooling_over_seeds_averages_seed_means_and_follows_the_same_rules():
    seeds = []
    for k, (cp, ca) in enumerate([(0.9, 0.2), (0.7, 0.3), (0.8, 0.1)]):
        rng = np.random.default_rng(k)
        base = rng.uniform(1.5, 2.2, 8)
        values = {
            "base": _by_prompt(base),
            "plain_sft": _by_prompt(base - cp - rng.normal(0, 0.05, 8)),
            "anchored_base": _by_prompt(base),
            "anchored": _by_prompt(base - ca - rng.normal(0, 0.05, 8)),
        }
        seeds.append(_pair(values)["per_prompt"])
    pooled = pooled_pair_statistics(seeds, 1e-6, 500, 0.95, 0)
    assert pooled["n_strata"] == 3 and pooled["n_prompts"] == 24
    assert pooled["collapse_plain"] == pytest.approx(np.mean([np.mean(s["collapse_plain"]) for s in seeds]))
    assert pooled["status"] == "ok" and pooled["ratio"] == pytest.approx(
        pooled["collapse_plain"] / pooled["collapse_anchored"]
    )
    assert pooled["collapse_plain_ci"][0] < pooled["collapse_plain"] < pooled["collapse_plain_ci"][1]
    flipped = [dict(s, collapse_plain=[-v for v in s["collapse_plain"]]) for s in seeds]
    assert pooled_pair_statistics(flipped, 1e-6, 500, 0.95, 0)["status"] == "plain_not_collapsed"


def test_paired_bootstrap_resamples_columns_together():
    x = np.arange(1.0, 21.0)
    result = paired_statistic_ci([x, 2 * x], lambda a, b: float(b.mean() / a.mean()), 300, 0.95, 0)
    assert result["value"] == result["ci_low"] == result["ci_high"] == pytest.approx(2.0)
