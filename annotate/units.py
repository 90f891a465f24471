"""What the stage annotates: the input records, their units (chunks or SFT responses), and
the record written for each unit (annotated, failed or skipped, never dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import datasets

from annotate.annotators import Annotator
from annotate.chunking import Chunker, chunk_id
from annotate.config import AnnotateConfig
from annotate.format import render_annotation, tags_to_records
from annotate.sft import MalformedExample, response_of
from stage_io.records import load_records


@dataclass(frozen=True)
class Unit:
    """One thing to annotate (a chunk, or an SFT response), or a recorded skip."""

    id: str
    doc_id: str
    doc_index: int
    chunk_index: int
    text: str
    length: int
    skip_reason: str = ""


def load_input(config: AnnotateConfig) -> datasets.Dataset:
    """The records, with the fields the mode needs checked (errors name the key)."""
    if config.mode == "corpus":
        required = {config.text_field: "text_field", **{c: "keep_columns" for c in config.keep_columns}}
    elif config.sft.format == "messages":
        required = {config.sft.messages_field: "sft.messages_field"}
    else:
        required = {config.sft.prompt_field: "sft.prompt_field", config.sft.completion_field: "sft.completion_field"}
    return load_records(config.source, required_fields=required)


def make_chunker(config: AnnotateConfig) -> Chunker | None:
    """The chunker (corpus mode, or any mode that counts tokens); None when not needed."""
    return Chunker(config.chunking) if (config.mode == "corpus" or config.chunking.tokenizer) else None


def input_columns(config: AnnotateConfig) -> list[str] | None:
    """The columns a document's units need (None: all of them, as an SFT example's output keeps them)."""
    return ["id", config.text_field, *config.keep_columns] if config.mode == "corpus" else None


def carried_columns(config: AnnotateConfig, row: Mapping[str, Any]) -> dict[str, Any]:
    """The record's columns copied into each of its units' output rows."""
    if config.mode == "corpus":
        return {f"doc_{c}": row[c] for c in config.keep_columns}
    return {c: v for c, v in row.items() if c != "id"}


def units_of(config: AnnotateConfig, row: Mapping[str, Any], doc_index: int, chunker: Chunker | None) -> list[Unit]:
    """The units of one record, in order (an empty record or example is one recorded skip)."""
    doc_id = row["id"]
    if config.mode == "corpus":
        text = row[config.text_field]
        if not isinstance(text, str) or not text.strip():
            reason = "empty document" if isinstance(text, str) else f"'{config.text_field}' is {type(text).__name__}"
            return [Unit(chunk_id(doc_id, 0), doc_id, doc_index, 0, "", 0, reason)]
        return [
            Unit(c.id, doc_id, doc_index, c.chunk_index, c.text, unit_length(chunker, c.text))
            for c in chunker.chunk(doc_id, text)
        ]
    try:
        response = response_of(row, config.sft)
    except MalformedExample as err:
        return [Unit(doc_id, doc_id, doc_index, 0, "", 0, f"malformed example: {err}")]
    return [Unit(doc_id, doc_id, doc_index, 0, response, unit_length(chunker, response))]


def unit_length(chunker: Chunker | None, text: str) -> int:
    """Tokens of ``text`` when the chunker has a tokenizer, else characters (the stats' unit)."""
    return chunker.count_tokens(text) if chunker is not None and chunker.tokenizer is not None else len(text)


def annotate_units(units: list[Unit], annotator: Annotator) -> list[dict]:
    """One record per unit, in order: annotated, failed or skipped, none dropped."""
    todo = [u for u in units if not u.skip_reason]
    results = iter(annotator.annotate_batch([u.id for u in todo], [u.text for u in todo]) if todo else [])
    records = []
    for unit in units:
        record = {
            "id": unit.id,
            "doc_id": unit.doc_id,
            "doc_index": unit.doc_index,
            "chunk_index": unit.chunk_index,
            "text": unit.text,
            "length": unit.length,
            "annotator": annotator.name,
            "annotator_version": annotator.version,
        }
        if unit.skip_reason:
            record.update(tags=[], annotation="", status="skipped", error=unit.skip_reason, raw_output="")
        else:
            result = next(results)
            ok = result.status == "ok"
            record.update(
                tags=tags_to_records(result.tags) if ok else [],
                annotation=render_annotation(result.tags) if ok else "",
                status=result.status,
                error=result.error,
                raw_output=result.raw_output,
            )
        records.append(record)
    return records


def output_row(config: AnnotateConfig, record: dict, carried: Mapping[str, Any]) -> dict:
    """The data/ row of a unit's record (the columns of the README's output contract)."""
    row = {
        name: record[name]
        for name in ("id", "tags", "annotation", "status", "error", "raw_output", "annotator", "annotator_version")
    }
    if config.mode == "corpus":
        row.update(doc_id=record["doc_id"], chunk_index=record["chunk_index"], text=record["text"])
    else:
        row["response"] = record["text"]
    row.update(carried)
    return row
