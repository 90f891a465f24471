"""``load_annotator(path)``: the annotator an annotate run saved, to tag new text the same way.

It gives eval the very annotator that annotated the corpus. It lives apart from the base
module (``annotate.annotators``) because it knows every annotator kind, and each of them
builds on that base.
"""

from __future__ import annotations

import json
from pathlib import Path

from annotate.annotators import ANNOTATOR_FILE, Annotator, AnnotatorLoadError, annotator_dir
from annotate.llm import LLMAnnotator
from annotate.offline import OfflineAnnotator


def load_annotator(path: str | Path, **overrides) -> Annotator:
    """The annotator saved in an annotate output dir, ready for ``annotate(texts)``.

    ``overrides`` go to the annotator's loader (e.g. ``progress=False``, or for an LLM
    annotator ``backend=...`` to run the same prompt on another engine).
    """
    directory = annotator_dir(path)
    info = json.loads((directory / ANNOTATOR_FILE).read_text(encoding="utf-8"))
    kind = info.get("kind")
    if kind == "offline":
        return OfflineAnnotator.load(directory, **overrides)
    if kind == "llm":
        return LLMAnnotator.load(directory, **overrides)
    raise AnnotatorLoadError(f"{directory / ANNOTATOR_FILE}: unknown annotator kind {kind!r}")
