"""The annotate stage as a datatrove pipeline: read -> chunk -> annotate -> write.

Task ``r`` of ``executor.tasks`` reads the contiguous block of records
``[N*r/tasks, N*(r+1)/tasks)``, splits them into units, annotates the units in batches of
``batch_size`` with the annotator saved in ``OUTPUT/annotator/`` and writes one parquet file,
``OUTPUT/work/data/data-RRRRR-of-TTTTT.parquet``. datatrove marks a task complete
(``LOGS/completions/RRRRR``) only after its file is closed, and a rerun skips completed tasks
and redoes the others from the start, overwriting their partial file: so a run killed at any
moment and started again has each unit exactly once. ``annotate.finalize`` then checks that and
moves the files to ``OUTPUT/data/``.

``annotate.executors`` runs these steps on datatrove's ``LocalPipelineExecutor`` (this
machine) or ``SlurmPipelineExecutor`` (a job array, plus a dependent job that finalizes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import ParquetWriter

from annotate.annotators import ANNOTATOR_DIR, ANNOTATOR_FILE, Annotator
from annotate.config import AnnotateConfig
from annotate.units import (
    annotate_units,
    carried_columns,
    input_columns,
    load_input,
    make_chunker,
    output_row,
    units_of,
)

logger = logging.getLogger(__name__)

# The tasks' parquet files until finalize moves them to data/.
PARTS_DIR = "work/data"
# datatrove's completion markers, logs and stats (executor.logging_dir overrides it).
LOGS_DIR = "work/logs"
# Rows per parquet write (a row group at most this long).
ROWS_PER_BATCH = 1000


class AnnotatePipelineError(ValueError):
    """A task that cannot run as configured (the message names the file or key)."""


def task_bounds(num_documents: int, tasks: int, rank: int) -> tuple[int, int]:
    """The contiguous block of record positions task ``rank`` annotates."""
    return num_documents * rank // tasks, num_documents * (rank + 1) // tasks


def logging_dir(config: AnnotateConfig) -> Path:
    return Path(config.executor.logging_dir or Path(config.output_dir) / LOGS_DIR)


def part_name(rank: int | str, tasks: int) -> str:
    return f"data-{rank}-of-{tasks:05d}.parquet"


class AnnotateStep(PipelineStep):
    """A pipeline step that reads the stage's config."""

    def __init__(self, config: AnnotateConfig):
        super().__init__()
        self.config = config


class ReadRecords(AnnotateStep):
    """This task's block of input records, one datatrove Document per record."""

    name = "read records"
    type = "📖 - READER"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from tqdm.auto import tqdm

        source = load_input(self.config)
        start, end = task_bounds(len(source), world_size, rank)
        logger.info(f"annotate: task {rank} of {world_size}: records [{start}, {end})")
        rows = source.select(range(start, end))
        columns = input_columns(self.config)
        if columns:
            rows = rows.select_columns(columns)
        bar = tqdm(total=end - start, unit="doc", desc=f"annotate task {rank}", disable=not self.config.progress)
        for offset, row in enumerate(rows):
            self.stat_update("records")
            yield Document(text="", id=str(row["id"]), metadata={"doc_index": start + offset, "row": row})
            bar.update(1)
        bar.close()


class ChunkRecords(AnnotateStep):
    """Each record's units (chunks, or the SFT response; a recorded skip for an empty one)."""

    name = "chunk"
    type = "✂️ - SPLIT"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        chunker = make_chunker(self.config)
        for document in data:
            row = document.metadata["row"]
            carried = carried_columns(self.config, row)
            for unit in units_of(self.config, row, document.metadata["doc_index"], chunker):
                self.stat_update("units")
                yield Document(text=unit.text, id=unit.id, metadata={"unit": unit, "carried": carried})


class AnnotateUnits(AnnotateStep):
    """Units annotated in batches of ``batch_size``; each becomes its output row."""

    name = "annotate"
    type = "🏷️ - ANNOTATE"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(self.config.num_threads)
        with threadpool_limits(limits=self.config.num_threads):
            annotator = task_annotator(self.config)
            batch: list[Document] = []
            for document in data:
                batch.append(document)
                if len(batch) >= self.config.batch_size:
                    yield from self._annotate(batch, annotator)
                    batch = []
            yield from self._annotate(batch, annotator)

    def _annotate(self, batch: list[Document], annotator: Annotator) -> DocumentsPipeline:
        if not batch:
            return
        records = annotate_units([d.metadata["unit"] for d in batch], annotator)
        for document, record in zip(batch, records):
            self.stat_update(record["status"])
            row = output_row(self.config, record, document.metadata["carried"])
            yield Document(text=record["text"], id=record["id"], metadata={"row": row})


def _output_row(writer: ParquetWriter, document: Document) -> dict:
    """The writer's adapter: the row AnnotateUnits built, columns as in the output schema."""
    return document.metadata["row"]


# Annotators built in this process, by saved dir and version: a local run's tasks share one (an LLM loads once).
_ANNOTATORS: dict[str, Annotator] = {}


def task_annotator(config: AnnotateConfig) -> Annotator:
    """The annotator the run saved in ``OUTPUT/annotator`` (checked: same version as saved)."""
    import json

    directory = Path(config.output_dir) / ANNOTATOR_DIR
    if not (directory / ANNOTATOR_FILE).is_file():
        raise AnnotatePipelineError(
            f"{directory / ANNOTATOR_FILE}: missing; `python -m annotate CONFIG` saves "
            "the annotator there before the tasks start"
        )
    saved = json.loads((directory / ANNOTATOR_FILE).read_text(encoding="utf-8"))["version"]
    key = f"{directory.resolve()}:{saved}"
    if key in _ANNOTATORS:
        return _ANNOTATORS[key]
    if config.annotator.kind == "offline":
        from annotate.offline import OfflineAnnotator

        annotator = OfflineAnnotator.load(directory, progress=False, schema=config.schema)
    else:
        from annotate.llm import LLMAnnotator

        annotator = LLMAnnotator(config.llm, config.schema, progress=False)
    if saved != annotator.version:
        raise AnnotatePipelineError(
            f"{directory}: the saved annotator is {saved}, but this code applies it as {annotator.version}; "
            "annotate again into a new output_dir so one annotator tags everything"
        )
    _ANNOTATORS[key] = annotator
    return annotator


def build_pipeline(config: AnnotateConfig, schema: pa.Schema) -> list[Any]:
    """Read, chunk, annotate, write: the steps every task runs on its block."""
    writer = ParquetWriter(
        output_folder=str(Path(config.output_dir) / PARTS_DIR),
        output_filename=part_name("${rank}", config.executor.tasks),
        adapter=_output_row,
        schema=schema,
        batch_size=ROWS_PER_BATCH,
        max_file_size=-1,
    )
    return [ReadRecords(config), ChunkRecords(config), AnnotateUnits(config), writer]
