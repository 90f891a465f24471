"""The annotate stage: documents (or SFT examples) in, annotated chunks out.

``run(config)``:

1. load the records (``stage_io.records``) and check the fields the mode needs;
2. get the annotator: the offline one is loaded (from ``annotator.offline.fitted_state_from``
   or an earlier run's ``annotator/``) or fitted on the corpus and saved to ``annotator/``;
   the LLM one is built from ``llm``;
3. annotate this shard's documents (a contiguous block: shard i of n gets documents
   [N*i/n, N*(i+1)/n)), appending batches to ``work/shard-i-of-n.jsonl`` and skipping the
   ids already there, so a killed run resumes where it stopped;
4. mark the shard done; the shard that finds all shards done consolidates ``data/``,
   ``annotation_stats.json`` and ``manifest.json`` (``merge_only=true`` does only this).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import datasets
import numpy as np

from annotate.annotators import ANNOTATOR_DIR, ANNOTATOR_FILE, Annotator, annotator_dir
from annotate.chunking import Chunker, chunk_id
from annotate.config import AnnotateConfig
from annotate.consolidate import consolidate, done_path, unfinished_shards, work_path, WORK_DIR
from annotate.format import render_annotation, tags_to_records
from annotate.sft import MalformedExample, require_a_response, response_of
from annotate.work_file import WorkFile
from stage_io.manifest import write_json_atomic
from stage_io.records import load_records
from stage_io.run_identity import RUN_FILE, RunIdentityError, check_run_identity, config_identity
from stage_io.run_lock import LOCK_NAME, hold_lock

# Keys that may change between a run and its resumption: they do not change any output
# (work/run.json records the rest, stage_io.run_identity).
RESUMABLE_KEYS = (
    "output_dir", "shard_index", "merge_only", "progress", "num_threads", "batch_size", "llm.batch_size",
    "llm.tensor_parallel_size", "llm.gpu_memory_utilization", "annotator.offline.embed_batch_size",
)


class AnnotateError(ValueError):
    """A run that cannot go on as configured (the message names the key or file)."""


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


def run(config: AnnotateConfig) -> dict | None:
    """Annotate this shard; returns the stats once data/ is consolidated, else None."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(config.num_threads)
    # One writer per shard, held from the start, so a second run into the directory is refused
    # before it fits an annotator or reads work files; an unsharded run holds the directory's lock
    # as the other stages do, the shards of a sharded run one lock each (they work side by side).
    lock = LOCK_NAME if config.num_shards == 1 else (
        ".lock-merge" if config.merge_only else f".lock-shard-{config.shard_index}-of-{config.num_shards}")
    with hold_lock(config.output_dir, "annotate", lock_name=lock), threadpool_limits(limits=config.num_threads):
        return _run(config)


def _run(config: AnnotateConfig) -> dict | None:
    out = Path(config.output_dir)
    source = load_input(config)
    if config.mode == "sft":
        require_a_response(source, config.sft, config.source.source)
    inputs = {"source": config.source.source}
    if config.annotator.kind == "offline" and config.annotator.offline.fitted_state_from:
        inputs["fitted_state_from"] = config.annotator.offline.fitted_state_from
    if config.merge_only:
        _check_run_file(out, config, create=False)
        return consolidate(config, source, consolidated_by="merge_only", inputs=inputs)

    _check_run_file(out, config, create=True)
    chunker = Chunker(config.chunking) if (config.mode == "corpus" or config.chunking.tokenizer) else None
    annotator = prepare_annotator(config, source, chunker, out)
    start, end = shard_bounds(len(source), config.num_shards, config.shard_index)
    name = f"shard {config.shard_index}/{config.num_shards}"
    print(f"annotate: {name}: documents [{start}, {end}) of {len(source)}; annotator {annotator.version}", flush=True)

    with WorkFile(work_path(out, config.shard_index, config.num_shards)) as work:
        done = work.open()
        counts = _annotate_shard(config, source, start, end, chunker, annotator, work, done)
    marker = done_path(out, config.shard_index, config.num_shards)
    write_json_atomic(marker, {"units": counts["units"], "documents": end - start, "start": start, "end": end})
    print(f"annotate: {name} done: {counts['units']} units ({counts['resumed']} already in the work file)", flush=True)

    waiting = unfinished_shards(out, config.num_shards)
    if waiting:
        print(f"annotate: waiting for shards {waiting}; the last shard to finish consolidates data/ "
              "(or run again with merge_only=true)", flush=True)
        return None
    return consolidate(config, source, consolidated_by=f"shard {config.shard_index}", inputs=inputs)


def load_input(config: AnnotateConfig) -> datasets.Dataset:
    if config.mode == "corpus":
        required = {config.text_field: "text_field", **{c: "keep_columns" for c in config.keep_columns}}
    elif config.sft.format == "messages":
        required = {config.sft.messages_field: "sft.messages_field"}
    else:
        required = {config.sft.prompt_field: "sft.prompt_field", config.sft.completion_field: "sft.completion_field"}
    return load_records(config.source, required_fields=required)


def shard_bounds(num_documents: int, num_shards: int, shard_index: int) -> tuple[int, int]:
    """The contiguous block of document positions shard ``shard_index`` annotates."""
    return num_documents * shard_index // num_shards, num_documents * (shard_index + 1) // num_shards


def iter_units(config: AnnotateConfig, source: datasets.Dataset, start: int, end: int,
               chunker: Chunker | None) -> Iterator[list[Unit]]:
    """The units of documents [start, end), one list per document, in order."""
    columns = ["id", config.text_field] if config.mode == "corpus" else None
    rows = source.select(range(start, end))
    if columns:
        rows = rows.select_columns(columns)
    for offset, row in enumerate(rows):
        doc_index = start + offset
        doc_id = row["id"]
        if config.mode == "corpus":
            text = row[config.text_field]
            if not isinstance(text, str) or not text.strip():
                reason = "empty document" if isinstance(text, str) else f"'{config.text_field}' is {type(text).__name__}"
                yield [Unit(chunk_id(doc_id, 0), doc_id, doc_index, 0, "", 0, reason)]
                continue
            yield [Unit(c.id, doc_id, doc_index, c.chunk_index, c.text, _length(chunker, c.text))
                   for c in chunker.chunk(doc_id, text)]
        else:
            try:
                response = response_of(row, config.sft)
            except MalformedExample as err:
                yield [Unit(doc_id, doc_id, doc_index, 0, "", 0, f"malformed example: {err}")]
                continue
            yield [Unit(doc_id, doc_id, doc_index, 0, response, _length(chunker, response))]


def _length(chunker: Chunker | None, text: str) -> int:
    return chunker.count_tokens(text) if chunker is not None and chunker.tokenizer is not None else len(text)


def _annotate_shard(config, source, start, end, chunker, annotator: Annotator, work: WorkFile,
                    done: set[str]) -> dict:
    from tqdm.auto import tqdm

    counts = {"units": 0, "resumed": 0}
    batch: list[Unit] = []
    bar = tqdm(total=end - start, unit="doc", desc=f"annotate shard {config.shard_index}",
               disable=not config.progress)
    for doc_units in iter_units(config, source, start, end, chunker):
        for unit in doc_units:
            counts["units"] += 1
            if unit.id in done:
                counts["resumed"] += 1
                continue
            batch.append(unit)
            if len(batch) >= config.batch_size:
                work.append(annotate_units(batch, annotator))
                batch = []
        bar.update(1)
    work.append(annotate_units(batch, annotator))
    bar.close()
    return counts


def annotate_units(units: list[Unit], annotator: Annotator) -> list[dict]:
    """Work records for ``units``, in order: annotated, failed or skipped, none dropped."""
    todo = [u for u in units if not u.skip_reason]
    results = iter(annotator.annotate_batch([u.id for u in todo], [u.text for u in todo]) if todo else [])
    records = []
    for unit in units:
        record = {"id": unit.id, "doc_id": unit.doc_id, "doc_index": unit.doc_index, "chunk_index": unit.chunk_index,
                  "text": unit.text, "length": unit.length, "annotator": annotator.name,
                  "annotator_version": annotator.version}
        if unit.skip_reason:
            record.update(tags=[], annotation="", status="skipped", error=unit.skip_reason, raw_output="")
        else:
            result = next(results)
            ok = result.status == "ok"
            record.update(tags=tags_to_records(result.tags) if ok else [],
                          annotation=render_annotation(result.tags) if ok else "",
                          status=result.status, error=result.error, raw_output=result.raw_output)
        records.append(record)
    return records


# ---- the annotator ---------------------------------------------------------------------

def prepare_annotator(config: AnnotateConfig, source: datasets.Dataset, chunker: Chunker | None,
                      out: Path) -> Annotator:
    """The run's annotator, saved once to ``out/annotator`` (every shard uses that one)."""
    target = out / ANNOTATOR_DIR
    offline = config.annotator.offline
    if config.annotator.kind == "offline":
        from annotate.offline import KEYS, keys_it_cannot_produce

        missing = keys_it_cannot_produce(config.schema)
        if missing:
            raise AnnotateError(
                f"schema.keys: the offline annotator cannot produce {', '.join(missing)} (it writes "
                f"{', '.join(KEYS)}); remove {'it' if len(missing) == 1 else 'them'} from schema.keys or use "
                "annotator.kind=llm"
            )
    origin = target
    if config.annotator.kind == "llm":
        from annotate.llm import LLMAnnotator

        annotator = LLMAnnotator(config.llm, config.schema, progress=config.progress)
        _publish(target, annotator.save)
    elif offline.fitted_state_from:
        from annotate.offline import OfflineAnnotator

        try:
            origin = annotator_dir(offline.fitted_state_from)
        except ValueError as err:
            raise AnnotateError(f"annotator.offline.fitted_state_from: {err}") from err
        annotator = OfflineAnnotator.load(origin, progress=config.progress, schema=config.schema)
        _publish(target, lambda d: shutil.copytree(origin, d))
    elif (target / ANNOTATOR_FILE).is_file():  # resuming, or another shard fitted it
        from annotate.offline import OfflineAnnotator

        annotator = OfflineAnnotator.load(target, progress=config.progress, schema=config.schema)
    else:
        from annotate.offline import OfflineAnnotator

        ids, texts = fit_sample(config, source, chunker)
        print(f"annotate: fitting the offline annotator on {len(texts)} chunks", flush=True)
        annotator = OfflineAnnotator.fit(ids, texts, offline, config.schema, progress=config.progress)
        if not _publish(target, annotator.save):  # another shard saved first: use that one
            annotator = OfflineAnnotator.load(target, progress=config.progress, schema=config.schema)
    saved = json.loads((origin / ANNOTATOR_FILE).read_text(encoding="utf-8"))
    published = json.loads((target / ANNOTATOR_FILE).read_text(encoding="utf-8"))
    if not saved["version"] == published["version"] == annotator.version:
        raise AnnotateError(
            f"{origin}: the saved annotator is {saved['version']} ({target}: {published['version']}), but this "
            f"code applies it as {annotator.version} (its code, state or prompt changed since it was saved); "
            "annotate again into a new output_dir so one annotator tags everything"
        )
    return annotator


def fit_sample(config: AnnotateConfig, source: datasets.Dataset, chunker: Chunker | None) -> tuple[list, list]:
    """Chunks of a fixed-seed random order of documents, up to ``fit_max_chunks``.

    Every shard draws the same sample (of the whole corpus, not its own block), so
    every shard fits the same annotator.
    """
    limit = config.annotator.offline.fit_max_chunks
    order = np.random.default_rng(config.annotator.offline.seed).permutation(len(source))
    ids: list[str] = []
    texts: list[str] = []
    for doc_index in order:
        for unit in next(iter_units(config, source, int(doc_index), int(doc_index) + 1, chunker)):
            if not unit.skip_reason and len(texts) < limit:
                ids.append(unit.id)
                texts.append(unit.text)
        if len(texts) >= limit:
            break
    if not texts:
        raise AnnotateError(f"{config.source.source}: nothing to fit the offline annotator on (every record is empty)")
    return ids, texts


def _publish(target: Path, save) -> bool:
    """Save into a temporary dir, then rename it to ``target``; False if ``target`` exists."""
    if (target / ANNOTATOR_FILE).is_file():
        return False
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # lost the race to another shard
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True


# ---- resuming safely -------------------------------------------------------------------

def _check_run_file(out: Path, config: AnnotateConfig, create: bool) -> None:
    """A work dir belongs to one config: resuming with another would mix annotations."""
    path = out / WORK_DIR / RUN_FILE
    if not create and not path.is_file():
        raise AnnotateError(f"{out}: no annotate work to merge ({path} is missing)")
    try:
        check_run_identity(path, config_identity(config, RESUMABLE_KEYS), create=create)
    except RunIdentityError as err:
        raise AnnotateError(str(err)) from err
