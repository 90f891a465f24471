"""A fine-tune whose loss turns NaN stops at the next log, without a final model or manifest."""

from __future__ import annotations

import pytest
from posttrain_fixtures import sft_rows, tiny_posttrain_config, write_jsonl
from trl import SFTTrainer

from posttrain.config import DataConfig
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
    data = DataConfig(source=RecordSource(source=str(source)))
    config = tiny_posttrain_config(model_dir, out, "plain", data, {"max_steps": 6, "per_device_batch_size": 4})
    with pytest.raises(NonFiniteTrainingError, match=r"step 3: the loss is nan: training diverged"):
        run(config)
    assert not (out / "manifest.json").exists() and not (out / "model.safetensors").exists()
