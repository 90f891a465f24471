"""Eval resumes only samples of the same weights; model paths are checked before loading."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from test_run import tiny_config

from eval.config import ArmConfig
from eval.stage import run
from stage_io.model_paths import ModelPathError
from stage_io.run_identity import RunIdentityError


def test_new_weights_at_the_same_path_are_refused(tmp_path, tiny_models, prompts_file):
    """Resuming would mix samples of the old and the new weights under one manifest."""
    model = tmp_path / "model"
    shutil.copytree(tiny_models["plain"], model)
    config = tiny_config(
        tmp_path, tiny_models, prompts_file, [ArmConfig(name="sft", model=str(model))], stages=["generate"]
    )
    config = dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, temperatures=[1.0], limit=5))
    run_dir = run(config)
    before = (run_dir / "generations.jsonl").read_bytes()
    shutil.copy(Path(tiny_models["anchored"]) / "model.safetensors", model / "model.safetensors")  # retrained in place
    with pytest.raises(RunIdentityError, match=r"\(arm:sft\).*changed: model_weights: \"sha256:"):
        run(dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, limit=None)))
    assert (run_dir / "generations.jsonl").read_bytes() == before
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["outputs"]["generations.jsonl"]["fingerprint"].startswith("sha256:")


def test_an_arm_model_that_is_not_a_model_is_named(tmp_path, tiny_models, prompts_file):
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("{}\n")
    tokenizer_only = tiny_models["tokenizer"]
    for model, expected in [
        (str(jsonl), "is a file (.jsonl), not a model directory"),
        (tokenizer_only, "is a tokenizer-only directory, not a model (no config.json)"),
        (str(tmp_path / "missing" / "model"), "does not exist"),
    ]:
        config = tiny_config(
            tmp_path, tiny_models, prompts_file, [ArmConfig(name="x", model=model)], stages=["generate"]
        )
        with pytest.raises(
            ModelPathError,
            match=r"arms\[0\].model \(arm 'x'\): .*"
            + expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\."),
        ):
            run(config)
