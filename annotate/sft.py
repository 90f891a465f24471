"""The response an SFT example is annotated by: the text the model is trained to write.

- ``messages`` format (HF chat): the content of the last assistant turn, after the role
  map (``stage_io.conversation``: the same rule posttrain uses to pick the trained reply);
- ``prompt_completion`` format: the completion (a string, or a list of messages whose
  last assistant turn is taken, as TRL's conversational prompt-completion data has).

An example without one (no assistant turn, empty response, wrong type) raises
``MalformedExample`` with the reason; the stage records it as a skip. A set in which no
example has one is refused up front (``require_a_response``): it would annotate nothing and
only fail at posttrain.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

from annotate.config import SFTConfig
from stage_io.conversation import ConversationError, split_last_reply


class MalformedExample(ValueError):
    """An SFT example that has no response to annotate."""


def response_of(example: Mapping[str, Any], config: SFTConfig) -> str:
    if config.format == "messages":
        return _last_reply(example.get(config.messages_field), config.messages_field, config)
    completion = example.get(config.completion_field)
    if isinstance(completion, list):
        return _last_reply(completion, config.completion_field, config)
    if not isinstance(completion, str):
        raise MalformedExample(f"'{config.completion_field}' is {type(completion).__name__}, not a string or messages")
    if not completion.strip():
        raise MalformedExample(f"empty '{config.completion_field}'")
    return completion


def _last_reply(messages: Any, field: str, config: SFTConfig) -> str:
    try:
        return split_last_reply(messages, config.role_map, field).reply
    except ConversationError as err:
        raise MalformedExample(str(err)) from None


def require_a_response(examples: Iterable[Mapping[str, Any]], config: SFTConfig, source: str) -> None:
    """Refuse ``source`` when none of its examples has a response (stops at the first that has one)."""
    reasons: Counter[str] = Counter()
    for example in examples:
        try:
            response_of(example, config)
            return
        except MalformedExample as err:
            reasons[str(err)] += 1
    total = sum(reasons.values())
    common = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common(2)) or "the file holds no records"
    raise MalformedExample(
        f"{source}: none of its {total} SFT examples has a response to annotate ({common}); check "
        "sft.format, sft.messages_field / sft.completion_field and sft.role_map"
    )
