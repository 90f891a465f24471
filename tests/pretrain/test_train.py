"""The training loop: loss falls, checkpoints load and generate, resume is exact, two processes work."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from pretrain_fixtures import REPO, TINY_YAML, tiny_config
from transformers import AutoModelForCausalLM, AutoTokenizer

from annotate.format import ANNOTATION_OPEN, SPECIAL_TOKENS
from pretrain.train import run


@pytest.fixture(scope="module")
def tiny_run(ann_dir, tmp_path_factory):
    """The tiny anchored run of configs/pretrain/tiny.yaml (20 steps), logged to TensorBoard."""
    tmp = tmp_path_factory.mktemp("tiny_run")
    config = tiny_config(tmp, ann_dir, "logging.report_to=[tensorboard]")
    return config, run(config)


def test_loss_falls(tiny_run):
    _, result = tiny_run
    assert result.finished and len(result.losses) == result.total_steps == 20
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.5, result.losses


def test_checkpoint_reloads_and_generates(tiny_run):
    config, result = tiny_run
    out = result.output_dir
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "manifest.json"):
        assert (out / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    saved = json.loads((out / "config.json").read_text())
    assert saved["rope_theta"] == saved["rope_parameters"]["rope_theta"]  # also read by transformers 4 (vLLM)
    assert model.config.model_type == "olmo2" and model.config.vocab_size >= len(tok)
    assert all(len(tok.encode(t, add_special_tokens=False)) == 1 for t in SPECIAL_TOKENS)
    prompt = tok(ANNOTATION_OPEN + "topic:", return_tensors="pt")
    torch.manual_seed(0)
    generated = model.generate(**prompt, max_new_tokens=12, do_sample=True, pad_token_id=tok.pad_token_id)
    assert generated.shape[1] > prompt.input_ids.shape[1]
    assert isinstance(tok.decode(generated[0], skip_special_tokens=False), str)
    assert list((out / "logs").rglob("events.out.tfevents*")), "no TensorBoard log"


def test_manifest_counts_the_trained_tokens(tiny_run):
    config, result = tiny_run
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["trained_tokens"] == c["sequence_slots"] == 20 * 1024 == config.train.train_tokens
    assert c["annotation_tokens"] + c["content_tokens"] == c["trained_tokens"] and c["annotation_tokens"] > 0
    assert c["packing_efficiency"] == 1.0
    # Annotations replace content at an equal budget: their share and the content tokens lost are recorded.
    assert c["annotation_share"] == c["annotation_tokens"] / c["trained_tokens"]
    assert c["content_tokens_lost_to_annotations"] == c["annotation_tokens"]
    assert c["corpus_per_epoch"]["chunks_without_annotation"]["failed"] > 0
    assert manifest["arm"] == "anchored" and manifest["inputs"]["annotations"]["fingerprint"].startswith("sha256:")


def test_rows_start_at_chunks_logs_padding_and_the_annotation_in_view_share(tiny_run, ann_dir, tmp_path):
    """Both pretrain levers of the embedded study on: every figure lands in the manifest and metrics."""
    config = tiny_config(
        tmp_path,
        ann_dir,
        "data.rows_start_at_chunks=true",
        "tokenizer.train_on_annotations=true",
        "train.max_steps=4",
        "train.train_tokens=null",
        "logging.log_every=2",
    )
    result = run(config)
    c = json.loads((result.output_dir / "manifest.json").read_text())["counts"]
    assert c["sequence_slots"] == 4 * 1024 == c["trained_tokens"] + c["padding_slots"] and c["padding_slots"] > 0
    assert c["chunks_moved_to_next_row"] > 0 and c["packing_efficiency"] < 1.0
    assert 0 < c["content_tokens_annotation_in_view"] <= c["content_tokens_chunk_start_in_view"] <= c["content_tokens"]
    assert c["annotation_in_view_share"] == c["content_tokens_annotation_in_view"] / c["content_tokens"]
    # The same share is logged without the option, and lower: rows packed full cut chunks from their annotation.
    off = json.loads((tiny_run[1].output_dir / "manifest.json").read_text())["counts"]
    assert off["padding_slots"] == 0 and 0 < off["annotation_in_view_share"] < c["annotation_in_view_share"]
    logged = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [2, 4] and logged[-1]["train/annotation_in_view_share"] == pytest.approx(
        c["annotation_in_view_share"]
    )


def test_resume_reproduces_the_uninterrupted_run(ann_dir, tmp_path):
    overrides = ("train.max_steps=6", "train.train_tokens=null", "train.checkpoint_every=3")
    whole = run(tiny_config(tmp_path / "whole", ann_dir, *overrides, tokenizer_dir=tmp_path / "tok"))
    interrupted = tiny_config(
        tmp_path / "split", ann_dir, *overrides, "train.stop_after_steps=3", tokenizer_dir=tmp_path / "tok"
    )
    first = run(interrupted)
    assert not first.finished and (first.start_step, first.end_step) == (0, 3)
    assert (first.output_dir / "checkpoints" / "step_00000003" / "training_state.json").is_file()
    second = run(tiny_config(tmp_path / "split", ann_dir, *overrides, tokenizer_dir=tmp_path / "tok"))
    assert second.finished and (second.start_step, second.end_step) == (3, 6)
    assert first.losses + second.losses == pytest.approx(whole.losses, abs=1e-6)
    assert second.counters == whole.counters  # the data position continued exactly
    a = AutoModelForCausalLM.from_pretrained(str(whole.output_dir)).state_dict()
    b = AutoModelForCausalLM.from_pretrained(str(second.output_dir)).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_under_another_config_is_refused_before_any_work(ann_dir, tmp_path, monkeypatch):
    import pretrain.train as train
    from stage_io.run_identity import RunIdentityError

    overrides = ("train.max_steps=4", "train.train_tokens=null", "train.stop_after_steps=2")
    first = run(tiny_config(tmp_path, ann_dir, *overrides))
    assert not first.finished
    state_file = first.output_dir / "checkpoints" / "step_00000002" / "training_state.json"

    def no_work(*args, **kwargs):
        raise AssertionError("the refusal must come before the tokenizer and corpus are built")

    with monkeypatch.context() as patch:
        patch.setattr(train, "prepare_tokenizer", no_work)
        with pytest.raises(
            RunIdentityError,
            match=r"step_00000002: .*changed: config.optim.lr: 0.003 -> 0.001\); "
            r"set train.resume=never",
        ):
            run(tiny_config(tmp_path, ann_dir, *overrides, "optim.lr=1e-3"))

    # A checkpoint that stored its identity nested (older code) compares the same.
    state = json.loads(state_file.read_text())
    nested: dict = {}
    for key, value in state["identity"]["config"].items():
        section, _, name = key.rpartition(".")
        (nested.setdefault(section, {}) if section else nested)[name] = value
    state["identity"]["config"] = nested
    state_file.write_text(json.dumps(state))
    resumed = run(tiny_config(tmp_path, ann_dir, *overrides[:2], "logging.log_every=1"))  # logging may change
    assert resumed.finished and (resumed.start_step, resumed.end_step) == (2, 4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes(ann_dir, tmp_path):
    """`accelerate launch --multi_gpu` on a machine without GPUs runs gloo CPU processes
    (`--cpu --num_processes 2` would run one process: accelerate needs MPI for that)."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "pretrain",
        str(TINY_YAML),
        f"data.annotations={ann_dir}",
        f"output_dir={out}/{{arm}}",
        f"tokenizer.path={tmp_path / 'tok'}",
        "train.max_steps=4",
        "train.train_tokens=null",
        "train.checkpoint_every=2",
        "train.cpu_threads=1",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    arm_dir = out / "anchored"
    manifest = json.loads((arm_dir / "manifest.json").read_text())
    assert manifest["counts"]["processes"] == 2
    assert manifest["counts"]["trained_tokens"] == 4 * 2 * 1024  # two processes, 1,024 tokens each per step
    assert (arm_dir / "checkpoints" / "step_00000002" / "training_state.json").is_file()
    assert AutoModelForCausalLM.from_pretrained(str(arm_dir)).config.model_type == "olmo2"
