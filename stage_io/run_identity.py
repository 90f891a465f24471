"""Run identity: may this config resume the work in an output directory?

Stages resume what they find in their output directory: annotate's work files, the
trainers' checkpoints, eval's generations and scores (by id). That is right after an
interruption and wrong after a config change: the old work would be continued, or
reused, as if the new config had made it (a trainer "resumes" a finished run and trains
nothing; eval keeps samples drawn with other settings).

So a stage records a *run identity* when it starts: its config as flat dotted keys
(``chunking.max_chars``), minus the keys that may change between an interrupted run and
its resume because no output depends on them (batch sizes, thread counts, logging and
save cadence, the output path itself). Before resuming it compares the recorded identity
with the current one; a difference is a ``RunIdentityError`` naming the file, the changed
keys with their old and new values, and how to start over.

Every stage builds its identity with ``config_identity`` and compares with
``check_run_identity`` (a file) or ``compare_identity`` (an identity stored elsewhere,
e.g. inside a checkpoint), so "the config minus what may change on resume" has one
definition. A key that one side lacks counts as null: a config field added later with a
null default does not block resuming an older run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from stage_io.config import config_to_dict
from stage_io.manifest import write_json_atomic

# The usual name of the file holding a run identity (each stage says where it keeps it).
RUN_FILE = "run.json"
# Changed keys spelled out in an error message; the rest are counted.
SHOWN_CHANGES = 5
# Longest value shown in an error message (a prompt template would drown the key names).
SHOWN_VALUE_CHARS = 80

# Flat dotted key -> plain JSON value.
Identity = dict[str, Any]


class RunIdentityError(ValueError):
    """Work in an output directory was made under another config (the message says what to do)."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> Identity:
    """Nested mappings as one level of dotted keys; leaves as plain JSON values.

    Leaves go through JSON (tuples become lists, anything JSON cannot hold becomes its
    ``str``), so an identity equals itself after a round trip through a file.
    """
    flat: Identity = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.loads(json.dumps(value, default=str))
    return flat


def config_identity(config: Any, resumable_keys: Iterable[str] = ()) -> Identity:
    """A config dataclass as flat dotted keys, minus ``resumable_keys``.

    ``resumable_keys`` are the keys that may change between an interrupted run and its
    resume; one naming a section (``logging``) drops every key under it.
    """
    dropped = tuple(resumable_keys)
    return {
        key: value
        for key, value in flatten(config_to_dict(config)).items()
        if not any(key == d or key.startswith(d + ".") for d in dropped)
    }


def changed_keys(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ, sorted (a key one side lacks counts as null)."""
    return sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))


def describe_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """``key: old -> new`` for the first few changed keys, values as JSON, then how many
    more; None when nothing changed."""
    keys = changed_keys(saved, current)
    if not keys:
        return None
    shown = ", ".join(f"{k}: {_show(saved.get(k))} -> {_show(current.get(k))}" for k in keys[:SHOWN_CHANGES])
    hidden = len(keys) - SHOWN_CHANGES
    return shown + (f" and {hidden} more" if hidden > 0 else "")


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


def compare_identity(where: str, saved: Mapping[str, Any], current: Mapping[str, Any], *, start_over: str) -> None:
    """Raise ``RunIdentityError`` if ``current`` differs from ``saved``.

    ``where`` names what holds the saved identity (a file, a checkpoint); ``start_over``
    says how to start over in this stage (a new output_dir, a flag, what to delete).
    """
    changes = describe_changes(saved, current)
    if changes:
        raise RunIdentityError(f"{where}: made by a run with a different config (changed: {changes}); {start_over}")


def read_identity(path: Path, entry: str | None = None) -> Identity | None:
    """The identity recorded in ``path`` (one ``entry`` of it, if given), or None if there is none."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:  # written atomically, so this is damage from outside
        raise RunIdentityError(
            f"{path}: not valid JSON ({err}); delete it only if you know which config made this "
            "output, or use a new output_dir"
        ) from err
    return data if entry is None else data.get(entry)


def write_identity(path: Path, identity: Identity, entry: str | None = None) -> None:
    """Record ``identity`` in ``path`` atomically: the whole file, or one ``entry`` of it."""
    if entry is not None:
        identity = {**(read_identity(path) or {}), entry: identity}
    write_json_atomic(path, identity)


def check_run_identity(
    path: Path,
    identity: Identity,
    *,
    entry: str | None = None,
    create: bool = True,
    start_over: str = "use a new output_dir, or delete the old one to start over",
) -> None:
    """Record ``identity`` in ``path`` the first time; afterwards require it to be unchanged.

    A difference raises ``RunIdentityError``. With ``create=False`` nothing is recorded
    (check only: for a caller that records once the work really starts). With ``entry``,
    ``path`` holds several named identities (eval: one per arm) and only that one is
    checked or added.
    """
    saved = read_identity(path, entry)
    if saved is None:
        if create:
            write_identity(path, identity, entry)
        return
    compare_identity(f"{path} ({entry})" if entry is not None else str(path), saved, identity, start_over=start_over)
