"""The model card's results table, read defensively from an eval run's summary.json.

The eval stage owns summary.json's schema; this reader assumes only that it is JSON.
It walks the file and sorts what it finds into:

- statistics: a mapping with an estimate (``mean``, ``value``, ``ratio``, ...) and maybe an
  interval (``ci_low``/``ci_high``, ``ci: [lo, hi]``, ...) and a count; also a number
  ``x`` with siblings ``x_ci_low``/``x_ci_high``. These make the card's main table.
- other numbers (counts, rates), and settings (short text, flags, lists of names).
- entries it cannot show, which are named.

Rows are grouped by arm (the keys of ``arms``, or, without an ``arms`` section, each
top-level section). Every number is copied from the file, none is computed here, so
the card reports what the file holds and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from publish.source_manifest import md_escape
from stage_io.report_format import significant
from stage_io.report_format import table as markdown_table

ESTIMATE_KEYS = ("mean", "value", "ratio", "estimate", "point", "score")
CI_PAIRS = (("ci_low", "ci_high"), ("ci_lower", "ci_upper"), ("lower", "upper"), ("lo", "hi"), ("low", "high"))
CI_LISTS = ("ci", "ci95", "interval", "confidence_interval", "bootstrap_ci")
N_KEYS = ("n", "n_prompts", "count", "n_samples", "num_samples")
MAX_DEPTH = 8  # deeper entries are named as not shown
MAX_SETTING_CHARS = 200  # longer text is named as not shown
RUN_WIDE = "(run)"


@dataclass(frozen=True)
class Statistic:
    arm: str
    metric: str
    estimate: float | None  # None: the file records the statistic as undefined (null)
    ci: tuple[float, float] | None
    n: Any


@dataclass
class EvalTable:
    statistics: list[Statistic] = field(default_factory=list)
    # (arm, dotted key, number): counts, rates and other plain numbers.
    numbers: list[tuple[str, str, float]] = field(default_factory=list)
    # (dotted key, text): embedder, judge, sampling settings, flags.
    settings: list[tuple[str, str]] = field(default_factory=list)
    # Dotted keys of entries shown nowhere (long text, odd shapes, too deep).
    not_shown: list[str] = field(default_factory=list)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _interval(stats: Mapping[str, Any]) -> tuple[tuple[float, float] | None, set[str]]:
    """The interval recorded in ``stats`` and the keys it was read from."""
    for low_key, high_key in CI_PAIRS:
        low, high = _number(stats.get(low_key)), _number(stats.get(high_key))
        if low is not None and high is not None:
            return (low, high), {low_key, high_key}
        if low_key in stats and high_key in stats:
            return None, {low_key, high_key}  # recorded as null: no interval, nothing left unshown
    for key in CI_LISTS:
        value = stats.get(key)
        if isinstance(value, (list, tuple)) and len(value) == 2:
            low, high = _number(value[0]), _number(value[1])
            if low is not None and high is not None:
                return (low, high), {key}
        if isinstance(value, Mapping):
            inner, _ = _interval(value)
            if inner:
                return inner, {key}
    return None, set()


def _statistic(node: Mapping[str, Any]) -> tuple[float | None, tuple[float, float] | None, Any, set[str]] | None:
    """``(estimate, interval, n, keys used)`` when ``node`` reads as one statistic, else None."""
    for key in ESTIMATE_KEYS:
        if key in node and (node[key] is None or _number(node[key]) is not None):
            ci, used = _interval(node)
            n_key = next((k for k in N_KEYS if _number(node.get(k)) is not None), None)
            used |= {key} | ({n_key} if n_key else set())
            return _number(node[key]), ci, node[n_key] if n_key else None, used
    return None


def _readable(path: list[str]) -> str:
    """Dotted name of a path, without the structural words ("metrics") and with T=... for temperatures."""
    parts, i = [], 0
    while i < len(path):
        if path[i] == "temperatures" and i + 1 < len(path):
            parts.append(f"T={path[i + 1]}")
            i += 2
            continue
        if path[i] != "metrics":
            parts.append(path[i])
        i += 1
    return ".".join(parts) or "(value)"


def _walk(table: EvalTable, arm: str, node: Any, path: list[str], where: str, depth: int) -> None:
    key = ".".join(filter(None, [where, *path]))
    if isinstance(node, Mapping):
        if depth > MAX_DEPTH:
            table.not_shown.append(key)
            return
        used: set[str] = set()
        stat = _statistic(node)
        if stat is not None:
            estimate, ci, n, used = stat
            table.statistics.append(Statistic(arm, _readable(path), estimate, ci, n))
        for name, value in node.items():  # x with siblings x_ci_low / x_ci_high (e.g. gap_closed)
            low, high = node.get(f"{name}_ci_low"), node.get(f"{name}_ci_high")
            if name not in used and (value is None or _number(value) is not None) and f"{name}_ci_low" in node:
                ci = (float(low), float(high)) if _number(low) is not None and _number(high) is not None else None
                table.statistics.append(Statistic(arm, _readable([*path, str(name)]), _number(value), ci, None))
                used |= {name, f"{name}_ci_low", f"{name}_ci_high"}
        for name, value in node.items():
            if name not in used:
                _walk(table, arm, value, [*path, str(name)], where, depth + 1)
    elif _number(node) is not None:
        table.numbers.append((arm, _readable(path), float(node)))
    elif node is None or isinstance(node, (str, bool)):
        text = "null" if node is None else str(node).lower() if isinstance(node, bool) else node
        (table.settings.append((key, text)) if len(text) <= MAX_SETTING_CHARS else table.not_shown.append(key))
    elif isinstance(node, list) and all(v is None or isinstance(v, (str, int, float, bool)) for v in node):
        text = ", ".join(str(v) for v in node)
        (table.settings.append((key, text)) if len(text) <= MAX_SETTING_CHARS else table.not_shown.append(key))
    else:
        table.not_shown.append(key or "<top level>")


def read_eval_table(summary: Any) -> EvalTable:
    """Statistics per arm (and the rest, sorted) from summary.json's parsed content, whatever its shape."""
    table = EvalTable()
    if not isinstance(summary, Mapping):
        table.not_shown.append(f"<top level: {type(summary).__name__}>")
        return table
    arms = summary.get("arms")
    if isinstance(arms, Mapping):
        for arm, node in arms.items():
            _walk(table, str(arm), node, [], f"arms.{arm}", 1)
        for key, node in summary.items():  # the rest are run-wide figures and settings
            if key != "arms":
                _walk(table, RUN_WIDE, node, [str(key)], "", 1)
        return table
    for key, node in summary.items():  # no "arms": each top-level section that is no statistic is an arm
        if isinstance(node, Mapping) and _statistic(node) is None:
            _walk(table, str(key), node, [], str(key), 1)
        else:
            _walk(table, RUN_WIDE, node, [str(key)], "", 1)
    return table


NO_SUMMARY = "No evaluation summary was given when this model was published; no evaluation result is claimed."
STATISTICS_NOTE = (
    "Copied from the eval run's {link} (uploaded with the model); see that file and the eval run's report "
    "for how each metric and interval was computed. Numbers are rounded to 4 significant digits; "
    "`{run_wide}` marks run-wide figures; `n/a`: recorded as undefined."
)
NO_STATISTICS = (
    "The eval run's {link} (uploaded with the model) holds no entry this card could read as a "
    "statistic (an estimate with its interval); see the file itself. No evaluation result is claimed here."
)
MAX_NOT_SHOWN = 20  # entries named at the end; the rest counted


def render_eval_section(table: EvalTable | None, summary_name: str) -> str:
    """Markdown for the card; with no summary, or nothing readable in it, it says no result is claimed."""
    lines = ["## Evaluation", ""]
    if table is None:
        return "\n".join([*lines, NO_SUMMARY]) + "\n"
    link = f"[`{summary_name}`]({summary_name})"
    if table.statistics:
        rows = [
            (
                md_escape(s.arm),
                md_escape(s.metric),
                significant(s.estimate),
                f"[{significant(s.ci[0])}, {significant(s.ci[1])}]" if s.ci else "-",
                md_escape(s.n) if s.n is not None else "-",
            )
            for s in table.statistics
        ]
        lines += [
            STATISTICS_NOTE.format(link=link, run_wide=RUN_WIDE),
            "",
            *markdown_table(("arm", "metric", "estimate", "interval", "n"), rows, spaced=True),
        ]
    else:
        lines.append(NO_STATISTICS.format(link=link))
    if table.numbers:
        rows = [(md_escape(a), md_escape(k), significant(v)) for a, k, v in table.numbers]
        lines += _details(f"Other numbers in {summary_name} ({len(table.numbers)})", ("arm", "entry", "value"), rows)
    if table.settings:
        rows = [(md_escape(k), md_escape(v)) for k, v in table.settings]
        lines += _details(f"Settings recorded in {summary_name} ({len(table.settings)})", ("key", "value"), rows)
    if table.not_shown:
        shown = ", ".join(f"`{md_escape(k)}`" for k in table.not_shown[:MAX_NOT_SHOWN])
        more = f" and {len(table.not_shown) - MAX_NOT_SHOWN} more" if len(table.not_shown) > MAX_NOT_SHOWN else ""
        lines += ["", f"Entries of `{summary_name}` not shown here ({len(table.not_shown)}): {shown}{more}."]
    return "\n".join(lines) + "\n"


def _details(summary: str, columns: tuple[str, ...], rows: list[tuple]) -> list[str]:
    """A folded table: ``<details>`` with its summary line."""
    return [
        "",
        f"<details><summary>{summary}</summary>",
        "",
        *markdown_table(columns, rows, spaced=True),
        "",
        "</details>",
    ]
