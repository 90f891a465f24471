"""Reading other stages' manifests defensively: arms, base model, training data ids."""

from __future__ import annotations

import pytest

from publish.source_manifest import (
    UNKNOWN,
    arm_label,
    base_model_from_manifest,
    find_arms,
    hub_ids_in_inputs,
    is_anchored,
)


@pytest.mark.parametrize(
    "manifest, label, anchored",
    [
        ({"config": {"arm": "anchored"}}, "anchored", True),
        ({"config": {"arm": "plain"}}, "plain", False),
        (
            {"arm": "anchored", "config": {"data": {"arm": "anchored"}}},
            "anchored",
            True,
        ),  # pretrain: top level + data.arm
        (
            {"config": {"arm": "anchored", "data": {"arm": "plain"}}},
            "anchored (config.arm), plain (config.data.arm)",
            None,
        ),
        ({"config": {"lr": 1}}, UNKNOWN, None),
        ({}, UNKNOWN, None),
        ({"config": ["not", "a", "mapping"]}, UNKNOWN, None),
    ],
)
def test_arms(manifest, label, anchored):
    arms = find_arms(manifest)
    assert arm_label(arms) == label
    assert is_anchored(arms) is anchored


def test_hub_ids_split_into_base_model_and_datasets(tmp_path):
    local = tmp_path / "ns" / "local"
    local.mkdir(parents=True)
    manifest = {
        "inputs": {
            "model": {"path": "Org/base-1b", "fingerprint": "not-a-local-path:Org/base-1b"},
            "data": {"path": "org/sft-mixture"},
            "tokenizer": {"path": "org/tokenizer"},
            "extra": {"path": str(local)},  # a local path is never a hub id
            "odd": "not a mapping",
        },
        "config": {"model_path": "Other/model"},
    }
    assert hub_ids_in_inputs(manifest, models=False) == ["org/sft-mixture"]
    assert base_model_from_manifest(manifest) == "Org/base-1b"  # inputs first, then config keys
    del manifest["inputs"]["model"]
    assert base_model_from_manifest(manifest) == "Other/model"
    assert base_model_from_manifest({"config": {"model_path": "runs/pretrain/anchored"}}) is None
