"""The fit frontier: its plan, its arithmetic on synthetic columns, and its report on a synthetic run dir.

The intervals come from eval.bootstrap's interface, used as it is when the package has it:

- ``hierarchical_statistic_ci(columns, statistic, resamples, confidence, seed)``: columns are aligned
  arrays of shape (n_seeds, n_prompts); each resample draws n_seeds seed indices with replacement and ONE
  prompt resample shared by all seeds, and calls ``statistic(*[c[seed_idx][:, prompt_idx] for c in columns])``
  (a float or None); returns {"value", "ci_low", "ci_high", "n_seeds", "n_prompts", "undefined_resamples"}.
- ``seed_t_interval(values, confidence)``: {"value" (mean), "ci_low", "ci_high", "sd", "n_seeds"}, Student t
  with n-1 degrees of freedom, None bounds with fewer than 2 values.

Where the package does not have them yet, the ``interface`` fixture puts in the reference below, which
follows that description; the assertions hold for any implementation of it.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from study_fixtures import write_sft_manifest

from eval import bootstrap
from stage_io.config import ConfigError, load_config
from study import StudyConfig, plan_steps
from study.frontier import (
    equal_fit_difference,
    frontier_at,
    per_seed_values,
    seed_prompt_intervals,
    verdict,
)
from study.frontier_report import write_frontier
from study.report import pooled_over_seeds
from study.runner import check_paired_sft

REPO = Path(__file__).resolve().parents[2]
MICRO = REPO / "configs" / "study" / "micro.yaml"
FRONTIER = (
    "fit_frontier={points: [{name: lr_low, overrides: [training.learning_rate=1e-5]}, "
    "{name: lr_high, overrides: [training.learning_rate=1e-3]}]}"
)


def _reference_hierarchical(columns, statistic, resamples, confidence, seed):
    n_seeds, n_prompts = columns[0].shape
    rng = np.random.default_rng(seed)
    stats, undefined = [], 0
    for _ in range(resamples):
        s_idx, p_idx = rng.integers(0, n_seeds, n_seeds), rng.integers(0, n_prompts, n_prompts)
        value = statistic(*[c[s_idx][:, p_idx] for c in columns])
        if value is None or not math.isfinite(value):
            undefined += 1
        else:
            stats.append(value)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(stats, [100 * alpha, 100 * (1 - alpha)]) if stats else (None, None)
    return {
        "value": statistic(*columns),
        "ci_low": low,
        "ci_high": high,
        "n_seeds": n_seeds,
        "n_prompts": n_prompts,
        "undefined_resamples": undefined,
    }


def _reference_seed_t(values, confidence):
    from scipy.stats import t

    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return {"value": mean, "ci_low": None, "ci_high": None, "sd": None, "n_seeds": n}
    sd = float(np.std(values, ddof=1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"value": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd, "n_seeds": n}


@pytest.fixture
def interface(monkeypatch):
    monkeypatch.setattr(
        bootstrap,
        "hierarchical_statistic_ci",
        getattr(bootstrap, "hierarchical_statistic_ci", _reference_hierarchical),
        raising=False,
    )
    monkeypatch.setattr(
        bootstrap, "seed_t_interval", getattr(bootstrap, "seed_t_interval", _reference_seed_t), raising=False
    )


def frontier_config(out: Path, *overrides: str) -> StudyConfig:
    return load_config(StudyConfig, MICRO, [f"output_dir={out}", FRONTIER, *overrides])


# Plain SFT's frontier: collapse falls as validation loss rises (less fit, less collapse).
PLAIN = {"lr_low": (3.0, 0.2), "lr_mid": (2.0, 0.6), "lr_high": (1.0, 1.0), "lora": (2.5, 0.4)}


def test_frontier_interpolates_between_points_and_never_extrapolates():
    losses, collapses = [3.0, 1.0, 2.0], [0.2, 1.0, 0.6]
    assert frontier_at(losses, collapses, 1.5) == pytest.approx(0.8)
    assert frontier_at(losses, collapses, 3.0) == pytest.approx(0.2)
    assert frontier_at(losses, collapses, 0.99) is None and frontier_at(losses, collapses, 3.01) is None
    # Two points of one loss are one point: their mean.
    assert frontier_at([1.0, 1.0, 2.0], [0.4, 0.8, 0.0], 1.5) == pytest.approx(0.3)
    assert frontier_at([], [], 1.0) is None


def synthetic_columns(
    anchored_loss: float, anchored_collapse: float, noise: float, n_seeds: int = 3, n_prompts: int = 6
):
    """Plain points and one anchored point; the per-prompt noise sums to 0 in every row, so means are exact."""
    rng = np.random.default_rng(0)

    def collapse_column(mean):
        raw = rng.normal(0, noise, size=(n_seeds, n_prompts))
        return mean + raw - raw.mean(axis=1, keepdims=True)

    def loss_column(loss):
        return np.full((n_seeds, n_prompts), loss)

    points = list(PLAIN.values())
    return (
        [loss_column(loss) for loss, _ in points]
        + [collapse_column(c) for _, c in points]
        + [loss_column(anchored_loss), collapse_column(anchored_collapse)]
    )


def test_equal_fit_difference_is_plain_frontier_at_the_anchored_loss_minus_the_anchored_collapse():
    statistic = equal_fit_difference(len(PLAIN))
    # At loss 1.5 plain's frontier is 0.8; the anchored arm collapses 0.3: 0.5 less.
    columns = synthetic_columns(1.5, 0.3, noise=0.2)
    assert statistic(*columns) == pytest.approx(0.5)
    assert per_seed_values(columns, statistic) == [pytest.approx(0.5)] * 3
    # Between the lora (2.5, 0.4) and lr_low (3.0, 0.2) points.
    assert statistic(*synthetic_columns(2.75, 0.5, noise=0.2)) == pytest.approx(0.3 - 0.5)
    assert statistic(*synthetic_columns(3.5, 0.1, noise=0.2)) is None  # outside plain's range
    with pytest.raises(ValueError, match="columns"):
        statistic(*columns[:-1])


def test_intervals_place_the_anchored_arm_above_below_or_indistinguishable(interface):
    statistic = equal_fit_difference(len(PLAIN))
    clear = seed_prompt_intervals(synthetic_columns(1.5, 0.3, noise=0.05), statistic, 300, 0.95, 0)
    assert clear["value"] == pytest.approx(0.5) and clear["n_seeds"] == 3 and clear["n_prompts"] == 6
    assert clear["hierarchical"]["ci_low"] <= 0.5 <= clear["hierarchical"]["ci_high"]
    assert clear["seed_t"]["value"] == pytest.approx(0.5) and clear["missing"] == []
    assert verdict(clear) == "above"
    assert verdict(seed_prompt_intervals(synthetic_columns(1.5, 1.3, noise=0.05), statistic, 300, 0.95, 0)) == "below"
    noisy = seed_prompt_intervals(synthetic_columns(1.5, 0.8, noise=2.0), statistic, 300, 0.95, 0)
    assert verdict(noisy) == "indistinguishable"
    outside = seed_prompt_intervals(synthetic_columns(3.5, 0.1, noise=0.05), statistic, 300, 0.95, 0)
    assert outside["value"] is None and verdict(outside) == "outside" and outside["undefined_seeds"] == 3


def test_seed_variance_reaches_the_interval(interface):
    """Two seeds far apart on identical prompts: the pooled interval must cover both seeds' values."""
    plain = np.array([[1.0] * 8, [0.2] * 8]) + np.linspace(-0.01, 0.01, 8)
    anchored = np.zeros((2, 8))
    per_seed = [
        {"prompt_ids": [f"p{i}" for i in range(8)], "collapse_plain": list(row), "collapse_anchored": list(a)}
        for row, a in zip(plain, anchored)
    ]
    pooled = pooled_over_seeds(per_seed, 1e-6, 400, 0.95, 0)
    low, high = pooled["hierarchical"]["difference_ci"]
    assert low <= 0.25 and high >= 0.95  # prompts-only resampling would give about [0.59, 0.61]
    assert pooled["seed_t"]["difference"] == pytest.approx(0.6)
    assert pooled["hierarchical"]["status"] == "anchored_not_distinguishable_from_0"


def test_frontier_plan_trains_every_arm_at_every_point_per_seed_and_evaluates_once_per_seed(tmp_path):
    cfg = frontier_config(tmp_path, "seeds=[0,1]", "main_comparison=false")
    steps = {s.name: s for s in plan_steps(cfg)}
    # The frontier trains on the main comparison's SFT set, even with the main comparison off.
    assert {"sft_set", "annotate_sft"} <= set(steps) and "eval_seed0" not in steps
    posttrain = [s for s in steps.values() if s.module == "posttrain"]
    assert len(posttrain) == 2 * 2 * 3  # seeds x points x arms
    step = steps["frontier_lr_low_posttrain_anchored_sft_on_plain_seed1"]
    loaded = step.load()
    assert loaded.training.learning_rate == pytest.approx(1e-5) and loaded.training.seed == 1
    assert loaded.model_path == str(tmp_path / "pretrain" / "plain") and loaded.arm == "anchored"
    assert loaded.output_dir == str(tmp_path / "frontier" / "lr_low" / "anchored_sft_on_plain" / "seed1")
    assert steps["frontier_lr_high_posttrain_plain_sft_seed0"].load().training.learning_rate == pytest.approx(1e-3)
    assert step.group == "frontier_lr_low_" and step.seed == 1
    evaluation = steps["frontier_eval_seed1"]
    assert evaluation.pair_groups == ["frontier_lr_low_", "frontier_lr_high_"] and evaluation.seed == 1
    assert "frontier_lr_high_posttrain_anchored_seed1" in evaluation.needs
    loaded = evaluation.load()
    assert loaded.output_dir == str(tmp_path / "frontier" / "eval" / "seed1")
    assert loaded.prompts.source.source == str(tmp_path / "sft_set" / "eval_prompts.jsonl")
    assert "capabilities" not in loaded.stages and loaded.sampling.seed == 1
    arms = {a.name: a for a in loaded.arms}
    assert list(arms)[:3] == ["base", "anchored_base", "anchored_base_no_annotation"]
    assert arms["anchored_base_no_annotation"].mode == "no_annotation"
    assert arms["plain_sft@lr_low"].model == str(tmp_path / "frontier" / "lr_low" / "plain_sft" / "seed1")
    assert arms["plain_sft@lr_low"].base_arm == "base" and arms["anchored_sft_on_plain@lr_high"].base_arm == "base"
    assert arms["anchored@lr_high"].base_arm == "anchored_base" and arms["anchored@lr_high"].mode == "anchored"
    ablation = arms["anchored_no_annotation@lr_low"]
    assert ablation.mode == "no_annotation" and ablation.base_arm == "anchored_base_no_annotation"
    assert ablation.model == arms["anchored@lr_low"].model
    assert len(arms) == 3 + 2 * 4
    assert loaded.collapse.plain_arm == "plain_sft@lr_low" and loaded.collapse.anchored_arm == "anchored@lr_low"


def test_frontier_arms_of_a_point_must_pair(tmp_path):
    cfg = frontier_config(tmp_path, "main_comparison=false")
    steps = plan_steps(cfg)
    point = [s for s in steps if s.group == "frontier_lr_low_" and s.module == "posttrain"]
    for step in point:
        write_sft_manifest(step)
    check_paired_sft(steps, 0, "frontier_lr_low_")
    write_sft_manifest(point[0], optimizer_steps=5)
    with pytest.raises(RuntimeError, match="frontier_lr_low_seed 0 trained on different examples"):
        check_paired_sft(steps, 0, "frontier_lr_low_")


def test_frontier_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="fit_frontier.points repeats"):
        frontier_config(tmp_path, "fit_frontier={points: [{name: a}, {name: a}]}")
    with pytest.raises(ConfigError, match="fit_frontier.arms"):
        frontier_config(tmp_path, "fit_frontier={points: [{name: a}], arms: [plain_sft, sft]}")
    with pytest.raises(ConfigError, match=r"fit_frontier.points\[0\].name"):
        frontier_config(tmp_path, "fit_frontier={points: [{name: a/b}]}")


def test_frontier_study_config_plans_four_points_per_arm(tmp_path):
    cfg = load_config(StudyConfig, REPO / "configs" / "study" / "frontier.yaml", [f"output_dir={tmp_path}"])
    assert not cfg.main_comparison and len(cfg.fit_frontier.points) >= 4 and len(cfg.seeds) >= 3
    steps = plan_steps(cfg)
    evaluation = next(s for s in steps if s.name == "frontier_eval_seed0").load()
    assert {f"{arm}@{p.name}" for arm in cfg.fit_frontier.arms for p in cfg.fit_frontier.points} <= {
        a.name for a in evaluation.arms
    }
    for step in steps:
        if step.module == "posttrain" and step.seed == 0:
            step.load()  # every point's overrides type-check


def write_scores(eval_dir: Path, values: dict[str, list[float]], seed: int, stops: int = 1, status: bool = False):
    """scores.jsonl rows (one per arm and prompt) with the fields the frontier report reads, and a summary."""
    eval_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for arm, per_prompt in values.items():
        for i, v in enumerate(per_prompt):
            rows.append(
                {
                    "id": f"{arm}|1.0|p{i}",
                    "arm": arm,
                    "temperature": 1.0,
                    "prompt_id": f"p{i}",
                    "n_samples": 4,
                    "length_stops": stops if "@" in arm else 4,
                    "parse": {"expected": arm.startswith("anchored@"), "ok": 3, "failed": 1},
                    "metrics": {"semantic_entropy": v, "quality": -5.0, "restricted_share": 0.5},
                }
            )
    (eval_dir / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    arms = (
        {
            "anchored@lr_high": {
                "temperatures": {
                    "1.0": {
                        "by_annotation_status": {
                            "parsed": {
                                "n_samples": 18,
                                "semantic_entropy": {"mean": 1.1},
                                "restricted_share": 0.6,
                                "quality": -5.1,
                            },
                            "failed": {
                                "n_samples": 6,
                                "semantic_entropy": {"mean": 1.9},
                                "restricted_share": 0.4,
                                "quality": -5.4,
                            },
                        }
                    }
                }
            }
        }
        if status
        else {}
    )
    (eval_dir / "summary.json").write_text(
        json.dumps({"provenance": {"bootstrap": {"resamples": 200, "confidence": 0.95, "seed": seed}}, "arms": arms})
    )


# Plain: lr_low (loss 3.0, collapse 0.2), lr_high (1.0, 1.0). Anchored: lr_high at loss 2.0 (no annotation)
# collapsing 0.1: plain's frontier there is 0.6, the anchored arm is 0.5 above it. lr_low: outside the range.
# Values: (loss, loss_no_annotation, collapse, loss_marginal).
SYNTHETIC_PLAN = {
    ("plain_sft", "lr_low"): (3.0, 3.0, 0.2, None),
    ("plain_sft", "lr_high"): (1.0, 1.0, 1.0, None),
    ("anchored", "lr_low"): (3.1, 3.5, 0.0, 3.3),
    ("anchored", "lr_high"): (1.6, 2.0, 0.1, 1.8),
    ("anchored_sft_on_plain", "lr_high"): (1.7, 2.0, 0.5, 1.9),
}


def write_synthetic_frontier(tmp_path: Path, marginal: bool = False, marginal_ids: str = "sha256:aa") -> StudyConfig:
    """Three evaluated seeds of SYNTHETIC_PLAN; with ``marginal``, validation_marginal.json beside every anchored run."""
    cfg = frontier_config(tmp_path, "seeds=[0,1,2]", "main_comparison=false")
    for seed in cfg.seeds:
        jitter = 0.01 * (seed - 1)
        values = {"base": [2.0] * 5, "anchored_base": [2.0] * 5, "anchored_base_no_annotation": [2.0] * 5}
        for (arm, point), (loss, loss_none, collapse, loss_marginal) in SYNTHETIC_PLAN.items():
            values[f"{arm}@{point}"] = [2.0 - collapse - jitter + 0.05 * (i - 2) for i in range(5)]
            path = tmp_path / "frontier" / point / arm / f"seed{seed}"
            path.mkdir(parents=True, exist_ok=True)
            (path / "validation.json").write_text(
                json.dumps(
                    {
                        "loss": loss,
                        "loss_no_annotation": loss_none,
                        "n_examples": 10,
                        "n_response_tokens": 900,
                        "ids_sha256": "sha256:aa",
                        "format": "plain" if arm == "plain_sft" else "anchored",
                    }
                )
            )
            if marginal and loss_marginal is not None:
                (path / "validation_marginal.json").write_text(
                    json.dumps(
                        {
                            "loss_marginal": loss_marginal,
                            "k": 8,
                            "n_examples": 10,
                            "n_response_tokens": 900,
                            "ids_sha256": marginal_ids,
                        }
                    )
                )
        values["anchored_no_annotation@lr_high"] = [1.5] * 5
        write_scores(tmp_path / "frontier" / "eval" / f"seed{seed}", values, seed, status=seed == 0)
    return cfg


def test_frontier_report_from_a_synthetic_run_dir(tmp_path, interface):
    cfg = write_synthetic_frontier(tmp_path)
    section = write_frontier(cfg, tmp_path)
    report = (tmp_path / "frontier" / "report.md").read_text()
    data = json.loads((tmp_path / "frontier" / "frontier.json").read_text())
    assert (tmp_path / "frontier" / "plots" / "frontier.png").stat().st_size > 0
    results = {r["arm"]: r for r in data["temperatures"]["1.0"]["headline"]["loss_no_annotation"]}
    assert results["anchored@lr_high"]["intervals"]["value"] == pytest.approx(0.5)
    assert results["anchored@lr_high"]["verdict"] == "above" and results["anchored@lr_low"]["verdict"] == "outside"
    assert results["anchored_sft_on_plain@lr_high"]["intervals"]["value"] == pytest.approx(0.1)
    # Not trained, not evaluated: said, not guessed.
    assert "no seed with every loss and collapse measured" in results["anchored_sft_on_plain@lr_low"]["why"]
    # Given the annotation, the anchored lr_high point sits at loss 1.6: plain's frontier there is 0.76.
    by_loss = {r["arm"]: r for r in data["temperatures"]["1.0"]["headline"]["loss"]}
    assert by_loss["anchored@lr_high"]["intervals"]["value"] == pytest.approx(0.66)
    assert "- **anchored** collapses LESS than plain SFT at equal validation loss" in report
    assert "| plain_sft | lr_low | 3.000 | 3.000 | 3.000 | 0.750 (45 of 60) | 0.200 [" in report
    assert "| anchored | lr_high | 1.600 | 2.000 | not measured |" in report
    assert data["temperatures"]["1.0"]["headline_kind"] == "loss_no_annotation"  # no marginal loss measured
    assert "| anchored | lr_high | 1.600 | 2.000 |" in report and "| 0.750 |" in report  # parse rate 3 of 4
    assert "| anchored@lr_high | 0 | 18 | 1.100 | 0.600 | -5.100 | 6 | 1.900 | 0.400 | -5.400 |" in report
    assert "## Fit frontier" in section[0] and any("anchored" in line for line in section)


def test_marginal_loss_becomes_the_headline_placement_when_every_anchored_point_has_it(tmp_path, interface):
    cfg = write_synthetic_frontier(tmp_path, marginal=True)
    section = write_frontier(cfg, tmp_path)
    report = (tmp_path / "frontier" / "report.md").read_text()
    data = json.loads((tmp_path / "frontier" / "frontier.json").read_text())["temperatures"]["1.0"]
    assert data["headline_kind"] == "loss_marginal"
    # Marginal loss 1.8: plain's frontier there is 1.0 - 0.4 * 0.8 = 0.68, the anchored collapse 0.1.
    results = {r["arm"]: r for r in data["headline"]["loss_marginal"]}
    assert results["anchored@lr_high"]["intervals"]["value"] == pytest.approx(0.58)
    assert results["anchored_sft_on_plain@lr_high"]["intervals"]["value"] == pytest.approx(0.14)
    # The other two placements stay, as bounds on either side.
    assert {r["arm"]: r for r in data["headline"]["loss_no_annotation"]}["anchored@lr_high"]["intervals"][
        "value"
    ] == pytest.approx(0.5)
    assert "anchored points are placed by their marginal validation loss" in report
    assert "### The same, anchored points placed by their validation loss with NO annotation" in report
    assert "### The same, anchored points placed by their validation loss given the example's own annotation" in report
    assert "| anchored | lr_high | 1.600 | 2.000 | 1.800 (K=8) |" in report
    assert "| plain_sft | lr_low | 3.000 | 3.000 | 3.000 |" in report  # plain's marginal loss is its loss
    assert any("marginal validation loss" in line for line in section)


def test_marginal_file_for_other_held_out_ids_is_not_used(tmp_path, interface):
    cfg = write_synthetic_frontier(tmp_path, marginal=True, marginal_ids="sha256:other")
    write_frontier(cfg, tmp_path)
    data = json.loads((tmp_path / "frontier" / "frontier.json").read_text())["temperatures"]["1.0"]
    assert data["headline_kind"] == "loss_no_annotation"
    assert all(p["loss_marginal"]["mean"] is None for p in data["points"] if p["family"] != "plain_sft")


def test_frontier_report_says_not_measured_when_nothing_was_evaluated(tmp_path):
    cfg = frontier_config(tmp_path, "main_comparison=false")
    write_frontier(cfg, tmp_path)
    assert "No frontier evaluation was found" in (tmp_path / "frontier" / "report.md").read_text()


def test_every_study_eval_scores_neutral_quality_and_the_sft_sets_one_topic(tmp_path, monkeypatch):
    from study import plan

    cfg = frontier_config(tmp_path)
    corpus = tmp_path / "annotate" / "corpus"
    monkeypatch.setattr(plan, "config_has_key", lambda module, key: True)
    assert plan.neutral_scoring_overrides(cfg, corpus, ["sports"]) == [
        "metrics.quality.kind=ngram",
        f"metrics.quality.ngram.corpus={corpus}",
        'metrics.restricted_value={"attribute": "section", "value": "sports"}',
    ]
    # Several topics restrict to no single value.
    assert plan.neutral_scoring_overrides(cfg, corpus, ["sports", "tech"])[2:] == []
    monkeypatch.setattr(plan, "config_has_key", lambda module, key: False)
    assert plan.neutral_scoring_overrides(cfg, corpus, ["sports"]) == []
    assert len(plan.scoring_gaps()) == 2


def test_eval_stage_keys_are_looked_up_through_nested_configs():
    from study.plan import config_has_key

    assert config_has_key("eval", "metrics.semantic_entropy.classifier.attribute")
    assert config_has_key("posttrain", "lora.enabled")
    assert not config_has_key("eval", "metrics.no_such_key") and not config_has_key("eval", "output_dir.deeper")


def test_plan_only_run_lists_the_frontier_and_trains_nothing(tmp_path, capsys):
    from study import run

    result = run(frontier_config(tmp_path, "main_comparison=false", "plan_only=true"))
    assert (
        "frontier_eval_seed0" in result["planned"] and "frontier_lr_high_posttrain_anchored_seed0" in result["planned"]
    )
    assert not (tmp_path / "frontier").exists()
    assert "arm anchored_no_annotation@lr_high" in capsys.readouterr().out
