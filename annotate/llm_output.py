"""Reading tags out of what an LLM wrote.

Lenient about layout, strict about content: ``key:value`` tags may be separated by
spaces, commas, semicolons or newlines, may sit in a list (``- topic: war``), in
quotes or code fences, or between the annotation delimiters; keys are lower-cased and
values normalised (whitespace to ``_``). Whatever comes out must then pass
``annotate.format.validate_tags`` against the schema, so prose around the tags, unknown
keys or overlong values make the output malformed (and the annotator retries).
"""

from __future__ import annotations

import re

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, AnnotationSchema, Tags, make_tags, validate_tags

# A key: a word at the start or after a separator, followed by ':'; values run to the next key.
_KEY_RE = re.compile(r"(?:^|(?<=[\s,;|]))[\"'*`]*([A-Za-z][A-Za-z0-9_]*)[\"'*`]*\s*:(?!//)")
_EDGE_PUNCT = " \t\r\n,;|\"'`*[](){}<>."
_BULLET_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.MULTILINE)


class MalformedOutput(ValueError):
    """LLM output that does not yield valid tags."""


def parse_llm_tags(text: str, schema: AnnotationSchema) -> Tags:
    """Valid tags from LLM output, or ``MalformedOutput`` saying what is wrong."""
    body = _strip_wrapping(text)
    if not body:
        raise MalformedOutput("empty output")
    matches = list(_KEY_RE.finditer(body))
    if not matches:
        raise MalformedOutput(f"no key:value tags in {text[:120]!r}")
    leading = body[: matches[0].start()].strip(_EDGE_PUNCT)
    if leading:
        raise MalformedOutput(f"text before the first tag: {leading[:80]!r}")
    pairs = []
    for match, following in zip(matches, matches[1:] + [None]):
        end = following.start() if following is not None else len(body)
        value = body[match.end() : end].strip(_EDGE_PUNCT)
        pairs.append((match.group(1), value))
    tags = make_tags(pairs, schema)
    problems = validate_tags(tags, schema)
    if problems:
        raise MalformedOutput("; ".join(problems))
    return tags


def _strip_wrapping(text: str) -> str:
    text = text.strip()
    text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", text)  # a code fence around the tags
    if ANNOTATION_OPEN in text:
        text = text.split(ANNOTATION_OPEN, 1)[1]
    if ANNOTATION_CLOSE in text:
        text = text.split(ANNOTATION_CLOSE, 1)[0]
    return _BULLET_RE.sub("", text).strip()
