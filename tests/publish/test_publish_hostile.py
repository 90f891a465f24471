"""Publish stages only the files it knows, never follows links out of the source, and owns its staging_dir."""

from __future__ import annotations

import shutil

import pytest
from publish_fixtures import publish_dry_run, write_annotated_dataset

from publish import PublishError
from stage_io.run_lock import RunLockError, hold_lock


def test_only_known_model_files_are_staged(checkpoint_dir, tmp_path):
    source = tmp_path / "ckpt"
    shutil.copytree(checkpoint_dir, source)
    (source / "notes.txt").write_text("hf_secret_token\n")
    (source / "secrets.json").write_text('{"token": "hf_secret"}\n')
    result = publish_dry_run("model", source, tmp_path / "stage")
    staged = {f["path"] for f in result["files"]}
    assert "notes.txt" not in staged and "secrets.json" not in staged
    assert {"model.safetensors", "config.json", "tokenizer.json", "manifest.json"} <= staged
    skipped = {s["path"]: s["reason"] for s in result["skipped"]}
    assert skipped["notes.txt"] == skipped["secrets.json"] == "not a known weights, config, tokenizer or manifest file"


def test_a_link_out_of_the_source_is_refused_naming_it(checkpoint_dir, tmp_path):
    source = tmp_path / "ckpt"
    shutil.copytree(checkpoint_dir, source)
    outside = tmp_path / "private.json"
    outside.write_text('{"secret": 1}\n')
    (source / "tokenizer_config.json").unlink()
    (source / "tokenizer_config.json").symlink_to(outside)
    with pytest.raises(PublishError, match=rf"{source}/tokenizer_config.json is a symbolic link to {outside}, outside"):
        publish_dry_run("model", source, tmp_path / "stage")
    assert not (tmp_path / "stage" / "repo" / "tokenizer_config.json").exists()


def test_a_dataset_shard_linked_out_of_the_source_is_refused(tmp_path):
    source = write_annotated_dataset(tmp_path / "ann")
    outside = tmp_path / "elsewhere.parquet"
    shard = sorted((source / "data").glob("*.parquet"))[0]
    shutil.move(shard, outside)
    shard.symlink_to(outside)
    with pytest.raises(PublishError, match=rf"{shard} is a symbolic link to {outside}, outside"):
        publish_dry_run("dataset", source, tmp_path / "stage")


def test_a_staging_dir_that_is_a_file_is_refused_naming_the_key(checkpoint_dir, tmp_path):
    staging = tmp_path / "stage"
    staging.write_text("a file\n")
    with pytest.raises(OSError, match=rf"staging_dir '{staging}' is an existing file"):
        publish_dry_run("model", checkpoint_dir, staging)


def test_a_second_publish_into_one_staging_dir_is_refused(checkpoint_dir, tmp_path):
    staging = tmp_path / "stage"
    with hold_lock(staging, "publish", key="staging_dir"):
        with pytest.raises(RunLockError, match="holds its lock"):
            publish_dry_run("model", checkpoint_dir, staging)
    assert not (staging / "repo").exists()
