"""Is a saved file whole? Cheap structural checks of the files checkpoints are made of.

A job killed while writing, or a disk that filled up, leaves files cut short. Loaded as
they are, they fail deep inside safetensors, torch or json with a traceback that names
none of our keys, or worse, are skipped without a word (accelerate ignores RNG states it
cannot read). These checks read each file's own structure instead:

- ``*.safetensors``: the header's length prefix and JSON, and a file size equal to
  header + the largest tensor end offset;
- ``torch.save`` files (``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``): a zip archive whose
  every member's CRC matches (torch writes zip archives since 1.6);
- ``*.json``: parses.

``file_problem`` returns a short reason or None; ``tree_problems`` applies it to every
file under a folder (a checkpoint).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".pkl")


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a whole file of its kind, or None if it looks whole."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.suffix == ".safetensors":
            return _safetensors_problem(path, size)
        if path.suffix in TORCH_SUFFIXES:
            return _torch_problem(path, size)
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{path.name}: unreadable ({type(err).__name__}: {err})"
    return None


def tree_problems(folder: str | Path) -> list[str]:
    """``file_problem`` for every file under ``folder``, as ``relative/path: reason``."""
    folder = Path(folder)
    found = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        problem = file_problem(file)
        if problem:
            found.append(f"{file.relative_to(folder).parent / problem}" if file.parent != folder else problem)
    return found


def _safetensors_problem(path: Path, size: int) -> str | None:
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"{path.name}: truncated ({size} bytes, no safetensors header)"
        (header_len,) = struct.unpack("<Q", prefix)
        if 8 + header_len > size:
            return f"{path.name}: truncated (header of {header_len} bytes in a file of {size})"
        header = json.loads(handle.read(header_len).decode("utf-8"))
    ends = [info["data_offsets"][1] for name, info in header.items() if name != "__metadata__"]
    expected = 8 + header_len + max(ends, default=0)
    if size != expected:
        return f"{path.name}: truncated or padded ({size} bytes, its header says {expected})"
    return None


def _torch_problem(path: Path, size: int) -> str | None:
    if not zipfile.is_zipfile(path):
        return f"{path.name}: truncated or not a torch.save archive ({size} bytes)"
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    if bad is not None:
        return f"{path.name}: corrupt member {bad}"
    return None
