"""Settings derived from the user's data instead of constants tuned on BBC News."""

import dataclasses
import json

import numpy as np
from test_run import BARE, read_jsonl, tiny_config

from eval.annotation_budget import MIN_EXTRA, cap_from_lengths
from eval.config import ArmConfig
from eval.stage import run


def test_annotation_cap_covers_the_99th_percentile_with_a_margin():
    lengths = list(range(1, 101))
    cap, q = cap_from_lengths(lengths)
    assert q == np.quantile(lengths, 0.99) and cap >= q * 1.25 and cap >= q + MIN_EXTRA
    assert cap_from_lengths([8] * 50)[0] == 8 + MIN_EXTRA  # short annotations: at least MIN_EXTRA tokens over


def test_auto_annotation_cap_and_quantile_quality_bar(tmp_path, tiny_models, prompts_file, annotate_output):
    arms = [
        ArmConfig(name="base", model=tiny_models["plain"], prompt_format=BARE, mode="plain"),
        ArmConfig(name="anchored", model=tiny_models["anchored"], mode="anchored", base_arm="base"),
    ]
    config = tiny_config(tmp_path, tiny_models, prompts_file, arms, stages=["generate", "score"])
    sampling = dataclasses.replace(config.sampling, temperatures=[1.0], max_annotation_tokens="auto")
    quality = dataclasses.replace(
        config.metrics.quality,
        kind="proxy",
        reference_model=tiny_models["plain"],
        bar=1e9,
        bar_quantile=0.5,
        bar_reference_arm="base",
    )
    drift = dataclasses.replace(config.metrics.drift, pretraining_annotations=annotate_output)
    metrics = dataclasses.replace(config.metrics, quality=quality, drift=drift)
    run_dir = run(dataclasses.replace(config, sampling=sampling, metrics=metrics))

    manifest = json.loads((run_dir / "manifest.json").read_text())
    cap = manifest["max_annotation_tokens"]
    assert manifest["config"]["sampling"]["max_annotation_tokens"] == "auto"  # the configured value is kept
    assert cap["resolved"] >= cap["quantile_tokens"] + MIN_EXTRA and cap["annotations"] > 0
    # The bar is the median of base's proxy scores, not the absolute 1e9 no sample reaches.
    scores = read_jsonl(run_dir / "scores.jsonl")
    base = [q for s in scores if s["arm"] == "base" for q in s["quality_per_sample"] if q is not None]
    bar = manifest["counts"]["score"]["quality_bar"]
    assert bar["kind"] == "quantile" and bar["bar"] == float(np.quantile(base, 0.5))
    passed = [p for s in scores if s["arm"] == "base" for p in s["passes"]]
    assert len(passed) / 2 <= sum(passed) < len(passed) or len(set(base)) == 1
    provenance = json.loads((run_dir / "scoring_provenance.json").read_text())
    assert provenance["quality"]["bar_rule"]["reference_arm"] == "base"
