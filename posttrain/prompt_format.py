"""The prompt format: how a conversation becomes the text a model continues.

One object serves training and sampling: posttrain builds ``prompt || annotation ||
response || end_of_turn`` with it, and eval builds the text it samples from with the
same object, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

Message = dict[str, str]


class PromptFormatError(ValueError):
    """A conversation this format cannot render (missing roles, empty turns)."""


@dataclass
class PromptFormat:
    # "plain": fill `template` (what the embedded default's from-scratch models use);
    # "chat": the tokenizer's own chat template (hub instruct/base models that have one).
    kind: Literal["plain", "chat"] = "plain"
    # Template for kind=plain; {prompt} is the user's message. Earlier turns of a
    # multi-turn conversation are rendered with it too, each followed by its reply.
    template: str = "Instruction: {prompt}\nResponse:\n"
    # System message for kind=chat (None: none unless the conversation has one).
    system: str | None = None
    # Text that ends the assistant's turn; None uses the tokenizer's eos token.
    end_of_turn: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "plain" and "{prompt}" not in self.template:
            raise ValueError("prompt_format.template must contain {prompt}")

    def render_prompt(self, conversation: str | Sequence[Message], tokenizer: Any = None) -> str:
        """The text before the assistant's reply: everything the loss never sees."""
        messages = [{"role": "user", "content": conversation}] if isinstance(conversation, str) else list(conversation)
        check_conversation(messages, expect_final_assistant=False)
        if self.kind == "chat":
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise PromptFormatError("prompt_format.kind=chat needs a tokenizer with a chat template")
            if self.system and messages[0]["role"] != "system":
                messages = [{"role": "system", "content": self.system}] + messages
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        parts = []
        pending_user: str | None = None
        for message in messages:
            if message["role"] == "system":
                parts.append(message["content"].strip() + "\n\n")
            elif message["role"] == "user":
                pending_user = message["content"]
            else:  # an earlier assistant turn closes an earlier exchange
                parts.append(self.template.format(prompt=pending_user) + message["content"] + "\n\n")
                pending_user = None
        parts.append(self.template.format(prompt=pending_user))
        return "".join(parts)

    def end_of_turn_text(self, tokenizer: Any) -> str:
        if self.end_of_turn is not None:
            return self.end_of_turn
        if tokenizer is None or tokenizer.eos_token is None:
            raise PromptFormatError("prompt_format.end_of_turn is unset and the tokenizer has no eos token")
        return tokenizer.eos_token


def encode_prompt(tokenizer: Any, prompt_text: str) -> list[int]:
    """A rendered prompt's ids, as training and sampling (both backends) feed them: the
    text without the tokenizer's own special tokens, then the one BOS rule (``with_bos``)."""
    return with_bos(tokenizer, tokenizer(prompt_text, add_special_tokens=False)["input_ids"])


def with_bos(tokenizer: Any, ids: list[int]) -> list[int]:
    """The one BOS rule of the project: every sequence a model sees (a pretraining document,
    an SFT example, a prompt at evaluation) starts with exactly one BOS token when the
    tokenizer has one, whether or not the tokenizer would add it itself (the trained BPE
    adds it, OLMo-2's names ``<|endoftext|>`` as BOS but adds none); ids that already start
    with it (a chat template that writes BOS) are left as they are. No BOS token, no prefix."""
    bos = tokenizer.bos_token_id
    if bos is None or (ids and ids[0] == bos):
        return list(ids)
    return [bos, *ids]


def check_conversation(messages: Sequence[Message], expect_final_assistant: bool) -> None:
    """Roles in order (optional system, then user/assistant alternating), no empty turn."""
    if not messages:
        raise PromptFormatError("empty conversation")
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    for i, message in enumerate(messages):
        if roles[i] not in ("system", "user", "assistant"):
            raise PromptFormatError(f"message {i} has role {roles[i]!r} (expected system, user or assistant)")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise PromptFormatError(f"message {i} ({roles[i]}) has empty content")
    turns = roles[1:] if roles[0] == "system" else roles
    expected = ["user", "assistant"] * len(turns)
    if turns != expected[: len(turns)]:
        raise PromptFormatError(f"roles must alternate user/assistant after an optional system message, got {roles}")
    if expect_final_assistant and turns[-1] != "assistant":
        raise PromptFormatError("the conversation must end with an assistant reply")
    if not expect_final_assistant and turns[-1] != "user":
        raise PromptFormatError("the conversation must end with a user message")
