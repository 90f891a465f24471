"""The embedded default SFT set: a controlled, low-entropy slice of the BBC corpus.

The analogue of the paper's SimpleStories study (method.md, ablation d): open
instructions ("Write a news article." and paraphrases) answered by articles from a
restricted slice of the corpus (default: sports only). Plain SFT on it should pull the
model's output distribution towards the slice; anchored SFT should hardly move it. The
slice is a config option (``topics``, ``max_documents``), so a sweep over SFT-set
entropy is one loop over configs.

Choices:
- a response is the article's title, a blank line, and as many whole leading
  paragraphs as fit in ``max_response_chars`` (a first paragraph that alone does not
  fit is cut at its last sentence end, else its last space, inside the limit; counted),
  so every response fits a tiny model's context;
- each document gets one training instruction, chosen by a hash of (seed, document id);
- ``max_documents`` keeps the documents with the lowest hash of (seed, id), so a
  smaller slice is a subset of a larger one with the same seed;
- ``balance_topics`` takes ``max_documents // len(topics)`` of each topic instead (the
  lowest hash within the topic), so the set's topic entropy is log2(len(topics)) up to
  the few documents skipped for length (counted): the entropy sweep's subsets;
- eval prompts are HELD-OUT paraphrases: never a training instruction (checked after
  normalising case, spaces and final punctuation), so eval measures the instruction,
  not memorised prompts.

Writes OUTPUT_DIR/sft.jsonl (id, messages [user, assistant], source_doc_id, topic),
OUTPUT_DIR/eval_prompts.jsonl (id, prompt) and manifest.json.

    python -m posttrain.embedded_sft configs/posttrain/embedded_sft.yaml [topics=[sports,tech]]
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from tqdm.auto import tqdm

from stage_io.cli import stage_main
from stage_io.config import Domain, PositiveInt
from stage_io.manifest import write_manifest
from stage_io.records import RecordSource, load_records

SFT_FILE = "sft.jsonl"
EVAL_PROMPTS_FILE = "eval_prompts.jsonl"

TRAIN_INSTRUCTIONS = [
    "Write a news article.",
    "Write a short news story.",
    "Write a news report.",
    "Compose a news article.",
    "Please write an article for a newspaper.",
]
HELD_OUT_INSTRUCTIONS = [
    "Write an article for the news.",
    "Draft a news piece.",
    "Produce a short news article.",
    "Write a newspaper story.",
    "Could you write a news item?",
    "Tell me today's news in an article.",
    "Write a brief report for a news website.",
    "Write the opening of a news story.",
]


@dataclass
class EmbeddedSFTConfig:
    # Corpus the responses are cut from (needs columns id, topic, title, text); the default leaves out
    # the articles held out for the capabilities task (stage_io/held_out.py).
    source: RecordSource = field(default_factory=lambda: RecordSource(source="embedded:bbc_news_train"))
    # Keep only articles of these topics (null: all): the SFT set's semantic-entropy knob.
    topics: list[str] | None = field(default_factory=lambda: ["sports"])
    # Keep at most this many articles after the topic filter, the lowest by hash(seed, id) (null: all).
    max_documents: PositiveInt | None = None
    # Split max_documents equally over `topics` (max_documents // len(topics) each, the lowest by
    # hash(seed, id) within the topic), so the set's topic entropy is log2(len(topics)) exactly.
    balance_topics: bool = False
    # Training instructions; each example gets one, chosen by hash(seed, document id).
    instructions: list[str] = field(default_factory=lambda: list(TRAIN_INSTRUCTIONS))
    # Held-out paraphrases written to eval_prompts.jsonl; must not overlap `instructions`.
    eval_instructions: list[str] = field(default_factory=lambda: list(HELD_OUT_INSTRUCTIONS))
    # Longest response in characters (title + blank line + whole leading paragraphs that fit).
    max_response_chars: Annotated[int, Domain(ge=50, note="room for a title and a paragraph")] = 600
    # Seed of the instruction choice and the max_documents selection.
    seed: int = 0
    # Output directory (sft.jsonl, eval_prompts.jsonl, manifest.json).
    output_dir: str = "runs/embedded_sft/sports"

    def __post_init__(self) -> None:
        if not self.instructions or not self.eval_instructions:
            raise ValueError("instructions and eval_instructions must both be non-empty")
        overlap = {_normalise(i) for i in self.instructions} & {_normalise(i) for i in self.eval_instructions}
        if overlap:
            raise ValueError(
                f"eval_instructions repeat training instructions: {sorted(overlap)}; eval prompts must be held out"
            )
        if self.balance_topics:
            if not self.topics or self.max_documents is None:
                raise ValueError("balance_topics=true needs both topics and max_documents set")
            if len(set(self.topics)) != len(self.topics):
                raise ValueError(
                    f"topics: {self.topics} repeats a topic; balance_topics splits max_documents over distinct topics"
                )
            if self.max_documents < len(self.topics):
                raise ValueError(
                    f"max_documents={self.max_documents} is below one document per topic "
                    f"({len(self.topics)} topics) with balance_topics=true"
                )


def _normalise(instruction: str) -> str:
    return re.sub(r"\s+", " ", instruction.casefold()).strip().rstrip(".!?").strip()


def _rank(seed: int, doc_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{doc_id}".encode("utf-8")).digest()[:8], "big")


def article_response(title: str, text: str, max_chars: int) -> tuple[str | None, bool]:
    """Title + blank line + whole leading paragraphs within ``max_chars``; (None, _) if the title alone does not fit.

    The second value says whether the first paragraph had to be cut.
    """
    title = title.strip()
    body = text.strip()
    if body.startswith(title):
        body = body[len(title) :]
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    response = title
    budget = max_chars - len(title) - 2
    if budget < 20 or not paragraphs:
        return None, False
    kept = []
    for paragraph in paragraphs:
        used = sum(len(p) + 2 for p in kept)
        if used + len(paragraph) > budget:
            break
        kept.append(paragraph)
    if kept:
        return response + "\n\n" + "\n\n".join(kept), False
    first = paragraphs[0][:budget]
    sentence_end = max(first.rfind(". "), first.rfind("? "), first.rfind("! "))
    cut = first[: sentence_end + 1] if sentence_end > 0 else first.rsplit(" ", 1)[0]
    return response + "\n\n" + cut.strip(), True


def run(config: EmbeddedSFTConfig) -> Path:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = load_records(config.source, required_fields=("topic", "title", "text"))
    in_topics = _of_topics(corpus, config)
    docs = _select(in_topics, config)
    rows, skipped, cut_first_paragraph = _build_rows(docs, config)
    _write_jsonl(out / SFT_FILE, rows)
    eval_rows = [{"id": f"eval/{i:02d}", "prompt": p} for i, p in enumerate(config.eval_instructions)]
    _write_jsonl(out / EVAL_PROMPTS_FILE, eval_rows)
    topics = Counter(row["topic"] for row in rows)
    lengths = [len(row["messages"][1]["content"]) for row in rows]
    counts = {
        "documents_in_corpus": len(corpus),
        "documents_in_topics": len(in_topics),
        "documents_selected": len(docs),
        "documents_per_topic_balanced": config.max_documents // len(config.topics) if config.balance_topics else None,
        "examples": len(rows),
        "skipped_by_reason": dict(skipped),
        "first_paragraph_cut": cut_first_paragraph,
        "examples_by_topic": dict(sorted(topics.items())),
        "topic_entropy_bits": _entropy_bits(topics),
        "instructions_used": dict(Counter(row["messages"][0]["content"] for row in rows)),
        "response_chars_mean": sum(lengths) / len(lengths),
        "response_chars_max": max(lengths),
        "eval_prompts": len(eval_rows),
    }
    write_manifest(
        out, stage="posttrain.embedded_sft", config=config, inputs={"corpus": config.source.source}, counts=counts
    )
    return out


def _of_topics(corpus, config: EmbeddedSFTConfig) -> list[dict]:
    """The corpus's articles of ``config.topics`` (all when unset); a topic the corpus lacks is an error."""
    available = sorted(set(corpus["topic"]))
    if config.topics is not None:
        unknown = [topic for topic in config.topics if topic not in available]
        if unknown:
            raise ValueError(
                f"topics: '{unknown[0]}' is not a topic of {config.source.source} (topics: {', '.join(available)})"
            )
    wanted = set(available if config.topics is None else config.topics)
    return [row for row in corpus if row["topic"] in wanted]


def _select(docs: list[dict], config: EmbeddedSFTConfig) -> list[dict]:
    """The articles kept, the lowest by hash(seed, id) (balanced over topics, or the first max_documents),
    in id order (a stable, readable file order)."""
    ranked = sorted(docs, key=lambda row: (_rank(config.seed, row["id"]), row["id"]))
    if config.balance_topics:
        ranked = _balanced(ranked, config)
    elif config.max_documents is not None:
        ranked = ranked[: config.max_documents]
    return sorted(ranked, key=lambda row: row["id"])


def _build_rows(docs: list[dict], config: EmbeddedSFTConfig) -> tuple[list[dict], Counter, int]:
    """One SFT example per article that fits: ``(rows, skipped by reason, first paragraphs cut)``."""
    skipped: Counter[str] = Counter()
    cut_first_paragraph = 0
    rows = []
    for doc in tqdm(docs, desc="building the embedded SFT set", unit="doc"):
        response, was_cut = article_response(doc["title"], doc["text"], config.max_response_chars)
        if response is None:
            skipped["title_or_body_does_not_fit"] += 1
            continue
        cut_first_paragraph += was_cut
        instruction = config.instructions[_rank(config.seed + 1, doc["id"]) % len(config.instructions)]
        rows.append(
            {
                "id": f"sft/{doc['id']}",
                "messages": [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}],
                "source_doc_id": doc["id"],
                "topic": doc["topic"],
            }
        )
    if not rows:
        raise ValueError(f"no SFT example built from {len(docs)} documents (skipped: {dict(skipped)})")
    return rows, skipped, cut_first_paragraph


def _balanced(ranked_docs: list, config: EmbeddedSFTConfig) -> list:
    """max_documents // len(topics) documents of each topic, the first of each in ``ranked_docs``' order."""
    per_topic = config.max_documents // len(config.topics)
    kept = []
    for topic in config.topics:
        of_topic = [row for row in ranked_docs if row["topic"] == topic]
        if len(of_topic) < per_topic:
            raise ValueError(
                f"topics: '{topic}' has {len(of_topic)} articles in {config.source.source}, fewer than the "
                f"{per_topic} that balance_topics needs (max_documents={config.max_documents} over "
                f"{len(config.topics)} topics)"
            )
        kept += of_topic[:per_topic]
    return kept


def _entropy_bits(counts: Counter) -> float:
    total = sum(counts.values())
    return sum(-(c / total) * math.log2(c / total) for c in counts.values() if c)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(stage_main("posttrain.embedded_sft", EmbeddedSFTConfig, run))
