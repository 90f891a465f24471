"""A run whose loss turns NaN stops at that step: no model, no manifest, and strict-JSON metrics."""

from __future__ import annotations

import json

import pytest
from pretrain_fixtures import tiny_config

import pretrain.train as train


def test_a_nan_loss_stops_training_without_a_manifest(ann_dir, tmp_path, monkeypatch):
    real, calls = train.forward_packed, []

    def poisoned(model, inputs):
        output = real(model, inputs)
        calls.append(1)
        if len(calls) > 2 * config.train.grad_accum:  # the third step diverges
            output.loss = output.loss * float("nan")
        return output

    monkeypatch.setattr(train, "forward_packed", poisoned)
    config = tiny_config(
        tmp_path,
        ann_dir,
        "train.train_tokens=null",
        "train.max_steps=6",
        "logging.log_every=1",
        "logging.report_to=[]",
        "train.checkpoint_every=2",
    )
    with pytest.raises(train.NonFiniteTrainingError, match=r"step 3: the loss is nan .*training diverged"):
        train.run(config)
    out = tmp_path / "run" / config.data.arm
    assert not (out / "manifest.json").exists() and not (out / "model.safetensors").exists()
    rows = [
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl"))
        for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002"]


def test_metrics_rows_write_null_for_non_finite_values(tmp_path):
    train.append_metrics(tmp_path, 1, {"train/loss": float("inf"), "train/lr": float("nan"), "train/tokens": 5})
    row = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert row == {"step": 1, "train/loss": None, "train/lr": None, "train/tokens": 5}
