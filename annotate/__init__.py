"""The annotate stage: chunk documents, tag each chunk with ``key:value`` annotations.

Public API (other stages import only these, plus ``annotate.format``):

- ``AnnotateConfig`` and ``run(config)``: the stage (``python -m annotate CONFIG.yaml key=value``);
- ``load_annotator(path)``: the annotator an annotate run saved, to tag new text the same way;
- the annotation format (delimiters, ``Tag``, render / parse / split), re-exported from
  ``annotate.format``.
"""

from annotate.annotators import AnnotationResult
from annotate.config import AnnotateConfig
from annotate.format import (
    ANNOTATION_CLOSE,
    ANNOTATION_OPEN,
    DEFAULT_KEYS,
    SPECIAL_TOKENS,
    AnnotationError,
    AnnotationSchema,
    SplitGeneration,
    Tag,
    Tags,
    annotation_char_spans,
    canonical_order,
    make_tags,
    normalise_key,
    normalise_value,
    parse_annotation,
    parse_tags,
    render_annotation,
    render_tags,
    split_generation,
    tags_from_records,
    tags_to_records,
    validate_tags,
)
from annotate.loading import load_annotator
from annotate.stage import run

__all__ = [
    "ANNOTATION_CLOSE",
    "ANNOTATION_OPEN",
    "DEFAULT_KEYS",
    "SPECIAL_TOKENS",
    "AnnotateConfig",
    "AnnotationError",
    "AnnotationResult",
    "AnnotationSchema",
    "SplitGeneration",
    "Tag",
    "Tags",
    "annotation_char_spans",
    "canonical_order",
    "load_annotator",
    "make_tags",
    "normalise_key",
    "normalise_value",
    "parse_annotation",
    "parse_tags",
    "render_annotation",
    "render_tags",
    "run",
    "split_generation",
    "tags_from_records",
    "tags_to_records",
    "validate_tags",
]
