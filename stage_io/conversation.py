"""Chat conversations in SFT data: role names, and which turn is the trained reply.

Both SFT paths read conversations: the annotate stage (SFT mode) picks the reply it
annotates, and posttrain picks the reply it trains. They must pick the same turn, or the
annotation describes one reply while another is trained. The rule, in one place:

- roles are renamed through a role map first (ShareGPT-style data says ``human`` and
  ``gpt``; the default map turns them into ``user`` and ``assistant``);
- the reply is the conversation's **last assistant turn**; the turns before it are the
  prompt. Turns after it (a user turn nobody answered) belong to no example: they are
  cut, and the caller counts the conversations that had them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# ShareGPT-style role names and the chat-template names they stand for.
DEFAULT_ROLE_MAP = {"human": "user", "gpt": "assistant"}


class ConversationError(ValueError):
    """A conversation with no usable reply; ``reason`` is a short key to count it under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ReplySplit:
    # The turns before the reply (roles mapped).
    prompt: list[dict[str, Any]]
    # The last assistant turn's text.
    reply: str
    # Turns after the reply that were cut (0 when the conversation ends with the reply).
    turns_cut: int


def map_roles(messages: Any, role_map: Mapping[str, str], field: str) -> list[dict[str, Any]]:
    """``messages`` as a list of dicts with roles renamed by ``role_map`` (others kept)."""
    if not isinstance(messages, (list, tuple)) or not all(isinstance(m, Mapping) for m in messages):
        raise ConversationError("malformed_conversation", f"'{field}' is not a list of {{role, content}} messages")
    return [{**m, "role": role_map.get(m.get("role"), m.get("role"))} for m in messages]


def split_last_reply(messages: Any, role_map: Mapping[str, str], field: str) -> ReplySplit:
    """The prompt, the last assistant turn's text, and how many turns after it were cut."""
    turns = map_roles(messages, role_map, field)
    last = max((i for i, m in enumerate(turns) if m.get("role") == "assistant"), default=None)
    if last is None:
        roles = sorted({str(m.get("role")) for m in turns})
        raise ConversationError(
            "no_assistant_turn",
            f"no assistant turn in '{field}' (roles: {', '.join(roles)}; "
            "map other role names with the role_map config key)",
        )
    content = turns[last].get("content")
    if not isinstance(content, str):
        raise ConversationError("missing_response", f"the last assistant turn in '{field}' has no text content")
    if not content.strip():
        raise ConversationError("empty_response", f"the last assistant turn in '{field}' is empty")
    return ReplySplit(turns[:last], content, len(turns) - last - 1)
