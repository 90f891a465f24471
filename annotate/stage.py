"""The annotate stage: documents (or SFT examples) in, annotated chunks out.

``run(config)``:

1. load the records (``stage_io.records``) and check the fields the mode needs;
2. get the annotator, once, before any task starts: the offline one is loaded (from
   ``annotator.offline.fitted_state_from`` or an earlier run's ``annotator/``) or fitted on
   the corpus, and saved to ``annotator/``; the LLM one's settings are saved there;
3. run the datatrove pipeline (``annotate.pipeline``: read, chunk, annotate, write) as
   ``executor.tasks`` tasks on the configured executor (``annotate.executors``): locally, or
   submitted to Slurm with a dependent finalize job;
4. locally, finalize (``annotate.finalize``): ``data/``, ``annotation_stats.json`` and
   ``manifest.json`` (``finalize_only=true`` does only this).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import datasets
import numpy as np

from annotate.annotators import ANNOTATOR_DIR, ANNOTATOR_FILE, Annotator, annotator_dir
from annotate.chunking import Chunker
from annotate.config import AnnotateConfig
from annotate.executors import build_executors
from annotate.finalize import finalize, output_schema
from annotate.pipeline import logging_dir
from annotate.sft import require_a_response
from annotate.units import input_columns, load_input, make_chunker, units_of
from stage_io.run_identity import RUN_FILE, RunIdentityError, check_run_identity, config_identity
from stage_io.run_lock import hold_lock

logger = logging.getLogger(__name__)

# Keys that may change between a run and its resumption: they do not change any output
# (work/run.json records the rest, stage_io.run_identity). executor.tasks is not one: it
# decides which records each completed task holds.
RESUMABLE_KEYS = (
    "output_dir",
    "finalize_only",
    "progress",
    "num_threads",
    "batch_size",
    "llm.batch_size",
    "llm.tensor_parallel_size",
    "llm.gpu_memory_utilization",
    "annotator.offline.embed_batch_size",
    "executor.kind",
    "executor.workers",
    "executor.slurm",
)
WORK_DIR = "work"


class AnnotateError(ValueError):
    """A run that cannot go on as configured (the message names the key or file)."""


def run(config: AnnotateConfig) -> dict | None:
    """Annotate; returns the stats once data/ is final (None when the work was submitted to Slurm)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(config.num_threads)
    # One writer per output directory, held from the start, so a second run into it is refused before
    # it reads the input or fits an annotator (datatrove's tasks run under this process).
    with hold_lock(config.output_dir, "annotate"), threadpool_limits(limits=config.num_threads):
        return _run(config)


def _run(config: AnnotateConfig) -> dict | None:
    out = Path(config.output_dir)
    source = load_input(config)
    if config.mode == "sft":
        require_a_response(source, config.sft, config.source.source)
    inputs = {"source": config.source.source}
    if config.annotator.kind == "offline" and config.annotator.offline.fitted_state_from:
        inputs["fitted_state_from"] = config.annotator.offline.fitted_state_from
    _check_run_file(out, config, create=not config.finalize_only)
    if config.finalize_only:
        return finalize(config, source, inputs, finalized_by="finalize_only")
    annotator = prepare_annotator(config, source, make_chunker(config), out)
    executor = config.executor
    logger.info(
        f"annotate: {len(source)} records in {executor.tasks} task(s) on the {executor.kind} executor "
        f"(logs: {logging_dir(config)}); annotator {annotator.version}"
    )
    annotate, final = build_executors(config, output_schema(config, source), inputs)
    if final is not None:
        final.run()  # submits the annotate job array first, then the finalize job that depends on it
        logger.info(
            f"annotate: submitted {executor.tasks} Slurm task(s) and a finalize job; data/ appears in {out} "
            "when it ends (rerun the same command to resubmit only the tasks that did not complete)"
        )
        return None
    annotate.run()
    return finalize(config, source, inputs, finalized_by="local run")


# ---- the annotator ---------------------------------------------------------------------


def prepare_annotator(
    config: AnnotateConfig, source: datasets.Dataset, chunker: Chunker | None, out: Path
) -> Annotator:
    """The run's annotator, saved once to ``out/annotator`` before the tasks start (they all load it)."""
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

        # The tasks load the model; saving the settings needs no engine.
        annotator = LLMAnnotator(config.llm, config.schema, engine=_NoEngine(), progress=config.progress)
        _publish(target, annotator.save)
    elif offline.fitted_state_from:
        from annotate.offline import OfflineAnnotator

        try:
            origin = annotator_dir(offline.fitted_state_from)
        except ValueError as err:
            raise AnnotateError(f"annotator.offline.fitted_state_from: {err}") from err
        annotator = OfflineAnnotator.load(origin, progress=config.progress, schema=config.schema)
        _publish(target, lambda d: shutil.copytree(origin, d))
    elif (target / ANNOTATOR_FILE).is_file():  # resuming
        from annotate.offline import OfflineAnnotator

        annotator = OfflineAnnotator.load(target, progress=config.progress, schema=config.schema)
    else:
        from annotate.offline import OfflineAnnotator

        ids, texts = fit_sample(config, source, chunker)
        logger.info(f"annotate: fitting the offline annotator on {len(texts)} chunks")
        annotator = OfflineAnnotator.fit(ids, texts, offline, config.schema, progress=config.progress)
        _publish(target, annotator.save)
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

    A sample of the whole corpus, so the fit does not depend on how records are split into tasks.
    """
    limit = config.annotator.offline.fit_max_chunks
    order = np.random.default_rng(config.annotator.offline.seed).permutation(len(source))
    ids: list[str] = []
    texts: list[str] = []
    for doc_index in order:
        for unit in units_of(config, _row(config, source, int(doc_index)), int(doc_index), chunker):
            if not unit.skip_reason and len(texts) < limit:
                ids.append(unit.id)
                texts.append(unit.text)
        if len(texts) >= limit:
            break
    if not texts:
        raise AnnotateError(f"{config.source.source}: nothing to fit the offline annotator on (every record is empty)")
    return ids, texts


def _row(config: AnnotateConfig, source: datasets.Dataset, index: int) -> dict:
    rows = source.select([index])
    columns = input_columns(config)
    return (rows.select_columns(columns) if columns else rows)[0]


class _NoEngine:
    """The engine of the LLM annotator the submitting process saves: it never generates."""

    def generate(self, prompts, seeds, temperature):
        raise RuntimeError("the annotator saved before the tasks start does not generate; the tasks load the model")


def _publish(target: Path, save) -> bool:
    """Save into a temporary dir, then rename it to ``target``; False if ``target`` exists."""
    if (target / ANNOTATOR_FILE).is_file():
        return False
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another process saved it first
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True


# ---- resuming safely -------------------------------------------------------------------


def _check_run_file(out: Path, config: AnnotateConfig, create: bool) -> None:
    """A work dir belongs to one config: resuming with another would mix annotations."""
    path = out / WORK_DIR / RUN_FILE
    if not create and not path.is_file():
        raise AnnotateError(f"{out}: no annotate work to finalize ({path} is missing)")
    try:
        check_run_identity(path, config_identity(config, RESUMABLE_KEYS), create=create)
    except RunIdentityError as err:
        raise AnnotateError(str(err)) from err
