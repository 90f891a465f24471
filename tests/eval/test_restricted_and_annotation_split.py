"""Through the real eval stage on tiny models: the restricted-value share, the anchored arm's
figures split by annotation status, per-prompt values, and the corpus n-gram quality."""

import dataclasses
import json

import pytest

from eval.config import ArmConfig, NgramQualityConfig, RestrictedValueConfig
from eval.stage import run
from tests.eval.test_run import read_jsonl, tiny_config


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, tiny_models, prompts_file, annotate_output):
    """One run shared by the tests below (they only read it)."""
    tmp_path = tmp_path_factory.mktemp("split")
    arms = [
        ArmConfig(name="plain_sft", model=tiny_models["plain"], mode="plain"),
        ArmConfig(name="anchored", model=tiny_models["anchored"], mode="anchored"),
    ]
    config = tiny_config(tmp_path, tiny_models, prompts_file, arms, stages=["generate", "score", "report"])
    metrics = dataclasses.replace(
        config.metrics,
        # The independent judge: the section classifier trained on the BBC gold labels.
        semantic_entropy=dataclasses.replace(config.metrics.semantic_entropy, labels="classifier", primary=None),
        quality=dataclasses.replace(
            config.metrics.quality, kind="ngram", ngram=NgramQualityConfig(corpus=annotate_output), bar=-9.0
        ),
        restricted_value=RestrictedValueConfig(attribute="section", value="sports"),
    )
    config = dataclasses.replace(
        config, metrics=metrics, sampling=dataclasses.replace(config.sampling, temperatures=[1.0])
    )
    run_dir = run(config)
    return config, run_dir, json.loads((run_dir / "summary.json").read_text())


def test_restricted_share_counts_samples_judged_to_have_the_value(scored_run):
    config, run_dir, summary = scored_run
    scores = read_jsonl(run_dir / "scores.jsonl")
    for arm in ("plain_sft", "anchored"):
        rows = [s for s in scores if s["arm"] == arm]
        flags = [f for s in rows for f in s["restricted_per_sample"]]
        labels = [lab for s in rows for lab in s["semantic"]["labels"]]
        assert flags == [None if lab.get("section") is None else lab["section"] == "sports" for lab in labels]
        share = summary["arms"][arm]["temperatures"]["1"]["restricted_share"]
        assert share["attribute"] == "section" and share["value"] == "sports"
        assert share["samples_judged"] == sum(f is not None for f in flags)
        assert share["samples_with_value"] == sum(f is True for f in flags)
        per_prompt = summary["arms"][arm]["temperatures"]["1"]["per_prompt"]["restricted_share"]
        assert per_prompt == {s["prompt_id"]: s["metrics"]["restricted_share"] for s in rows}
        assert share["ci_low"] - 1e-9 <= share["mean"] <= share["ci_high"] + 1e-9
    assert "Share of samples judged section = sports" in (run_dir / "report.md").read_text()


def test_anchored_figures_are_split_by_annotation_status(scored_run):
    config, run_dir, summary = scored_run
    generations = [g for g in read_jsonl(run_dir / "generations.jsonl") if g["arm"] == "anchored"]
    entry = summary["arms"]["anchored"]["temperatures"]["1"]
    split = entry["by_annotation_status"]
    assert set(split) == {"parsed", "failed"}
    parsed = sum(1 for g in generations if g["parse_ok"])
    assert split["parsed"]["n_samples"] == parsed and split["failed"]["n_samples"] == len(generations) - parsed
    assert split["parsed"]["parse_rate"] == pytest.approx(parsed / len(generations)) == entry["parse"]["ok"] / 12
    assert split["parsed"]["primary_metric"] == "semantic_entropy"
    scores = {s["prompt_id"]: s for s in read_jsonl(run_dir / "scores.jsonl") if s["arm"] == "anchored"}
    for status, flag in (("parsed", True), ("failed", False)):
        ids = {g["id"] for g in generations if g["parse_ok"] is flag}
        hits = judged = 0
        for s in scores.values():
            rows = sorted((g for g in generations if g["prompt_id"] == s["prompt_id"]), key=lambda g: g["sample_index"])
            mine = [f for g, f in zip(rows, s["restricted_per_sample"]) if g["id"] in ids and f is not None]
            hits, judged = hits + sum(mine), judged + len(mine)
        share = split[status]["restricted_share"]
        assert share["mean"] == (pytest.approx(hits / judged) if judged else None)
        assert split[status]["groups"] == 3
    report = (run_dir / "report.md").read_text()
    assert "| anchored | parsed |" in report and "| anchored | failed |" in report
    # Plain arms have no annotation to split by.
    assert "by_annotation_status" not in summary["arms"]["plain_sft"]["temperatures"]["1"]


def test_ngram_quality_scores_every_arm_with_the_same_corpus_model(scored_run):
    config, run_dir, summary = scored_run
    scores = read_jsonl(run_dir / "scores.jsonl")
    assert all(s["scorer"]["quality"]["kind"] == "ngram" for s in scores)
    assert all(s["scorer"]["quality"]["corpus"] == config.metrics.quality.ngram.corpus for s in scores)
    per_prompt = summary["arms"]["anchored"]["temperatures"]["1"]["per_prompt"]
    assert set(per_prompt) >= {"pairwise_dissimilarity", "semantic_entropy", "quality", "restricted_share"}
    assert set(per_prompt["quality"]) == {"p0", "p1", "p2"}
    for s in scores:
        finite = [q for q in s["quality_per_sample"] if q is not None]
        assert all(q < 0 for q in finite)
    details = summary["provenance"]["scoring"]["quality_details"]
    assert (
        details["order"] == 3
        and details["vocabulary"] > 100
        and details["corpus"] == config.metrics.quality.ngram.corpus
    )
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["inputs"]["quality_ngram_corpus"]["path"] == config.metrics.quality.ngram.corpus


def test_a_restricted_value_the_classifier_never_gives_is_refused(scored_run):
    config, run_dir, _ = scored_run
    wrong = dataclasses.replace(
        config,
        stages=["score"],
        metrics=dataclasses.replace(
            config.metrics, restricted_value=RestrictedValueConfig(attribute="section", value="sport")
        ),
    )
    with pytest.raises(ValueError, match=r"metrics.restricted_value.value='sport' is not a label .*sports"):
        run(wrong)
