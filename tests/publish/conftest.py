"""Real inputs for the publish tests: a tiny checkpoint and a tiny annotated dataset, built once per session.

The checkpoint is a real (untrained) transformers model with a tokenizer trained on the spot; the dataset is
what the annotate stage writes. Both carry manifests written by ``stage_io.manifest.write_manifest``, as the
real stages write them. The helpers the tests import are in publish_fixtures.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from model_fixtures import tiny_lm_config
from publish_fixtures import PosttrainLikeConfig, build_tokenizer, write_annotated_dataset

from stage_io.manifest import write_manifest


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    """A posttrain-like output: tiny Llama, tokenizer, manifest, plus files that must not be published."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("posttrain")
    out = root / "anchored"
    tokenizer = build_tokenizer()
    config = tiny_lm_config(LlamaConfig, tokenizer, hidden=16, layers=1, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "training_args.bin").write_bytes(b"pickle")
    (out / "checkpoint-10").mkdir()
    (out / "checkpoint-10" / "optimizer.pt").write_bytes(b"state")
    train_data = root / "sft.jsonl"
    train_data.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n", encoding="utf-8")
    write_manifest(
        out,
        stage="posttrain",
        config=PosttrainLikeConfig(),
        inputs={"train_data": train_data, "model": "someone/tiny-base"},
        counts={"examples": 1},
    )
    return out


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    return write_annotated_dataset(tmp_path_factory.mktemp("annotate") / "out")


@pytest.fixture
def no_stored_token(monkeypatch, tmp_path):
    """No token anywhere: env vars unset and huggingface_hub's token file pointing nowhere."""
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "TEST_PUBLISH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-here"))
