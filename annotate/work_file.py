"""Per-shard JSONL work files: annotations appended in batches, safe to kill at any moment.

Each batch is written with one ``write``, then flushed and fsynced. A process killed
mid-write leaves at most one partial line, at the end; ``WorkFile.open`` cuts it off
before anything is appended, so the next run starts on a clean line and redoes exactly
the ids that were not fully written. An exclusive lock (``stage_io.run_lock``) stops two
processes from working the same shard at once (the lock goes away with its process, even
on SIGKILL).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from stage_io.run_lock import DirectoryLock, RunLockError


class WorkFileError(ValueError):
    """A work file that cannot be read or is held by another process."""


def shard_name(shard_index: int, num_shards: int) -> str:
    return f"shard-{shard_index:05d}-of-{num_shards:05d}"


class WorkFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = DirectoryLock(self.path.with_suffix(".lock"), "annotating this shard")

    def open(self) -> set[str]:
        """Take the shard's lock, repair a torn last line, return the ids already done."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except RunLockError as err:
            raise WorkFileError(f"{self.path}: {err}") from None
        self.path.touch()
        self._repair()
        return {record["id"] for record in read_work_records(self.path)}

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        with open(self.path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> "WorkFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _repair(self) -> None:
        """Cut a torn final line (no newline, or not JSON) left by a killed writer."""
        with open(self.path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                keep = _after_last_newline(handle, size)  # drop the partial line
            else:
                start = _after_last_newline(handle, size - 1)
                handle.seek(start)
                keep = start if not _is_record(handle.read(size - start)) else size
            if keep != size:
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())


def read_work_records(path: str | Path) -> Iterator[dict]:
    """The records of a work file, first occurrence of each id only.

    A torn last line is ignored (a writer may be mid-write); a bad line anywhere else is
    an error naming the file and line.
    """
    path = Path(path)
    seen: set[str] = set()
    with open(path, "rb") as handle:
        lineno = 0
        line = handle.readline()
        while line:
            lineno += 1
            following = handle.readline()
            last = not following
            line, raw = following, line
            if last and not raw.endswith(b"\n"):
                return
            try:
                record = json.loads(raw.decode("utf-8"))
                record_id = record["id"]
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
                if last:
                    return
                raise WorkFileError(f"{path}:{lineno}: not a work record ({type(err).__name__}: {err})") from err
            if record_id not in seen:
                seen.add(record_id)
                yield record


def _after_last_newline(handle, end: int) -> int:
    """Offset just after the last newline before ``end`` (0 if there is none)."""
    position = end
    while position > 0:
        block = min(1 << 16, position)
        handle.seek(position - block)
        data = handle.read(block)
        found = data.rfind(b"\n")
        if found >= 0:
            return position - block + found + 1
        position -= block
    return 0


def _is_record(line: bytes) -> bool:
    try:
        return "id" in json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError):
        return False
