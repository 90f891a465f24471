"""A fine-tune whose loss turns NaN stops at the next log, without a final model or manifest."""

from __future__ import annotations

import pytest
from posttrain_fixtures import sft_rows, write_jsonl
from trl import SFTTrainer

from posttrain.config import DataConfig, PosttrainConfig, TrainingConfig
from posttrain.train import NonFiniteTrainingError, run
from stage_io.records import RecordSource


def test_a_nan_loss_stops_the_fine_tune_without_a_manifest(bbc, model_dir, tmp_path, monkeypatch):
    real = SFTTrainer.compute_loss

    def poisoned(self, model, inputs, *args, **kwargs):
        loss = real(self, model, inputs, *args, **kwargs)
        if self.state.global_step >= 2:  # the third step diverges
            loss = loss * float("nan") if not isinstance(loss, tuple) else (loss[0] * float("nan"), *loss[1:])
        return loss

    monkeypatch.setattr(SFTTrainer, "compute_loss", poisoned)
    source = write_jsonl(tmp_path / "sft.jsonl", [{k: r[k] for k in ("id", "messages")} for r in sft_rows(bbc, 8)])
    out = tmp_path / "out"
    config = PosttrainConfig(
        model_path=str(model_dir),
        data=DataConfig(source=RecordSource(source=str(source))),
        arm="plain",
        max_seq_len=192,
        output_dir=str(out),
        report_to=[],
        training=TrainingConfig(
            learning_rate=3e-3,
            max_steps=6,
            per_device_batch_size=4,
            warmup=0.0,
            scheduler="constant",
            save_steps=1000,
            logging_steps=1,
            torch_threads=1,
        ),
    )
    with pytest.raises(NonFiniteTrainingError, match=r"step 3: the loss is nan: training diverged"):
        run(config)
    assert not (out / "manifest.json").exists() and not (out / "model.safetensors").exists()
