"""How every report and card writes a number, an interval and a Markdown table.

Rendering only: a function here formats what it is given and computes nothing beyond the text.
It imports nothing from the project, so every stage, the study and the cards can use it.

- ``number(0.4012)`` -> ``0.401``; ``number(None)`` -> ``n/a`` (or the ``missing`` text given).
- ``interval(0.4, 0.17, 0.61, sign=True)`` -> ``+0.400 [+0.170, +0.610]``.
- ``stat(entry)``: an entry ``{"mean" | "value", "ci_low", "ci_high"}`` as ``0.400 [0.170, 0.610]``.
- ``table(["arm", "value"], rows)`` -> the Markdown lines of a table.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

NA = "n/a"


def number(value: float | None, digits: int = 3, missing: str = NA, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals (a leading + or - with ``sign``); ``missing`` for None."""
    if value is None:
        return missing
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def cell(value: Any, digits: int = 3) -> str:
    """A float with ``digits`` decimals, None as n/a, anything else (counts, names) as it prints."""
    if value is None:
        return NA
    return number(value, digits) if isinstance(value, float) else str(value)


def significant(value: float | None, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits; n/a for None; nan and inf as Python writes them."""
    if value is None:
        return NA
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.{digits}g}"


def bounds(low: float | None, high: float | None, digits: int = 3, sign: bool = False) -> str:
    """``[low, high]``, each bound n/a where it is None."""
    return f"[{number(low, digits, sign=sign)}, {number(high, digits, sign=sign)}]"


def interval(
    value: float | None,
    low: float | None,
    high: float | None,
    digits: int = 3,
    sign: bool = False,
    missing: str = NA,
) -> str:
    """``value [low, high]``; ``missing`` when the value is None."""
    if value is None:
        return missing
    return f"{number(value, digits, sign=sign)} {bounds(low, high, digits, sign)}"


def interval_or_value(value: float | None, ci: Sequence[float | None] | None, digits: int = 3) -> str:
    """``value [low, high]`` with an interval ``ci = (low, high)``, the value alone without one."""
    if value is None:
        return NA
    return interval(value, ci[0], ci[1], digits) if ci else number(value, digits)


def estimate(entry: Mapping[str, Any] | None) -> float | None:
    """The estimate of a statistic entry: its ``mean``, else its ``value`` (None when neither)."""
    if not entry:
        return None
    return entry.get("mean", entry.get("value"))


def stat(entry: Mapping[str, Any] | None, digits: int = 3) -> str:
    """A statistic entry ``{"mean" | "value", "ci_low", "ci_high"}`` as ``value [low, high]``."""
    value = estimate(entry)
    return NA if value is None else interval(value, entry.get("ci_low"), entry.get("ci_high"), digits)


def with_stderr(entry: Mapping[str, Any] | None, digits: int = 3) -> str:
    """An entry ``{"value", "stderr"}`` as ``value ± stderr`` (the value alone without a stderr)."""
    if not entry or entry.get("value") is None:
        return NA
    stderr = f" ± {number(entry['stderr'], digits)}" if entry.get("stderr") is not None else ""
    return number(entry["value"], digits) + stderr


def row(cells: Iterable[Any]) -> str:
    """One Markdown table row; an empty cell stays one space wide."""
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


def rule(columns: int, spaced: bool = False) -> str:
    """The line under a table's header: ``|---|---|``, or ``| --- | --- |`` when ``spaced``."""
    return row(["---"] * columns) if spaced else "|" + "---|" * columns


def table(columns: Sequence[str], rows: Iterable[Iterable[Any]], spaced: bool = False) -> list[str]:
    """A Markdown table's lines: header, rule, one line per row of cells."""
    return [row(columns), rule(len(columns), spaced), *(row(r) for r in rows)]
