"""``sampling.max_annotation_tokens: auto``: the annotation cap derived from the pretraining annotations.

An anchored arm samples an annotation until ``<|/ann|>`` or ``max_annotation_tokens``; a cap
below what pretraining taught the model cuts annotations short (they count as parse
failures), a constant set on one corpus fits another badly. ``auto`` sets it from the data:
the ``QUANTILE`` of the token lengths (delimiters included, with the first anchored arm's
tokenizer) of the annotations in ``metrics.drift.pretraining_annotations``, plus a margin of
``MARGIN`` of it and at least ``MIN_EXTRA`` tokens, so a model that writes a little longer than
the corpus is not cut.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np

from eval.config import EvalConfig
from stage_io.model_paths import check_model
from stage_io.records import RecordSource, load_records

logger = logging.getLogger(__name__)

# Which quantile of the pretraining annotations' token lengths the cap covers.
QUANTILE = 0.99
# Added on top of that quantile, as a fraction of it ...
MARGIN = 0.25
# ... and at least this many tokens.
MIN_EXTRA = 4


def annotation_token_lengths(annotate_dir: str, tokenizer, max_rows: int | None) -> list[int]:
    """Token lengths of the rendered annotations (status ok) in an annotate output dir."""
    data = Path(annotate_dir) / "data"
    if not data.exists():
        raise ValueError(
            f"metrics.drift.pretraining_annotations={annotate_dir}: no data/ there (it must be the "
            "annotate output dir; sampling.max_annotation_tokens=auto reads it)"
        )
    records = load_records(RecordSource(source=str(data), limit=max_rows), required_fields=("annotation",))
    texts = [r["annotation"] for r in records if r.get("status", "ok") == "ok" and r["annotation"]]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def cap_from_lengths(lengths: list[int]) -> tuple[int, float]:
    """The cap (QUANTILE + margin) and the quantile it came from."""
    q = float(np.quantile(lengths, QUANTILE))
    return int(math.ceil(q + max(MIN_EXTRA, MARGIN * q))), q


def resolve_max_annotation_tokens(config: EvalConfig) -> tuple[EvalConfig, dict | None]:
    """``config`` with ``sampling.max_annotation_tokens`` an integer, and how it was derived (None: set)."""
    if config.sampling.max_annotation_tokens != "auto":
        return config, None
    source = config.metrics.drift.pretraining_annotations
    if not source:
        raise ValueError(
            "sampling.max_annotation_tokens=auto derives the cap from the pretraining annotations: "
            "set metrics.drift.pretraining_annotations to their annotate output dir (or set an integer)"
        )
    anchored = [arm for arm in config.arms if arm.mode == "anchored"]
    if not anchored:  # no arm samples an annotation: the cap is never read
        cap, info = 1, {"configured": "auto", "resolved": 1, "reason": "no anchored arm samples an annotation"}
    else:
        from transformers import AutoTokenizer

        arm = anchored[0]
        check_model(arm.model, f"arms[{config.arms.index(arm)}].model (arm '{arm.name}')", arm.revision)
        tokenizer = AutoTokenizer.from_pretrained(arm.model)
        lengths = annotation_token_lengths(source, tokenizer, config.metrics.drift.max_rows)
        if not lengths:
            raise ValueError(
                f"metrics.drift.pretraining_annotations={source}: no annotated chunk to derive "
                "sampling.max_annotation_tokens=auto from"
            )
        cap, q = cap_from_lengths(lengths)
        info = {
            "configured": "auto",
            "resolved": cap,
            "quantile": QUANTILE,
            "quantile_tokens": q,
            "margin": MARGIN,
            "min_extra": MIN_EXTRA,
            "annotations": len(lengths),
            "max_tokens": max(lengths),
            "tokenizer": anchored[0].model,
            "source": source,
        }
        logger.info(
            f"eval: sampling.max_annotation_tokens=auto -> {cap} (p{round(QUANTILE * 100)} of {len(lengths)} "
            f"pretraining annotations = {q:.1f} tokens, + margin; longest {max(lengths)})"
        )
    return dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, max_annotation_tokens=cap)), info
