"""The annotation format, defined once. Pretrain, posttrain and eval import it from here.

An annotation is a short, variable-length set of ``key:value`` tags written between two
delimiter tokens, in front of the text it describes::

    <|ann|>topic:family domain:literature entity:Mrs_Sinclair location:Baghdad<|/ann|>

Choices (``../shared/method.md`` leaves them open):

- Delimiters are two special tokens, ``<|ann|>`` and ``<|/ann|>``, added to every
  tokenizer: one token each, never split by BPE, and impossible to confuse with text.
- Tags are separated by one space; key and value by the first ``:``.
- Keys are lower-case ``[a-z][a-z0-9_]*``. Values keep their case (``Mrs_Sinclair``)
  but hold no whitespace (runs of whitespace become ``_``) and no delimiter text.
- Tag order is canonical: by the schema's key order, values of one key in the order the
  annotator gave them. A fixed order makes the syntax easy to learn and lets the keys
  be trained alone (posttrain's keys-only examples) without ambiguity.

``parse_annotation(render_annotation(tags)) == tags`` for every valid ``tags``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from stage_io.config import NonNegativeInt, PositiveInt

ANNOTATION_OPEN = "<|ann|>"
ANNOTATION_CLOSE = "<|/ann|>"
SPECIAL_TOKENS = (ANNOTATION_OPEN, ANNOTATION_CLOSE)
TAG_SEPARATOR = " "
KEY_VALUE_SEPARATOR = ":"

# Keys seen in the paper's annotations (method.md, step 1).
DEFAULT_KEYS = (
    "topic",
    "domain",
    "genre",
    "entity",
    "action",
    "location",
    "time",
    "sentiment",
    "style",
    "language",
)

_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_WHITESPACE_RE = re.compile(r"\s+")
_FORBIDDEN_IN_VALUE = (ANNOTATION_OPEN, ANNOTATION_CLOSE, "<|", "|>")


class AnnotationError(ValueError):
    """Text that is not a well-formed annotation, or tags that break the schema."""


@dataclass(frozen=True, order=True)
class Tag:
    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}{KEY_VALUE_SEPARATOR}{self.value}"


Tags = tuple[Tag, ...]


@dataclass
class AnnotationSchema:
    # Allowed keys, in canonical order (tags are rendered in this order).
    keys: list[str] = field(default_factory=lambda: list(DEFAULT_KEYS))
    # Fewest tags an annotation may have; fewer is a validation failure.
    min_tags: NonNegativeInt = 1
    # Most tags an annotation may have; more is a validation failure.
    max_tags: NonNegativeInt = 12
    # Longest value, in characters, after normalisation.
    max_value_chars: PositiveInt = 48

    def __post_init__(self) -> None:
        bad = [k for k in self.keys if not _KEY_RE.match(k)]
        if bad:
            raise ValueError(f"annotation key '{bad[0]}' is not of the form [a-z][a-z0-9_]*")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("annotation keys must be unique")
        if self.min_tags > self.max_tags:
            raise ValueError("annotation min_tags must be at most max_tags")


def normalise_key(key: str) -> str:
    return _WHITESPACE_RE.sub("_", key.strip().lower())


def normalise_value(value: str) -> str:
    """Whitespace runs become ``_``; delimiter text is removed; ends are trimmed."""
    for forbidden in _FORBIDDEN_IN_VALUE:
        value = value.replace(forbidden, "")
    return _WHITESPACE_RE.sub("_", value.strip()).strip("_")


def make_tags(pairs: Iterable[tuple[str, str]], schema: AnnotationSchema | None = None) -> Tags:
    """Normalise ``(key, value)`` pairs into tags: empty values and repeats dropped,
    canonical order when a schema is given."""
    seen: set[Tag] = set()
    tags = []
    for key, value in pairs:
        tag = Tag(normalise_key(key), normalise_value(value))
        if not tag.value or not tag.key or tag in seen:
            continue
        seen.add(tag)
        tags.append(tag)
    return canonical_order(tags, schema) if schema is not None else tuple(tags)


def canonical_order(tags: Iterable[Tag], schema: AnnotationSchema) -> Tags:
    """Tags sorted by the schema's key order (stable within a key); unknown keys last."""
    rank = {key: i for i, key in enumerate(schema.keys)}
    return tuple(sorted(tags, key=lambda t: rank.get(t.key, len(rank))))


def render_tags(tags: Sequence[Tag]) -> str:
    return TAG_SEPARATOR.join(str(t) for t in tags)


def render_annotation(tags: Sequence[Tag]) -> str:
    return ANNOTATION_OPEN + render_tags(tags) + ANNOTATION_CLOSE


def parse_tags(body: str) -> Tags:
    """Parse ``key:value key:value`` exactly as ``render_tags`` writes it."""
    if body == "":
        return ()
    tags = []
    for position, piece in enumerate(body.split(TAG_SEPARATOR)):
        key, sep, value = piece.partition(KEY_VALUE_SEPARATOR)
        if not sep:
            raise AnnotationError(f"tag {position} '{piece}' has no '{KEY_VALUE_SEPARATOR}'")
        if not _KEY_RE.match(key):
            raise AnnotationError(f"tag {position} '{piece}': key '{key}' is not of the form [a-z][a-z0-9_]*")
        if not value or normalise_value(value) != value:
            raise AnnotationError(f"tag {position} '{piece}': value is empty or not normalised")
        tags.append(Tag(key, value))
    return tuple(tags)


def parse_annotation(text: str) -> Tags:
    """Parse a whole annotation, delimiters included, as ``render_annotation`` writes it."""
    if not (text.startswith(ANNOTATION_OPEN) and text.endswith(ANNOTATION_CLOSE)):
        raise AnnotationError(
            f"annotation must start with {ANNOTATION_OPEN} and end with {ANNOTATION_CLOSE}: {text[:80]!r}"
        )
    body = text[len(ANNOTATION_OPEN) : len(text) - len(ANNOTATION_CLOSE)]
    if ANNOTATION_OPEN in body or ANNOTATION_CLOSE in body:
        raise AnnotationError(f"nested or repeated delimiters in {text[:80]!r}")
    return parse_tags(body)


@dataclass(frozen=True)
class SplitGeneration:
    """A generation split into its leading annotation and the response after it."""

    tags: Tags | None  # None when there was no parseable annotation
    annotation_text: str  # the annotation as generated, delimiters included ('' if none)
    response: str  # what is scored: the text with the annotation stripped
    error: str | None  # why the annotation could not be parsed, if it could not


def split_generation(text: str) -> SplitGeneration:
    """Strip the leading annotation from a generation, keeping it for analysis.

    A generation with an open delimiter but no close, or with a body that does not
    parse, is a parse failure: the error says so, and the response is the text after
    whatever delimiters were found, so nothing of the annotation leaks into scoring.
    """
    stripped = text.lstrip()
    if not stripped.startswith(ANNOTATION_OPEN):
        return SplitGeneration(None, "", _without_delimiters(text), "no annotation at the start")
    close = stripped.find(ANNOTATION_CLOSE)
    if close < 0:
        return SplitGeneration(None, stripped, "", f"no {ANNOTATION_CLOSE} after {ANNOTATION_OPEN}")
    annotation_text = stripped[: close + len(ANNOTATION_CLOSE)]
    response = _without_delimiters(stripped[close + len(ANNOTATION_CLOSE) :])
    try:
        tags = parse_annotation(annotation_text)
    except AnnotationError as err:
        return SplitGeneration(None, annotation_text, response, str(err))
    return SplitGeneration(tags, annotation_text, response, None)


def _without_delimiters(text: str) -> str:
    return text.replace(ANNOTATION_OPEN, "").replace(ANNOTATION_CLOSE, "")


def validate_tags(tags: Sequence[Tag], schema: AnnotationSchema) -> list[str]:
    """Every way ``tags`` break ``schema`` (an empty list means valid)."""
    problems = []
    if len(tags) < schema.min_tags:
        problems.append(f"{len(tags)} tags, fewer than min_tags={schema.min_tags}")
    if len(tags) > schema.max_tags:
        problems.append(f"{len(tags)} tags, more than max_tags={schema.max_tags}")
    allowed = set(schema.keys)
    for tag in tags:
        if tag.key not in allowed:
            problems.append(f"key '{tag.key}' is not in the configured keys ({', '.join(schema.keys)})")
        if len(tag.value) > schema.max_value_chars:
            problems.append(f"value of '{tag.key}' has {len(tag.value)} chars, more than {schema.max_value_chars}")
        if not tag.value or normalise_value(tag.value) != tag.value:
            problems.append(f"value '{tag.value}' of '{tag.key}' is not normalised")
    if len(set(tags)) != len(tags):
        problems.append("a tag is repeated")
    return problems


def annotation_char_spans(tags: Sequence[Tag]) -> list[tuple[int, int, str]]:
    """Character spans of ``render_annotation(tags)`` by role.

    Roles: ``delimiter``, ``key``, ``separator`` (the ``:`` and the spaces) and
    ``value``. Posttrain's keys-only examples train every role but ``value``.
    """
    spans = [(0, len(ANNOTATION_OPEN), "delimiter")]
    pos = len(ANNOTATION_OPEN)
    for i, tag in enumerate(tags):
        if i:
            spans.append((pos, pos + len(TAG_SEPARATOR), "separator"))
            pos += len(TAG_SEPARATOR)
        spans.append((pos, pos + len(tag.key), "key"))
        pos += len(tag.key)
        spans.append((pos, pos + len(KEY_VALUE_SEPARATOR), "separator"))
        pos += len(KEY_VALUE_SEPARATOR)
        spans.append((pos, pos + len(tag.value), "value"))
        pos += len(tag.value)
    spans.append((pos, pos + len(ANNOTATION_CLOSE), "delimiter"))
    return spans


def tags_to_records(tags: Sequence[Tag]) -> list[dict[str, str]]:
    """Tags as a list of ``{"key", "value"}`` (how datasets and JSONL store them)."""
    return [{"key": t.key, "value": t.value} for t in tags]


def tags_from_records(records: Iterable[dict[str, str]]) -> Tags:
    return tuple(Tag(r["key"], r["value"]) for r in records)


# The annotation body's syntax as a character automaton, for samplers that constrain an annotation
# to parse (eval's ``sampling.annotation_syntax``). States: at the first character of a key, inside
# a key, at the first character of a value, inside a value (last character not ``_``, so the tag may
# end there), inside a value after ``_``. It accepts exactly the bodies ``parse_tags`` accepts, except
# that values are also kept free of ``<``, ``>`` and ``|`` (delimiter characters) and no key is
# checked against a schema: the syntax says nothing about which keys or values are written.
SYNTAX_KEY_START, SYNTAX_KEY, SYNTAX_VALUE_START, SYNTAX_VALUE, SYNTAX_VALUE_UNDERSCORE = range(5)
SYNTAX_STATES = 5
# Where a body may end (the close delimiter may follow): after a complete tag.
SYNTAX_ACCEPTING = frozenset({SYNTAX_VALUE})
_NOT_IN_SYNTAX_VALUE = set("<>|")


def syntax_step(state: int, char: str) -> int | None:
    """The state after ``char``, or None where the body could no longer parse."""
    if state == SYNTAX_KEY_START:
        return SYNTAX_KEY if "a" <= char <= "z" else None
    if state == SYNTAX_KEY:
        if char == KEY_VALUE_SEPARATOR:
            return SYNTAX_VALUE_START
        return SYNTAX_KEY if ("a" <= char <= "z" or "0" <= char <= "9" or char == "_") else None
    if char.isspace() or char in _NOT_IN_SYNTAX_VALUE:
        return SYNTAX_KEY_START if char == TAG_SEPARATOR and state == SYNTAX_VALUE else None
    if char == "_":
        return None if state == SYNTAX_VALUE_START else SYNTAX_VALUE_UNDERSCORE
    return SYNTAX_VALUE


def syntax_advance(state: int | None, text: str) -> int | None:
    """``syntax_step`` over every character of ``text`` (None once any step fails)."""
    for char in text:
        if state is None:
            return None
        state = syntax_step(state, char)
    return state


# ---- the body as a regular expression (for engines that constrain decoding to a regex) ----

# Characters a value may not hold: whitespace (ASCII; normalise_value turns every run into ``_``) and
# the delimiter characters, as in the syntax above.
_REGEX_NOT_IN_VALUE = r" \t\n\r\f\v<>|"
# How a separator character is written inside a regex character class.
_CLASS_ESCAPES = {"\n": r"\n", "\t": r"\t", "\\": r"\\", "]": r"\]", "^": r"\^", "-": r"\-"}


def annotation_body_regex(schema: AnnotationSchema, separators: str = TAG_SEPARATOR) -> str:
    """A regex matching exactly the annotation bodies (no delimiters) the schema allows.

    Keys are the schema's; a value is 1 to ``max_value_chars`` characters, no whitespace or
    ``<``, ``>``, ``|``, not starting or ending with ``_`` (what ``normalise_value`` leaves);
    ``min_tags`` to ``max_tags`` tags, separated by one of ``separators``. Plain regex syntax
    (classes, alternation, bounded repeats; no lookaround), which vLLM's structured-output
    backends compile.
    """
    edge = f"[^{_REGEX_NOT_IN_VALUE}_]"
    inner = f"[^{_REGEX_NOT_IN_VALUE}]"
    longest = schema.max_value_chars
    value = edge if longest < 2 else f"{edge}(?:{inner}{{0,{longest - 2}}}{edge})?"
    keys = "|".join(re.escape(k) for k in schema.keys)
    tag = f"(?:{keys}){re.escape(KEY_VALUE_SEPARATOR)}{value}"
    separator = "[" + "".join(_CLASS_ESCAPES.get(s, s) for s in separators) + "]"
    if schema.max_tags == 0:
        return ""
    body = f"{tag}(?:{separator}{tag}){{{max(schema.min_tags, 1) - 1},{schema.max_tags - 1}}}"
    return body if schema.min_tags >= 1 else f"(?:{body})?"
