"""Test-wide settings: no network, no hub lookups, deterministic threads."""

import os
from pathlib import Path

import pytest

# Nothing may be fetched from a hub at test time; fail fast instead of timing out.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_annotated_corpus(tmp_path_factory):
    """One real run of configs/annotate/tiny.yaml on 12 BBC articles, shared by every test that reads an
    annotated corpus (annotate's output contract, eval's semantic labels and drift): (output dir, stats).
    Read it, never write into it: copy what a test must change."""
    from annotate import AnnotateConfig, run
    from stage_io.config import load_config

    out = tmp_path_factory.mktemp("tiny_annotated_corpus") / "run"
    config = load_config(
        AnnotateConfig, REPO / "configs" / "annotate" / "tiny.yaml", [f"output_dir={out}", "source.limit=12"]
    )
    return out, run(config)
