"""Model dry runs on a real tiny checkpoint: the staged folder, the card, the eval table."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from huggingface_hub import ModelCard
from publish_fixtures import RecordingHub, assert_card_cites, publish_dry_run

from publish import PublishError

SUMMARY = {
    "arms": {
        "base": {"metrics": {"embedding_diversity": {"mean": 0.6123, "ci": [0.55, 0.66], "n": 20}}},
        "anchored": {
            "metrics": {"embedding_diversity": {"mean": 0.5811, "ci_low": 0.5, "ci_high": 0.62, "n": 20}},
            "embedder": "all-MiniLM-L6-v2",
        },
    },
    "collapse_ratio": {"mean": 5.9, "ci": [2.1, 12.0]},
    "notes": ["a list the table cannot show"],
}


def card_table(card: str) -> list[list[str]]:
    """Rows of the evaluation table in a card (cells stripped), [] when there is none."""
    match = re.search(r"\| arm \| metric \| estimate \| interval \| n \|\n\| --- .*\n((?:\|.*\n)*)", card)
    if not match:
        return []
    return [[c.strip() for c in line.strip("|").split("|")] for line in match.group(1).splitlines()]


def numbers_in(node) -> set[str]:
    """Every number in a JSON value, formatted as the card formats them."""
    if isinstance(node, dict):
        return set().union(*(numbers_in(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(numbers_in(v) for v in node)) if node else set()
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return {f"{float(node):.4g}"}
    return set()


def assert_only_numbers_from(card: str, summary) -> None:
    """Each estimate, interval bound and n in the card's table is a number of summary.json."""
    allowed = numbers_in(summary) | {"n/a", "-"}
    for arm, metric, estimate, interval, n in card_table(card):
        assert estimate in allowed, (arm, metric, estimate)
        for bound in re.findall(r"[-\d.e+]+", interval):
            assert bound in allowed, (arm, metric, interval)
        assert n == "-" or f"{float(n):.4g}" in allowed, (arm, metric, n)


def test_dry_run_stages_model_tokenizer_and_card(checkpoint_dir, tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(SUMMARY), encoding="utf-8")
    hub = RecordingHub()
    staging = tmp_path / "stage"
    result = publish_dry_run("model", checkpoint_dir, staging, hub, eval_summary=str(summary))
    folder = staging / "repo"
    assert result["folder"] == folder.resolve()
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "README.md",
        "config.json",
        "eval_summary.json",
        "generation_config.json",
        "manifest.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    # Nothing was sent, and nothing claims it was.
    assert hub.calls == [] and hub.tokens == []
    assert result["receipt"] is None and not (staging / "upload_receipt.json").exists()
    # What is uploaded loads as a model and a tokenizer with the annotation tokens.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.vocab_size == len(tokenizer)
    assert "<|ann|>" in tokenizer.get_vocab() and "<|/ann|>" in tokenizer.get_vocab()
    assert (folder / "eval_summary.json").read_bytes() == summary.read_bytes()
    # Skipped files are recorded with their reasons in the publish manifest.
    manifest = json.loads((staging / "manifest.json").read_text())
    assert manifest["stage"] == "publish" and manifest["mode"] == "dry_run"
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"checkpoint-10/", "training_args.bin"}
    assert "pickle" in skipped["training_args.bin"]
    assert [f["path"] for f in manifest["files"]] == names
    assert manifest["counts"]["files"] == len(names)
    assert manifest["inputs"]["source"]["fingerprint"].startswith("sha256:")
    assert manifest["inputs"]["eval_summary"]["path"] == str(summary)

    card_text = (folder / "README.md").read_text()
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "apache-2.0"
    assert card.data.library_name == "transformers"
    assert "annotation-anchored" in card.data.tags and "arm-anchored" in card.data.tags
    assert card.data.base_model == "someone/tiny-base"  # the manifest's model input is a hub id
    assert card.data.datasets is None  # the only data input is a local file, not a hub dataset
    assert card.data.eval_results is None  # results live in the table, copied from the file
    phrases = (
        "2605.09995",
        "Annotations Mitigate Post-Training Mode Collapse",
        "training arm: **anchored**",
        "split_generation",
        "<|ann|>",
        "skip_special_tokens=False",
        "learning_rate: 0.0003",
        "Instruction: {prompt}",
        "Git commit",
        "transformers | 5.",
    )
    source_manifest = assert_card_cites(card_text, phrases, checkpoint_dir, "train_data")
    assert source_manifest["config_fingerprint"] in card_text
    rows = card_table(card_text)
    assert rows == [
        ["base", "embedding_diversity", "0.6123", "[0.55, 0.66]", "20"],
        ["anchored", "embedding_diversity", "0.5811", "[0.5, 0.62]", "20"],
        ["(run)", "collapse_ratio", "5.9", "[2.1, 12]", "-"],
    ]
    assert "| arms.anchored.embedder | all-MiniLM-L6-v2 |" in card_text  # the embedder beside the numbers
    assert "| notes | a list the table cannot show |" in card_text
    assert_only_numbers_from(card_text, SUMMARY)


def test_card_never_claims_an_eval_missing_from_the_summary(checkpoint_dir, tmp_path):
    summary = {"base": {"distinct_2": {"mean": 0.4}}, "judge": "offline", "n_prompts": 8}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary), encoding="utf-8")
    publish_dry_run("model", checkpoint_dir, tmp_path / "with", eval_summary=str(path))
    card = (tmp_path / "with" / "repo" / "README.md").read_text()
    assert card_table(card) == [["base", "distinct_2", "0.4", "-", "-"]]
    assert "| (run) | n_prompts | 8 |" in card  # a plain number: listed, not a statistic
    for absent in ("embedding_diversity", "semantic_entropy", "collapse_ratio", "| anchored |"):
        assert absent not in card, absent
    assert_only_numbers_from(card, summary)

    publish_dry_run("model", checkpoint_dir, tmp_path / "without")
    card = (tmp_path / "without" / "repo" / "README.md").read_text()
    assert card_table(card) == []
    assert "no evaluation result is claimed" in card
    assert not (tmp_path / "without" / "repo" / "eval_summary.json").exists()


@pytest.mark.parametrize(
    "summary",
    [
        [1, 2, 3],
        "just text",
        {"arms": [1, 2]},
        {"a": {"b": {"c": {"d": {"e": 1}}}}},
        {"arms": {"x": {"m": {"mean": "high"}}}},
        {},
    ],
)
def test_odd_summary_shapes_render_without_claims(checkpoint_dir, tmp_path, summary):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary), encoding="utf-8")
    publish_dry_run("model", checkpoint_dir, tmp_path / "stage", eval_summary=str(path))
    card = (tmp_path / "stage" / "repo" / "README.md").read_text()
    assert card_table(card) == []
    assert "No evaluation result is claimed" in card


def test_eval_stage_shaped_summary(checkpoint_dir, tmp_path):
    """The shape eval/summary.py writes: arms -> temperatures -> metrics / collapse, plus run-wide ratios."""
    summary = {
        "provenance": {"note": "x" * 300, "sampling": {"backend": "hf", "temperatures": [1.0], "seed": 3}},
        "metric_names": {"diversity": ["embedding_diversity"], "quality": []},
        "arms": {
            "base": {
                "model": "runs/pretrain/plain",
                "mode": "plain",
                "base_arm": None,
                "temperatures": {
                    "1": {
                        "temperature": 1.0,
                        "n_prompts": 8,
                        "n_samples": 32,
                        "metrics": {"embedding_diversity": {"mean": 0.71, "ci_low": 0.66, "ci_high": 0.75, "n": 8}},
                        "parse": {"expected": False, "ok": 0, "failed": 0, "failure_rate": None, "by_reason": {}},
                    }
                },
            },
            "anchored": {
                "model": "runs/posttrain/anchored",
                "mode": "anchored",
                "base_arm": "base",
                "temperatures": {
                    "1": {
                        "temperature": 1.0,
                        "n_prompts": 8,
                        "n_samples": 32,
                        "metrics": {
                            "embedding_diversity": {"mean": 0.64, "ci_low": 0.6, "ci_high": 0.69, "n": 8},
                            "distinct_2": {"mean": None, "ci_low": None, "ci_high": None, "n": 0},
                        },
                        "parse": {
                            "expected": True,
                            "ok": 30,
                            "failed": 2,
                            "failure_rate": 0.0625,
                            "by_reason": {"no annotation": 2},
                        },
                        "collapse": {
                            "embedding_diversity": {
                                "base_arm": "base",
                                "mean": 0.07,
                                "ci_low": 0.02,
                                "ci_high": 0.11,
                                "n_prompts": 8,
                            }
                        },
                    }
                },
            },
        },
        "collapse_ratios": {
            "pairs": {
                "plain_sft/anchored": {
                    "1": {
                        "embedding_diversity": {
                            "n_prompts": 8,
                            "ratio": 4.2,
                            "status": "ok",
                            "ci_low": 1.5,
                            "ci_high": 9.0,
                            "gap_closed": 0.76,
                            "gap_closed_ci_low": 0.33,
                            "gap_closed_ci_high": 0.89,
                        }
                    }
                }
            },
            "skipped": {},
        },
    }
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary), encoding="utf-8")
    publish_dry_run("model", checkpoint_dir, tmp_path / "stage", eval_summary=str(path))
    card = (tmp_path / "stage" / "repo" / "README.md").read_text()
    pair = "collapse_ratios.pairs.plain_sft/anchored.1.embedding_diversity"
    assert card_table(card) == [
        ["base", "T=1.embedding_diversity", "0.71", "[0.66, 0.75]", "8"],
        ["anchored", "T=1.embedding_diversity", "0.64", "[0.6, 0.69]", "8"],
        ["anchored", "T=1.distinct_2", "n/a", "-", "0"],
        ["anchored", "T=1.collapse.embedding_diversity", "0.07", "[0.02, 0.11]", "8"],
        ["(run)", pair, "4.2", "[1.5, 9]", "8"],
        ["(run)", pair + ".gap_closed", "0.76", "[0.33, 0.89]", "-"],
    ]
    assert "| anchored | T=1.parse.failed | 2 |" in card  # parse failures are shown, not hidden
    assert "| provenance.sampling.backend | hf |" in card
    assert "`provenance.note`" in card  # too long to show: named
    assert_only_numbers_from(card, summary)


def test_unknown_arm_is_said_unknown(checkpoint_dir, tmp_path):
    source = tmp_path / "ckpt"
    shutil.copytree(checkpoint_dir, source)
    manifest = json.loads((source / "manifest.json").read_text())
    del manifest["config"]["arm"]
    (source / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    publish_dry_run("model", source, tmp_path / "stage")
    card = (tmp_path / "stage" / "repo" / "README.md").read_text()
    assert "training arm: **unknown**" in card
    assert "The arm is unknown" in card
    assert "arm-" not in ModelCard.load(tmp_path / "stage" / "repo" / "README.md").data.to_yaml()


def test_pretrain_data_arm_and_plain_arm(checkpoint_dir, tmp_path):
    source = tmp_path / "ckpt"
    shutil.copytree(checkpoint_dir, source)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["stage"] = "pretrain"
    manifest["config"] = {"data": {"arm": "plain"}, "model": {"hidden_size": 16}}
    (source / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    publish_dry_run("model", source, tmp_path / "stage")
    card = (tmp_path / "stage" / "repo" / "README.md").read_text()
    assert "training arm: **plain**" in card and "`config.data.arm` = `plain`" in card
    assert "split_generation" not in card  # a plain model writes no annotation


def test_incomplete_checkpoint_is_refused(checkpoint_dir, tmp_path):
    source = tmp_path / "ckpt"
    shutil.copytree(checkpoint_dir, source)
    (source / "model.safetensors").unlink()
    with pytest.raises(PublishError, match=r"source_dir.*safetensors"):
        publish_dry_run("model", source, tmp_path / "stage")


def test_staging_is_rebuilt_but_foreign_folders_are_not_touched(checkpoint_dir, tmp_path):
    staging = tmp_path / "stage"
    publish_dry_run("model", checkpoint_dir, staging)
    (staging / "repo" / "stale.txt").write_text("from an earlier run")
    publish_dry_run("model", checkpoint_dir, staging)
    assert not (staging / "repo" / "stale.txt").exists()

    foreign = tmp_path / "foreign"
    (foreign / "repo").mkdir(parents=True)
    (foreign / "repo" / "precious.txt").write_text("keep me")
    with pytest.raises(PublishError, match="staging_dir"):
        publish_dry_run("model", checkpoint_dir, foreign)
    assert (foreign / "repo" / "precious.txt").read_text() == "keep me"
    with pytest.raises(PublishError, match="overlaps"):
        publish_dry_run("model", checkpoint_dir, checkpoint_dir / "publish")


def test_lora_adapter_is_published_as_peft(checkpoint_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(checkpoint_dir)
    adapter = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    source = tmp_path / "adapter"
    adapter.save_pretrained(source)
    AutoTokenizer.from_pretrained(checkpoint_dir).save_pretrained(source)
    shutil.copy(checkpoint_dir / "manifest.json", source / "manifest.json")
    result = publish_dry_run("model", source, tmp_path / "stage")
    names = {f["path"] for f in result["files"]}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    card = ModelCard.load(tmp_path / "stage" / "repo" / "README.md")
    assert card.data.library_name == "peft"
    assert "AutoPeftModelForCausalLM" in card.text
