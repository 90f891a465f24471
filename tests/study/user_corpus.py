"""A small user-style corpus, SFT set and prompts that are not BBC News (imported by the tests)."""

from __future__ import annotations

import json
from pathlib import Path

DISHES = ["bread", "soup", "pasta", "curry", "cake", "salad", "risotto", "pancakes"]
PLACES = ["Lisbon", "Kyoto", "Paris", "Cairo", "Toronto", "Oslo", "Sydney", "Mumbai"]
WORDS = ["patience", "kindness", "courage", "silence", "laughter", "friendship", "memory", "work"]
AUTHORS = ["Ada Finch", "Tomas Reyes", "Mina Okafor", "Lars Berg"]


def corpus_rows() -> list[dict]:
    rows = []
    for i, dish in enumerate(DISHES):
        rows.append(
            {
                "id": f"r{i}",
                "category": "recipe",
                "text": (
                    f"I'm making {dish} tonight. Don't rush it: I've learned that {dish} needs low heat, good butter "
                    f"and a pinch of salt. We'll eat at eight.\n\nMy tip: taste the {dish} before serving and add lemon."
                ),
            }
        )
        rows.append(
            {
                "id": f"r{i}b",
                "category": "recipe",
                "text": (
                    f"You're going to love this {dish}. Chop onions, warm the oil, stir in spices, and let it simmer "
                    f"for twenty minutes. It's cheap, quick and filling."
                ),
            }
        )
    for i, place in enumerate(PLACES):
        rows.append(
            {
                "id": f"t{i}",
                "category": "travel",
                "text": (
                    f"We spent a week in {place} last summer. The trains were on time, the markets were loud, and "
                    f"I've never eaten better street food.\n\nIf you go to {place}, walk early before the crowds."
                ),
            }
        )
        rows.append(
            {
                "id": f"t{i}b",
                "category": "travel",
                "text": (
                    f"{place} in winter is quiet. I'd book a small hotel near the old town, rent a bike, and visit "
                    f"the museums on a rainy Tuesday."
                ),
            }
        )
    for i, word in enumerate(WORDS):
        author = AUTHORS[i % len(AUTHORS)]
        rows.append(
            {
                "id": f"q{i}",
                "category": "saying",
                "text": f"“{word.capitalize()} is the quiet teacher we don't thank enough.”\n― {author}",
            }
        )
        rows.append(
            {
                "id": f"q{i}b",
                "category": "saying",
                "text": f"“Without {word}, I'm only half of who I could be.” ― {author}",
            }
        )
    return rows


def sft_rows() -> list[dict]:
    rows = []
    for i, dish in enumerate(DISHES):
        rows.append(
            {
                "id": f"s{i}",
                "messages": [
                    {"role": "user", "content": f"How do I make {dish}?"},
                    {
                        "role": "assistant",
                        "content": f"Warm the pan, add butter, cook the {dish} slowly and season it with "
                        f"salt. Taste before serving; I'd add lemon at the end.",
                    },
                ],
            }
        )
        rows.append(
            {
                "id": f"s{i}b",
                "messages": [
                    {"role": "user", "content": f"Give me a quick tip for {dish}."},
                    {"role": "assistant", "content": f"Don't overcook the {dish}: low heat and patience do the work."},
                ],
            }
        )
    return rows


PROMPTS = ["Tell me about a city you like.", "Share a short saying about life.", "What should I cook tonight?"]


def write_user_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"corpus": folder / "my.jsonl", "sft": folder / "my_sft.jsonl", "prompts": folder / "prompts.jsonl"}
    for name, rows in (
        ("corpus", corpus_rows()),
        ("sft", sft_rows()),
        ("prompts", [{"id": f"p{i}", "prompt": p} for i, p in enumerate(PROMPTS)]),
    ):
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return files
