"""The prompt set: any RecordSource with a prompt field (dotted paths reach nested rows)."""

from __future__ import annotations

from dataclasses import dataclass

from eval.config import PromptSetConfig
from stage_io.records import RecordSourceError, load_records


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    # The prompt's intent (prompts.intent_field; "all" when unset): entropy pools over it.
    intent: str = "all"


def field_at(row: dict, dotted: str):
    """``row["conversation"][0]["content"]`` for ``conversation.0.content``."""
    value = row
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def load_prompts(config: PromptSetConfig) -> tuple[list[Prompt], dict[str, int]]:
    """The prompts in source order, and counts of what was skipped (with why)."""
    top = config.prompt_field.split(".")[0]
    records = load_records(config.source, required_fields={top: "prompts.prompt_field"})
    prompts, skipped = [], {"empty_or_not_text": 0}
    for row in records:
        text = field_at(row, config.prompt_field)
        if not isinstance(text, str) or not text.strip():
            skipped["empty_or_not_text"] += 1
            continue
        intent = "all" if config.intent_field is None else field_at(row, config.intent_field)
        if intent is None:
            raise RecordSourceError(
                f"{config.source.source}: prompt {row['id']} has no field '{config.intent_field}' "
                "(prompts.intent_field)"
            )
        prompts.append(Prompt(id=str(row["id"]), text=text, intent=str(intent)))
    if not prompts:
        raise RecordSourceError(
            f"{config.source.source}: no usable prompt in field '{config.prompt_field}' (prompts.prompt_field)"
        )
    return prompts, skipped
