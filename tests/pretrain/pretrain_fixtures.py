"""Helpers of the pretrain tests: the tiny config pointed at a temporary annotate output."""

from __future__ import annotations

from pathlib import Path

from pretrain.memory_plan import MemoryInputs, estimate
from stage_io.config import load_config

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "configs" / "pretrain" / "tiny.yaml"


def tiny_config(tmp_path: Path, ann: Path, *overrides: str, tokenizer_dir: Path | None = None):
    """configs/pretrain/tiny.yaml reading ``ann`` and writing under ``tmp_path``."""
    from pretrain.config import PretrainConfig

    base = [
        f"data.annotations={ann}",
        f"output_dir={tmp_path}/run/{{arm}}",
        f"tokenizer.path={tokenizer_dir or tmp_path / 'tokenizer'}",
        "train.cpu_threads=1",
    ]
    return load_config(PretrainConfig, TINY_YAML, base + list(overrides))


# A 1B OLMo-2-like shape in bf16, one device: the memory-plan tests change what they are about.
BILLION = 1_000_000_000
SHAPE_1B = dict(
    parameters=BILLION,
    trainable_parameters=BILLION,
    num_layers=16,
    hidden_size=2048,
    intermediate_size=8192,
    vocab_size=100_352,
    tokens_per_micro_batch=8192,
    bf16=True,
)


def plan_1b(**changes):
    """The memory plan of ``SHAPE_1B`` with ``changes`` (sharding, world_size ...)."""
    return estimate(MemoryInputs(**{**SHAPE_1B, **changes}))
