"""The network side: the three hub calls publish makes, and the receipt of a finished upload.

``HubApi`` is the slice of ``huggingface_hub.HfApi`` used here. ``run`` takes a factory
for it so tests, which have no hub to talk to, can pass a stand-in that records calls;
everything else (cards, staging, checks, receipts) runs for real.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Callable, Protocol

from publish.preflight import PublishError
from publish.staging import RECEIPT_NAME


class HubApi(Protocol):
    def whoami(self) -> dict: ...

    def create_repo(self, repo_id: str, *, repo_type: str, private: bool, exist_ok: bool) -> Any: ...

    def upload_folder(self, *, repo_id: str, folder_path: str, repo_type: str, commit_message: str) -> Any: ...


HubFactory = Callable[[str], HubApi]


def hf_api(token: str) -> HubApi:
    """The real client, authenticated with ``token``."""
    from huggingface_hub import HfApi

    return HfApi(token=token)


def upload(
    hub: HubApi, *, repo_id: str, repo_type: str, private: bool, folder: Path, commit_message: str
) -> dict[str, Any]:
    """Create the repo if needed and push ``folder`` as one commit; what the hub returned."""
    try:
        repo_url = hub.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    except Exception as err:  # any failure here means nothing was uploaded
        raise PublishError(
            f"creating or finding {repo_type} repo {repo_id!r} on the hub failed ({type(err).__name__}: {err}); "
            "nothing was uploaded and no receipt was written"
        ) from err
    try:
        commit = hub.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, commit_message=commit_message
        )
    except Exception as err:
        raise PublishError(
            f"uploading {folder} to {repo_type} repo {repo_id!r} failed ({type(err).__name__}: {err}); "
            "the upload was not completed (no commit was reported) and no receipt was written. "
            "The repo itself may exist, unchanged or empty"
        ) from err
    return {
        "repo_url": str(repo_url),
        "commit_url": getattr(commit, "commit_url", None) or str(commit),
        "commit_sha": getattr(commit, "oid", None),
        "commit_message": getattr(commit, "commit_message", None) or commit_message,
    }


def write_receipt(staging_dir: Path, receipt: dict[str, Any]) -> Path:
    """``upload_receipt.json``, written atomically: it exists only for a finished upload."""
    receipt = {"uploaded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **receipt}
    target = staging_dir / RECEIPT_NAME
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(receipt, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target
