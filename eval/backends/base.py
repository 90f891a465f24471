"""What every backend takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence


@dataclass(frozen=True)
class GenerationRequest:
    # The full text the model continues (prompt, plus an annotation prefix when anchored).
    text: str
    # This request's own seed (see eval.seeds): the sample reproduces from it.
    seed: int
    # Sampling temperature; 0 means greedy.
    temperature: float = 1.0
    # Nucleus mass (1.0: off).
    top_p: float = 1.0
    # Most new tokens.
    max_new_tokens: int = 256
    # Strings that end the generation; the matched string is not part of the text.
    stop: tuple[str, ...] = ()
    # Strings that may never be sampled; each must be a single token (special tokens).
    banned: tuple[str, ...] = ()
    # The text continues an open annotation: sample only tokens that keep its body parseable
    # and let the close delimiter end it (eval.annotation_syntax; transformers backend only).
    annotation_syntax: bool = False


@dataclass
class Completion:
    # Generated text, stop string excluded, special tokens (annotation delimiters) kept.
    text: str
    # "stop": a stop string or the eos token ended it; "length": max_new_tokens reached.
    finish_reason: Literal["stop", "length"]
    # The stop string that matched, "<eos>" for the end-of-sequence token, None at length.
    stop_reason: str | None
    # Generated tokens, stop token included.
    num_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    tokenizer: Any
    model_name: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]: ...

    def close(self) -> None: ...


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """``text`` up to the earliest stop string, and which stop string that was."""
    best, which = len(text), None
    for stop in stops:
        if not stop:
            continue
        at = text.find(stop)
        if 0 <= at < best:
            best, which = at, stop
    return text[:best], which


def single_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` if the tokenizer writes it as one token (special tokens do)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def special_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` when it is one special or added token (eos, ``<|/ann|>``, a chat
    template's end of turn), else None. Only those are stopped on by id: an ordinary string
    that happens to be one token (``"\\n\\n\\n"``) must stop wherever it appears in the text,
    also inside or across other tokens, so it stays a string stop."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        return None
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return ids[0] if ids[0] in special else None


def split_stops(tokenizer: Any, stops: Sequence[str]) -> tuple[dict[int, str], tuple[str, ...]]:
    """``stops`` as token ids (special/added tokens: id -> the stop string) and strings (the rest)."""
    ids: dict[int, str] = {}
    strings: list[str] = []
    for stop in stops:
        token_id = special_token_id(tokenizer, stop)
        if token_id is not None:
            ids[token_id] = stop
        else:
            strings.append(stop)
    return ids, tuple(strings)


def banned_token_ids(backend: Backend, banned: Sequence[str]) -> list[int]:
    """The token id of each banned string; a string that is not one token of the backend's
    tokenizer is refused (a ban on part of it would not ban it)."""
    ids = []
    for text in banned:
        token_id = single_token_id(backend.tokenizer, text)
        if token_id is None:
            raise ValueError(f"banned string {text!r} is not a single token of {backend.model_name}'s tokenizer")
        ids.append(token_id)
    return ids
