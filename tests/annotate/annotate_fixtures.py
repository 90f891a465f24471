"""Helpers of the annotate tests (imported by the tests and the conftest): the tiny config, input files."""

from __future__ import annotations

import json
from pathlib import Path

from annotate import AnnotateConfig
from stage_io.config import load_config

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "annotate" / "tiny.yaml"
# The columns the stage adds to every record it annotates, corpus chunk or SFT response.
ANNOTATION_COLUMNS = ["tags", "annotation", "status", "error", "raw_output", "annotator", "annotator_version"]


def make_tiny_config(output_dir, *overrides: str) -> AnnotateConfig:
    """configs/annotate/tiny.yaml with an output dir and overrides."""
    return load_config(AnnotateConfig, TINY_CONFIG, [f"output_dir={output_dir}", *overrides])


def records_config(output_dir, records: Path, *overrides: str) -> AnnotateConfig:
    """The tiny YAML reading every record of ``records`` (a JSONL file a test wrote), keeping no extra column."""
    return make_tiny_config(output_dir, f"source.source={records}", "source.limit=null", "keep_columns=[]", *overrides)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
