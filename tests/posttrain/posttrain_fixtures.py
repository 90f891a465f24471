"""Helpers that write SFT data the way the annotate stage and users do (imported by the tests)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from annotate.format import make_tags, render_annotation, tags_to_records
from posttrain.config import DataConfig, PosttrainConfig, TrainingConfig

# Tiny fine-tunes: a high constant learning rate, no checkpoint, a log line per step, one torch thread.
TINY_TRAINING = dict(
    learning_rate=3e-3,
    max_steps=24,
    per_device_batch_size=8,
    warmup=0.0,
    scheduler="constant",
    save_steps=1000,
    logging_steps=1,
    torch_threads=1,
)


def sft_rows(bbc, n: int, start: int = 0, chars: int = 160) -> list[dict]:
    """n SFT rows in messages format, responses cut from BBC articles, with annotate's SFT columns."""
    rows = []
    for i in range(n):
        doc = bbc[start + i]
        response = doc["text"][:chars].rsplit(" ", 1)[0]
        tags = make_tags([("topic", doc["topic"]), ("entity", doc["title"].split()[0]), ("style", "news report")])
        rows.append(
            {
                "id": f"ex{start + i:04d}",
                "messages": [
                    {"role": "user", "content": "Write a news article."},
                    {"role": "assistant", "content": response},
                ],
                "response": response,
                "tags": tags_to_records(tags),
                "annotation": render_annotation(tags),
                "status": "ok",
                "error": None,
            }
        )
    return rows


def write_annotated(folder: Path, rows: list[dict]) -> Path:
    """An annotate-stage SFT output dir: data/ as parquet shards, plus a manifest."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(folder / "data" / "part-00000.parquet"))
    (folder / "manifest.json").write_text(json.dumps({"stage": "annotate", "counts": {"records": len(rows)}}))
    return folder


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_posttrain_config(model_dir, out, arm: str, data: DataConfig, training=None, **keys) -> PosttrainConfig:
    """A tiny fine-tune of ``model_dir`` into ``out``: ``training`` replaces values of ``TINY_TRAINING``, ``keys``
    sets other PosttrainConfig keys (max_seq_len is 192 unless given)."""
    return PosttrainConfig(
        model_path=str(model_dir),
        data=data,
        arm=arm,
        output_dir=str(out),
        report_to=[],
        training=TrainingConfig(**{**TINY_TRAINING, **(training or {})}),
        **{"max_seq_len": 192, **keys},
    )
