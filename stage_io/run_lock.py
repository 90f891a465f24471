"""One writer per output directory: an exclusive ``flock`` held for the whole run.

Two runs writing one output directory interleave their metrics, overwrite each other's
checkpoints and write every sample twice, and both exit 0. So pretrain, posttrain and
eval, annotate and publish take ``hold_lock(output_dir)`` before they read or write anything there. A second run finds the lock held and stops
with a ``RunLockError`` naming the directory and the holder's pid.

The lock is ``fcntl.flock`` on a hidden file (``.lock``, skipped by
``stage_io.manifest.fingerprint``): the kernel releases it when its process exits,
however it exits (SIGKILL included), so a killed run never leaves a stale lock, and
the next run simply takes it. The pid written into the file is only for the message.
A forked child (datatrove's multiprocess manager under annotate with several workers)
inherits the lock's descriptor, and a flock lasts while any copy of it is open: such a
child outlives a SIGKILLed parent, idle, and would hold the directory until it is killed
too. So a forked child closes its copies of the held locks (without unlocking them: the
parent still holds them).
Under ``accelerate launch`` only the main process of the job holds it (``RANK`` 0):
the ranks of one job are one writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import weakref
from pathlib import Path
from typing import IO, Iterator

LOCK_NAME = ".lock"
# The locks this process holds, closed in each forked child (see the module doc).
_HELD: weakref.WeakSet = weakref.WeakSet()


class RunLockError(RuntimeError):
    """Another process holds the output directory's lock."""


class OutputDirError(OSError):
    """The output directory cannot be made or written (a file is in the way, no permission)."""


class DirectoryLock:
    """An exclusive, non-blocking ``flock`` on ``path``; ``acquire`` raises if it is held."""

    def __init__(self, path: str | Path, what: str, key: str = "output_dir"):
        self.path = Path(path)
        # What this process holds it for, for the message ("annotating this shard", "running eval in it").
        self.what = what
        # The config key that chose the directory, for the message when it cannot be made.
        self.key = key
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = self._open()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunLockError(
                f"{self.path.parent}: another process (pid {holder}) holds its lock ({self.path.name}), so "
                f"this one cannot start {self.what}: wait for that process to finish, or use another output "
                "directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        _HELD.add(self)

    def close_inherited_copy(self) -> None:
        """In a forked child: close this process's copy of the descriptor, leaving the parent's lock held."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _open(self) -> IO[str]:
        """Make the directory and open the lock file, or say in one line why that is impossible."""
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise OutputDirError(
                f"{self.key} '{folder}' is an existing file, not a directory: choose another "
                f"{self.key} or move the file"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return open(self.path, "a+", encoding="utf-8")
        except OSError as err:
            raise OutputDirError(
                f"{self.key} '{folder}': cannot create or write it ({type(err).__name__}: "
                f"{err.strerror or err}): choose a {self.key} this user can write"
            ) from None

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        _HELD.discard(self)

    def __enter__(self) -> "DirectoryLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _close_inherited_locks() -> None:
    for lock in list(_HELD):
        lock.close_inherited_copy()
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def is_main_rank() -> bool:
    """True outside a distributed launch, and on global rank 0 inside one."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def hold_lock(
    output_dir: str | Path, stage: str, key: str = "output_dir", lock_name: str = LOCK_NAME
) -> Iterator[None]:
    """Hold ``output_dir``'s lock for the ``with`` block (main rank only; see the module doc).

    ``key`` is the config key that chose the directory (named when it cannot be made);
    ``lock_name`` another hidden file for a stage with several writers per directory.
    """
    if not is_main_rank():
        yield
        return
    with DirectoryLock(Path(output_dir) / lock_name, f"running {stage} in it", key=key):
        yield
