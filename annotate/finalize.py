"""Finalize: the tasks' parquet files -> ``data/``, ``annotation_stats.json``, ``manifest.json``.

Runs once every task is complete: at the end of a local run, in the Slurm finalize job,
or by hand with ``finalize_only=true``. It checks that every task's completion marker is
there, that no unit id appears twice and that every input record has its units, then moves
``work/data/`` to ``data/`` in one rename. Tasks are contiguous blocks of records, written in
order, so the files read in name order are in record order, then chunk order.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from annotate.config import AnnotateConfig
from annotate.pipeline import PARTS_DIR, logging_dir
from annotate.stats import StatsAccumulator, format_table
from annotate.units import load_input, make_chunker, unit_length
from stage_io.manifest import write_manifest
from stage_io.run_lock import hold_lock

logger = logging.getLogger(__name__)

DATA_DIR = "data"
STATS_FILE = "annotation_stats.json"

TAGS_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))
ANNOTATION_FIELDS = [
    pa.field("tags", TAGS_TYPE),
    pa.field("annotation", pa.string()),
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
    pa.field("raw_output", pa.string()),
    pa.field("annotator", pa.string()),
    pa.field("annotator_version", pa.string()),
]


class FinalizeError(ValueError):
    """Task outputs that are incomplete or inconsistent (the message names the file)."""


def output_schema(config: AnnotateConfig, source: datasets.Dataset) -> pa.Schema:
    """Column order and types of data/ (see the README's output contract)."""
    source_schema = source.features.arrow_schema
    if config.mode == "corpus":
        fields = [
            pa.field("id", pa.string()),
            pa.field("doc_id", pa.string()),
            pa.field("chunk_index", pa.int64()),
            pa.field("text", pa.string()),
        ]
        fields += ANNOTATION_FIELDS
        fields += [pa.field(f"doc_{c}", source_schema.field(c).type) for c in config.keep_columns]
    else:
        fields = [pa.field("id", pa.string())]
        fields += [source_schema.field(c) for c in source.column_names if c != "id"]
        fields += [pa.field("response", pa.string())] + ANNOTATION_FIELDS
    return pa.schema(fields)


def incomplete_tasks(config: AnnotateConfig) -> list[int]:
    """Tasks without datatrove's completion marker."""
    completions = logging_dir(config) / "completions"
    return [r for r in range(config.executor.tasks) if not (completions / f"{r:05d}").is_file()]


def finalize(config: AnnotateConfig, source: datasets.Dataset, inputs: dict[str, str], finalized_by: str) -> dict:
    """Check the tasks' files, move them to data/, write the stats and the manifest; the stats."""
    out = Path(config.output_dir)
    missing = incomplete_tasks(config)
    if missing:
        raise FinalizeError(
            f"{logging_dir(config) / 'completions'}: tasks {missing[:10]} of {config.executor.tasks} have not "
            "completed; run `python -m annotate CONFIG` again (completed tasks are skipped)"
        )
    parts = out / PARTS_DIR if (out / PARTS_DIR).is_dir() else out / DATA_DIR
    files = sorted(parts.glob("data-*.parquet"))
    stats = _check_and_count(config, source, files)
    if parts != out / DATA_DIR:
        _replace_dir(parts, out / DATA_DIR)
    summary = stats.summary()
    (out / STATS_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info(format_table(summary))
    write_manifest(
        out,
        stage="annotate",
        config=config,
        inputs=inputs,
        counts={k: v for k, v in summary["overall"].items() if k != "failure_reasons"},
        extra={
            "finalized_by": finalized_by,
            "data_dir": DATA_DIR,
            "stats_file": STATS_FILE,
            "tasks": config.executor.tasks,
        },
    )
    return summary


def _check_and_count(config: AnnotateConfig, source: datasets.Dataset, files: list[Path]) -> StatsAccumulator:
    """Stats over every row; an id seen twice, or a record without units, is an error."""
    stats = StatsAccumulator(
        keys=list(config.schema.keys), length_unit="tokens" if config.chunking.tokenizer else "characters"
    )
    chunker = make_chunker(config) if config.chunking.tokenizer else None
    text = "text" if config.mode == "corpus" else "response"
    document = "doc_id" if config.mode == "corpus" else "id"
    seen: set[str] = set()
    for path in files:
        columns = sorted({"id", document, text, "tags", "status", "error"})
        for batch in pq.ParquetFile(path).iter_batches(columns=columns):
            for row in batch.to_pylist():
                if row["id"] in seen:
                    raise FinalizeError(f"{path}: unit {row['id']!r} is there twice (or in two task files)")
                seen.add(row["id"])
                length = unit_length(chunker, row[text]) if row["status"] != "skipped" else 0
                stats.add(row["status"], row["tags"], length, row[document], row["error"])
    absent = set(map(str, source["id"])) - stats.documents
    if absent:
        raise FinalizeError(
            f"{files[0].parent if files else config.output_dir}: {len(absent)} input records have "
            f"no annotated units (e.g. {sorted(absent)[:3]}); annotate into a new output_dir"
        )
    return stats


def _replace_dir(new: Path, target: Path) -> None:
    """Put ``new`` where ``target`` is, never leaving a half-written ``target``."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


class FinalizeStep(PipelineStep):
    """The Slurm finalize job's one step (it runs after every annotate task completed)."""

    name = "finalize"
    type = "📦 - FINALIZE"

    def __init__(self, config: AnnotateConfig, inputs: dict[str, str]):
        super().__init__()
        self.config = config
        self.inputs = inputs

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with hold_lock(self.config.output_dir, "annotate"):
            finalize(self.config, load_input(self.config), self.inputs, finalized_by="slurm finalize job")
        return None
