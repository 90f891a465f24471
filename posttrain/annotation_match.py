"""Anchored SFT must use the annotation schema and annotator the model was pretrained with.

The anchored arm trains ``prompt || annotation || response`` with the annotation masked: the
model is meant to sample annotations from what pretraining taught it. SFT annotations with
other keys, or written by another annotator, put tags in the prompt side of training that the
model never saw in pretraining. So before training, the SFT annotations' schema and annotator
identity (their annotate run's ``manifest.json`` config and ``annotator/annotator.json``) are
compared with those of the annotations the model was pretrained on (found through the model's
pretrain ``manifest.json``, ``inputs.annotations``), and a difference is refused, naming both.

A model without a pretrain manifest (a hub id, a checkpoint made elsewhere) or annotations
without an annotate manifest cannot be checked: that is recorded as ``checked: false`` with
the reason, never silently passed.
"""

from __future__ import annotations

import json
from pathlib import Path

from stage_io.manifest import read_manifest


class AnnotationMismatchError(ValueError):
    """SFT annotations made with another schema or annotator than the pretraining annotations."""


def annotation_identity(annotate_dir: Path) -> dict | None:
    """Schema and annotator of one annotate output dir (None: no annotate manifest with a config)."""
    manifest = read_manifest(annotate_dir)
    if manifest is None or "schema" not in (manifest.get("config") or {}):
        return None
    info_path = annotate_dir / "annotator" / "annotator.json"
    annotator = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    return {
        "dir": str(annotate_dir),
        "schema": manifest["config"]["schema"],
        "annotator": annotator.get("version") or manifest["config"].get("annotator", {}).get("kind"),
    }


def pretraining_annotations_dir(model_path: str) -> Path | None:
    """The annotate output dir the model at ``model_path`` was pretrained on (None: unknown)."""
    manifest = read_manifest(Path(model_path)) if Path(model_path).is_dir() else None
    if manifest is None or manifest.get("stage") != "pretrain":
        return None
    recorded = (manifest.get("inputs") or {}).get("annotations")  # write_manifest: {"path": ..., "fingerprint": ...}
    data_dir = recorded.get("path") if isinstance(recorded, dict) else recorded
    if not data_dir:
        return None
    path = Path(data_dir)
    return path.parent if path.name == "data" else path


def check_annotation_match(model_path: str, sft_annotations: str) -> dict:
    """Refuse SFT annotations whose schema or annotator differ from the pretraining annotations'.

    Returns what was compared (for the manifest); raises ``AnnotationMismatchError`` on a difference.
    """
    corpus_dir = pretraining_annotations_dir(model_path)
    if corpus_dir is None:
        return {"checked": False, "reason": f"model_path={model_path} has no pretrain manifest naming its annotations"}
    corpus = annotation_identity(corpus_dir)
    sft = annotation_identity(Path(sft_annotations))
    if corpus is None or sft is None:
        missing = corpus_dir if corpus is None else sft_annotations
        return {"checked": False, "reason": f"{missing}: no annotate manifest with a schema"}
    differences = []
    if corpus["schema"] != sft["schema"]:
        differences.append(
            f"schema {_schema_text(sft['schema'])} (SFT) vs {_schema_text(corpus['schema'])} (pretraining)"
        )
    if corpus["annotator"] != sft["annotator"]:
        differences.append(f"annotator {sft['annotator']} (SFT) vs {corpus['annotator']} (pretraining)")
    if differences:
        raise AnnotationMismatchError(
            f"data.annotations={sft_annotations}: the SFT annotations differ from the annotations model_path="
            f"{model_path} was pretrained on ({corpus_dir}): {'; '.join(differences)}. Annotate the SFT set with the "
            f"corpus's schema and annotator (annotate mode=sft with its schema and "
            f"annotator.offline.fitted_state_from={corpus_dir}, as the study does)"
        )
    return {
        "checked": True,
        "pretraining_annotations": str(corpus_dir),
        "schema": corpus["schema"],
        "annotator": corpus["annotator"],
    }


def _schema_text(schema: dict) -> str:
    return (
        f"keys=[{','.join(schema.get('keys', []))}] min_tags={schema.get('min_tags')} "
        f"max_tags={schema.get('max_tags')} max_value_chars={schema.get('max_value_chars')}"
    )
