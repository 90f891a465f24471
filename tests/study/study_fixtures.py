"""Helpers of the study tests (imported by the tests): what a finished step leaves for the study to check."""

from __future__ import annotations

from stage_io.manifest import write_manifest


def write_sft_manifest(step, ids: str = "sha256:aa", optimizer_steps: int = 4, trained: int = 30) -> None:
    """The manifest a finished posttrain ``step`` writes: the fingerprint of its trained ids, its step count."""
    counts = {"trained_ids_sha256": ids, "optimizer_steps": optimizer_steps, "trained": trained}
    write_manifest(step.output_dir, stage="posttrain", config=step.load(), counts=counts)
