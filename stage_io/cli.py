"""The thin command line every stage shares: ``python -m STAGE CONFIG [key=value ...]``."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import typing
from typing import Any, Callable, Sequence

from stage_io.config import ConfigError, field_comments, load_config

PROJECT_PACKAGES = ("stage_io", "annotate", "pretrain", "posttrain", "eval", "publish", "study")


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


def stage_main(
    prog: str, config_cls: type, run: Callable[[Any], Any], argv: Sequence[str] | None = None
) -> int:
    """Parse ``CONFIG [key=value ...]``, build the typed config, call ``run(config)``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m {prog} CONFIG.yaml [key=value ...]\n")
        print(f"Keys of {config_cls.__name__} (dotted for nested sections):")
        print("\n".join(describe_config(config_cls)))
        return 0 if args else 2
    path, overrides = args[0], args[1:]
    if "=" in path:  # no file, only overrides
        path, overrides = None, args
    try:
        config = load_config(config_cls, path, overrides)
    except ConfigError as err:
        print(f"{prog}: config error: {err}", file=sys.stderr)
        return 2
    try:
        run(config)
    except ValueError as err:
        # This project's own input errors (bad file, missing field, refused upload) already
        # say what is wrong and where: print the message, not a traceback. Errors raised
        # inside libraries keep their traceback.
        if type(err).__module__.split(".")[0] not in PROJECT_PACKAGES:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    return 0
