"""``manifest.json``: what produced a stage's output directory.

Every stage writes one beside its outputs: the resolved config, package versions, the
git commit, each input with a fingerprint, and counts of what was produced. A later
stage (or the study runner) reads it to know what it is consuming, and to decide
whether an output is complete and still matches its config.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

from stage_io.config import config_to_dict

MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A manifest that cannot be read."""


# Versions worth knowing beside any number this project produces.
TRACKED_PACKAGES = (
    "annotation-anchored",
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "peft",
    "trl",
    "sentence-transformers",
    "tokenizers",
    "deepspeed",
    "vllm",
    "numpy",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the checkout this code runs from, with '-dirty' if it has changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def fingerprint(path: str | Path) -> str:
    """sha256 over a file's bytes, or over a directory's relative paths and file bytes.

    A source that is not a local path (a hub id) is fingerprinted by its name only;
    record its revision in the config when that matters.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        _hash_file(path, digest)
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = file.relative_to(path).as_posix()
            if rel == MANIFEST_NAME or rel.startswith("."):
                continue
            digest.update(rel.encode() + b"\0")
            _hash_file(file, digest)
    else:
        return "not-a-local-path:" + str(path)
    return "sha256:" + digest.hexdigest()


def fingerprint_files(folder: str | Path, names: Iterable[str]) -> str:
    """sha256 over the named files of ``folder`` (relative names and bytes, in sorted order)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
        _hash_file(folder / name, digest)
    return "sha256:" + digest.hexdigest()


def _hash_file(file: Path, digest: "hashlib._Hash") -> None:
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def config_fingerprint(config: Any) -> str:
    """A stable hash of a resolved config: equal configs, equal hashes."""
    data = json.dumps(config_to_dict(config), sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def write_manifest(
    output_dir: str | Path,
    *,
    stage: str,
    config: Any,
    inputs: Mapping[str, str | Path] | None = None,
    counts: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    outputs: Mapping[str, str | Path] | None = None,
) -> Path:
    """Write ``output_dir/manifest.json`` atomically (a reader never sees half a file).

    ``outputs`` names the files or folders (relative to ``output_dir``) whose fingerprints
    are recorded, so "already complete" can be checked against them (``verify_outputs``).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "stage": stage,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config_to_dict(config),
        "config_fingerprint": config_fingerprint(config),
        "inputs": {name: _input_entry(p) for name, p in (inputs or {}).items()},
        "counts": dict(counts or {}),
        "outputs": {
            name: {"path": str(rel), "fingerprint": fingerprint(output_dir / rel)}
            for name, rel in (outputs or {}).items()
        },
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
    }
    if extra:
        manifest.update(extra)
    target = output_dir / MANIFEST_NAME
    write_json_atomic(target, manifest)
    return target


def _input_entry(path: str | Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(path), "fingerprint": fingerprint(path)}
    if str(path).startswith("embedded:"):  # the BBC corpus with or without the capabilities task's held-out articles
        from stage_io.records import describe_embedded_source  # records imports datasets: only when needed

        embedded = describe_embedded_source(str(path))
        if embedded is not None:
            entry["embedded"] = embedded
    return entry


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename.

    A reader, or a process killed mid-write, never sees half a file. The temporary name is
    unique and hidden (``fingerprint`` skips it), so processes writing the same file at once
    (shards, ranks) never share one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def verify_outputs(output_dir: str | Path, manifest: Mapping[str, Any]) -> list[str]:
    """What no longer matches ``manifest`` in ``output_dir`` (empty: the outputs are as recorded).

    Each recorded output must exist with its recorded fingerprint, and every
    ``*.safetensors`` at the top of ``output_dir`` must be whole (this also covers
    manifests written before outputs were fingerprinted).
    """
    from stage_io.file_integrity import file_problem

    output_dir = Path(output_dir)
    problems = []
    for name, entry in (manifest.get("outputs") or {}).items():
        target = output_dir / entry["path"]
        if not target.exists():
            problems.append(f"{name} ({target}) is missing")
        elif fingerprint(target) != entry["fingerprint"]:
            problems.append(f"{name} ({target}) differs from the fingerprint in {MANIFEST_NAME}")
    for weights in sorted(output_dir.glob("*.safetensors")):
        problem = file_problem(weights)
        if problem:
            problems.append(problem)
    return problems


def set_aside_manifest(output_dir: str | Path) -> Path:
    """Move a manifest whose outputs failed ``verify_outputs`` out of the way (kept, hidden,
    for inspection), so nothing takes the directory as complete any more."""
    source = Path(output_dir) / MANIFEST_NAME
    target = source.with_name(f".{MANIFEST_NAME}.invalid")
    os.replace(source, target)
    return target


def weight_files(output_dir: str | Path) -> dict[str, str]:
    """The model files of an HF checkpoint directory, as ``outputs`` for ``write_manifest``."""
    output_dir = Path(output_dir)
    names = sorted(p.name for p in output_dir.glob("*.safetensors")) + ["config.json"]
    return {name: name for name in names if (output_dir / name).is_file()}


def read_manifest(output_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a finished stage output, or None if there is none."""
    target = Path(output_dir) / MANIFEST_NAME
    if not target.is_file():
        return None
    try:
        return json.loads(target.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(
            f"{target}: not valid JSON ({err}); it was damaged after it was written "
            "(manifests are written atomically): delete it to redo this stage"
        ) from err
