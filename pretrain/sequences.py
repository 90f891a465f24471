"""What each arm trains on: one token sequence per document, cached as flat arrays.

The annotate stage hands over one row per chunk (``ANN/data``), ordered by document and
``chunk_index``. Per document, the arms render:

- anchored: ``<z1> x1 SEP <z2> x2 SEP ... <zn> xn``: each chunk's annotation (the
  ``annotation`` column, delimiters included) immediately followed by the chunk's text;
  the loss is on every token, annotations included. A chunk without a usable annotation
  (status ``failed`` or ``skipped``, an empty or malformed annotation) is rendered
  without one, and counted by reason.
- plain: ``x1 SEP x2 SEP ... xn``: the same chunks, no annotations.

Each document is tokenized whole (so training sees the tokenization that generation
will see) and becomes ``[bos] + tokens + [eos]`` (bos if the tokenizer has one: the
one BOS rule of ``posttrain.prompt_format.with_bos``, which prompts follow too). Annotation tokens are the spans from ``<|ann|>`` to ``<|/ann|>``
inclusive; every other token (text, separators, bos/eos) is a content token.

The corpus is written once to ``cache_dir`` as ``tokens.bin`` (uint32), ``annotation.bin``
(uint8, 1 on annotation tokens), ``offsets.npy`` (document boundaries),
``chunk_starts.npy`` (the flat token index where each chunk starts: its annotation in the
anchored arm, its bos for a document's first chunk; located through the tokenizer's offset
mapping of the whole document, so tokenization is unchanged) and ``corpus.json`` (the key
it was built for, and its counts), then memory-mapped: the paper-scale corpora do not fit
in RAM.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, AnnotationError, parse_annotation
from stage_io.manifest import fingerprint
from stage_io.records import RecordSource, load_records

CHUNK_FIELDS = ("doc_id", "chunk_index", "text", "annotation", "status")
CORPUS_VERSION = 2  # 2: chunk_starts.npy


@dataclass
class Chunk:
    text: str
    annotation: str
    status: str


@dataclass
class Document:
    doc_id: str
    chunks: list[Chunk] = field(default_factory=list)


def annotations_data_dir(annotations: str | Path) -> Path:
    """``ANN/data`` for an annotate output dir (or the data dir itself)."""
    path = Path(annotations)
    if (path / "data").is_dir():
        return path / "data"
    if not path.exists():
        raise FileNotFoundError(
            f"data.annotations={annotations}: no such directory (run the annotate stage first, "
            "or point data.annotations at its output directory)"
        )
    return path


def iter_documents(annotations: str | Path, max_documents: int | None = None) -> Iterator[Document]:
    """Documents of the annotate output, chunks in order; out-of-order rows are an error."""
    data_dir = annotations_data_dir(annotations)
    ds = load_records(RecordSource(source=str(data_dir)), required_fields=CHUNK_FIELDS).select_columns(
        list(CHUNK_FIELDS)
    )
    seen: set[str] = set()
    current: Document | None = None
    last_index = -1
    row = 0
    for batch in ds.iter(batch_size=4096):
        for doc_id, chunk_index, text, annotation, status in zip(*(batch[f] for f in CHUNK_FIELDS)):
            doc_id = str(doc_id)
            if current is None or doc_id != current.doc_id:
                if current is not None:
                    yield current
                    if max_documents is not None and len(seen) >= max_documents:
                        return
                if doc_id in seen:
                    raise ValueError(
                        f"{data_dir}: row {row}: chunks of document '{doc_id}' are not contiguous "
                        "(the annotate output must be ordered by document, then chunk_index)"
                    )
                seen.add(doc_id)
                current, last_index = Document(doc_id), -1
            if chunk_index <= last_index:
                raise ValueError(
                    f"{data_dir}: row {row}: document '{doc_id}' has chunk_index {chunk_index} "
                    f"after {last_index} (expected increasing)"
                )
            last_index = chunk_index
            current.chunks.append(Chunk(text or "", annotation or "", status or ""))
            row += 1
    if current is not None:
        yield current


def usable_annotation(chunk: Chunk) -> tuple[str, str | None]:
    """The annotation to render before the chunk, and why there is none (None if there is one)."""
    if chunk.status != "ok":
        return "", chunk.status or "no_status"
    if not chunk.annotation:
        return "", "ok_but_empty"
    try:
        parse_annotation(chunk.annotation)
    except AnnotationError:
        return "", "malformed"
    return chunk.annotation, None


def render_document(doc: Document, arm: str, separator: str = "\n\n") -> tuple[str, Counter]:
    """The document's training text for ``arm``, and counts of the chunks rendered without
    an annotation, by reason (in both arms, so their manifests agree).

    Delimiter strings inside chunk text are removed (counted as ``delimiter_in_text``):
    only annotations may open and close an annotation.
    """
    text, _, missing = render_chunks(doc, arm, separator)
    return text, missing


def render_chunks(doc: Document, arm: str, separator: str = "\n\n") -> tuple[str, list[int], Counter]:
    """``render_document``, plus the character offset where each chunk (its annotation first) starts."""
    missing: Counter = Counter()
    parts, starts, at = [], [], 0
    for chunk in doc.chunks:
        text = chunk.text
        if ANNOTATION_OPEN in text or ANNOTATION_CLOSE in text:
            text = text.replace(ANNOTATION_OPEN, "").replace(ANNOTATION_CLOSE, "")
            missing["delimiter_in_text"] += 1
        annotation, reason = usable_annotation(chunk)
        if reason is not None:
            missing[reason] += 1
        part = (annotation if arm == "anchored" else "") + text
        starts.append(at)
        parts.append(part)
        at += len(part) + len(separator)
    return separator.join(parts), starts, missing


def chunk_token_starts(char_starts: list[int], token_offsets: list[tuple[int, int]], n_before: int) -> np.ndarray:
    """Token index (in ``[bos] + tokens``) where each chunk starts, from the text's offset mapping.

    A chunk starts at the first token that ends after its first character, so a token that
    straddles a boundary (never seen with the byte-level BPE) belongs to the later chunk.
    The first chunk starts at 0: the bos token travels with it. Empty chunks collapse
    into the next one (starts are unique and increasing).
    """
    ends = np.fromiter((end for _, end in token_offsets), dtype=np.int64, count=len(token_offsets))
    starts = np.searchsorted(ends, np.asarray(char_starts, dtype=np.int64), side="right") + n_before
    starts[0] = 0
    return np.unique(starts)


def annotation_mask(ids: np.ndarray, open_id: int, close_id: int) -> np.ndarray:
    """True on every token from an opening delimiter to its closing one, both included."""
    opens = np.cumsum(ids == open_id)
    closes = np.cumsum(ids == close_id)
    # Inside: more opens than closes so far, or this token is the close itself.
    return (opens - closes > 0) | (ids == close_id)


class TokenizedCorpus:
    """Documents as one flat token array plus boundaries (document i is tokens[offsets[i]:offsets[i+1]])."""

    def __init__(
        self,
        tokens: np.ndarray,
        is_annotation: np.ndarray,
        offsets: np.ndarray,
        info: dict | None = None,
        chunk_starts: np.ndarray | None = None,
    ):
        if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(tokens) or len(is_annotation) != len(tokens):
            raise ValueError("inconsistent corpus arrays (offsets, tokens and annotation mask disagree)")
        if np.any(np.diff(offsets) < 1):
            raise ValueError("every document must have at least one token")
        # Flat token index where each chunk starts (its annotation first; a document's first chunk at the
        # document's first token), increasing; every document start is one. None: one chunk per document.
        chunk_starts = offsets[:-1] if chunk_starts is None else np.asarray(chunk_starts, dtype=np.int64)
        if (
            np.any(np.diff(chunk_starts) < 1)
            or len(chunk_starts)
            and chunk_starts[-1] >= len(tokens)
            or not np.isin(offsets[:-1], chunk_starts).all()
        ):
            raise ValueError("chunk starts must increase, lie inside the corpus and include every document start")
        self.tokens, self.is_annotation, self.offsets, self.chunk_starts = tokens, is_annotation, offsets, chunk_starts
        self.info = info or {}

    @property
    def n_documents(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def from_sequences(
        cls,
        sequences: list[list[int]],
        masks: list[list[bool]] | None = None,
        chunk_lengths: list[list[int]] | None = None,
    ) -> "TokenizedCorpus":
        """An in-memory corpus (tests, benchmarks); ``chunk_lengths`` splits each document into chunks
        (None: one chunk per document)."""
        lengths = [len(s) for s in sequences]
        tokens = np.array([t for s in sequences for t in s], dtype=np.uint32)
        if masks is None:
            mask = np.zeros(len(tokens), dtype=np.uint8)
        else:
            mask = np.array([m for ms in masks for m in ms], dtype=np.uint8)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        starts = None
        if chunk_lengths is not None:
            if [sum(c) for c in chunk_lengths] != lengths:
                raise ValueError("chunk_lengths must add up to each document's length")
            starts = np.concatenate(
                [base + np.concatenate([[0], np.cumsum(c[:-1])]) for base, c in zip(offsets[:-1], chunk_lengths)]
            ).astype(np.int64)
        return cls(tokens, mask, offsets, chunk_starts=starts)

    @classmethod
    def load(cls, directory: Path) -> "TokenizedCorpus":
        info = json.loads((directory / "corpus.json").read_text(encoding="utf-8"))
        offsets = np.load(directory / "offsets.npy")
        n = int(offsets[-1])
        tokens = np.memmap(directory / "tokens.bin", dtype=np.uint32, mode="r", shape=(n,))
        mask = np.memmap(directory / "annotation.bin", dtype=np.uint8, mode="r", shape=(n,))
        return cls(tokens, mask, offsets, info, np.load(directory / "chunk_starts.npy"))


def corpus_key(data_cfg, tokenizer_dir: str | Path) -> dict:
    """What the cached corpus depends on; a cache with another key is rebuilt."""
    ann_dir = Path(data_cfg.annotations)
    # The annotate manifest changes with every annotate run; hashing it is cheap, unlike hashing the data.
    source = ann_dir / "manifest.json" if (ann_dir / "manifest.json").is_file() else annotations_data_dir(ann_dir)
    return {
        "version": CORPUS_VERSION,
        "annotations": str(ann_dir),
        "annotations_fingerprint": fingerprint(source),
        "arm": data_cfg.arm,
        "chunk_separator": data_cfg.chunk_separator,
        "max_documents": data_cfg.max_documents,
        "tokenizer_fingerprint": fingerprint(tokenizer_dir),
    }


def build_corpus(data_cfg, tokenizer, add_bos: bool, cache_dir: str | Path, key: dict) -> TokenizedCorpus:
    """Tokenize the arm's documents into ``cache_dir`` (or load them if cached with the same key)."""
    from pretrain.tokenizer import annotation_token_ids  # the tokenizer module owns the delimiter ids

    cache_dir = Path(cache_dir)
    if _cached_key(cache_dir) == key:
        return TokenizedCorpus.load(cache_dir)
    delimiter_ids = annotation_token_ids(tokenizer)
    check_bos_rule(tokenizer, add_bos)
    tmp = cache_dir.with_name(f".{cache_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with _CorpusWriter(tmp, tokenizer, delimiter_ids, data_cfg) as writer:
        batch: list[Document] = []
        docs = iter_documents(data_cfg.annotations, data_cfg.max_documents)
        for doc in tqdm(docs, desc=f"tokenizing ({data_cfg.arm})", unit="doc", mininterval=2.0):
            batch.append(doc)
            if len(batch) >= data_cfg.tokenize_batch_size:
                writer.write(batch)
                batch = []
        if batch:
            writer.write(batch)
    if not writer.lengths:
        raise ValueError(f"{data_cfg.annotations}: no documents to train on (data.annotations)")
    writer.finish(key)
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, cache_dir)
    return TokenizedCorpus.load(cache_dir)


def _cached_key(cache_dir: Path) -> dict | None:
    """The key a cached corpus was built with (None: no cache there)."""
    if not (cache_dir / "corpus.json").is_file():
        return None
    return json.loads((cache_dir / "corpus.json").read_text(encoding="utf-8")).get("key")


def check_bos_rule(tokenizer, add_bos: bool) -> None:
    """Documents start with the BOS token whenever the tokenizer has one, as every prompt does."""
    if not add_bos and tokenizer.bos_token_id is not None:
        raise ValueError(
            "tokenizer.add_bos=false, but the tokenizer has a BOS token, which posttrain and eval put "
            "at the start of every prompt (posttrain.prompt_format.with_bos, the one BOS rule): "
            "pretraining documents must start with it too; set tokenizer.add_bos=true"
        )


class _CorpusWriter:
    """Writes tokenized documents to ``directory``'s tokens.bin and annotation.bin, keeping their
    lengths, chunk starts and counts for offsets.npy, chunk_starts.npy and corpus.json."""

    def __init__(self, directory: Path, tokenizer, delimiter_ids: tuple[int, int], data_cfg) -> None:
        self.directory = directory
        self.tokenizer = tokenizer
        self.data_cfg = data_cfg
        # The token ids of the annotation's open and close delimiters.
        self.open_id, self.close_id = delimiter_ids
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = [tokenizer.eos_token_id]
        self.lengths: list[int] = []
        self.chunk_starts: list[np.ndarray] = []
        self.counts: Counter = Counter()
        # Chunks rendered without their annotation, by reason.
        self.missing: Counter = Counter()

    def __enter__(self) -> "_CorpusWriter":
        self.tokens_file = open(self.directory / "tokens.bin", "wb")
        self.mask_file = open(self.directory / "annotation.bin", "wb")
        return self

    def __exit__(self, *exc) -> None:
        self.tokens_file.close()
        self.mask_file.close()

    def write(self, batch: list[Document]) -> None:
        """Render and tokenize a batch of documents and append them."""
        texts, char_starts = [], []
        for doc in batch:
            text, starts, doc_missing = render_chunks(doc, self.data_cfg.arm, self.data_cfg.chunk_separator)
            texts.append(text)
            char_starts.append(starts)
            self.missing.update(doc_missing)
            self.counts["chunks"] += len(doc.chunks)
        # Offsets locate the chunk starts in the whole-document tokenization (which they do not change).
        encoded = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        for ids, token_offsets, starts in zip(encoded["input_ids"], encoded["offset_mapping"], char_starts):
            arr = np.array(self.bos + ids + self.eos, dtype=np.uint32)
            self.chunk_starts.append(self.counts["written"] + chunk_token_starts(starts, token_offsets, len(self.bos)))
            self.counts["written"] += len(arr)
            mask = annotation_mask(arr, self.open_id, self.close_id)
            self.tokens_file.write(arr.tobytes())
            self.mask_file.write(mask.astype(np.uint8).tobytes())
            self.lengths.append(len(arr))
            self.counts["annotation_tokens"] += int(mask.sum())
            self.counts["special_tokens"] += len(self.bos) + len(self.eos)

    def finish(self, key: dict) -> None:
        """Write offsets.npy, chunk_starts.npy and corpus.json (the counts, and the cache ``key``)."""
        offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        np.save(self.directory / "offsets.npy", offsets)
        np.save(self.directory / "chunk_starts.npy", np.concatenate(self.chunk_starts).astype(np.int64))
        n_tokens = int(offsets[-1])
        counts, missing = self.counts, self.missing
        info = {
            "key": key,
            "documents": len(self.lengths),
            "chunks": counts["chunks"],
            "chunk_starts": sum(len(c) for c in self.chunk_starts),
            "chunks_without_annotation": {k: v for k, v in sorted(missing.items()) if k != "delimiter_in_text"},
            "chunks_with_delimiters_removed_from_text": missing["delimiter_in_text"],
            "tokens": n_tokens,
            "annotation_tokens": counts["annotation_tokens"],
            "content_tokens": n_tokens - counts["annotation_tokens"],
            "special_tokens": counts["special_tokens"],
            "longest_document": int(max(self.lengths)),
            "mean_document": n_tokens / len(self.lengths),
        }
        (self.directory / "corpus.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
