"""Lexical diversity of one prompt's samples: distinct-n and compression ratio."""

from __future__ import annotations

import gzip


def words(text: str) -> list[str]:
    """Lower-cased whitespace tokens (the tokenisation distinct-n is defined on)."""
    return text.lower().split()


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """distinct-n = |unique n-grams| / |n-grams|, pooled over all samples of a prompt.

    N-grams are taken within each sample (never across two), on lower-cased whitespace
    tokens; the count is over the pooled multiset (the "corpus-level" normalisation, not
    a per-sample average). NaN when the samples hold no n-gram at all.
    """
    pooled = [g for text in texts for g in ngrams(words(text), n)]
    if not pooled:
        return float("nan")
    return len(set(pooled)) / len(pooled)


def compression_ratio(texts: list[str]) -> float:
    """len(gzip(joined)) / len(joined), joined = the samples joined by newlines, UTF-8 bytes.

    Direction: compressed over raw, so HIGHER = less redundant = more diverse (the
    reverse of the raw/compressed convention some papers use). gzip level 9, mtime 0;
    its ~20-byte header makes very short texts score above 1. NaN for empty text.
    """
    raw = "\n".join(texts).encode("utf-8")
    if not raw:
        return float("nan")
    return len(gzip.compress(raw, compresslevel=9, mtime=0)) / len(raw)


def repeated_ngram_fraction(text: str, n: int) -> float:
    """1 - distinct-n of one text: the share of its n-grams that repeat an earlier one.
    0 when the text has no n-gram (too short to repeat)."""
    grams = ngrams(words(text), n)
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)
