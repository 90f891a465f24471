"""Helpers that write SFT data the way the annotate stage and users do (imported by the tests)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from annotate.format import make_tags, render_annotation, tags_to_records


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
