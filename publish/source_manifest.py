"""Reading a stage's manifest.json for the cards: arm, provenance, config, versions.

Manifests come from other stages whose configs keep changing, so every reader here is
defensive: a missing or odd-shaped entry becomes "unknown" or is left out, never a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from publish.preflight import PublishError
from stage_io.manifest import MANIFEST_NAME

UNKNOWN = "unknown"
PAPER = (
    "Springer et al. 2026, *Annotations Mitigate Post-Training Mode Collapse* "
    "([arXiv 2605.09995](https://arxiv.org/abs/2605.09995))"
)


def load_source_manifest(source_dir: Path) -> dict[str, Any]:
    """The manifest of ``source_dir``; its absence or a broken one is an error naming the file."""
    path = source_dir / MANIFEST_NAME
    if not path.is_file():
        raise PublishError(
            f"config key 'source_dir': {source_dir} has no {MANIFEST_NAME}; publish only uploads stage "
            "outputs whose provenance is recorded"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PublishError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}") from None
    if not isinstance(manifest, dict):
        raise PublishError(f"{path}: expected a JSON object at the top level")
    return manifest


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted key, value) in nested mappings, parents before children."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            dotted = f"{path}.{key}" if path else str(key)
            yield dotted, value
            yield from _walk(value, dotted)


def find_arms(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Every training arm a manifest records, by dotted key (``config.arm``, ``config.data.arm``)."""
    found: dict[str, str] = {}
    if isinstance(manifest.get("arm"), str) and manifest["arm"]:
        found["arm"] = manifest["arm"]
    for key, value in _walk(manifest.get("config"), "config"):
        if key.rsplit(".", 1)[-1] == "arm" and isinstance(value, str) and value:
            found[key] = value
    return found


def arm_label(arms: Mapping[str, str]) -> str:
    """One arm name, "unknown", or every distinct arm with its key (never one picked silently).

    Posttrain keeps its arm at ``config.arm``; pretrain may keep a data arm in a section.
    """
    distinct = list(dict.fromkeys(arms.values()))
    if not distinct:
        return UNKNOWN
    if len(distinct) == 1:
        return distinct[0]
    return ", ".join(f"{value} ({key})" for key, value in arms.items())


def is_anchored(arms: Mapping[str, str]) -> bool | None:
    """True when every recorded arm is annotated/anchored, False when none is, None otherwise."""
    if not arms:
        return None
    flags = {("anchored" in v or "annotated" in v) for v in arms.values()}
    return flags.pop() if len(flags) == 1 else None


def as_hub_id(value: Any) -> str | None:
    """``value`` if it is a "namespace/name" hub id and not a local path, else None."""
    if not isinstance(value, str) or value.count("/") != 1 or value.startswith((".", "/", "~")):
        return None
    if Path(value).exists():
        return None
    try:
        validate_repo_id(value)
    except HFValidationError:
        return None
    return value


def input_rows(manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per recorded input: name, path, fingerprint, and the stage that made it."""
    rows = []
    inputs = manifest.get("inputs")
    if not isinstance(inputs, Mapping):
        return rows
    for name, entry in inputs.items():
        entry = entry if isinstance(entry, Mapping) else {"path": entry}
        path = str(entry.get("path", UNKNOWN))
        upstream = ""
        upstream_manifest = Path(path) / MANIFEST_NAME
        if upstream_manifest.is_file():  # one level up the chain, when that output is still here
            try:
                upstream_data = json.loads(upstream_manifest.read_text(encoding="utf-8"))
                upstream = str(upstream_data.get("stage", "")) if isinstance(upstream_data, dict) else ""
            except (OSError, json.JSONDecodeError):
                upstream = "(unreadable manifest)"
        rows.append(
            {
                "name": str(name),
                "path": path,
                "fingerprint": str(entry.get("fingerprint", UNKNOWN)),
                "made_by": upstream,
            }
        )
    return rows


# Input names (manifest ``inputs``) and config keys that, in this project's stages or in
# common trainers, name the model a run started from rather than its data.
MODEL_KEYS = (
    "base_model",
    "model_name_or_path",
    "init_from",
    "model",
    "model_path",
    "pretrained",
    "checkpoint",
)


# Inputs that are neither the model started from nor training data.
OTHER_INPUTS = ("tokenizer", "tokenizer_path")


def _names_a_model(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in MODEL_KEYS


def hub_ids_in_inputs(manifest: Mapping[str, Any], models: bool) -> list[str]:
    """Hub ids among the manifest's inputs: those named like a model (``models=True``), or the data."""
    ids = []
    for row in input_rows(manifest):
        hub_id = as_hub_id(row["path"])
        if row["name"] in OTHER_INPUTS:
            continue
        if hub_id and _names_a_model(row["name"]) == models and hub_id not in ids:
            ids.append(hub_id)
    return ids


def base_model_from_manifest(manifest: Mapping[str, Any]) -> str | None:
    """A hub id the run started from: a model input, or a model key of the config."""
    from_inputs = hub_ids_in_inputs(manifest, models=True)
    if from_inputs:
        return from_inputs[0]
    for key, value in _walk(manifest.get("config"), "config"):
        if _names_a_model(key):
            hub_id = as_hub_id(value)
            if hub_id:
                return hub_id
    return None


def find_list_of_strings(manifest: Mapping[str, Any], name: str) -> tuple[str, list[str]] | None:
    """The first ``(dotted key, list)`` under the config whose key is ``name`` and value a list of strings."""
    for key, value in _walk(manifest.get("config"), "config"):
        if (
            key.rsplit(".", 1)[-1] == name
            and isinstance(value, list)
            and value
            and all(isinstance(v, str) for v in value)
        ):
            return key, value
    return None


def config_yaml(manifest: Mapping[str, Any]) -> str:
    config = manifest.get("config")
    if config is None:
        return "# the manifest records no config\n"
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)


def md_escape(value: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def provenance_section(manifest: Mapping[str, Any], source_dir: Path, source_fingerprint: str) -> str:
    """Markdown: what made this upload, from which inputs, with which code and versions."""
    lines = [
        "## Provenance",
        "",
        f"- Produced by the `{manifest.get('stage', UNKNOWN)}` stage on {manifest.get('created', UNKNOWN)}.",
        f"- Source directory: `{source_dir}` (fingerprint `{source_fingerprint}`).",
        f"- Config fingerprint: `{manifest.get('config_fingerprint', UNKNOWN)}`.",
        f"- Git commit of the code that produced it: `{manifest.get('git_commit') or UNKNOWN}`.",
        f"- Command: `{md_escape(manifest.get('command', UNKNOWN))}`.",
        "",
    ]
    rows = input_rows(manifest)
    if rows:
        lines += [
            "Inputs (fingerprints are sha256 over the files, see `stage_io.manifest.fingerprint`):",
            "",
            "| input | path | fingerprint | made by stage |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {md_escape(r['name'])} | `{md_escape(r['path'])}` | `{md_escape(r['fingerprint'])}` | {md_escape(r['made_by'] or '-')} |"
            for r in rows
        ]
    else:
        lines.append("The manifest records no inputs.")
    counts = manifest.get("counts")
    if isinstance(counts, Mapping) and counts:
        lines += ["", "Counts recorded by the stage:", "", "| count | value |", "| --- | --- |"]
        lines += [f"| {md_escape(k)} | {md_escape(v)} |" for k, v in counts.items()]
    return "\n".join(lines) + "\n"


def versions_section(manifest: Mapping[str, Any], publish_commit: str | None) -> str:
    lines = ["## Versions", ""]
    versions = manifest.get("versions")
    if isinstance(versions, Mapping) and versions:
        lines += [
            "Package versions of the run that produced these files:",
            "",
            "| package | version |",
            "| --- | --- |",
        ]
        lines += [f"| {md_escape(k)} | {md_escape(v)} |" for k, v in versions.items()]
    else:
        lines.append("The manifest records no package versions.")
    lines += [
        "",
        f"Git commit of the producing run: `{manifest.get('git_commit') or UNKNOWN}`; "
        f"of the publish run: `{publish_commit or UNKNOWN}`.",
    ]
    return "\n".join(lines) + "\n"


CITATION = """## Citation

The method is from:

```bibtex
@inproceedings{springer2026annotations,
  title     = {Annotations Mitigate Post-Training Mode Collapse},
  author    = {Springer and others},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2026},
  eprint    = {2605.09995},
  archivePrefix = {arXiv}
}
```
"""
