import json
from dataclasses import dataclass

from stage_io.manifest import config_fingerprint, fingerprint, read_manifest, write_manifest


@dataclass
class Cfg:
    lr: float = 0.1


def test_manifest_records_config_inputs_counts_versions(tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("hello")
    write_manifest(tmp_path / "out", stage="demo", config=Cfg(), inputs={"data": data}, counts={"rows": 3})
    manifest = read_manifest(tmp_path / "out")
    assert manifest["stage"] == "demo" and manifest["config"] == {"lr": 0.1}
    assert manifest["counts"] == {"rows": 3}
    assert manifest["inputs"]["data"]["fingerprint"] == fingerprint(data)
    assert "torch" in manifest["versions"] and "python" in manifest["versions"]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["config_fingerprint"] == config_fingerprint(
        Cfg()
    )


def test_fingerprints_change_with_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("1")
    before = fingerprint(tmp_path / "d")
    (tmp_path / "d" / "a.txt").write_text("2")
    assert fingerprint(tmp_path / "d") != before
    assert config_fingerprint(Cfg(0.1)) != config_fingerprint(Cfg(0.2))
    assert fingerprint("org/some-hub-dataset").startswith("not-a-local-path:")
    assert read_manifest(tmp_path / "nothing") is None


def test_verify_outputs_finds_changed_missing_and_cut_files(tmp_path):
    """ "Already complete" is checked against the fingerprints recorded at the end."""
    import torch
    from safetensors.torch import save_file

    from stage_io.manifest import read_manifest, verify_outputs, weight_files, write_manifest

    save_file({"w": torch.zeros(8, 8)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "scores.jsonl").write_text('{"id": 1}\n')
    write_manifest(tmp_path, stage="x", config=Cfg(), outputs={**weight_files(tmp_path), "scores": "scores.jsonl"})
    manifest = read_manifest(tmp_path)
    assert verify_outputs(tmp_path, manifest) == []
    (tmp_path / "scores.jsonl").write_text('{"id": 2}\n')
    (tmp_path / "config.json").unlink()
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    problems = verify_outputs(tmp_path, manifest)
    assert any(p.startswith("scores (") and "differs from the fingerprint" in p for p in problems)
    assert any(p.startswith("config.json (") and p.endswith("is missing") for p in problems)
    assert any(p.startswith("model.safetensors: truncated") for p in problems)
