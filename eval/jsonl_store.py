"""Append-only JSONL files keyed by ``id``: how every stage resumes.

A stage appends rows in batches and flushes (and fsyncs) after each batch, so a killed
run loses at most the batch in flight. On the next run the file is read back: a last
line cut off mid-write (no newline, not JSON) is the trace of such a kill and is
removed (and counted); a bad line anywhere else is corruption and an error naming the
file and line. Ids already present are skipped, so a rerun never duplicates a row.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable


class RunFileError(ValueError):
    """A run file that cannot be trusted (a corrupt line that is not the last one)."""


def read_rows(path: str | Path, repair: bool = True) -> tuple[list[dict], int]:
    """All rows of ``path`` (none if it does not exist), and how many torn lines were removed.

    With ``repair`` a torn last line is cut from the file so that appends start on a
    fresh line. A duplicated id keeps its first row (and is reported by ``dedupe``).
    """
    path = Path(path)
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows, torn = [], 0
    good_bytes = 0
    for lineno, line in enumerate(lines, start=1):
        is_last = lineno == len(lines)
        if not line.strip():
            if not is_last:
                good_bytes += len(line) + 1
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            if not isinstance(row, dict) or "id" not in row:
                raise ValueError("not an object with an id")
        except (ValueError, UnicodeDecodeError) as err:
            if is_last:  # written without its newline: the run died mid-write
                torn += 1
                break
            raise RunFileError(f"{path}:{lineno}: not a valid row ({err}); fix or remove the line") from err
        if is_last:  # valid JSON but no newline: keep it, add the newline below
            rows.append(row)
            good_bytes += len(line)
            break
        rows.append(row)
        good_bytes += len(line) + 1
    needs_newline = good_bytes > 0 and data[good_bytes - 1 : good_bytes] != b"\n"
    if repair and (good_bytes != len(data) or needs_newline):
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
            if needs_newline:
                handle.seek(good_bytes)
                handle.write(b"\n")
    return rows, torn


def dedupe(rows: Iterable[dict]) -> tuple[list[dict], int]:
    """First row of every id, and how many later duplicates were ignored."""
    seen: set[str] = set()
    unique, dropped = [], 0
    for row in rows:
        if row["id"] in seen:
            dropped += 1
            continue
        seen.add(row["id"])
        unique.append(row)
    return unique, dropped


def append_rows(path: str | Path, rows: Iterable[dict]) -> int:
    """Append rows as JSON lines, flushed and fsynced before returning (one batch)."""
    return _write_rows(path, rows, "a")


def replace_rows(path: str | Path, rows: Iterable[dict]) -> None:
    """Replace the file by ``rows`` atomically (to drop rows that must be redone)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    _write_rows(tmp, rows, "w")
    os.replace(tmp, path)


def _write_rows(path: str | Path, rows: Iterable[dict], mode: str) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, mode, encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(sanitize(row), ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count


def clean_number(value: float | None) -> float | None:
    """NaN and infinities become None (strict JSON has neither); finite floats pass."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def sanitize(value):
    """Plain JSON data: numpy values unwrapped, NaN/inf as None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        return sanitize(value.tolist())
    if isinstance(value, float):
        return clean_number(value)
    return value


def write_json(path: str | Path, data) -> None:
    """Write a JSON file atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(sanitize(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
