"""How the project's messages reach the console: ``logging``, shown as the prints they replace.

Every module logs to ``logging.getLogger(__name__)``. The loggers of the project's packages
(``PROJECT_PACKAGES``) get two plain ``%(message)s`` handlers: INFO and DEBUG lines go to
stdout, warnings and errors to stderr. Each handler writes to the stream ``sys`` holds when the
line is emitted, so a redirected or captured stdout/stderr receives it. The level is INFO
until ``set_verbosity`` changes it (``--quiet``: warnings only; ``--verbose``: debug lines too).
The one error line of a stage (``STAGE: error: ...``) is not a log line: ``stage_io.cli``
writes it whatever the level.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

# The top-level packages whose loggers print (the same list the CLI's error path recognises).
PROJECT_PACKAGES = ("stage_io", "annotate", "pretrain", "posttrain", "eval", "publish", "study")
Verbosity = Literal["quiet", "normal", "verbose"]
LEVELS: dict[str, int] = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}
MESSAGE_FORMAT = "%(message)s"


class _CurrentStreamHandler(logging.StreamHandler):
    """A handler writing to ``sys.stdout`` or ``sys.stderr`` as they are at emit time."""

    def __init__(self, name: Literal["stdout", "stderr"]) -> None:
        super().__init__()
        self._name = name

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return getattr(sys, self._name)

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ sets it; the property decides
        pass


def _below_warning(record: logging.LogRecord) -> bool:
    return record.levelno < logging.WARNING


def install_handlers() -> None:
    """Give each project package's logger its stdout and stderr handlers (once) at INFO."""
    for package in PROJECT_PACKAGES:
        logger = logging.getLogger(package)
        if any(isinstance(h, _CurrentStreamHandler) for h in logger.handlers):
            continue
        out = _CurrentStreamHandler("stdout")
        out.addFilter(_below_warning)
        err = _CurrentStreamHandler("stderr")
        err.setLevel(logging.WARNING)
        for handler in (out, err):
            handler.setFormatter(logging.Formatter(MESSAGE_FORMAT))
            logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


def set_verbosity(verbosity: Verbosity) -> None:
    """Show warnings only (quiet), info lines too (normal, the default) or debug lines too (verbose)."""
    install_handlers()
    for package in PROJECT_PACKAGES:
        logging.getLogger(package).setLevel(LEVELS[verbosity])
