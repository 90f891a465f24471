"""The embedded capabilities task: HellaSwag-style next-passage choice on held-out BBC articles.

lm-eval cannot download its benchmarks offline, so the embedded default measures capability
retention on a local lm-eval task built from text no model trained on: the 100 BBC articles
held out of the corpus annotation (pretraining) and of the embedded SFT set
(``embedded:bbc_news_heldout``, stage_io/held_out.py).

Each item: a context (the article's title, a blank line, one paragraph, cut to its last
``max_context_chars`` at a space) and ``choices`` endings: the paragraph that truly follows,
and paragraphs from other held-out articles of the same BBC section (same section, so the
topic alone does not give the answer), each cut to ``max_ending_chars`` at a space. Up to
``passages_per_article`` items per article (paragraph 1 -> 2, 2 -> 3, ...). The true
ending's position and the distractors are chosen by hashes of (seed, item id).
lm-eval scores it as ``multiple_choice`` by log-likelihood: acc and acc_norm (per byte).

Writes OUTPUT_DIR/TASK.jsonl (id, article_id, topic, context, endings, label),
OUTPUT_DIR/TASK.yaml (the lm-eval task, its data file by absolute path) and manifest.json;
the eval stage's ``capabilities.include_path`` points at OUTPUT_DIR.

    python -m eval.next_passage_task configs/eval/capability_tasks/bbc_next_passage.yaml
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stage_io.cli import stage_main
from stage_io.manifest import write_manifest
from stage_io.records import RecordSource, load_records

logger = logging.getLogger(__name__)


@dataclass
class NextPassageTaskConfig:
    # Articles the items are built from (columns id, topic, title, text); the default is the held-out split.
    source: RecordSource = field(default_factory=lambda: RecordSource(source="embedded:bbc_news_heldout"))
    # lm-eval task name (also the YAML and JSONL file names).
    task_name: str = "bbc_next_passage"
    # Most items per article (paragraph i -> paragraph i+1 for i = 1..this).
    passages_per_article: int = 2
    # Endings per item: the true one plus choices - 1 distractors.
    choices: int = 4
    # Longest context paragraph in characters (its last characters are kept, cut at a space).
    max_context_chars: int = 240
    # Longest ending in characters (its first characters, cut at a space); endings of similar length.
    max_ending_chars: int = 120
    # Shortest ending in characters; shorter next paragraphs make no item (counted).
    min_ending_chars: int = 30
    # Seed of the distractor choice and of the true ending's position.
    seed: int = 0
    # Output directory (TASK.jsonl, TASK.yaml, manifest.json).
    output_dir: str = "runs/capability_tasks/bbc_next_passage"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.task_name):
            raise ValueError(
                f"task_name '{self.task_name}' must match [a-z][a-z0-9_]* (an lm-eval task name and a file name)"
            )
        if self.choices < 2:
            raise ValueError("choices must be at least 2")
        if self.passages_per_article < 1:
            raise ValueError("passages_per_article must be at least 1")
        if not 0 < self.min_ending_chars <= self.max_ending_chars:
            raise ValueError("min_ending_chars must be in (0, max_ending_chars]")


def _hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(map(str, parts)).encode("utf-8")).digest()[:8], "big")


def paragraphs(title: str, text: str) -> list[str]:
    """The article's body paragraphs (the title line removed), split at blank lines."""
    body = text.strip()
    if body.startswith(title.strip()):
        body = body[len(title.strip()) :]
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", body) if p.strip()]


def head(text: str, max_chars: int) -> str:
    """The first ``max_chars`` characters of ``text``, cut at the last space inside them."""
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0]


def tail(text: str, max_chars: int) -> str:
    """The last ``max_chars`` characters of ``text``, cut at the first space inside them."""
    return text if len(text) <= max_chars else text[-max_chars:].split(" ", 1)[-1]


def build_items(articles: list[dict], config: NextPassageTaskConfig) -> tuple[list[dict], Counter]:
    """The task's items and the count of passages that made none, by reason."""
    skipped: Counter[str] = Counter()
    candidates = []  # (article, context, true ending, item index)
    endings_by_section: dict[str, list[tuple[str, str]]] = {}  # section -> [(article id, ending)]
    for article in articles:
        paras = paragraphs(article["title"], article["text"])
        for i, paragraph in enumerate(paras[1:], start=1):
            ending = head(paragraph, config.max_ending_chars)
            if len(ending) < config.min_ending_chars:
                if i <= config.passages_per_article:
                    skipped["next_paragraph_too_short"] += 1
                continue
            endings_by_section.setdefault(article["topic"], []).append((article["id"], ending))
            if i <= config.passages_per_article:
                context = article["title"].strip() + "\n\n" + tail(paras[i - 1], config.max_context_chars)
                candidates.append((article, context, ending, i))
        if len(paras) < 2:
            skipped["article_without_two_paragraphs"] += 1
    items = []
    for article, context, ending, i in candidates:
        item_id = f"{article['id']}#{i}"
        pool = [(aid, e) for aid, e in endings_by_section[article["topic"]] if aid != article["id"]]
        pool.sort(key=lambda pair: (_hash(config.seed, item_id, pair[0], pair[1]), pair))
        distractors, used = [], set()
        for aid, e in pool:  # one ending per other article
            if aid not in used and e != ending:
                distractors.append(e)
                used.add(aid)
            if len(distractors) == config.choices - 1:
                break
        if len(distractors) < config.choices - 1:
            skipped["too_few_distractors_in_section"] += 1
            continue
        label = _hash(config.seed, "label", item_id) % config.choices
        endings = distractors[:label] + [ending] + distractors[label:]
        items.append(
            {
                "id": item_id,
                "article_id": article["id"],
                "topic": article["topic"],
                "context": context,
                "endings": endings,
                "label": label,
            }
        )
    return items, skipped


def task_yaml(config: NextPassageTaskConfig, data_file: Path) -> dict:
    """The lm-eval task definition (multiple_choice, log-likelihood of each ending after the context)."""
    return {
        "task": config.task_name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "context",
        "doc_to_choice": "endings",
        "doc_to_target": "label",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }


def run(config: NextPassageTaskConfig) -> Path:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    articles = list(load_records(config.source, required_fields=("topic", "title", "text")))
    items, skipped = build_items(articles, config)
    if not items:
        raise ValueError(
            f"{config.source.source}: no item built from {len(articles)} articles (skipped: {dict(skipped)})"
        )
    data_file = out / f"{config.task_name}.jsonl"
    with open(data_file, "w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    header = (
        f"# lm-eval task written by `python -m eval.next_passage_task` from {config.source.source}:\n"
        "# pick the paragraph that follows the context among endings from other held-out articles.\n"
    )
    # The ending is the next paragraph: a blank line separates it from the context (written by
    # hand: PyYAML would fold the two newlines over three lines).
    delimiter = 'target_delimiter: "\\n\\n"\n'
    body = yaml.safe_dump(task_yaml(config, data_file), sort_keys=False, width=1000)
    (out / f"{config.task_name}.yaml").write_text(header + body + delimiter, encoding="utf-8")
    write_manifest(
        out,
        stage="eval.next_passage_task",
        config=config,
        inputs={"articles": config.source.source},
        counts={
            "articles": len(articles),
            "items": len(items),
            "items_by_topic": dict(sorted(Counter(i["topic"] for i in items).items())),
            "labels": dict(sorted(Counter(i["label"] for i in items).items())),
            "skipped_by_reason": dict(skipped),
        },
    )
    logger.info(f"eval.next_passage_task: {len(items)} items from {len(articles)} articles -> {out}")
    return out


if __name__ == "__main__":
    raise SystemExit(stage_main("eval.next_passage_task", NextPassageTaskConfig, run))
