"""`python -m study init` on a user-style corpus that is not BBC News, then the whole study on it."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from user_corpus import corpus_rows, sft_rows, write_user_files

from stage_io.manifest import read_manifest
from study import plan_steps, run
from study.init import accuracy_floor
from study.init import main as init_main
from study.paths import load_study
from study.validate import PlanError, validate_plan

REPO = Path(__file__).resolve().parents[2]


def init_argv(files: dict[str, Path], out: Path, *extra: str, label: bool = True) -> list[str]:
    """``study init``'s arguments on the user files (``write_user_files``), the label column given or not."""
    argv = ["--corpus", str(files["corpus"]), "--sft", str(files["sft"]), "--prompts", str(files["prompts"])]
    return [*argv, *(["--label-field", "category"] if label else []), *extra, str(out)]


def init(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m study init`` as a user runs it, on the user corpus (data in tmp_path/data)."""
    argv = init_argv(write_user_files(tmp_path / "data"), tmp_path / "cfg", "--text-field", "text", *extra)
    return subprocess.run([sys.executable, "-m", "study", "init", *argv], cwd=REPO, capture_output=True, text=True)


def undocumented_keys(path: Path) -> list[str]:
    """Keys without a comment on their line or the line above (the rule tests/test_configs.py checks)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    missing = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "- ")) or ":" not in stripped or "#" in line:
            continue
        if not (i and lines[i - 1].strip().startswith("#")):
            missing.append(f"{path.name}:{i + 1}: {stripped}")
    return missing


def test_init_writes_every_key_commented_and_plan_only_prints_the_commands(tmp_path):
    done = init(tmp_path, "--scale", "tiny")
    assert done.returncode == 0, done.stderr
    cfg_dir = tmp_path / "cfg"
    for name in ("study.yaml", "annotate_corpus.yaml", "annotate_sft.yaml"):
        yaml.safe_load((cfg_dir / name).read_text())
        assert undocumented_keys(cfg_dir / name) == []
    assert "judge_label_field" not in (cfg_dir / "study.yaml").read_text()
    cfg = load_study(cfg_dir / "study.yaml")
    steps = {s.name: s for s in plan_steps(cfg)}
    assert steps["annotate_corpus"].load().keep_columns == ["category"]
    assert steps["annotate_sft"].load().schema == steps["annotate_corpus"].load().schema
    assert steps["eval_seed0"].load().sampling.max_annotation_tokens == "auto"

    plan = subprocess.run(
        [sys.executable, "-m", "study", str(cfg_dir / "study.yaml"), "plan_only=true"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert plan.returncode == 0, plan.stderr
    assert f"would run (no manifest): {sys.executable} -m annotate {cfg_dir / 'annotate_corpus.yaml'}" in plan.stdout
    assert "eval_seed0: arm anchored: model=" in plan.stdout and "mode=anchored base_arm=anchored_base" in plan.stdout
    assert "eval_seed0: study sets prompts.source.source=" not in plan.stdout  # set by study.yaml, not the chaining
    assert "pretrain_plain: study sets data.arm=plain (YAML: anchored)" in plan.stdout


def test_init_refuses_a_field_the_corpus_does_not_have(tmp_path, capsys):
    files = write_user_files(tmp_path / "data")
    assert init_main(init_argv(files, tmp_path / "c", "--text-field", "body", label=False)) == 2
    err = capsys.readouterr().err
    assert "--text-field body: not a field of --corpus" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def init_here(tmp_path: Path, *extra: str, label: bool = True) -> Path:
    """``study init`` in this process on the user corpus (data in tmp_path/data); returns the study YAML."""
    assert init_main(init_argv(write_user_files(tmp_path / "data"), tmp_path / "cfg", *extra, label=label)) == 0
    return tmp_path / "cfg" / "study.yaml"


def plan(study: Path, *overrides: str) -> dict:
    return run(load_study(study, ["plan_only=true", *overrides]))


def test_default_scale_study_plans_with_the_label_column_as_independent_judge(tmp_path):
    result = plan(init_here(tmp_path))
    assert "eval_seed2" in result["planned"] and result["ran"] == []
    steps = {s.name: s for s in plan_steps(load_study(tmp_path / "cfg" / "study.yaml"))}
    corpus, evaluation = steps["annotate_corpus"].load(), steps["eval_seed0"].load()
    assert corpus.schema.keys == ["topic", "sentiment", "style"] and corpus.schema.max_tags == 3
    assert corpus.annotator.offline.topic_name_words == 1
    se = evaluation.metrics.semantic_entropy
    assert (se.labels, se.primary, se.classifier.label_field, se.classifier.attribute) == (
        "classifier",
        "category",
        "category",
        "category",
    )
    assert se.classifier.source.source == str((tmp_path / "data" / "my.jsonl").resolve())
    assert se.classifier.min_accuracy == 0.5  # three balanced labels: 1/3 + (2/3)/4
    assert evaluation.metrics.fidelity.label_column == "doc_category"
    assert "capabilities" not in evaluation.stages


def test_without_a_label_column_the_labels_are_the_annotators_and_said_not_independent(tmp_path):
    study = init_here(tmp_path, label=False)
    assert "NOT independent" in study.read_text()
    plan(study)
    evaluation = {s.name: s for s in plan_steps(load_study(study))}["eval_seed0"].load()
    se = evaluation.metrics.semantic_entropy
    assert (se.labels, se.primary, se.annotator_secondary) == ("annotator", "topic", False)
    assert evaluation.metrics.fidelity.annotation_key is None


def test_the_judge_floor_is_a_margin_over_the_majority_class_rate():
    from collections import Counter

    assert accuracy_floor(Counter(a=1, b=1)) == 0.62
    assert accuracy_floor(Counter(a=9, b=1)) == 0.92


def test_a_moved_study_folder_plans_from_its_new_place(tmp_path):
    init_here(tmp_path / "old")
    (tmp_path / "old").rename(tmp_path / "new")
    cfg = load_study(tmp_path / "new" / "cfg" / "study.yaml")
    assert cfg.output_dir == str(tmp_path / "new" / "cfg" / "run")
    steps = {s.name: s for s in plan_steps(cfg)}
    assert steps["annotate_corpus"].load().source.source == str(tmp_path / "new" / "data" / "my.jsonl")
    assert steps["pretrain_plain"].ref.config == str(REPO / "configs" / "pretrain" / "embedded.yaml")
    assert "eval_seed0" in plan(tmp_path / "new" / "cfg" / "study.yaml")["planned"]


def test_an_sft_set_without_an_assistant_turn_is_refused_at_init_and_at_plan_time(tmp_path, capsys):
    study = init_here(tmp_path)
    no_reply = [{"id": r["id"], "messages": [m for m in r["messages"] if m["role"] != "assistant"]} for r in sft_rows()]
    sft = tmp_path / "data" / "my_sft.jsonl"
    sft.write_text("".join(json.dumps(r) + "\n" for r in no_reply), encoding="utf-8")
    with pytest.raises(PlanError, match=r"annotate_sft: source.source .*my_sft.jsonl.*no example has a response"):
        plan(study)
    files = {"corpus": tmp_path / "data" / "my.jsonl", "sft": sft, "prompts": tmp_path / "data" / "prompts.jsonl"}
    assert init_main(init_argv(files, tmp_path / "again", label=False)) == 2
    assert "--sft" in capsys.readouterr().err and not (tmp_path / "again").exists()


def test_plan_refuses_a_missing_capability_task_and_a_label_column_the_corpus_does_not_keep(tmp_path):
    study = init_here(tmp_path)
    eval_overrides = load_study(study).eval.overrides
    with pytest.raises(PlanError) as err:
        plan(
            study,
            "eval.overrides="
            + json.dumps(
                [
                    *eval_overrides,
                    "stages=[generate,score,capabilities,report]",
                    "metrics.fidelity.label_column=doc_topic",
                ]
            ),
        )
    message = str(err.value)
    assert (
        "eval_seed0: capabilities.include_path 'runs/capability_tasks/bbc_next_passage': no such directory" in message
    )
    assert "metrics.fidelity.label_column='doc_topic': the corpus annotation keeps no such column" in message


def test_a_label_column_the_text_does_not_predict_is_refused_at_init(tmp_path, capsys):
    corpus = tmp_path / "same.jsonl"
    rows = [
        {"id": r["id"], "text": "The same words in every record.", "label": "ab"[i % 2]}
        for i, r in enumerate(corpus_rows())
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    files = {**write_user_files(tmp_path / "data"), "corpus": corpus}
    assert init_main(init_argv(files, tmp_path / "cfg", "--label-field", "label", label=False)) == 2
    assert "under the floor 0.62" in capsys.readouterr().err


def test_the_shipped_default_study_passes_the_plan_checks(tmp_path):
    validate_plan(plan_steps(load_study(REPO / "configs" / "study" / "embedded.yaml", [f"output_dir={tmp_path}"])))


@pytest.mark.slow
def test_init_then_the_whole_study_on_a_user_corpus(tmp_path, steps_in_process):
    cfg = load_study(init_here(tmp_path, "--scale", "tiny"))
    out = Path(cfg.output_dir)
    result = run(cfg)
    assert result["ran"] == [s.name for s in plan_steps(cfg)]
    for step in plan_steps(cfg):
        assert read_manifest(step.output_dir) is not None, step.name

    # Annotation: one schema for corpus and SFT, the label kept, no contraction tagged as an entity.
    corpus_manifest, sft_manifest = read_manifest(out / "annotate" / "corpus"), read_manifest(out / "annotate" / "sft")
    assert corpus_manifest["config"]["schema"] == sft_manifest["config"]["schema"]
    corpus = pq.read_table(out / "annotate" / "corpus" / "data").to_pylist()
    assert {r["doc_category"] for r in corpus} == {"recipe", "travel", "saying"}
    entities = {t["value"] for r in corpus for t in r["tags"] if t["key"] == "entity"}
    assert not any("'" in e or "’" in e for e in entities), entities
    assert any(
        t == {"key": "style", "value": "quotation"} for r in corpus if r["doc_category"] == "saying" for t in r["tags"]
    )

    # Pretraining records the annotation share; anchored SFT checked its annotations against pretraining's.
    for arm in ("plain", "anchored"):
        counts = read_manifest(out / "pretrain" / arm)["counts"]
        assert counts["annotation_share"] == counts["annotation_tokens"] / counts["trained_tokens"]
    assert read_manifest(out / "pretrain" / "anchored")["counts"]["annotation_share"] > 0
    match = read_manifest(out / "posttrain" / "anchored" / "seed0")["annotation_match"]
    assert match["checked"] is True and match["schema"] == corpus_manifest["config"]["schema"]

    # Eval: the data-derived cap and bar, every arm summarised.
    eval_manifest = read_manifest(out / "eval" / "seed0")
    assert (
        eval_manifest["max_annotation_tokens"]["resolved"] > eval_manifest["max_annotation_tokens"]["quantile_tokens"]
    )
    assert eval_manifest["counts"]["score"]["quality_bar"]["kind"] == "quantile"
    summary = json.loads((out / "eval" / "seed0" / "summary.json").read_text())
    assert {"base", "anchored_base", "plain_sft", "anchored", "anchored_no_annotation", "anchored_sft_on_plain"} <= set(
        summary["arms"]
    )
    report = (out / "report.md").read_text()
    assert "## Pretraining token budget" in report and "## Stage config keys the study set" in report
    assert "| annotate_sft |" in report and "`schema`" in report
