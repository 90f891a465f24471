"""Study paths relative to the study's own folder, and configs shipped with the project.

A study YAML with ``relative_to: study_file`` (``python -m study init`` writes one) names its
paths relative to the folder that holds it, so the folder can be moved or shared:

- ``output_dir``;
- every stage's ``config``;
- the overrides that name an input: ``KEY=VALUE`` where KEY ends in one of ``PATH_KEYS`` and
  VALUE is a relative path (a hub id such as ``org/name``, with no file suffix and no such folder
  there, is left alone).

In any study, a stage ``config`` written ``package:configs/...`` names a config shipped with
the project (the repository this package is installed from), wherever the study folder is.
``relative_to: cwd`` (the repository's configs/study/*.yaml) leaves the rest to the current
directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from stage_io.config import load_config
from study.config import StageRef, StudyConfig

REPO = Path(__file__).resolve().parents[1]
# A stage config named ``package:PATH`` is REPO/PATH.
PACKAGE_PREFIX = "package:"
# Override keys (or their dotted tails) whose value is an input file or folder.
PATH_KEYS = ("source.source", "fitted_state_from")
# Suffixes that make a relative value a file (a hub dataset id has none).
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".yaml", ".yml")


def package_path(path: str) -> str:
    """``package:PATH`` as the shipped config's absolute path; any other value unchanged."""
    return str(REPO / path[len(PACKAGE_PREFIX) :]) if path.startswith(PACKAGE_PREFIX) else path


def _against(base: Path, value: str) -> str:
    return value if not value or Path(value).is_absolute() else str((base / value).resolve())


def _override(base: Path, override: str) -> str:
    key, sep, value = override.partition("=")
    names_input = any(key == k or key.endswith("." + k) for k in PATH_KEYS)
    # A hub id (org/name) stays as it is unless such a folder is there; embedded:NAME is no path.
    is_path = (base / value).exists() or value.startswith(".") or value.endswith(FILE_SUFFIXES)
    if not sep or not names_input or ":" in value or not is_path:
        return override
    return f"{key}={_against(base, value)}"


def resolve_paths(cfg: StudyConfig, study_dir: Path | None) -> StudyConfig:
    """``cfg`` with ``package:`` configs made absolute and, under ``relative_to: study_file``, its
    relative paths resolved against ``study_dir``."""
    base = Path(study_dir).resolve() if study_dir is not None and cfg.relative_to == "study_file" else None
    changes = {}
    for f in dataclasses.fields(cfg):
        ref = getattr(cfg, f.name)
        if isinstance(ref, StageRef):
            config = package_path(ref.config)
            overrides = list(ref.overrides)
            if base is not None:
                config = _against(base, config)
                overrides = [_override(base, o) for o in overrides]
            changes[f.name] = StageRef(config, overrides)
    if base is not None:
        changes["output_dir"] = _against(base, cfg.output_dir)
    return dataclasses.replace(cfg, **changes)


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> StudyConfig:
    """The study YAML at ``path`` (plus overrides), its paths resolved as this module says."""
    return resolve_paths(load_config(StudyConfig, path, overrides), Path(path).parent)


def study_file(args: Sequence[str]) -> Path | None:
    """The study YAML on a ``python -m study`` command line (None when only overrides are given)."""
    return next((Path(a) for a in args if not a.startswith("--") and "=" not in a), None)
