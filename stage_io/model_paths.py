"""Check a model or tokenizer reference before a library loads it, and say what was found.

Handed something that is not a model, transformers answers with a traceback about
``config.json``, a hub repo id, or "couldn't connect to huggingface.co" for a local path
that does not exist. ``check_model`` and ``check_tokenizer`` look first and raise a
``ModelPathError`` naming the config key and what is really there: a missing path, a
file (a JSONL, say), a directory without ``config.json`` (an annotate output, a
tokenizer-only directory, something else), weights cut short, or a hub id that is not
in the local cache while offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stage_io.file_integrity import file_problem

WEIGHT_PATTERNS = (
    "*.safetensors",
    "pytorch_model*.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
# Variables that tell the hub client not to use the network.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class ModelPathError(ValueError):
    """A model or tokenizer reference that does not point at one."""


def looks_local(reference: str) -> bool:
    """A filesystem path rather than a hub id (``org/name`` or ``name``)."""
    return reference.startswith((".", "/", "~")) or reference.count("/") >= 2 or Path(reference).expanduser().exists()


def check_model(reference: str, key: str, revision: str | None = None) -> None:
    """``reference`` (config key ``key``) must be a loadable causal LM: a directory with
    ``config.json`` and whole weights, or a hub id (cached, when offline)."""
    if not reference:
        raise ModelPathError(f"{key} is empty: set it to a model directory or hub id")
    if not looks_local(reference):
        _check_hub_id(reference, key, revision, "config.json")
        return
    path = Path(reference).expanduser()
    _check_local_dir(path, key, "model")
    if not (path / "config.json").is_file():
        raise ModelPathError(f"{key}: '{reference}' is {describe_directory(path)}, not a model (no config.json)")
    _check_config_json(path / "config.json", key, reference)
    weights = [p for pattern in WEIGHT_PATTERNS for p in path.glob(pattern)]
    if not weights:
        raise ModelPathError(
            f"{key}: '{reference}' has config.json but no weights (*.safetensors or pytorch_model.bin)"
        )
    for weight in weights:
        problem = file_problem(weight)
        if problem:
            raise ModelPathError(f"{key}: '{reference}': damaged weights: {problem}")


def check_tokenizer(reference: str, key: str, revision: str | None = None) -> None:
    """``reference`` (config key ``key``) must hold a tokenizer: local files or a (cached) hub id."""
    if not looks_local(reference):
        _check_hub_id(reference, key, revision, "tokenizer_config.json")
        return
    path = Path(reference).expanduser()
    _check_local_dir(path, key, "tokenizer")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelPathError(
            f"{key}: '{reference}' is {describe_directory(path)}, with no tokenizer files "
            f"({', '.join(TOKENIZER_FILES)})"
        )
    for name in ("tokenizer.json", "tokenizer_config.json"):
        problem = file_problem(path / name) if (path / name).is_file() else None
        if problem:
            raise ModelPathError(f"{key}: '{reference}': damaged tokenizer file: {problem}")


def describe_directory(path: Path) -> str:
    """What a directory looks like, for messages: a tokenizer, a stage output, or its first entries."""
    stage = None
    manifest = path / "manifest.json"
    if manifest.is_file():
        try:
            stage = json.loads(manifest.read_text(encoding="utf-8")).get("stage")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            stage = None
    made_by = f" (the output of the {stage} stage)" if stage else ""
    if any((path / name).is_file() for name in TOKENIZER_FILES):
        return "a tokenizer-only directory" + made_by
    if stage:
        return f"the output of the {stage} stage"
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return "an empty directory"
    shown = ", ".join(entries[:6]) + (f" and {len(entries) - 6} more" if len(entries) > 6 else "")
    return f"a directory holding {shown}"


def _check_config_json(config: Path, key: str, reference: str) -> None:
    """config.json must be a JSON object naming its ``model_type`` (what transformers reads first)."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelPathError(f"{key}: '{reference}': damaged config.json (not valid JSON: {err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ModelPathError(
            f"{key}: '{reference}': config.json is not a transformers model config (no \"model_type\")"
        )


def _check_local_dir(path: Path, key: str, what: str) -> None:
    if not path.exists():
        raise ModelPathError(f"{key}: '{path}' does not exist (run the stage that writes it, or fix the path)")
    if not path.is_dir():
        raise ModelPathError(f"{key}: '{path}' is a file ({path.suffix or 'no extension'}), not a {what} directory")


def _check_hub_id(reference: str, key: str, revision: str | None, probe_file: str) -> None:
    """Offline, a hub id must already be in the local cache (else the client's error talks
    about connections); online, the hub client reports a wrong id itself."""
    if not any(os.environ.get(v, "") not in ("", "0") for v in OFFLINE_VARIABLES):
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(reference, probe_file, revision=revision)
    except ValueError as err:  # not a valid repo id either
        raise ModelPathError(f"{key}: '{reference}' is neither a local path nor a valid hub id ({err})") from None
    if not isinstance(found, str):
        raise ModelPathError(
            f"{key}: '{reference}' is not a local path, and as a hub id it is not in the local cache "
            f"while offline ({' or '.join(OFFLINE_VARIABLES)} is set): download it first, or give "
            "a local directory"
        )
