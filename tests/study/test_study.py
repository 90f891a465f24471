"""The whole study on the micro config: every stage runs for real, chained through files."""

import json
from pathlib import Path

import pytest
from study_fixtures import write_sft_manifest

from stage_io.config import load_config
from stage_io.manifest import read_manifest
from study import StudyConfig, plan_steps, run
from study.report import capability_lines, parse_lines

REPO = Path(__file__).resolve().parents[2]
MICRO = REPO / "configs" / "study" / "micro.yaml"


def micro_config(out: Path, *overrides: str) -> StudyConfig:
    return load_config(StudyConfig, MICRO, [f"output_dir={out}", *overrides])


def test_plan_chains_stages_through_paths(tmp_path):
    cfg = micro_config(tmp_path, "seeds=[0,1]")
    steps = {s.name: s for s in plan_steps(cfg)}
    assert list(steps)[:5] == ["annotate_corpus", "sft_set", "annotate_sft", "pretrain_plain", "pretrain_anchored"]
    assert f"data.annotations={tmp_path / 'annotate' / 'corpus'}" in steps["pretrain_anchored"].overrides
    # Ablation (a): anchored SFT starts from the plain-pretrained model.
    assert f"model_path={tmp_path / 'pretrain' / 'plain'}" in steps["posttrain_anchored_sft_on_plain_seed1"].overrides
    assert steps["posttrain_anchored_seed1"].load().training.seed == 1
    arms = {a.name: a for a in steps["eval_seed1"].load().arms}
    assert set(arms) == {
        "base",
        "anchored_base",
        "plain_sft",
        "anchored",
        "anchored_no_annotation",
        "anchored_sft_on_plain",
    }
    assert arms["anchored_no_annotation"].mode == "no_annotation" and arms["anchored"].base_arm == "anchored_base"
    assert arms["plain_sft"].base_arm == "base" and arms["anchored_sft_on_plain"].base_arm == "base"
    # Eval samples with the very prompt format posttrain trains with.
    assert arms["anchored"].prompt_format == steps["posttrain_anchored_seed1"].load().prompt_format
    # The capabilities task is written once and every seed's eval reads it.
    task_dir = tmp_path / "capability_task"
    assert steps["capability_task"].load().output_dir == str(task_dir)
    assert "capability_task" in steps["eval_seed1"].needs
    eval_cfg = steps["eval_seed1"].load()
    assert eval_cfg.capabilities.include_path == [str(task_dir)] and "capabilities" in eval_cfg.stages
    # The bases are the same checkpoints in every seed: measured in the first seed only.
    assert steps["eval_seed0"].load().capabilities.arms == ["base", "anchored_base", "plain_sft", "anchored"]
    assert eval_cfg.capabilities.arms == ["plain_sft", "anchored"]


def test_sft_annotation_reuses_the_corpus_schema_and_annotator(tmp_path):
    # The SFT YAML asks for other keys: the study passes the corpus annotation's on.
    cfg = micro_config(tmp_path, "annotate_sft.overrides=[progress=false,'schema.keys=[topic,domain]']")
    steps = {s.name: s for s in plan_steps(cfg)}
    corpus, sft = steps["annotate_corpus"].load(), steps["annotate_sft"].load()
    assert sft.schema == corpus.schema and sft.annotator.kind == corpus.annotator.kind
    assert sft.annotator.offline.fitted_state_from == str(tmp_path / "annotate" / "corpus")


@pytest.mark.slow
@pytest.mark.xdist_group("micro_study")
def test_micro_study_runs_end_to_end_then_skips_and_reruns_only_what_changed(micro_study):
    out, result = micro_study.out, micro_study.result
    steps = [s.name for s in plan_steps(micro_config(out))]
    assert result["ran"] == steps
    for step in plan_steps(micro_config(out)):
        manifest = read_manifest(step.output_dir)
        assert manifest is not None, step.name
    for arm in ("plain", "anchored"):
        assert (out / "pretrain" / arm / "config.json").is_file()
    for arm in ("plain_sft", "anchored", "anchored_sft_on_plain"):
        assert (out / "posttrain" / arm / "seed0" / "model.safetensors").is_file()
    eval_dir = out / "eval" / "seed0"
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert {"base", "plain_sft", "anchored", "anchored_no_annotation", "anchored_sft_on_plain"} <= set(summary["arms"])
    assert "plain_sft/anchored" in summary["collapse_ratios"]["pairs"]
    assert list((eval_dir / "plots").glob("*.png"))
    capabilities = json.loads((eval_dir / "capabilities.json").read_text())
    assert {"base", "anchored_base", "plain_sft", "anchored"} == set(capabilities["arms"])
    assert all(0 <= t["value"] <= 1 for arm in capabilities["arms"].values() for t in arm.values())
    report = micro_study.report
    assert "Headline: judged collapse of the section" in report and "ablation (a)" in report
    assert "failures by reason" in report and "held-out accuracy" in report
    assert "Annotation preservation and fidelity" in report and "annotator_entropy" in report
    assert summary["judge"]["heldout_accuracy"] >= 0.9 and summary["annotation_fidelity"]["status"] == "ok"
    assert (out / "attribute_classifier" / "classifier.json").is_file()  # one judge, shared by the seeds
    assert "## Capabilities (lm-evaluation-harness)" in report and "| bbc_next_passage | 0 |" in report

    again = run(micro_config(out))
    assert again["ran"] == [] and again["skipped"] == steps

    changed = run(
        micro_config(
            out,
            'eval.overrides=["sampling.temperatures=[1.0]", "metrics.semantic_entropy.labels=annotator", "sampling.samples_per_prompt=3"]',
        )
    )
    assert changed["ran"] == ["eval_seed0"]
    # The rerun started afresh: no sample of the old config was kept and resumed.
    rows = [json.loads(line) for line in (eval_dir / "generations.jsonl").read_text().splitlines()]
    per_group: dict = {}
    for row in rows:
        per_group.setdefault((row["arm"], row["prompt_id"]), []).append(row)
    assert {len(group) for group in per_group.values()} == {3}


def test_report_breaks_parse_failures_down_by_reason():
    parse = {
        "expected": True,
        "ok": 5,
        "failed": 4,
        "failure_rate": 4 / 9,
        "by_reason": {"malformed_tags": 1, "truncated": 3},
    }
    summaries = {
        0: {
            "arms": {
                "anchored": {"temperatures": {"1.0": {"parse": parse}}},
                "plain_sft": {"temperatures": {"1.0": {"parse": {"expected": False}}}},
            }
        }
    }
    lines = parse_lines(summaries, "1.0")
    assert len(lines) == 3  # header, rule, and the anchored arm only
    assert lines[2] == "| anchored | 0 | 5 | 4 | 0.444 | truncated 3, malformed_tags 1 |"
    # Sampled under the syntax: two more columns, and the parse rates are said not to measure the model.
    parse.update(syntax_constrained=9, mostly_outside_syntax_rate=4 / 9)
    lines = parse_lines(summaries, "1.0")
    assert lines[2] == "| anchored | 0 | 5 | 4 | 0.444 | truncated 3, malformed_tags 1 | 9 | 0.444 |"
    assert lines[1].count("---") == 8 and "do not measure the model's own syntax" in lines[-1]


@pytest.mark.parametrize("size", ["0.6b", "1b", "2.5b"])
def test_paper_scale_studies_load_every_stage_config(size, tmp_path):
    cfg = load_config(StudyConfig, REPO / "configs" / "study" / f"paper_olmo2_{size}.yaml", [f"output_dir={tmp_path}"])
    steps = plan_steps(cfg)
    configs = {s.name: s.load() for s in steps}  # every stage YAML + the study's overrides type-check
    assert configs["pretrain_anchored"].data.arm == "anchored"
    assert cfg.train_launcher[:2] == ["accelerate", "launch"]


def test_sft_arms_of_a_seed_must_train_on_the_same_examples(tmp_path):
    from study.runner import check_paired_sft

    steps = plan_steps(micro_config(tmp_path))
    posttrain = [s for s in steps if s.module == "posttrain" and s.name.endswith("_seed0")]
    for step in posttrain:
        write_sft_manifest(step)
    check_paired_sft(steps, 0)  # the same ids and steps: fine
    write_sft_manifest(posttrain[1], ids="sha256:bb", trained=29)
    with pytest.raises(RuntimeError, match="seed 0 trained on different examples"):
        check_paired_sft(steps, 0)


def test_report_capabilities_table_with_anchored_minus_plain_per_seed_and_over_seeds():
    def entry(value, stderr):
        return {"metric": "acc_norm", "value": value, "stderr": stderr, "n": 100}

    capabilities = {
        0: {
            "lm_eval_version": "0.4.13",
            "arms": {"plain_sft": {"t": entry(0.50, 0.03)}, "anchored": {"t": entry(0.54, 0.04)}},
        },
        1: {
            "lm_eval_version": "0.4.13",
            "arms": {"plain_sft": {"t": entry(0.52, 0.03)}, "anchored": {"t": entry(0.50, 0.04)}},
        },
    }
    lines = capability_lines(capabilities)
    assert "| plain_sft | t | acc_norm | 100 | 0.510 | 0.500 ± 0.030 | 0.520 ± 0.030 |" in lines
    assert "| anchored | t | acc_norm | 100 | 0.520 | 0.540 ± 0.040 | 0.500 ± 0.040 |" in lines
    # seed 0: +0.04 ± 1.96 * 0.05; over seeds: mean +0.01, interval from the mean se (items are shared).
    assert "| t | 0 | 0.540 ± 0.040 | 0.500 ± 0.030 | +0.040 [-0.058, +0.138] |" in lines
    assert "| t | mean over 2 seeds | | | +0.010 [-0.088, +0.108] |" in lines
    assert capability_lines({}) == []


def test_report_pools_seeds_with_hierarchical_and_seed_t_rows():
    from eval import bootstrap
    from study.report import ratio_table

    def seed(plain, anchored):
        per_prompt = {"prompt_ids": ["a", "b", "c", "d"], "collapse_plain": plain, "collapse_anchored": anchored}
        pair = {
            "collapse_plain": sum(plain) / 4,
            "collapse_plain_ci": [0, 1],
            "collapse_anchored": sum(anchored) / 4,
            "collapse_anchored_ci": [0, 1],
            "difference": 0.1,
            "difference_ci": [0, 1],
            "status": "plain_not_collapsed",
            "reason": "x",
            "per_prompt": per_prompt,
        }
        return {
            "provenance": {"bootstrap": {"resamples": 200, "confidence": 0.95, "seed": 0}},
            "collapse_ratios": {"pairs": {"plain_sft/anchored": {"1.0": {"semantic_entropy": pair}}}},
        }

    summaries = {
        0: seed([1.0, 1.2, 0.8, 1.0], [0.2, 0.1, 0.3, 0.2]),
        1: seed([0.6, 0.8, 0.4, 0.6], [0.1, 0.0, 0.2, 0.1]),
    }
    lines = ratio_table(summaries, "1.0", "semantic_entropy")
    hierarchical = next(line for line in lines if "pooled over 2 seeds, hierarchical bootstrap" in line)
    seed_t = next(line for line in lines if "pooled over 2 seeds, seed t" in line)
    # Means over both seeds: plain 0.8, anchored 0.15, difference 0.65.
    assert hierarchical.startswith("| headline | pooled over 2 seeds, hierarchical bootstrap | 0.800 [")
    assert "| 0.150 [" in hierarchical and "| 0.650 [" in hierarchical
    if hasattr(bootstrap, "seed_t_interval"):
        # Seed values 1.0 and 0.6: t(1 dof) 12.706 x sd 0.283 / sqrt 2 = 2.541 either side of 0.8.
        assert seed_t.startswith("| headline | pooled over 2 seeds, seed t | 0.800 [-1.741, 3.341]")
    if not hasattr(bootstrap, "hierarchical_statistic_ci"):
        assert "interval not available" in hierarchical
