"""Resume checks what it resumes: metrics rows, damaged checkpoints, damaged final weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from pretrain_fixtures import REPO, TINY_YAML, tiny_config
from transformers import AutoModelForCausalLM

from pretrain.train import run


def metric_steps(out):
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_killed_run_resumes_without_duplicate_metrics(ann_dir, tmp_path):
    """SIGKILL a real pretrain process once it has logged step 5 (checkpoints every 3 steps).
    Checkpoints newer than step 3 are removed, so the state is exactly that of a kill between
    step 5's log row and step 6's checkpoint, whatever the process did before the signal
    landed. The resumed run must not log steps 4 and 5 again."""
    overrides = ["train.max_steps=40", "train.train_tokens=null", "train.checkpoint_every=3", "logging.log_every=1"]
    out = tmp_path / "run" / "anchored"
    cmd = [
        sys.executable,
        "-m",
        "pretrain",
        str(TINY_YAML),
        f"data.annotations={ann_dir}",
        f"output_dir={tmp_path}/run/{{arm}}",
        f"tokenizer.path={tmp_path / 'tok'}",
        "train.cpu_threads=1",
        *overrides,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("step 5/40"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for checkpoint in (out / "checkpoints").glob("step_*"):
        if int(checkpoint.name.split("_")[1]) > 3:
            for file in sorted(checkpoint.rglob("*"), reverse=True):
                file.unlink() if file.is_file() else file.rmdir()
            checkpoint.rmdir()
    assert metric_steps(out)[:5] == [1, 2, 3, 4, 5]
    result = run(tiny_config(tmp_path, ann_dir, *overrides, tokenizer_dir=tmp_path / "tok"))
    assert result.finished and result.start_step == 3
    assert metric_steps(out) == list(range(1, 41))  # every step once


def test_damaged_checkpoints_and_weights_are_not_trusted(ann_dir, tmp_path):
    overrides = ("train.max_steps=6", "train.train_tokens=null", "train.checkpoint_every=2")
    config = tiny_config(tmp_path, ann_dir, *overrides, "train.stop_after_steps=4")
    first = run(config)
    out = first.output_dir
    rng = out / "checkpoints" / "step_00000004" / "random_states_0.pkl"
    rng.write_bytes(rng.read_bytes()[:100])  # cut short: accelerate alone would skip it without a word
    second = run(tiny_config(tmp_path, ann_dir, *overrides))
    assert second.finished and second.start_step == 2  # the newest was set aside, the one before used
    assert (out / "checkpoints" / "broken-step_00000004").is_dir()

    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # the manifest still says complete
    third = run(tiny_config(tmp_path, ann_dir, *overrides))
    assert third.finished and third.start_step == 4, "a damaged final checkpoint was taken as complete"
    AutoModelForCausalLM.from_pretrained(str(out))  # whole again
    assert (out / ".manifest.json.invalid").is_file()
    assert json.loads((out / "manifest.json").read_text())["outputs"]["model.safetensors"]["fingerprint"]
    fourth = run(tiny_config(tmp_path, ann_dir, *overrides))
    assert fourth.start_step == fourth.end_step == 6  # complete now, verified
