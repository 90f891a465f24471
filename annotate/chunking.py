"""Splitting documents into chunks, each annotated on its own.

A document is split at blank lines (the paper's unit). Paragraphs longer than the
bounds are split at sentence ends (and, for a sentence that is itself too long, at the
last space that fits); a chunk shorter than ``min_chars`` is merged with the next
paragraph when the result still fits, so headlines and one-line paragraphs do not each
cost an annotation. Every chunk keeps its document id and its index in the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from annotate.config import ChunkingConfig

PARAGRAPH_SEPARATOR = "\n\n"
_BLANK_LINE_RE = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    chunk_index: int
    text: str

    @property
    def id(self) -> str:
        return chunk_id(self.doc_id, self.chunk_index)


def chunk_id(doc_id: str, chunk_index: int) -> str:
    return f"{doc_id}#{chunk_index}"


class Chunker:
    """Applies ``ChunkingConfig`` bounds; token bounds use the configured tokenizer."""

    def __init__(self, config: ChunkingConfig, tokenizer: Any = None):
        self.config = config
        self.tokenizer = tokenizer
        if config.tokenizer is not None and tokenizer is None:
            from transformers import AutoTokenizer  # only when a token bound is configured

            self.tokenizer = AutoTokenizer.from_pretrained(config.tokenizer)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def fits(self, text: str) -> bool:
        if len(text) > self.config.max_chars:
            return False
        return self.config.max_tokens is None or self.count_tokens(text) <= self.config.max_tokens

    def chunk(self, doc_id: str, text: str) -> list[Chunk]:
        """The chunks of one document ([] for an empty or whitespace-only text)."""
        pieces = [p for para in paragraphs(text) for p in self._split_overlong(para)]
        merged: list[str] = []
        for piece in pieces:
            if (
                merged
                and len(merged[-1]) < self.config.min_chars
                and self.fits(merged[-1] + PARAGRAPH_SEPARATOR + piece)
            ):
                merged[-1] = merged[-1] + PARAGRAPH_SEPARATOR + piece
            else:
                merged.append(piece)
        # A short last chunk joins the one before it when that fits.
        if len(merged) > 1 and len(merged[-1]) < self.config.min_chars:
            joined = merged[-2] + PARAGRAPH_SEPARATOR + merged[-1]
            if self.fits(joined):
                merged[-2:] = [joined]
        return [Chunk(doc_id, i, t) for i, t in enumerate(merged)]

    def _split_overlong(self, paragraph: str) -> list[str]:
        if self.fits(paragraph):
            return [paragraph]
        out: list[str] = []
        current = ""
        for sentence in _sentences(paragraph):
            candidate = f"{current} {sentence}" if current else sentence
            if self.fits(candidate):
                current = candidate
                continue
            if current:
                out.append(current)
            if self.fits(sentence):
                current = sentence
            else:  # one sentence beyond the bounds: cut it at spaces
                parts = _hard_split(sentence, self.fits)
                out.extend(parts[:-1])
                current = parts[-1]
        if current:
            out.append(current)
        return out


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, stripped, empty ones dropped."""
    return [p.strip() for p in _BLANK_LINE_RE.split(text.replace("\r\n", "\n")) if p.strip()]


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END_RE.split(paragraph) if s.strip()]


def _hard_split(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Greedy split at spaces so each part fits; a word that fits nowhere is cut by characters."""
    parts: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            parts.append(current)
        current = word
        while not fits(current):  # a single overlong "word" (a URL, a table row)
            cut = _longest_fitting_prefix(current, fits)
            parts.append(current[:cut])
            current = current[cut:]
    if current:
        parts.append(current)
    return parts


def _longest_fitting_prefix(text: str, fits: Callable[[str], bool]) -> int:
    lo, hi = 1, len(text)  # invariant: text[:lo] fits (one character always does)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[:mid]):
            lo = mid
        else:
            hi = mid - 1
    return lo
