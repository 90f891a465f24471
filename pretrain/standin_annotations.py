"""A stand-in for the annotate stage's output, for benchmarks and tests.

Real BBC News articles, split into chunks at blank lines (as the annotate stage does),
each with simple rule-made tags (the gold topic, ``domain:news``, the first capitalised
word as an entity), rendered with ``annotate.format``. Every ``fail_every``-th chunk is
a failed annotation, so the failure path is always exercised. Written in the annotate
stage's layout: ``DIR/data`` is a saved dataset with one row per chunk.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets

from annotate.format import AnnotationSchema, make_tags, render_annotation, tags_to_records
from stage_io.records import RecordSource, load_records


def chunk_rows(articles, fail_every: int = 7) -> list[dict]:
    """Annotate-stage rows for ``articles`` (dicts with id, topic, text)."""
    schema = AnnotationSchema()
    rows = []
    n = 0
    for article in articles:
        chunks = [c.strip() for c in re.split(r"\n\s*\n", article["text"]) if c.strip()]
        for index, text in enumerate(chunks):
            words = re.findall(r"[A-Z][a-z]+", text)
            pairs = [("topic", article["topic"]), ("domain", "news")] + ([("entity", words[0])] if words else [])
            tags = make_tags(pairs, schema)
            n += 1
            failed = bool(fail_every) and n % fail_every == 0
            rows.append(
                {
                    "id": f"{article['id']}#{index}",
                    "doc_id": article["id"],
                    "chunk_index": index,
                    "text": text,
                    "tags": [] if failed else tags_to_records(tags),
                    "annotation": "" if failed else render_annotation(tags),
                    "status": "failed" if failed else "ok",
                }
            )
    return rows


def write_standin_annotations(path: str | Path, n_docs: int | None = 40, stride: int = 50) -> Path:
    """``path/data`` from every ``stride``-th BBC article, ``n_docs`` of them (None: all articles)."""
    path = Path(path)
    ds = load_records(RecordSource(source="embedded:bbc_news"))
    picks = range(len(ds)) if n_docs is None else range(0, min(len(ds), stride * n_docs), stride)
    datasets.Dataset.from_list(chunk_rows(ds[i] for i in picks)).save_to_disk(str(path / "data"))
    return path
