"""Tag values read straight from a chunk's text: names, places, times, sentiment, form.

Pure functions of the text (plus the fitted lower-case vocabulary for telling names
from sentence-initial common words), used by the offline annotator beside its
embedding clusters. Each returns values ranked by salience (count, then position).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Collection, Iterable

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from annotate.lexicons import (
    ACTION_LEMMAS,
    LOCATIONS,
    MONTHS,
    NEGATIONS,
    NEGATIVE_WORDS,
    NON_ENTITY_WORDS,
    POSITIVE_WORDS,
    SEASONS,
    TITLE_WORDS,
    WEEKDAYS,
)

_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_CAP_WORD = r"(?:[A-Z][A-Za-z'’&-]*[A-Za-z]|[A-Z])"
_CONNECTOR = r"(?:of|de|del|van|von|der|du|da|al|la|le|bin|y)"
_SPAN_RE = re.compile(rf"\b{_CAP_WORD}(?:\s+(?:{_CONNECTOR}\s+)?{_CAP_WORD})*")
_LOCATION_RE = re.compile(
    r"\b(" + "|".join(re.escape(n.replace("_", " ")) for n in sorted(LOCATIONS, key=len, reverse=True)) + r")\b"
)
_YEAR_RE = re.compile(r"\b(1[89]\d{2}|20\d{2})(s?)\b")
_MONTH_RE = re.compile(r"\b(" + "|".join(m for m in MONTHS if m != "May") + r")\b")
# "May" is a month only where a date or a time preposition makes it one.
_MAY_RE = re.compile(
    r"\b(?:(?<=in )|(?<=of )|(?<=since )|(?<=until )|(?<=last )|(?<=next )|(?<=early )|(?<=late ))May\b|\bMay(?= \d)"
)
_WEEKDAY_RE = re.compile(r"\b(" + "|".join(WEEKDAYS) + r")\b")
_SEASON_RE = re.compile(r"\b(" + "|".join(SEASONS) + r")\b", re.IGNORECASE)
_RELATIVE_TIME_RE = re.compile(
    r"\b(yesterday|tomorrow|tonight|(?:last|next|this) (?:year|month|week|season|decade|century))\b", re.IGNORECASE
)
_QUOTE_RE = re.compile(r"\"[^\"\n]{2,}\"|“[^”\n]{2,}”")
_NUMBER_RE = re.compile(r"(?:[£$€]\s?)?\d[\d,.]*\s?(?:%|bn|m|k)?")
_FIRST_PERSON_RE = re.compile(r"\b(?:I|I'm|I've|we|We|my|My|our|Our|me|us)\b")
_REPORTING_RE = re.compile(r"\b(?:said|says|told|according to|reported|announced)\b")
_BULLET_LINE_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.MULTILINE)
# An attribution: a dash then a capitalised source at the end of a line ('"..." ― Oscar Wilde',
# a line '- Seneca, Letters'). Quoted sayings carry one; news quotes use "said" instead.
ATTRIBUTION_RE = re.compile(
    r"(?:^|(?<=[\s\"”.!?]))[―—–]\s*[A-Z][^\n]{0,80}$"  # an em/en dash or a horizontal bar, anywhere
    r"|(?:^\s*|(?<=[.!?\"”])\s+)-{1,2}\s*[A-Z][^\n]{0,80}$",  # hyphens: at a line start or after a sentence
    re.MULTILINE,
)
# English function words (sklearn's stop-word list: "Without", "Across", "Whatever"): capitalised at a
# sentence start they open a span but name nothing.
_FUNCTION_WORDS = frozenset(ENGLISH_STOP_WORDS)
# A contraction (I'm, don't, we've, they'll, you're, I'd): shorthand for common words, never a name.
_CONTRACTION_RE = re.compile(
    r"^[A-Za-z]+(?:n['’]t|['’](?:m|ve|ll|re|d))$|^(?:[Ll]et|[Hh]ere|[Tt]here|[Ww]ho|[Ww]hat|[Hh]e|[Ss]he|[Ii]t|[Tt]hat)['’]s$"
)


def entities(text: str, common_lowercase: Collection[str]) -> list[str]:
    """Capitalised name spans (``Tony_Blair``, ``Time_Warner``), most frequent first.

    Places are not names here: gazetteer locations are masked out first (they are
    ``location`` tags), so "New York" never yields an entity "York".

    A single capitalised word at a sentence start is taken for a name only when the
    corpus does not use it in lower case (``However``, ``Shares`` are not names).
    """
    text = _LOCATION_RE.sub(lambda m: " " * len(m.group(0)), text)
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for match in _SPAN_RE.finditer(text):
        words = match.group(0).split()
        start = match.start()
        # Title words and function words open many spans without naming anything.
        while len(words) > 1 and words[0] in TITLE_WORDS:  # keep the title only when it is all there is
            start += text[start:].index(words[0]) + len(words[0])
            words = words[1:]
        while words and (words[0] in NON_ENTITY_WORDS or words[0].lower() in ("of", "and")):
            start += text[start:].index(words[0]) + len(words[0])
            words = words[1:]
        while words and words[-1] in ("of", "de", "del", "van", "von", "der", "du", "da", "al", "la", "le", "bin", "y"):
            words = words[:-1]
        # Contractions and pronouns name nothing: "I'm", "Don't", "He's Mary's" -> Mary; "Hello I'm Sam" -> Hello.
        while words and (
            _CONTRACTION_RE.match(words[0]) or words[0] in NON_ENTITY_WORDS or words[0].lower() in _FUNCTION_WORDS
        ):
            start += text[start:].index(words[0]) + len(words[0])
            words = words[1:]
        for i, word in enumerate(words):
            if _CONTRACTION_RE.match(word):
                words = words[:i]
                break
        for i, word in enumerate(words):  # a possessive ends the name: "BBC's Today" -> BBC
            if _strip_possessive(word) != word:
                words = words[:i] + [_strip_possessive(word)]
                break
        words = words[:4]
        if not words:
            continue
        if len(words) == 1:
            word = words[0]
            at_start = _at_sentence_start(text, start)
            if word in NON_ENTITY_WORDS or len(word) < 2 or (at_start and word.lower() in common_lowercase):
                continue
        value = "_".join(words)
        counts[value] += 1
        first.setdefault(value, match.start())
    return sorted(counts, key=lambda v: (-counts[v], first[v]))


def locations(text: str) -> list[str]:
    """Gazetteer places (``London``, ``New_York``), most frequent first."""
    return _ranked(m.group(1).replace(" ", "_") for m in _LOCATION_RE.finditer(text))


def times(text: str) -> list[str]:
    """Years and decades first (``2004``, ``1990s``), then months, weekdays, seasons, relative times."""
    found = [m.group(1) + m.group(2) for m in _YEAR_RE.finditer(text)]
    months = [m.group(1) for m in _MONTH_RE.finditer(text)] + ["May" for _ in _MAY_RE.finditer(text)]
    found += months
    found += [m.group(1) for m in _WEEKDAY_RE.finditer(text)]
    found += [m.group(1).lower() for m in _SEASON_RE.finditer(text)]
    found += [m.group(1).lower().replace(" ", "_") for m in _RELATIVE_TIME_RE.finditer(text)]
    return list(dict.fromkeys(found))


def actions(text: str) -> list[str]:
    """Lemmas of action verbs from the lexicon, most frequent first."""
    return _ranked(
        ACTION_LEMMAS[w] for w in (m.group(0).lower() for m in _WORD_RE.finditer(text)) if w in ACTION_LEMMAS
    )


def sentiment(text: str) -> str:
    """A five-way lexicon polarity; a negation just before a word flips it."""
    words = [m.group(0).lower() for m in _WORD_RE.finditer(text)]
    positive = negative = 0
    for i, word in enumerate(words):
        polarity = (word in POSITIVE_WORDS) - (word in NEGATIVE_WORDS)
        if not polarity:
            continue
        if any(w in NEGATIONS or w.endswith("n't") for w in words[max(0, i - 2) : i]):
            polarity = -polarity
        positive += polarity > 0
        negative += polarity < 0
    total = positive + negative
    if total == 0:
        return "neutral"
    score = (positive - negative) / total
    if score >= 0.6:
        return "positive"
    if score >= 0.2:
        return "mostly_positive"
    if score <= -0.6:
        return "negative"
    if score <= -0.2:
        return "mostly_negative"
    return "mixed"


@dataclass(frozen=True)
class Form:
    """Surface measurements of a chunk that style and genre are read from."""

    quote_share: float  # fraction of characters inside double quotes
    quotes: int  # number of quoted spans
    number_density: float  # numbers per word
    questions: int
    first_person: int  # first-person words outside quotes
    reporting: int  # "said", "told", ... outside quotes
    bullet_lines: int
    attributions: int  # lines ending in a dash and a capitalised source ("― Oscar Wilde")
    words_per_sentence: float
    headline: bool  # opens with a short line without end punctuation


def form(text: str) -> Form:
    quoted = _QUOTE_RE.findall(text)
    unquoted = _QUOTE_RE.sub(" ", text)
    words = max(1, len(_WORD_RE.findall(text)))
    sentences = max(1, len(re.findall(r"[.!?](?:\s|$)", text)))
    first_line = text.split("\n", 1)[0].strip()
    return Form(
        quote_share=sum(len(q) for q in quoted) / max(1, len(text)),
        quotes=len(quoted),
        number_density=len(_NUMBER_RE.findall(text)) / words,
        questions=text.count("?"),
        first_person=len(_FIRST_PERSON_RE.findall(unquoted)),
        reporting=len(_REPORTING_RE.findall(unquoted)),
        bullet_lines=len(_BULLET_LINE_RE.findall(ATTRIBUTION_RE.sub("", text))),
        attributions=len(ATTRIBUTION_RE.findall(text)),
        words_per_sentence=words / sentences,
        headline="\n" in text and len(first_line) <= 90 and not first_line.endswith((".", "?", "!", ":", '"', "”")),
    )


def style(f: Form) -> str:
    """How the chunk is written (its dominant surface form)."""
    if f.quote_share >= 0.35 or f.attributions:
        return "quotation"
    if f.number_density >= 0.06:
        return "statistics"
    if f.bullet_lines >= 3:
        return "list"
    if f.questions >= 2:
        return "questioning"
    if f.first_person >= 3:
        return "first_person"
    if f.words_per_sentence >= 30:
        return "long_sentences"
    if f.words_per_sentence <= 14:
        return "short_sentences"
    return "expository"


def genre(f: Form) -> str:
    """What kind of text the chunk is part of, from its form."""
    if f.attributions:
        return "saying"
    if f.headline:
        return "headline_lead"
    if f.quotes >= 2 and f.quote_share >= 0.5:
        return "dialogue"
    if f.questions >= 2 and f.first_person >= 2:
        return "interview"
    if f.number_density >= 0.08:
        return "data_report"
    if f.first_person >= 2:
        return "commentary"
    if f.reporting >= 1 or f.quotes >= 1:
        return "news_report"
    return "narrative"


def _at_sentence_start(text: str, start: int) -> bool:
    prefix = text[max(0, start - 8) : start].rstrip(" \t\"'“‘(")
    return not prefix or prefix[-1] in ".!?:\n"


def _strip_possessive(word: str) -> str:
    for suffix in ("'s", "’s", "'", "’"):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            return word[: -len(suffix)]
    return word


def _ranked(values: Iterable[str]) -> list[str]:
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for i, value in enumerate(values):
        counts[value] += 1
        first.setdefault(value, i)
    return sorted(counts, key=lambda v: (-counts[v], first[v]))
