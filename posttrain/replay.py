"""Pretraining replay inside SFT (``data.replay_chunks``, off by default; not in the paper).

N chunks of the annotated pretraining corpus (``data.replay_annotations``, an annotate
output directory) are mixed into the SFT examples, the same chunk ids in both arms:

- anchored arm: ``<z> x``, the chunk's annotation followed by its text, exactly as the
  pretraining stage renders a chunk (``annotate.format``'s rendered annotation, delimiter
  strings removed from the text), loss on every token, annotation included, as in
  pretraining; a chunk whose annotation is unusable (status not ok, empty, unparseable) is
  rendered without one, as pretraining does, and counted by reason;
- plain arm: ``x``, the same chunk's text, loss on every token.

Each chunk is one sequence: the one BOS rule (``posttrain.prompt_format.with_bos``) + the
chunk's tokens + eos, like a one-chunk pretraining document. The chunks are the first N
by sha256 of their id (``replay:DOC_ID:CHUNK_INDEX``) among those with text whose
annotated rendering fits ``max_seq_len`` (the longer of the two, so both arms keep the
same ids); the ones passed over are counted. Replayed ids enter the manifest's
``trained_ids_sha256``, so two arms pair only if they replayed the same chunks.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, AnnotationError, parse_annotation, render_annotation
from posttrain.config import PosttrainConfig
from posttrain.examples import CHUNK, BuiltExamples, SFTExample, trained_ids_fingerprint
from posttrain.prompt_format import with_bos
from posttrain.sft_records import SFTDataError
from stage_io.records import RecordSource, load_records

REPLAY_FIELDS = ("doc_id", "chunk_index", "text", "annotation", "status")


def replay_id(doc_id: Any, chunk_index: Any) -> str:
    return f"replay:{doc_id}:{chunk_index}"


def chunk_annotation(status: str | None, annotation: str | None) -> tuple[str, str | None]:
    """The annotation rendered before the chunk ("" when none) and why there is none."""
    if status != "ok":
        return "", f"status_{status or 'missing'}"
    if not annotation:
        return "", "ok_but_empty"
    try:
        return render_annotation(parse_annotation(annotation)), None
    except AnnotationError:
        return "", "malformed"


def chunk_text(text: str | None) -> tuple[str, bool]:
    """The chunk's text with delimiter strings removed (only annotations open and close one)."""
    text = text or ""
    cleaned = text.replace(ANNOTATION_OPEN, "").replace(ANNOTATION_CLOSE, "")
    return cleaned, cleaned != text


def load_replay(config: PosttrainConfig, tokenizer: Any) -> tuple[list[SFTExample], dict[str, Any]]:
    """The replayed chunks as fully trained examples in ``config.arm``'s rendering, and their counts."""
    n = config.data.replay_chunks
    folder = Path(config.data.replay_annotations or "")
    data_dir = folder / "data" if (folder / "data").is_dir() else folder
    if not data_dir.is_dir():
        raise SFTDataError(
            f"data.replay_annotations={config.data.replay_annotations}: no such annotate output directory"
        )
    rows = load_records(
        RecordSource(source=str(data_dir)), required_fields={f: "data.replay_annotations" for f in REPLAY_FIELDS}
    )
    ids = [replay_id(d, c) for d, c in zip(rows["doc_id"], rows["chunk_index"])]
    order = sorted(range(len(ids)), key=lambda i: hashlib.sha256(b"replay\0" + ids[i].encode("utf-8")).digest())
    examples: list[SFTExample] = []
    passed: Counter[str] = Counter()
    without: Counter[str] = Counter()
    for start in range(0, len(order), CHUNK):
        if len(examples) == n:
            break
        batch = rows.select(order[start : start + CHUNK])
        _add_batch(batch, config, tokenizer, n, examples, passed, without)
    if len(examples) < n:
        raise SFTDataError(
            f"data.replay_chunks={n}: only {len(examples)} usable chunks in {data_dir} "
            f"({len(ids)} chunks; passed over: {dict(passed)})"
        )
    counts = {
        "replay_chunks": len(examples),
        "replay_passed_over": dict(sorted(passed.items())),
        "replay_without_annotation": dict(sorted(without.items())),
        "replay_tokens": sum(len(e.input_ids) for e in examples),
        "replay_ids_sha256": trained_ids_fingerprint(e.id for e in examples),
    }
    return examples, counts


def _add_batch(
    batch,
    config: PosttrainConfig,
    tokenizer: Any,
    n: int,
    examples: list[SFTExample],
    passed: Counter,
    without: Counter,
) -> None:
    texts, annotated, keep = [], [], []
    for row in batch:
        text, had_delimiters = chunk_text(row["text"])
        if not text.strip():
            passed["empty_text"] += 1
            continue
        annotation, reason = chunk_annotation(row["status"], row["annotation"])
        keep.append((replay_id(row["doc_id"], row["chunk_index"]), reason, had_delimiters))
        texts.append(text)
        annotated.append(annotation + text)
    plain_ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    annotated_ids = tokenizer(annotated, add_special_tokens=False)["input_ids"] if texts else []
    for (chunk_id, reason, had_delimiters), plain, anchored in zip(keep, plain_ids, annotated_ids):
        if len(examples) == n:
            return
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        if len(with_bos(tokenizer, anchored)) + len(eos) > config.max_seq_len:
            passed["too_long"] += 1
            continue
        if reason is not None:
            without[reason] += 1
        if had_delimiters:
            without["delimiter_in_text"] += 1
        ids = with_bos(tokenizer, anchored if config.arm == "anchored" else plain) + eos
        examples.append(SFTExample(chunk_id, ids, [1] * len(ids), "replay"))


def add_replay(built: BuiltExamples, replay: list[SFTExample], replay_counts: dict[str, Any]) -> None:
    """Mix the replayed chunks into the trained examples and their counts (the trainer shuffles)."""
    built.examples.extend(replay)
    counts = built.counts
    counts["trained"] = len(built.examples)
    counts["trained_by_kind"]["replay"] = len(replay)
    counts["trained_tokens"] = sum(sum(e.label_mask) for e in built.examples)
    counts["total_tokens"] = sum(len(e.input_ids) for e in built.examples)
    counts["trained_ids_sha256"] = trained_ids_fingerprint(e.id for e in built.examples)
    counts.update(replay_counts)
