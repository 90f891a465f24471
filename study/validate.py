"""Plan-time checks of a study's resolved step configs: what is knowable before anything runs.

Every step's config is already built (and its keys' domains checked) when the study plans it.
What loading a config cannot see, and a stage would otherwise find only when it runs, hours into
a study, is checked here against the files on disk and the steps before it:

- the SFT set the study annotates holds at least one example with a response to train on (a
  ``messages`` record with an assistant turn that has text, or a non-empty completion);
- eval's inputs: every ``capabilities.include_path`` (when the capabilities stage runs) and the
  prompt file exist, or an earlier step writes them;
- the classifier judge's records (a local file) have its ``text_field`` and ``label_field``;
- the annotation keys eval labels with (``metrics.semantic_entropy.keys``: at least one, and a
  warning names the others; the fidelity's ``annotation_key``) are keys the corpus annotation
  writes, and the fidelity's
  ``label_column`` (``doc_NAME``) is a column it keeps (``keep_columns``).

A study that fails one of them is refused with every problem, each naming the step and the key.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from annotate.sft import MalformedExample, response_of
from stage_io.records import RecordSource, load_records

# Suffixes of record files (a source without one, and without such a path on disk, is a hub id).
RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")


# Marks a finding that is printed, not refused (the study runs, with a figure the user should know about).
WARNING = "warning: "


class PlanError(ValueError):
    """A study that would fail at a later step on something its configs and files already show."""


def validate_plan(steps: Sequence[Any]) -> None:
    """Refuse the plan ``steps`` (study.plan.Step, in run order) if a step would fail on a known input."""
    configs = {step.name: step.load() for step in steps}
    corpus = next((configs[s.name] for s in steps if s.name == "annotate_corpus"), None)
    problems: list[str] = []
    produced: list[Path] = []
    for step in steps:
        config = configs[step.name]
        if step.module == "annotate" and config.mode == "sft":
            problems += [f"{step.name}: {p}" for p in sft_problems(config, produced)]
        if step.module == "eval":
            problems += [f"{step.name}: {p}" for p in eval_problems(config, corpus, produced)]
        produced.append(Path(step.output_dir).resolve())
    for warning in dict.fromkeys(p for p in problems if p.split(": ", 1)[1].startswith(WARNING)):
        print(f"[study] {warning}", flush=True)
    problems = [p for p in problems if not p.split(": ", 1)[1].startswith(WARNING)]
    if problems:
        unique = list(dict.fromkeys(problems))
        raise PlanError(f"the study would fail at a later step ({len(unique)} problem(s)): " + "; ".join(unique))


def is_local(source: str) -> bool:
    """Whether a record source names a local file or folder (not embedded:NAME, not a hub id)."""
    if source.startswith("embedded:"):
        return False
    return Path(source).exists() or source.startswith((".", "/", "~")) or source.endswith(RECORD_SUFFIXES)


def _produced_by(path: str, produced: Sequence[Path]) -> bool:
    target = Path(path).resolve()
    return any(target == out or out in target.parents for out in produced)


def missing_input(path: str, key: str, produced: Sequence[Path]) -> str | None:
    """A problem when the local ``path`` neither exists nor is written by an earlier step."""
    if not is_local(path) or Path(path).exists() or _produced_by(path, produced):
        return None
    return f"{key} '{path}': no such file or directory, and no earlier step of the study writes it"


def sft_records(source: RecordSource) -> Iterator[dict]:
    """The SFT records one at a time (JSONL read line by line: a large set is not loaded to check it)."""
    path = Path(source.source)
    if path.suffix == ".jsonl" and path.is_file():
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        yield {}
                        continue
                    yield record if isinstance(record, dict) else {}
        return
    yield from load_records(source)


def sft_response_counts(sft_config, source: RecordSource, stop_at_first: bool = True) -> Counter:
    """How many SFT records have a response (``ok``) and why the others have none (by reason)."""
    counts: Counter = Counter()
    for record in sft_records(source):
        try:
            response_of(record, sft_config)
        except MalformedExample as err:
            counts[str(err).split(" (")[0]] += 1
            continue
        counts["ok"] += 1
        if stop_at_first:
            break
    return counts


def sft_problems(config, produced: Sequence[Path]) -> list[str]:
    """The annotated SFT set must hold an example with a response (else posttrain has nothing to train)."""
    source = config.source.source
    if not is_local(source) or _produced_by(source, produced):
        return []
    missing = missing_input(source, "source.source", produced)
    if missing:
        return [missing]
    counts = sft_response_counts(config.sft, config.source)
    if counts["ok"]:
        return []
    reasons = ", ".join(f"{n} {reason}" for reason, n in counts.most_common(3)) or "no record"
    return [
        f"source.source '{source}': no example has a response to train on ({reasons}; sft.format={config.sft.format})"
    ]


def eval_problems(config, corpus, produced: Sequence[Path]) -> list[str]:
    """Eval's input files, its judge's label column, and its annotation keys against the corpus annotation."""
    problems = []
    if "capabilities" in config.stages:
        problems += [
            f"capabilities.include_path '{path}': no such directory, and no earlier step of the study "
            "writes it (leave capabilities out of stages, or give the study a capability_task)"
            for path in config.capabilities.include_path
            if not Path(path).is_dir() and not _produced_by(path, produced)
        ]
    prompts = missing_input(config.prompts.source.source, "prompts.source.source", produced)
    problems += [prompts] if prompts else []
    se = config.metrics.semantic_entropy
    if se.labels == "classifier":
        problems += judge_problems(se.classifier, produced)
    if corpus is not None:
        problems += annotation_key_problems(config, corpus)
    return problems


def judge_problems(classifier, produced: Sequence[Path]) -> list[str]:
    """The classifier judge's records (a local file) must have its text and label columns."""
    source = classifier.source.source
    key = "metrics.semantic_entropy.classifier.source.source"
    missing = missing_input(source, key, produced)
    if missing or not is_local(source) or not Path(source).is_file() or _produced_by(source, produced):
        return [missing] if missing else []
    first = next(iter(sft_records(RecordSource(source=source, limit=1))), {})
    return [
        f"metrics.semantic_entropy.classifier.{name}='{field}': not a field of {source} "
        f"(its fields: {', '.join(first) or 'none'})"
        for name, field in (("text_field", classifier.text_field), ("label_field", classifier.label_field))
        if field not in first
    ]


def annotation_key_problems(config, corpus) -> list[str]:
    """Keys eval reads from annotations must be written by the corpus annotation; the fidelity's gold column kept."""
    problems = []
    keys = list(corpus.schema.keys)
    se, fidelity = config.metrics.semantic_entropy, config.metrics.fidelity
    if se.labels == "annotator" or se.annotator_secondary:
        unknown = [k for k in se.keys if k not in keys]
        if unknown and len(unknown) == len(se.keys):
            problems.append(
                f"metrics.semantic_entropy.keys {unknown}: the corpus annotation writes none of them "
                f"(its schema.keys: {keys})"
            )
        elif unknown:  # labelled absent in every sample: an entropy of 0 for every arm, averaged in
            problems.append(
                f"{WARNING}metrics.semantic_entropy.keys {unknown} are not written by the corpus "
                f"annotation (its schema.keys: {keys}); they count as absent in every sample"
            )
    if fidelity.annotation_key is not None:
        if fidelity.annotation_key not in keys:
            problems.append(
                f"metrics.fidelity.annotation_key='{fidelity.annotation_key}': the corpus annotation "
                f"writes no such key (its schema.keys: {keys})"
            )
        column = fidelity.label_column
        kept = [f"doc_{c}" for c in corpus.keep_columns]
        if column is not None and column not in kept:
            problems.append(
                f"metrics.fidelity.label_column='{column}': the corpus annotation keeps no such column "
                f"(keep_columns: {list(corpus.keep_columns)}, written as {kept or 'none'}); "
                "set it to one of those, or metrics.fidelity.annotation_key=null"
            )
    return problems
