"""The BBC articles held out of every training stage, for the capabilities task.

The embedded default measures capability retention on text the models never trained on
(eval/README.md, "Capabilities"). The held-out set is a fixed rule over article ids, so the
corpus annotation (pretraining), the embedded SFT set and the task generator agree on it
without passing a file around:

- from each BBC section, the ``HELD_OUT_PER_SECTION`` articles with the lowest
  sha256(``HELD_OUT_SALT`` + NUL + id) (20 x 5 sections = 100 of 2,225 articles);
- ``embedded:bbc_news_train`` is the corpus without them (2,125 articles), read by
  configs/annotate/embedded.yaml and configs/posttrain/embedded_sft.yaml;
- ``embedded:bbc_news_heldout`` is them alone, read by ``eval.next_passage_task``;
- ``embedded:bbc_news`` stays the whole corpus.

The rule does not depend on ``limit`` or on a source's order. ``describe_embedded`` is what
manifest.json records beside an input read from one of these names.
"""

from __future__ import annotations

import hashlib

# Salt of the hash that picks the held-out articles; changing it picks another set.
HELD_OUT_SALT = "annotation-anchored/capabilities-held-out/v1"
# Held-out articles per BBC section (business, entertainment, politics, sport, tech).
HELD_OUT_PER_SECTION = 20

# The embedded BBC names: the whole corpus, the training split, the held-out split.
BBC_ALL, BBC_TRAIN, BBC_HELDOUT = "bbc_news", "bbc_news_train", "bbc_news_heldout"
BBC_NAMES = (BBC_ALL, BBC_TRAIN, BBC_HELDOUT)


def _rank(article_id: str) -> str:
    return hashlib.sha256(f"{HELD_OUT_SALT}\0{article_id}".encode("utf-8")).hexdigest()


def held_out_ids(articles: list[dict]) -> set[str]:
    """Ids of the held-out articles among ``articles`` (each with ``id`` and ``topic``), all of the corpus."""
    by_section: dict[str, list[str]] = {}
    for article in articles:
        by_section.setdefault(article["topic"], []).append(article["id"])
    held: set[str] = set()
    for ids in by_section.values():
        held.update(sorted(ids, key=lambda i: (_rank(i), i))[:HELD_OUT_PER_SECTION])
    return held


def select_split(articles: list[dict], name: str) -> list[dict]:
    """The articles of embedded split ``name`` (``articles`` is the whole corpus, in its order)."""
    if name == BBC_ALL:
        return articles
    held = held_out_ids(articles)
    if name == BBC_TRAIN:
        return [a for a in articles if a["id"] not in held]
    if name == BBC_HELDOUT:
        return [a for a in articles if a["id"] in held]
    raise ValueError(f"embedded:{name}: unknown embedded corpus (available: {', '.join(BBC_NAMES)})")


def describe_embedded(name: str, articles: list[dict]) -> dict:
    """What a manifest records about an embedded BBC input: its size and the held-out rule."""
    held = sorted(held_out_ids(articles))
    return {
        "articles": len(select_split(articles, name)),
        "held_out_articles": len(held),
        "held_out_excluded": name == BBC_TRAIN,
        "held_out_rule": f"per section, the {HELD_OUT_PER_SECTION} lowest sha256('{HELD_OUT_SALT}' NUL id)",
        "held_out_ids_sha256": hashlib.sha256("\n".join(held).encode("utf-8")).hexdigest(),
    }
