"""The trainer: TRL trains exactly our label mask; tiny end-to-end runs per arm on CPU."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from posttrain_fixtures import sft_rows, tiny_posttrain_config, write_annotated, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from annotate.format import ANNOTATION_OPEN
from posttrain.config import DataConfig, LoraSettings, PosttrainConfig
from posttrain.examples import build_examples, is_held_out, trained_ids_fingerprint
from posttrain.train import make_trainer, run
from stage_io.cli import stage_main
from stage_io.records import RecordSource
from stage_io.run_identity import RunIdentityError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "posttrain"


def tiny_config(model_dir, out, arm, data: DataConfig, **training) -> PosttrainConfig:
    return tiny_posttrain_config(model_dir, out, arm, data, training, keys_only_fraction=0.05)


def expected_labels(example):
    return [t if m else -100 for t, m in zip(example.input_ids, example.label_mask)]


@pytest.mark.parametrize("packing", [False, True])
def test_collated_labels_equal_the_label_mask_token_by_token(tokenizer, bbc, model_dir, tmp_path, packing):
    rows = sft_rows(bbc, 40)
    cfg = tiny_config(model_dir, tmp_path, "anchored", DataConfig(), packing=packing, per_device_batch_size=4)
    cfg.keys_only_fraction = 0.25
    built = build_examples(rows, tokenizer, cfg)
    assert built.counts["keys_only"] == 10
    by_ids = {tuple(e.input_ids): e for e in built.examples}
    trainer = make_trainer(cfg, tokenizer, built.examples)
    seen = set()
    for batch in trainer.get_train_dataloader():
        input_ids, labels = batch["input_ids"], batch["labels"]
        if packing:  # one flattened row; position ids restart at every example
            starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [input_ids.shape[1]]
            segments = [(0, a, b) for a, b in zip(starts, starts[1:])]
        else:
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            segments = [(row, 0, n) for row, n in enumerate(lengths)]
        for row, a, b in segments:
            ids = input_ids[row, a:b].tolist()
            if packing and ids == [tokenizer.pad_token_id] * len(ids):
                continue
            example = by_ids[tuple(ids)]
            assert labels[row, a:b].tolist() == expected_labels(example), example.id
            seen.add(example.id)
        if packing:  # packed examples must not attend to each other: same logits as each one alone
            model = trainer.model.eval()
            with torch.no_grad():
                packed = model(input_ids=input_ids, position_ids=batch["position_ids"]).logits[0]
                for _, a, b in segments[:3]:
                    alone = model(input_ids=input_ids[:, a:b]).logits[0]
                    assert torch.allclose(packed[a:b], alone, atol=1e-4)
            model.train()
    assert seen == {e.id for e in built.examples}  # every example trained once per epoch


def losses(out):
    history = json.loads((out / "log_history.json").read_text())
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.mark.parametrize("arm", ["plain", "anchored"])
def test_tiny_sft_run_per_arm(bbc, model_dir, tmp_path, arm):
    """configs/posttrain/tiny_{arm}.yaml as the CLI runs it, on a tiny checkpoint and annotated set."""
    rows = sft_rows(bbc, 40)
    rows[5].update(status="failed", annotation="", error="no tags")
    ann = write_annotated(tmp_path / "ann", rows)
    out = tmp_path / "out"
    overrides = [f"model_path={model_dir}", f"data.annotations={ann}", f"output_dir={out}", "report_to=[tensorboard]"]
    assert stage_main("posttrain", PosttrainConfig, run, [str(CONFIGS / f"tiny_{arm}.yaml"), *overrides]) == 0
    assert list((out / "checkpoints" / "runs").rglob("events.out.tfevents.*"))  # TensorBoard logs

    curve = losses(out)
    assert len(curve) == 24
    assert sum(curve[-4:]) / 4 < sum(curve[:4]) / 4 - 0.5  # the loss falls (by more than half a nat)
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["records_in"] == 40 and counts["optimizer_steps"] == 24
    held = counts["validation_examples"]  # the config holds out 10% by id hash
    assert 0 < held < 10 and counts["validation_loss"] == json.loads((out / "validation.json").read_text())["loss"]
    if arm == "anchored":
        assert counts["skipped_by_reason"] == {"invalid_annotation": 1} and counts["trained"] == 39 - held
        assert counts["keys_only"] == math.floor(0.05 * (39 - held) + 0.5)
        issues = [json.loads(line) for line in (out / "example_issues.jsonl").read_text().splitlines()]
        assert issues == [
            {"id": "ex0005", "reason": "invalid_annotation", "detail": "status=failed: no tags", "action": "skipped"}
        ]
    else:  # the plain arm drops what the anchored arm drops (data.pair_with_anchored): the same 39 ids
        assert counts["skipped_by_reason"] == {"invalid_annotation": 1} and counts["trained"] == 39 - held
        assert counts["paired_with_anchored"] is True
    assert counts["trained_ids_sha256"].startswith("sha256:")
    assert counts["trained_tokens"] > 0 and manifest["inputs"]["data"]["fingerprint"].startswith("sha256:")

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert tok.convert_tokens_to_ids(ANNOTATION_OPEN) == AutoTokenizer.from_pretrained(model_dir).convert_tokens_to_ids(
        ANNOTATION_OPEN
    )
    prompt = tok("Instruction: Write a news article.\nResponse:\n", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]


def test_lora_run_saves_adapter_and_merged_model(bbc, model_dir, tmp_path):
    source = write_jsonl(tmp_path / "sft.jsonl", [{k: r[k] for k in ("id", "messages")} for r in sft_rows(bbc, 16)])
    out = tmp_path / "out"
    cfg = tiny_config(model_dir, out, "plain", DataConfig(source=RecordSource(source=str(source))), max_steps=4)
    cfg.lora = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    run(cfg)
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    name = "model.layers.0.self_attn.q_proj.weight"
    merged_w, base_w = dict(merged.named_parameters())[name], dict(base.named_parameters())[name]
    assert not torch.equal(merged_w, base_w)  # the adapter was merged in
    name = "model.layers.0.mlp.up_proj.weight"  # not adapted: unchanged
    assert torch.equal(dict(merged.named_parameters())[name], dict(base.named_parameters())[name])
    assert json.loads((out / "manifest.json").read_text())["lora_adapter"].endswith("adapter")


def test_checkpoint_and_resume(bbc, model_dir, tmp_path):
    source = write_jsonl(tmp_path / "sft.jsonl", [{k: r[k] for k in ("id", "messages")} for r in sft_rows(bbc, 16)])
    out = tmp_path / "out"
    data = DataConfig(source=RecordSource(source=str(source)))
    run(tiny_config(model_dir, out, "plain", data, max_steps=6, save_steps=2, resume_from_checkpoint="latest"))
    assert (out / "checkpoints" / "checkpoint-6").is_dir() and (out / "checkpoints" / "run.json").is_file()
    whole = json.loads((out / "log_history.json").read_text())
    shutil.rmtree(out / "checkpoints" / "checkpoint-6")  # as if the run had been killed after step 5
    # The same config resumes (save cadence and thread count may change: they change nothing trained).
    run(
        tiny_config(
            model_dir,
            out,
            "plain",
            data,
            max_steps=6,
            save_steps=3,
            save_total_limit=3,
            torch_threads=2,
            resume_from_checkpoint="latest",
        )
    )
    history = json.loads((out / "log_history.json").read_text())
    steps = [entry["step"] for entry in history if "loss" in entry]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 1-4 come from the checkpoint, 5-6 were trained after resuming
    assert [e["loss"] for e in history if "loss" in e] == pytest.approx(
        [e["loss"] for e in whole if "loss" in e], abs=1e-4
    )
    assert json.loads((out / "manifest.json").read_text())["counts"]["optimizer_steps"] == 6
    with pytest.raises(ValueError, match="resume_from_checkpoint"):
        run(tiny_config(model_dir, tmp_path / "o2", "plain", data, resume_from_checkpoint=str(tmp_path / "nope")))


def test_a_changed_config_with_checkpoints_is_refused_before_any_work(bbc, model_dir, tmp_path, monkeypatch):
    import posttrain.train as train

    source = write_jsonl(tmp_path / "sft.jsonl", [{k: r[k] for k in ("id", "messages")} for r in sft_rows(bbc, 16)])
    data = DataConfig(source=RecordSource(source=str(source)))
    out = tmp_path / "out"
    run(tiny_config(model_dir, out, "plain", data, max_steps=2, save_steps=1, resume_from_checkpoint="latest"))
    before = sorted(p.name for p in (out / "checkpoints").iterdir())

    def no_work(*args, **kwargs):
        raise AssertionError("the refusal must come before the tokenizer, the data and the trainer")

    monkeypatch.setattr(train, "load_tokenizer", no_work)
    # Training longer must not "resume" the finished run, nor a new learning rate train 0 steps of it.
    for change, changed in [
        (dict(max_steps=4), "training.max_steps: 2 -> 4"),
        (dict(max_steps=2, learning_rate=1e-3), "training.learning_rate: 0.003 -> 0.001"),
    ]:
        for resume in ("latest", None):  # a fresh start would mix its checkpoints with the old ones
            config = tiny_config(model_dir, out, "plain", data, save_steps=1, resume_from_checkpoint=resume, **change)
            with pytest.raises(
                RunIdentityError,
                match=rf"checkpoints/run.json: made by a run with a different config "
                rf"\(changed: {changed}\); use a new output_dir",
            ):
                run(config)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before

    (out / "checkpoints" / "run.json").unlink()  # checkpoints from code older than the check
    with pytest.raises(RunIdentityError, match="holds checkpoints but no run.json"):
        run(tiny_config(model_dir, out, "plain", data, max_steps=2, save_steps=1, resume_from_checkpoint="latest"))
    shutil.rmtree(out / "checkpoints")  # the documented way to start over in the same output_dir
    monkeypatch.undo()
    run(tiny_config(model_dir, out, "plain", data, max_steps=4, save_steps=2, resume_from_checkpoint="latest"))
    assert json.loads((out / "manifest.json").read_text())["counts"]["optimizer_steps"] == 4


def test_paired_arms_hold_out_the_same_ids_and_report_their_validation_loss(bbc, model_dir, tmp_path):
    rows = sft_rows(bbc, 40)
    rows[5].update(status="failed", annotation="", error="no tags")
    ann = write_annotated(tmp_path / "ann", rows)
    held = sorted(r["id"] for r in rows if is_held_out(r["id"], 0.15) and r["status"] == "ok")
    assert 0 < len(held) <= 8  # one evaluation batch, so TRL's eval loss is the same token mean
    report, counts, evals = {}, {}, {}
    for arm in ("plain", "anchored"):
        out = tmp_path / arm
        data = DataConfig(annotations=str(ann), validation_fraction=0.15)
        run(tiny_config(model_dir, out, arm, data, max_steps=4, eval_steps=2))
        report[arm] = json.loads((out / "validation.json").read_text())
        counts[arm] = json.loads((out / "manifest.json").read_text())["counts"]
        evals[arm] = [
            (e["step"], e["eval_loss"]) for e in json.loads((out / "log_history.json").read_text()) if "eval_loss" in e
        ]
    plain, anchored = report["plain"], report["anchored"]
    assert set(plain) == {
        "loss",
        "loss_no_annotation",
        "loss_marginal",
        "k",
        "n_examples",
        "n_response_tokens",
        "ids_sha256",
        "format",
    }
    assert plain["loss_marginal"] == plain["loss"] and plain["k"] is None and anchored["k"] == 8
    assert plain["n_examples"] == anchored["n_examples"] == len(held)
    assert plain["ids_sha256"] == anchored["ids_sha256"] == trained_ids_fingerprint(held)
    assert plain["n_response_tokens"] == anchored["n_response_tokens"] > 0  # the same responses
    assert (plain["format"], anchored["format"]) == ("plain", "anchored")
    assert plain["loss_no_annotation"] == plain["loss"] > 0
    assert (
        anchored["loss"] > 0
        and anchored["loss_no_annotation"] > 0
        and anchored["loss"] != anchored["loss_no_annotation"]
    )
    for key in ("trained_ids_sha256", "optimizer_steps", "trained", "validation_ids_sha256"):
        assert counts["plain"][key] == counts["anchored"][key], key
    for arm in ("plain", "anchored"):
        assert counts[arm]["validation_loss"] == report[arm]["loss"]
        assert counts[arm]["validation_loss_no_annotation"] == report[arm]["loss_no_annotation"]
        assert [step for step, _ in evals[arm]] == [2, 4]  # every eval_steps, the last one not repeated
        assert evals[arm][-1][1] == pytest.approx(report[arm]["loss"], abs=1e-4)  # TRL scores the same tokens
