"""`python -m study init` on a user-style corpus that is not BBC News, then the whole study on it."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from stage_io.config import load_config
from stage_io.manifest import read_manifest
from study import StudyConfig, plan_steps, run
from user_corpus import write_user_files

REPO = Path(__file__).resolve().parents[2]


def init(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    files = write_user_files(tmp_path / "data")
    command = [sys.executable, "-m", "study", "init", "--corpus", str(files["corpus"]), "--text-field", "text",
               "--label-field", "category", "--sft", str(files["sft"]), "--prompts", str(files["prompts"]),
               *extra, str(tmp_path / "cfg")]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


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
    assert "# judge_label_field: category" in (cfg_dir / "study.yaml").read_text()
    cfg = load_config(StudyConfig, cfg_dir / "study.yaml")
    steps = {s.name: s for s in plan_steps(cfg)}
    assert steps["annotate_corpus"].load().keep_columns == ["category"]
    assert steps["annotate_sft"].load().schema == steps["annotate_corpus"].load().schema
    assert steps["eval_seed0"].load().sampling.max_annotation_tokens == "auto"

    plan = subprocess.run([sys.executable, "-m", "study", str(cfg_dir / "study.yaml"), "plan_only=true"],
                          cwd=REPO, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    assert f"would run (no manifest): {sys.executable} -m annotate {cfg_dir / 'annotate_corpus.yaml'}" in plan.stdout
    assert "eval_seed0: arm anchored: model=" in plan.stdout and "mode=anchored base_arm=anchored_base" in plan.stdout
    assert "eval_seed0: study sets prompts.source.source=" not in plan.stdout  # set by study.yaml, not the chaining
    assert "pretrain_plain: study sets data.arm=plain (YAML: anchored)" in plan.stdout


def test_init_refuses_a_field_the_corpus_does_not_have(tmp_path):
    files = write_user_files(tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "study", "init", "--corpus", str(files["corpus"]), "--text-field",
                           "body", "--sft", str(files["sft"]), "--prompts", str(files["prompts"]), str(tmp_path / "c")],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "--text-field body: not a field of --corpus" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_init_then_the_whole_study_on_a_user_corpus(tmp_path):
    assert init(tmp_path, "--scale", "tiny").returncode == 0
    cfg = load_config(StudyConfig, tmp_path / "cfg" / "study.yaml")
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
    assert any(t == {"key": "style", "value": "quotation"} for r in corpus if r["doc_category"] == "saying"
               for t in r["tags"])

    # Pretraining records the annotation share; anchored SFT checked its annotations against pretraining's.
    for arm in ("plain", "anchored"):
        counts = read_manifest(out / "pretrain" / arm)["counts"]
        assert counts["annotation_share"] == counts["annotation_tokens"] / counts["trained_tokens"]
    assert read_manifest(out / "pretrain" / "anchored")["counts"]["annotation_share"] > 0
    match = read_manifest(out / "posttrain" / "anchored" / "seed0")["annotation_match"]
    assert match["checked"] is True and match["schema"] == corpus_manifest["config"]["schema"]

    # Eval: the data-derived cap and bar, every arm summarised.
    eval_manifest = read_manifest(out / "eval" / "seed0")
    assert eval_manifest["max_annotation_tokens"]["resolved"] > eval_manifest["max_annotation_tokens"]["quantile_tokens"]
    assert eval_manifest["counts"]["score"]["quality_bar"]["kind"] == "quantile"
    summary = json.loads((out / "eval" / "seed0" / "summary.json").read_text())
    assert {"base", "anchored_base", "plain_sft", "anchored", "anchored_no_annotation",
            "anchored_sft_on_plain"} <= set(summary["arms"])
    report = (out / "report.md").read_text()
    assert "## Pretraining token budget" in report and "## Stage config keys the study set" in report
    assert "| annotate_sft |" in report and "`schema`" in report
