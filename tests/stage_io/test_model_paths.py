"""Model and tokenizer references are checked before a library loads them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from stage_io.file_integrity import file_problem, tree_problems
from stage_io.model_paths import ModelPathError, check_model, check_tokenizer


def fake_model(folder, tokenizer=True):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    save_file({"w": torch.zeros(64, 64)}, str(folder / "model.safetensors"))
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing", "does not exist"),
        (
            lambda p: (p / "d.jsonl").write_text("{}\n") and p / "d.jsonl",
            r"is a file \(\.jsonl\), not a model directory",
        ),
        (
            lambda p: (
                (p / "ann").mkdir() or (p / "ann" / "manifest.json").write_text('{"stage": "annotate"}') and p / "ann"
            ),
            r"is the output of the annotate stage, not a model \(no config.json\)",
        ),
        (
            lambda p: (p / "tok").mkdir() or (p / "tok" / "tokenizer.json").write_text("{}") and p / "tok",
            "is a tokenizer-only directory",
        ),
        (lambda p: (p / "empty").mkdir() or p / "empty", "is an empty directory"),
    ],
)
def test_what_was_found_is_named(tmp_path, make, expected):
    with pytest.raises(ModelPathError, match="model_path: .*" + expected):
        check_model(str(make(tmp_path)), "model_path")


def test_cut_weights_are_named(tmp_path):
    model = fake_model(tmp_path / "m")
    check_model(str(model), "model_path")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ModelPathError, match=r"damaged weights: model.safetensors: truncated"):
        check_model(str(model), "model_path")


def test_an_uncached_hub_id_offline_is_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelPathError, match="not in the local cache while offline"):
        check_model("no-such-org/no-such-model-xyz", "arms[0].model")
    with pytest.raises(ModelPathError, match="tokenizer.pretrained: .*not in the local cache"):
        check_tokenizer("no-such-org/no-such-tokenizer-xyz", "tokenizer.pretrained")


def test_torch_archives_and_json_cut_short_are_found(tmp_path):
    torch.save({"a": torch.arange(1000)}, tmp_path / "random_states_0.pkl")
    (tmp_path / "state.json").write_text('{"step": 3}')
    assert tree_problems(tmp_path) == []
    data = (tmp_path / "random_states_0.pkl").read_bytes()
    (tmp_path / "random_states_0.pkl").write_bytes(data[: len(data) // 2])
    (tmp_path / "state.json").write_text('{"step": ')
    assert file_problem(tmp_path / "random_states_0.pkl").startswith("random_states_0.pkl: truncated")
    assert len(tree_problems(tmp_path)) == 2


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"model_type": "lla', r"damaged config.json \(not valid JSON"),
        ("[1, 2]", r"config.json is not a transformers model config"),
        ('{"hidden_size": 8}', r"config.json is not a transformers model config"),
    ],
)
def test_a_damaged_config_json_is_named(tmp_path, text, expected):
    model = fake_model(tmp_path / "m")
    (model / "config.json").write_text(text)
    with pytest.raises(ModelPathError, match=r"arms\[0\].model: .*" + expected):
        check_model(str(model), "arms[0].model")
