"""``run(config)``: check, stage, then (unless dry_run) upload and write the receipt.

Order matters: the repo id, the token and the hub connection are checked before the
folder is staged (staging a large model takes a while) and before anything is sent;
the receipt is written only after the hub reported the commit.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from publish.config import PublishConfig
from publish.dataset_card import build_dataset_card
from publish.dataset_card import card_metadata as dataset_metadata
from publish.eval_table import read_eval_table, render_eval_section
from publish.hub import HubFactory, hf_api, upload, write_receipt
from publish.model_card import build_model_card
from publish.model_card import card_metadata as model_metadata
from publish.preflight import PublishError, check_access, check_repo_id, resolve_token
from publish.source_manifest import arm_label, find_arms, load_source_manifest
from publish.staging import (
    CARD_NAME,
    Staged,
    check_apart,
    first_row,
    folder_digest,
    human_bytes,
    list_folder,
    prepare_staging,
    stage_dataset_files,
    stage_model_files,
)
from stage_io.manifest import fingerprint, git_commit, write_manifest
from stage_io.run_lock import hold_lock

logger = logging.getLogger(__name__)

EVAL_SUMMARY_NAME = "eval_summary.json"


def run(config: PublishConfig, *, hub_factory: HubFactory | None = None) -> dict[str, Any]:
    """Publish ``config.source_dir``; returns what was staged and, after an upload, the receipt."""
    source_dir = Path(config.source_dir)
    staging_dir = Path(config.staging_dir)
    if not source_dir.is_dir():
        raise PublishError(f"config key 'source_dir': {source_dir} is not a directory")
    namespace, _ = check_repo_id(config.repo_id, config.allowed_namespaces)
    manifest = load_source_manifest(source_dir)
    summary_path, summary = _read_eval_summary(config)

    hub, who = None, {}
    if not config.dry_run:  # every check that needs the hub, before staging and before sending
        token, token_source = resolve_token(config.token_env)
        hub = (hub_factory or hf_api)(token)
        who = check_access(hub, namespace)
        logger.info(f"publish: token from {token_source}; hub user {who.get('name', 'unknown')}")

    check_apart(staging_dir, source_dir)  # before the lock file is made there
    # One publish per staging_dir: a second one would rebuild repo/ under the first one's upload.
    with hold_lock(staging_dir, "publish", key="staging_dir"):
        return _stage_and_send(config, source_dir, staging_dir, manifest, summary_path, summary, hub, who)


def _stage_and_send(
    config: PublishConfig,
    source_dir: Path,
    staging_dir: Path,
    manifest: dict,
    summary_path: Path | None,
    summary: Any,
    hub,
    who: dict,
) -> dict[str, Any]:
    """Stage the upload folder, write the publish manifest, and (not a dry run) send it."""
    folder = prepare_staging(staging_dir, source_dir)
    source = {"path": str(source_dir), "fingerprint": fingerprint(source_dir)}
    if config.kind == "model":
        staged = _stage_model(config, source_dir, folder, manifest, summary_path, summary, source["fingerprint"])
    else:
        staged = _stage_dataset(config, source_dir, folder, manifest, source["fingerprint"])
    files = list_folder(folder, with_sha256=True)
    result: dict[str, Any] = {
        "folder": folder,
        "files": files,
        "skipped": staged.skipped,
        "staged_fingerprint": folder_digest(files),
        "receipt": None,
    }
    _write_publish_manifest(config, staging_dir, source, summary_path, result)
    for skip in staged.skipped:
        logger.info(f"publish: not uploaded: {skip['path']} ({skip['reason']})")
    total = human_bytes(sum(f["bytes"] for f in files))
    if config.dry_run:
        logger.info(
            f"publish: dry run: staged {len(files)} files ({total}) for {config.kind} repo "
            f"{config.repo_id} in {folder}; nothing was uploaded"
        )
        return result
    commit_message = config.commit_message or _default_commit_message(config, manifest, staged, source["fingerprint"])
    sent = upload(
        hub,
        repo_id=config.repo_id,
        repo_type=config.kind,
        private=config.private,
        folder=folder,
        commit_message=commit_message,
    )
    result["receipt"] = write_receipt(staging_dir, _receipt(config, source, result, sent, who))
    logger.info(
        f"publish: uploaded {len(files)} files ({total}) to {sent['repo_url']}: commit "
        f"{sent['commit_url']}; receipt {result['receipt']}"
    )
    return result


def _write_publish_manifest(
    config: PublishConfig, staging_dir: Path, source: dict, summary_path: Path | None, staged: dict[str, Any]
) -> None:
    """The publish manifest: the inputs with their fingerprints (the source's computed once: a checkpoint
    can be many GB), and every staged file."""
    inputs = {"source": source}
    if summary_path is not None:
        inputs["eval_summary"] = {"path": str(summary_path), "fingerprint": fingerprint(summary_path)}
    files = staged["files"]
    write_manifest(
        staging_dir,
        stage="publish",
        config=config,
        counts={"files": len(files), "bytes": sum(f["bytes"] for f in files), "skipped": len(staged["skipped"])},
        extra={
            "inputs": inputs,
            "mode": "dry_run" if config.dry_run else "upload",
            "staged_folder": str(staged["folder"]),
            "staged_fingerprint": staged["staged_fingerprint"],
            "files": files,
            "skipped": staged["skipped"],
        },
    )


def _receipt(config: PublishConfig, source: dict, staged: dict[str, Any], sent: dict, who: dict) -> dict:
    """What was sent where, by whom, from which source: the receipt written beside the manifest."""
    return {
        "repo_id": config.repo_id,
        "repo_type": config.kind,
        "private_requested": config.private,
        **sent,
        "hub_user": who.get("name"),
        "staged_folder": str(staged["folder"]),
        "staged_fingerprint": staged["staged_fingerprint"],
        "files": len(staged["files"]),
        "bytes": sum(f["bytes"] for f in staged["files"]),
        "source_dir": source["path"],
        "source_fingerprint": source["fingerprint"],
    }


def _read_eval_summary(config: PublishConfig) -> tuple[Path | None, Any]:
    """The summary.json path and its parsed content (any JSON); a missing or broken file is an error."""
    if not config.eval_summary:
        return None, None
    path = Path(config.eval_summary)
    if path.is_dir():
        path = path / "summary.json"
    if not path.is_file():
        raise PublishError(f"config key 'eval_summary': {path} is not a file")
    if config.kind != "model":
        raise PublishError("config key 'eval_summary' applies to kind=model only")
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PublishError(
            f"config key 'eval_summary': {path} is not valid JSON (line {err.lineno}): {err.msg}"
        ) from None


def _stage_model(
    config: PublishConfig,
    source_dir: Path,
    folder: Path,
    manifest: dict,
    summary_path: Path | None,
    summary: Any,
    source_fingerprint: str,
) -> Staged:
    staged = stage_model_files(source_dir, folder)
    if summary_path is not None:  # uploaded byte for byte, so the card's table can be checked against it
        shutil.copy2(summary_path, folder / EVAL_SUMMARY_NAME)
        eval_section = render_eval_section(read_eval_table(summary), EVAL_SUMMARY_NAME)
    else:
        eval_section = render_eval_section(None, EVAL_SUMMARY_NAME)
    metadata = model_metadata(manifest, staged.info, config.license, config.base_model, list(config.datasets))
    card = build_model_card(
        info=staged.info,
        metadata=metadata,
        eval_section=eval_section,
        **_card_provenance(config, manifest, folder, source_dir, source_fingerprint),
    )
    (folder / CARD_NAME).write_text(card, encoding="utf-8")
    return staged


def _stage_dataset(
    config: PublishConfig, source_dir: Path, folder: Path, manifest: dict, source_fingerprint: str
) -> Staged:
    staged = stage_dataset_files(source_dir, folder, config.shard_rows)
    splits = staged.info["splits"]
    stats_path = folder / "annotation_stats.json"
    try:
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PublishError(f"{source_dir / stats_path.name}: not valid JSON (line {err.lineno}): {err.msg}") from None
    metadata = dataset_metadata(splits, config.license, pretty_name=config.repo_id.split("/")[-1])
    card = build_dataset_card(
        stats=stats,
        splits=splits,
        example=first_row(folder, next(iter(splits.values()))),
        data_source=staged.info["data_source"],
        metadata=metadata,
        **_card_provenance(config, manifest, folder, source_dir, source_fingerprint),
    )
    (folder / CARD_NAME).write_text(card, encoding="utf-8")
    return staged


def _card_provenance(
    config: PublishConfig, manifest: dict, folder: Path, source_dir: Path, source_fingerprint: str
) -> dict[str, Any]:
    """The card arguments every kind shares: the repo, the stage's manifest, the staged files, and the
    source and code they come from."""
    return {
        "repo_id": config.repo_id,
        "manifest": manifest,
        "files": list_folder(folder),
        "source_dir": source_dir,
        "source_fingerprint": source_fingerprint,
        "publish_commit": git_commit(),
    }


def _default_commit_message(config: PublishConfig, manifest: dict, staged: Staged, source_fingerprint: str) -> str:
    short = source_fingerprint.split(":")[-1][:12]
    if config.kind == "model":
        return f"Upload {manifest.get('stage', 'model')} model, arm {arm_label(find_arms(manifest))}, source sha256 {short}"
    rows = sum(s["rows"] for s in staged.info["splits"].values())
    return f"Upload annotated dataset ({rows} rows), source sha256 {short}"
