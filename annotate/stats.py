"""``annotation_stats.json``: how broad the annotations are, and how many failed.

Per key, over the ok chunks: coverage (fraction of ok chunks with at least one tag of
the key), distinct values, and the entropy in bits of the key's value distribution
(every tag of the key counts once: a chunk with two entities adds two values). Overall:
chunk counts by status, mean tags per ok chunk, tokens (or characters), documents.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence


def entropy_bits(counts: Mapping[str, int] | Iterable[int]) -> float:
    """Shannon entropy, in bits, of the distribution given by ``counts``."""
    values = list(counts.values()) if isinstance(counts, Mapping) else list(counts)
    total = sum(values)
    if total <= 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in values if c > 0) + 0.0


@dataclass
class StatsAccumulator:
    """Fed one record at a time (a consolidated row), summarised once at the end."""

    # The schema's key order, for a stable table (keys outside it are listed after).
    keys: Sequence[str] = ()
    # "tokens" when a tokenizer counted them, else "characters".
    length_unit: str = "characters"
    status: Counter = field(default_factory=Counter)
    values: dict[str, Counter] = field(default_factory=dict)
    key_chunks: Counter = field(default_factory=Counter)
    tag_total: int = 0
    length_total: int = 0
    documents: set = field(default_factory=set)
    errors: Counter = field(default_factory=Counter)

    def add(self, status: str, tags: Sequence[Mapping[str, str]], length: int, document: str, error: str = "") -> None:
        self.status[status] += 1
        self.documents.add(document)
        self.length_total += length
        if status != "ok":
            self.errors[error.split(":", 1)[0][:80]] += 1
            return
        self.tag_total += len(tags)
        for key in {t["key"] for t in tags}:
            self.key_chunks[key] += 1
        for tag in tags:
            self.values.setdefault(tag["key"], Counter())[tag["value"]] += 1

    def summary(self) -> dict:
        ok = self.status["ok"]
        keys = [k for k in self.keys if k in self.values] + sorted(k for k in self.values if k not in self.keys)
        per_key = {
            key: {
                "coverage": self.key_chunks[key] / ok if ok else 0.0,
                "distinct_values": len(self.values[key]),
                "entropy_bits": entropy_bits(self.values[key]),
                "top_values": [[v, n] for v, n in self.values[key].most_common(5)],
            }
            for key in keys
        }
        best = max(per_key, key=lambda k: per_key[k]["entropy_bits"], default=None)
        return {
            "overall": {
                "chunks": sum(self.status.values()),
                "ok": ok,
                "failed": self.status["failed"],
                "skipped": self.status["skipped"],
                "documents": len(self.documents),
                "mean_tags_per_ok_chunk": self.tag_total / ok if ok else 0.0,
                self.length_unit: self.length_total,
                "max_entropy_key": best,
                "max_entropy_bits": per_key[best]["entropy_bits"] if best else 0.0,
                "failure_reasons": dict(self.errors.most_common(10)),
            },
            "keys": per_key,
        }


def format_table(summary: dict) -> str:
    """The stats as a fixed-width table for the terminal."""
    overall = summary["overall"]
    lines = [f"{'key':<12} {'coverage':>9} {'distinct':>9} {'entropy(bits)':>14}  top values"]
    for key, row in summary["keys"].items():
        top = ", ".join(f"{v} ({n})" for v, n in row["top_values"][:3])
        lines.append(
            f"{key:<12} {row['coverage']:>9.3f} {row['distinct_values']:>9d} {row['entropy_bits']:>14.3f}  {top}"
        )
    unit = "tokens" if "tokens" in overall else "characters"
    lines.append(
        f"chunks {overall['chunks']} (ok {overall['ok']}, failed {overall['failed']}, skipped {overall['skipped']}), "
        f"documents {overall['documents']}, mean tags per ok chunk {overall['mean_tags_per_ok_chunk']:.2f}, "
        f"{unit} {overall[unit]}"
    )
    return "\n".join(lines)
