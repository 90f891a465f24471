"""The thin command line every stage shares: ``python -m STAGE CONFIG [key=value ...]``."""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap
import typing
from typing import Any, Callable, Sequence

from stage_io.config import ConfigError, field_comments, load_config
from stage_io.log import PROJECT_PACKAGES, Verbosity, set_verbosity

# Flags read anywhere on the line, besides CONFIG and key=value.
VERBOSITY_FLAGS: dict[str, Verbosity] = {"--quiet": "quiet", "--verbose": "verbose"}
# Set to 1 to see the traceback behind an error message (same as --debug).
DEBUG_ENV = "ANCHORED_DEBUG"


def describe_config(cls: type, prefix: str = "", defaults: Any = None) -> list[str]:
    """Per key: dotted name, type and default, then the field's comment (for ``--help``).

    A nested section's defaults come from its parent's default when it sets one, so the
    listing shows what the stage would really use.
    """
    lines = []
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        name = prefix + field.name
        if field.default is not dataclasses.MISSING:
            value = field.default
        elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = field.default_factory()  # type: ignore[misc]
        else:
            value = dataclasses.MISSING
        if defaults is not None:
            value = getattr(defaults, field.name, value)
        if dataclasses.is_dataclass(tp):
            nested = None if value is dataclasses.MISSING else value
            lines.extend(describe_config(tp, prefix=name + ".", defaults=nested))
            continue
        default = "(required)" if value is dataclasses.MISSING else repr(value)
        type_name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        lines.append(f"  {name:<40} {type_name:<28} default {default}")
        if comments.get(field.name):
            lines.extend(f"      {part}" for part in textwrap.wrap(comments[field.name], 100))
    return lines


def stage_main(prog: str, config_cls: type, run: Callable[[Any], Any], argv: Sequence[str] | None = None) -> int:
    """Parse ``CONFIG [key=value ...]``, build the typed config, call ``run(config)``.

    The one error path of every stage: an error the project raises or recognises (see
    ``is_project_error``) prints one line, ``PROG: error: MESSAGE``, and returns 2;
    ``--debug`` (anywhere on the line) or ``DEBUG_ENV=1`` shows the traceback instead.
    Anything else is a bug and keeps its traceback. ``--quiet`` shows warnings only,
    ``--verbose`` debug lines too (stage_io/log.py); the error line shows either way.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    set_verbosity(verbosity_of(args))
    args = [a for a in args if a != "--debug" and a not in VERBOSITY_FLAGS]
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m {prog} CONFIG.yaml [key=value ...] [--debug] [--quiet | --verbose]\n")
        print(f"Keys of {config_cls.__name__} (dotted for nested sections):")
        print("\n".join(describe_config(config_cls)))
        return 0 if args else 2
    path, overrides = args[0], args[1:]
    if "=" in path:  # no file, only overrides
        path, overrides = None, args
    try:
        config = load_config(config_cls, path, overrides)
    except ConfigError as err:
        if debug:
            raise
        print(f"{prog}: config error: {err}", file=sys.stderr)
        return 2
    try:
        run(config)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not is_project_error(err):
            raise
        print(f"{prog}: error: {describe_error(err)}", file=sys.stderr)
        return 2
    return 0


def verbosity_of(args: Sequence[str]) -> Verbosity:
    """``quiet`` or ``verbose`` when the flag is on the line (the last one wins), else ``normal``."""
    flags = [VERBOSITY_FLAGS[a] for a in args if a in VERBOSITY_FLAGS]
    return flags[-1] if flags else "normal"


def is_project_error(err: BaseException) -> bool:
    """An error whose message was written for the user, not a bug.

    That is any exception class defined in this project (config, record, identity,
    lock, checkpoint, publish errors ...), and a ``ValueError``, ``OSError`` or
    ``RuntimeError`` raised by this project's own code (the innermost traceback frame
    is in a project module): a plain ``raise ValueError(...)`` there names the key or
    file, and an ``OSError`` from ``open()`` there names the file. A ``KeyError``,
    ``TypeError`` ... anywhere, or any error from inside a library, is not recognised
    (the project checks inputs before handing them to libraries, so that is a bug).
    """
    if _module_is_project(type(err).__module__):
        return True
    if not isinstance(err, (ValueError, OSError, RuntimeError)) or isinstance(err, NotImplementedError):
        return False
    tb = err.__traceback__
    innermost = None
    while tb is not None:
        innermost = tb
        tb = tb.tb_next
    return innermost is not None and _module_is_project(innermost.tb_frame.f_globals.get("__name__", ""))


def describe_error(err: BaseException) -> str:
    """The message; a built-in OSError keeps its type (``FileNotFoundError: ...``) for context."""
    if isinstance(err, OSError) and not _module_is_project(type(err).__module__):
        return f"{type(err).__name__}: {err}"
    return str(err)


def _module_is_project(module: str) -> bool:
    return module.split(".")[0] in PROJECT_PACKAGES
