"""What every annotator gives the stage: the base the annotators build on.

An annotator turns a batch of texts into one ``AnnotationResult`` each: the tags when
it succeeded, or ``status="failed"`` with the raw output and the error when it did not
(the stage records failures; it never drops or replaces them).

This module depends on nothing but the format; ``annotate.loading.load_annotator``
(which knows every annotator kind) loads a saved one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from annotate.format import Tags

ANNOTATOR_DIR = "annotator"
ANNOTATOR_FILE = "annotator.json"


@dataclass(frozen=True)
class AnnotationResult:
    tags: Tags  # () unless ok
    status: str  # "ok" | "failed"
    error: str = ""
    raw_output: str = ""


class Annotator(Protocol):
    # Short name written to every record ("offline", "llm:MODEL").
    name: str
    # Version string that changes whenever the annotator's outputs could change.
    version: str

    def annotate_batch(self, ids: Sequence[str], texts: Sequence[str]) -> list[AnnotationResult]:
        """One result per text; ``ids`` seed sampling and find cached work."""
        ...

    def annotate(self, texts: Sequence[str]) -> list[Tags]:
        """Tags per text (``()`` where annotation failed; use annotate_batch to see why)."""
        ...


def code_digest(*module_names: str) -> str:
    """A short hash of the annotator's own source files: outputs change when they do."""
    digest = hashlib.sha256()
    for name in module_names:
        digest.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return digest.hexdigest()[:8]


class AnnotatorLoadError(ValueError):
    """A path that holds no saved annotator."""


def annotator_dir(path: str | Path) -> Path:
    """The annotator/ folder of an annotate output dir (or the folder itself)."""
    path = Path(path)
    if (path / ANNOTATOR_FILE).is_file():
        return path
    if (path / ANNOTATOR_DIR / ANNOTATOR_FILE).is_file():
        return path / ANNOTATOR_DIR
    raise AnnotatorLoadError(
        f"{path}: no saved annotator (expected {path / ANNOTATOR_DIR / ANNOTATOR_FILE}); "
        "run the annotate stage there first"
    )
