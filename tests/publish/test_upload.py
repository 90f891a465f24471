"""The upload path: checks before anything is sent, failures leave no receipt, success writes one.

No hub can be reached from the tests, so the three HfApi calls go to a recording
stand-in (conftest.RecordingHub); the checks, the staging and the receipt are real.
"""

from __future__ import annotations

import inspect
import json

import pytest
from publish_fixtures import RecordingHub

from publish import PublishConfig, PublishError, run

TOKEN = "hf_test_token_not_real"


def upload_config(source, staging, kind="model", **overrides) -> PublishConfig:
    values = dict(
        kind=kind,
        source_dir=str(source),
        repo_id="lab/tiny",
        staging_dir=str(staging),
        dry_run=False,
        token_env="TEST_PUBLISH_TOKEN",
    )
    values.update(overrides)
    return PublishConfig(**values)


@pytest.fixture
def token(monkeypatch, no_stored_token):
    monkeypatch.setenv("TEST_PUBLISH_TOKEN", TOKEN)
    return TOKEN


def test_missing_token_fails_before_any_call(checkpoint_dir, tmp_path, no_stored_token):
    hub = RecordingHub()
    with pytest.raises(PublishError, match=r"no hub token.*TEST_PUBLISH_TOKEN.*token_env.*nothing was sent"):
        run(upload_config(checkpoint_dir, tmp_path / "stage"), hub_factory=hub.factory)
    assert hub.calls == [] and hub.tokens == []
    assert not (tmp_path / "stage").exists()  # nothing staged either


def test_stored_token_is_used_when_hf_token_is_unset(checkpoint_dir, tmp_path, monkeypatch, no_stored_token):
    from huggingface_hub import constants

    token_file = tmp_path / "stored_token"
    token_file.write_text("hf_stored_not_real\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    hub = RecordingHub()
    run(upload_config(checkpoint_dir, tmp_path / "stage", token_env="HF_TOKEN"), hub_factory=hub.factory)
    assert hub.tokens == ["hf_stored_not_real"]


def test_another_token_env_never_falls_back_to_hf_token(checkpoint_dir, tmp_path, monkeypatch, no_stored_token):
    """token_env=UNSET with HF_TOKEN and a stored login present: refused, nothing sent."""
    from huggingface_hub import constants

    token_file = tmp_path / "stored_token"
    token_file.write_text("hf_stored_not_real\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    monkeypatch.setenv("HF_TOKEN", "hf_env_not_real")
    hub = RecordingHub()
    with pytest.raises(PublishError, match=r"UNSET.*token_env.*not used.*nothing was sent"):
        run(upload_config(checkpoint_dir, tmp_path / "stage", token_env="UNSET"), hub_factory=hub.factory)
    assert hub.calls == [] and hub.tokens == []


@pytest.mark.parametrize(
    "repo_id", ["no-namespace", "a/b/c", "lab/bad--name", "lab/has space", "/name", "lab/", "lab/name.git"]
)
def test_malformed_repo_id_fails_before_any_call(checkpoint_dir, tmp_path, token, repo_id):
    hub = RecordingHub()
    for dry in (True, False):
        with pytest.raises(PublishError, match="repo_id"):
            run(
                upload_config(checkpoint_dir, tmp_path / "stage", repo_id=repo_id, dry_run=dry), hub_factory=hub.factory
            )
    assert hub.calls == [] and hub.tokens == []
    assert not (tmp_path / "stage").exists()


def test_disallowed_namespace_fails_before_any_call(checkpoint_dir, tmp_path, token):
    hub = RecordingHub()
    config = upload_config(checkpoint_dir, tmp_path / "stage", repo_id="someone-else/tiny", allowed_namespaces=["lab"])
    with pytest.raises(PublishError, match=r"'someone-else' is not in config key 'allowed_namespaces'"):
        run(config, hub_factory=hub.factory)
    assert hub.calls == [] and not (tmp_path / "stage").exists()
    # The same namespace passes once allowed.
    run(upload_config(checkpoint_dir, tmp_path / "stage", allowed_namespaces=["lab"]), hub_factory=hub.factory)
    assert [name for name, _ in hub.calls] == ["whoami", "create_repo", "upload_folder"]


def test_no_network_fails_at_whoami_before_any_upload(checkpoint_dir, tmp_path, token):
    hub = RecordingHub(fail_on="whoami", error=ConnectionError("Name or service not known"))
    with pytest.raises(PublishError, match=r"cannot reach the hub.*nothing was sent"):
        run(upload_config(checkpoint_dir, tmp_path / "stage"), hub_factory=hub.factory)
    assert [name for name, _ in hub.calls] == ["whoami"]
    assert hub.tokens == [TOKEN]
    assert not (tmp_path / "stage" / "upload_receipt.json").exists()


def test_offline_real_client_fails_clearly(checkpoint_dir, tmp_path, token, monkeypatch):
    """The real HfApi in offline mode (set for all tests) raises a connection error at whoami."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PublishError, match=r"cannot reach the hub \(no network or offline mode: OfflineModeIsEnabled"):
        run(upload_config(checkpoint_dir, tmp_path / "stage"))
    assert not (tmp_path / "stage").exists()


def test_rejected_token_fails_before_any_upload(checkpoint_dir, tmp_path, token):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx2.Response(401, request=httpx2.Request("GET", "https://huggingface.co/api/whoami-v2"))
    hub = RecordingHub(fail_on="whoami", error=HfHubHTTPError("401 Unauthorized", response=response))
    with pytest.raises(PublishError, match=r"rejected the token \(HTTP 401\)"):
        run(upload_config(checkpoint_dir, tmp_path / "stage"), hub_factory=hub.factory)
    assert [name for name, _ in hub.calls] == ["whoami"]


def test_namespace_the_token_cannot_write_fails_before_any_upload(checkpoint_dir, tmp_path, token):
    hub = RecordingHub(user="alice", orgs=("lab",))
    with pytest.raises(PublishError, match=r"belongs to 'alice'.*'bob' is not one of them"):
        run(upload_config(checkpoint_dir, tmp_path / "stage", repo_id="bob/tiny"), hub_factory=hub.factory)
    assert [name for name, _ in hub.calls] == ["whoami"]


def test_success_writes_a_receipt_with_what_the_hub_returned(checkpoint_dir, tmp_path, token):
    hub = RecordingHub()
    staging = tmp_path / "stage"
    result = run(upload_config(checkpoint_dir, staging), hub_factory=hub.factory)
    assert hub.tokens == [TOKEN]
    assert [name for name, _ in hub.calls] == ["whoami", "create_repo", "upload_folder"]
    create, upload = hub.calls[1][1], hub.calls[2][1]
    assert create == {"repo_id": "lab/tiny", "repo_type": "model", "private": True, "exist_ok": True}
    assert upload["folder_path"] == str((staging / "repo").resolve()) and upload["repo_type"] == "model"
    assert "arm anchored" in upload["commit_message"]
    # Every call the stand-in saw fits the real HfApi's signature.
    from huggingface_hub import HfApi

    for name, kwargs in hub.calls:
        inspect.signature(getattr(HfApi, name)).bind(HfApi(), **kwargs)

    receipt_path = staging / "upload_receipt.json"
    assert result["receipt"] == receipt_path
    receipt = json.loads(receipt_path.read_text())
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert receipt["commit_sha"] == sha
    assert receipt["commit_url"] == f"https://huggingface.co/lab/tiny/commit/{sha}"
    assert receipt["repo_url"] == "https://huggingface.co/lab/tiny"
    assert receipt["hub_user"] == "alice"
    manifest = json.loads((staging / "manifest.json").read_text())
    assert manifest["mode"] == "upload"
    assert receipt["staged_fingerprint"] == manifest["staged_fingerprint"]
    assert receipt["files"] == len(manifest["files"])
    # The token is never written anywhere.
    for path in staging.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_failed_upload_leaves_no_receipt(checkpoint_dir, tmp_path, token):
    staging = tmp_path / "stage"
    run(upload_config(checkpoint_dir, staging), hub_factory=RecordingHub().factory)
    assert (staging / "upload_receipt.json").exists()  # an earlier, successful upload

    hub = RecordingHub(fail_on="upload_folder", error=ConnectionResetError("connection reset by peer"))
    with pytest.raises(PublishError, match=r"upload was not completed.*no receipt was written") as err:
        run(upload_config(checkpoint_dir, staging), hub_factory=hub.factory)
    assert "uploaded " not in str(err.value)
    assert [name for name, _ in hub.calls] == ["whoami", "create_repo", "upload_folder"]
    assert not (staging / "upload_receipt.json").exists()  # the old receipt does not describe this run
    assert (staging / "repo" / "README.md").exists()  # the staged folder stays for inspection or a retry


def test_failed_create_repo_uploads_nothing(checkpoint_dir, tmp_path, token):
    hub = RecordingHub(fail_on="create_repo", error=RuntimeError("403 Forbidden"))
    with pytest.raises(PublishError, match=r"nothing was uploaded and no receipt was written"):
        run(upload_config(checkpoint_dir, tmp_path / "stage"), hub_factory=hub.factory)
    assert [name for name, _ in hub.calls] == ["whoami", "create_repo"]
    assert not (tmp_path / "stage" / "upload_receipt.json").exists()


def test_dataset_upload_uses_the_dataset_repo_type(dataset_dir, tmp_path, token):
    hub = RecordingHub()
    run(upload_config(dataset_dir, tmp_path / "stage", kind="dataset", private=False), hub_factory=hub.factory)
    create, upload = hub.calls[1][1], hub.calls[2][1]
    assert create["repo_type"] == "dataset" and create["private"] is False
    assert upload["repo_type"] == "dataset" and "6 rows" in upload["commit_message"]
    receipt = json.loads((tmp_path / "stage" / "upload_receipt.json").read_text())
    assert receipt["repo_url"] == "https://huggingface.co/datasets/lab/tiny"
    assert receipt["repo_type"] == "dataset"
