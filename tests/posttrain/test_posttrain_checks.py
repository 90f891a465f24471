"""posttrain checks its inputs and its checkpoints before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from posttrain.config import PosttrainConfig
from posttrain.train import check_inputs, latest_whole_checkpoint
from stage_io.config import load_config
from stage_io.model_paths import ModelPathError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "posttrain"


def fake_model(folder: Path, positions: int = 128) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": positions}))
    save_file({"w": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text("{}")
    return folder


def config(*overrides: str) -> PosttrainConfig:
    return load_config(PosttrainConfig, CONFIGS / "tiny_plain.yaml", ["data.source.source=x.jsonl", *overrides])


def test_max_seq_len_beyond_the_models_positions_is_an_error(tmp_path):
    """Otherwise transformers only warns about indexing errors, and training goes on."""
    model = fake_model(tmp_path / "m", positions=128)
    with pytest.raises(ValueError, match=r"max_seq_len=192 exceeds the 128 positions .*train_past_positions=true"):
        check_inputs(config(f"model_path={model}", "train_past_positions=false"))
    check_inputs(config(f"model_path={model}", "train_past_positions=false", "max_seq_len=128"))
    check_inputs(config(f"model_path={model}"))  # tiny_plain.yaml opts in, with a comment saying why


def test_model_and_tokenizer_paths_are_named(tmp_path):
    (tmp_path / "sft.jsonl").write_text("{}\n")
    with pytest.raises(ModelPathError, match=r"model_path: .*is a file \(.jsonl\)"):
        check_inputs(config(f"model_path={tmp_path / 'sft.jsonl'}"))
    model = fake_model(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelPathError, match="tokenizer_path: .*an empty directory, with no tokenizer files"):
        check_inputs(config(f"model_path={model}", f"tokenizer_path={tmp_path / 'empty'}"))


def write_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
    torch.save({"state": 1}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": int(folder.name.split("-")[1])}))
    return folder


def test_an_empty_or_damaged_newest_checkpoint_is_set_aside(tmp_path, capsys):
    """An empty checkpoint-N left by a kill mid-save must not be taken as the latest on every rerun."""
    root = tmp_path / "checkpoints"
    write_checkpoint(root / "checkpoint-2")
    damaged = write_checkpoint(root / "checkpoint-4")
    (damaged / "optimizer.pt").write_bytes((damaged / "optimizer.pt").read_bytes()[:50])
    (root / "checkpoint-6").mkdir()  # killed while saving
    assert latest_whole_checkpoint(root) == str(root / "checkpoint-2")
    assert sorted(p.name for p in root.iterdir()) == ["broken-checkpoint-4", "broken-checkpoint-6", "checkpoint-2"]
    out = capsys.readouterr().out
    assert "checkpoint-6 is damaged (no trainer_state.json" in out and "optimizer.pt: truncated" in out
