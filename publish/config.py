"""The publish stage's config: what to upload, where to, and how carefully."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stage_io.config import PositiveInt


@dataclass
class PublishConfig:
    # What source_dir holds: "model" (a pretrain/posttrain checkpoint dir) or
    # "dataset" (an annotate output dir with data/, annotation_stats.json, manifest.json).
    kind: Literal["model", "dataset"]
    # The stage output directory to publish (it must hold that stage's manifest.json).
    source_dir: str
    # Hub repository to create or update, "namespace/name" (user or organisation / repo name).
    repo_id: str
    # Create the repository as private (only applies when it does not exist yet).
    private: bool = True
    # true: write the exact folder that would be uploaded to staging_dir and send nothing.
    dry_run: bool = True
    # Where the upload folder is staged: STAGING_DIR/repo/ is uploaded as is; the publish
    # manifest.json and (after a successful upload only) upload_receipt.json sit beside it.
    staging_dir: str = "runs/publish"
    # summary.json of an eval run, rendered as the model card's results table (null: none).
    eval_summary: str | None = None
    # Namespaces (users or organisations) repo_id may use; an empty list allows any.
    allowed_namespaces: list[str] = field(default_factory=list)
    # Commit message on the hub; "" writes one naming the kind, arm and source fingerprint.
    commit_message: str = ""
    # Name of the environment variable holding the hub token (for HF_TOKEN only, then the stored login).
    token_env: str = "HF_TOKEN"
    # License identifier written to the card's metadata (a hub license id, e.g. apache-2.0, other).
    license: str = "apache-2.0"
    # Hub id of the model this one was fine-tuned from, for the card; null: inferred from the
    # manifest when it names a hub id, else left out.
    base_model: str | None = None
    # Hub ids of the datasets the model was trained on, for the card's metadata (added to any
    # hub ids found among the manifest's inputs).
    datasets: list[str] = field(default_factory=list)
    # Rows per parquet shard when a dataset saved with save_to_disk is converted for upload.
    shard_rows: PositiveInt = 100_000

    def __post_init__(self) -> None:
        if not self.source_dir:
            raise ValueError("source_dir must name the stage output directory to publish")
        if not self.staging_dir:
            raise ValueError("staging_dir must name a directory to stage the upload in")
        if not self.token_env:
            raise ValueError("token_env must name an environment variable (e.g. HF_TOKEN)")
