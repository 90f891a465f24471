"""A word trigram model with interpolated Kneser-Ney smoothing, fitted on corpus text.

The neutral quality reference (``metrics.quality.kind: ngram``): it is fitted on the
``text`` column of an annotate output (the pretraining corpus every arm was pretrained
on, annotations never read), so no arm's model is involved in scoring any arm.

Words are lower-cased ``\\w+`` runs and single punctuation marks. Each text is padded
with two ``<s>`` and scored without an end marker (responses are often cut at the
length budget). Probabilities (Chen & Goodman's interpolated Kneser-Ney, one discount
per order, D = n1 / (n1 + 2 n2) from the count-of-counts):

    P3(w | u v) = max(c(uvw) - D3, 0) / c(uv.) + D3 N1+(uv.) / c(uv.) * P2(w | v)
    P2(w | v)   = max(N1+(.vw) - D2, 0) / N1+(.v.) + D2 N1+(v.) / N1+(.v.) * P1(w)
    P1(w)       = max(N1+(.w) - D1, 0) / N1+(..) + D1 N1+(types) / N1+(..) / (V + 1)

with an unseen context falling through to the lower order, and the lowest order
interpolated with a uniform distribution over the vocabulary plus one unknown word, so
every word has a probability. Counts live in sorted numpy arrays of packed codes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

WORD = re.compile(r"\w+|[^\w\s]")
START = 0  # the <s> padding id; words are 1..V, the unknown word V + 1
FALLBACK_DISCOUNT = 0.75


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _discount(counts: np.ndarray) -> float:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    if n1 == 0 or n2 == 0:
        return FALLBACK_DISCOUNT
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


def _lookup(keys: np.ndarray, sorted_codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values[i] where sorted_codes[i] == key, 0 where the key is absent."""
    idx = np.minimum(np.searchsorted(sorted_codes, keys), len(sorted_codes) - 1)
    return np.where(sorted_codes[idx] == keys, values[idx], 0).astype(np.float64)


def _grouped(codes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sorted ``codes`` (repeats allowed): unique codes, sum of weights, number of rows."""
    unique, start, count = np.unique(codes, return_index=True, return_counts=True)
    return unique, np.add.reduceat(weights, start), count


class TrigramKN:
    """Interpolated Kneser-Ney word trigram model; ``logprobs`` scores new text."""

    def __init__(self, texts: Iterable[str]) -> None:
        vocab: dict[str, int] = {}
        sequences = []
        for text in texts:
            ids = [vocab.setdefault(w, len(vocab) + 1) for w in words(text)]
            if ids:
                sequences.append(np.array([START, START, *ids], dtype=np.int64))
        if not sequences:
            raise ValueError("no words to fit the n-gram model on")
        self.vocab = vocab
        self.base = base = len(vocab) + 2  # ids 0..V+1
        if base**3 >= 2**62:
            raise ValueError(f"n-gram vocabulary of {len(vocab)} words is too large to pack (read fewer rows)")
        tri = np.concatenate([(s[:-2] * base + s[1:-1]) * base + s[2:] for s in sequences])
        self.n_texts, self.n_words = len(sequences), int(tri.size)
        self.tri_codes, self.tri_counts = np.unique(tri, return_counts=True)
        # Order 3 contexts (u v): total count and number of distinct followers.
        self.ctx3_codes, self.ctx3_total, self.ctx3_types = _grouped(self.tri_codes // base, self.tri_counts)
        # Order 2: continuation counts N1+(.vw) are the distinct u before each (v, w).
        self.bi_codes, self.bi_cont = np.unique(self.tri_codes % base**2, return_counts=True)
        self.ctx2_codes, self.ctx2_total, self.ctx2_types = _grouped(self.bi_codes // base, self.bi_cont)
        # Order 1: N1+(.w) = the distinct v before w.
        self.uni_codes, self.uni_cont = np.unique(self.bi_codes % base, return_counts=True)
        self.uni_total = float(len(self.bi_codes))
        self.discounts = (_discount(self.uni_cont), _discount(self.bi_cont), _discount(self.tri_counts))

    def describe(self) -> dict:
        return {
            "order": 3,
            "smoothing": "interpolated Kneser-Ney",
            "texts": self.n_texts,
            "words": self.n_words,
            "vocabulary": len(self.vocab),
            "discounts": [round(d, 4) for d in self.discounts],
        }

    def _ids(self, text: str) -> np.ndarray:
        unknown = self.base - 1
        return np.array([START, START, *(self.vocab.get(w, unknown) for w in words(text))], dtype=np.int64)

    def logprobs(self, text: str) -> np.ndarray:
        """Natural-log probability of every word of ``text`` given the two before it."""
        s = self._ids(text)
        u, v, w = s[:-2], s[1:-1], s[2:]
        d1, d2, d3 = self.discounts
        uni = _lookup(w, self.uni_codes, self.uni_cont)
        p1 = (np.maximum(uni - d1, 0) + d1 * len(self.uni_codes) / (self.base - 1)) / self.uni_total
        p2 = self._interpolate(
            v, v * self.base + w, self.ctx2_codes, self.ctx2_total, self.ctx2_types, self.bi_codes, self.bi_cont, d2, p1
        )
        p3 = self._interpolate(
            u * self.base + v,
            (u * self.base + v) * self.base + w,
            self.ctx3_codes,
            self.ctx3_total,
            self.ctx3_types,
            self.tri_codes,
            self.tri_counts,
            d3,
            p2,
        )
        return np.log(p3)

    @staticmethod
    def _interpolate(ctx, gram, ctx_codes, ctx_total, ctx_types, gram_codes, gram_counts, d, lower):
        total = _lookup(ctx, ctx_codes, ctx_total)
        types = _lookup(ctx, ctx_codes, ctx_types)
        count = _lookup(gram, gram_codes, gram_counts)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        return np.where(seen, np.maximum(count - d, 0) / safe + d * types / safe * lower, lower)

    def mean_logprob(self, text: str) -> float | None:
        """Mean per-word log-prob (nats); None for a text without words."""
        lp = self.logprobs(text)
        return float(lp.mean()) if lp.size else None


def corpus_files(corpus: str | Path, key: str = "metrics.quality.ngram.corpus") -> list[Path]:
    """The corpus's data/*.parquet files; an error naming ``key`` when there are none."""
    files = sorted((Path(corpus) / "data").glob("*.parquet"))
    if not files:
        raise ValueError(f"{key}: no {Path(corpus) / 'data'}/*.parquet (point it at an annotate output directory)")
    return files


def corpus_texts(
    corpus: str | Path, max_rows: int | None, key: str = "metrics.quality.ngram.corpus"
) -> tuple[list[str], dict]:
    """The ``text`` column of ``corpus``/data/*.parquet (an annotate output), never its annotations."""
    import pyarrow.parquet as pq

    files = corpus_files(corpus, key)
    texts: list[str] = []
    empty = 0
    for path in files:
        table = pq.read_table(path, columns=["text"]) if "text" in pq.read_schema(path).names else None
        if table is None:
            raise ValueError(f"{key}: {path} has no 'text' column")
        for text in table.column("text").to_pylist():
            if max_rows is not None and len(texts) + empty >= max_rows:
                break
            if text and text.strip():
                texts.append(text)
            else:
                empty += 1
    return texts, {
        "corpus": str(corpus),
        "files": len(files),
        "rows_read": len(texts) + empty,
        "empty_rows_skipped": empty,
    }


def fit_corpus_model(corpus: str | Path, max_rows: int | None) -> tuple[TrigramKN, dict]:
    texts, info = corpus_texts(corpus, max_rows)
    model = TrigramKN(texts)
    return model, info | model.describe()


def mean_logprobs(model: TrigramKN, responses: Sequence[str]) -> list[float | None]:
    return [model.mean_logprob(r) for r in responses]
