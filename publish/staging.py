"""The staging folder: exactly the files that go to the hub, written locally first.

Layout of ``staging_dir``::

    repo/                  the folder upload_folder sends, as is (card, weights, data, ...)
    manifest.json          this publish run: config, inputs, every file staged and skipped
    upload_receipt.json    written only after the hub confirmed the commit

A dry run stops after writing these (no receipt). Files of the source that are not
published are listed in the manifest with the reason, never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from publish.preflight import PublishError
from stage_io.manifest import MANIFEST_NAME

logger = logging.getLogger(__name__)

REPO_FOLDER = "repo"
RECEIPT_NAME = "upload_receipt.json"
CARD_NAME = "README.md"

# Top-level files of a checkpoint directory that make up the published model, by name: an
# allow-list, so a stray notes.txt or secrets.json next to the weights is never uploaded.
MODEL_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "adapter_config.json",
        MANIFEST_NAME,
        "model.safetensors",
        "model.safetensors.index.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "vocab.txt",
        "tokenizer.model",
        "spiece.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)
# Sharded safetensors weights as transformers names them.
SHARDED_WEIGHTS = re.compile(r"(model|adapter_model)-\d{5}-of-\d{5}\.safetensors")
# Pickle-based files: training state, or weights in a format that runs code on load.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass
class Staged:
    """What a staging step put in the folder and what it left out (with reasons)."""

    folder: Path
    skipped: list[dict[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def skip(self, path: Path | str, reason: str) -> None:
        self.skipped.append({"path": str(path), "reason": reason})


def prepare_staging(staging_dir: Path, source_dir: Path) -> Path:
    """An empty ``staging_dir/repo`` (a previous publish run's is replaced) and no old receipt."""
    check_apart(staging_dir, source_dir)
    staging_dir = staging_dir.resolve()
    folder = staging_dir / REPO_FOLDER
    if folder.exists() and any(folder.iterdir()):
        previous = staging_dir / MANIFEST_NAME
        stage = _manifest_stage(previous)
        if stage != "publish":
            raise PublishError(
                f"config key 'staging_dir': {folder} exists and is not from a publish run "
                f"({previous} is {'missing' if stage is None else f'from stage {stage!r}'}); "
                "choose an empty staging_dir"
            )
        shutil.rmtree(folder)  # the previous publish run's staging: rebuilt from the source
    folder.mkdir(parents=True, exist_ok=True)
    receipt = staging_dir / RECEIPT_NAME
    if receipt.exists():
        # A receipt describes one upload; this run has not uploaded anything yet. The hub's
        # commit history keeps the earlier upload; the log names it.
        try:
            earlier = json.loads(receipt.read_text(encoding="utf-8")).get("commit_url", "?")
        except (OSError, json.JSONDecodeError, AttributeError):
            earlier = "unreadable"
        logger.info(
            f"publish: removed {receipt} of an earlier upload ({earlier}); a new one is written only on success"
        )
        receipt.unlink()
    return folder


def check_apart(staging_dir: Path, source_dir: Path) -> None:
    """Refuse a staging_dir inside the source, or the other way round."""
    staging_dir = staging_dir.resolve()
    source = source_dir.resolve()
    if staging_dir == source or source in staging_dir.parents or staging_dir in source.parents:
        raise PublishError(
            f"config key 'staging_dir': {staging_dir} overlaps config key 'source_dir' {source}; "
            "stage outside the source so neither changes the other"
        )


def _manifest_stage(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data.get("stage") if isinstance(data, dict) else None


def check_inside(path: Path, source_dir: Path) -> None:
    """Refuse a file or folder of the source that is a symbolic link to something outside it."""
    resolved = path.resolve()
    if not resolved.is_relative_to(source_dir.resolve()):
        raise PublishError(
            f"config key 'source_dir': {path} is a symbolic link to {resolved}, outside {source_dir}; "
            "publish never follows links out of the source: replace the link with the file or remove it"
        )


def is_model_file(name: str) -> bool:
    return name in MODEL_FILES or SHARDED_WEIGHTS.fullmatch(name) is not None


def _copy(files: list[tuple[Path, Path]], what: str, source_dir: Path) -> None:
    for src, _ in files:
        check_inside(src, source_dir)
    for src, dst in tqdm(files, desc=f"staging {what}", unit="file", disable=len(files) < 2):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


# ---------------------------------------------------------------- model


def stage_model_files(source_dir: Path, folder: Path) -> Staged:
    """Copy the checkpoint's weights, config and tokenizer files; check they are complete."""
    staged = Staged(folder)
    to_copy = []
    for path in sorted(source_dir.iterdir()):
        name = path.name
        if name.startswith("."):
            staged.skip(name, "hidden file")
        elif path.is_dir():
            staged.skip(name + "/", "subdirectory (intermediate checkpoints, logs): not part of the published model")
        elif name == CARD_NAME:
            staged.skip(name, "replaced by the generated model card")
        elif name.endswith(PICKLE_SUFFIXES):
            staged.skip(name, "pickle-based file (training state or weights): only safetensors are published")
        elif is_model_file(name):
            to_copy.append((path, folder / name))
        else:
            staged.skip(name, "not a known weights, config, tokenizer or manifest file")
    names = {dst.name for _, dst in to_copy}
    is_adapter = "adapter_config.json" in names and "config.json" not in names
    weights = sorted(n for n in names if n.endswith(".safetensors"))
    missing = []
    if "config.json" not in names and not is_adapter:
        missing.append("config.json (or adapter_config.json for a LoRA adapter)")
    if not weights:
        missing.append("*.safetensors weights")
    if not names & {"tokenizer.json", "tokenizer_config.json"}:
        missing.append("tokenizer files (tokenizer.json / tokenizer_config.json)")
    if missing:
        raise PublishError(
            f"config key 'source_dir': {source_dir} is not a complete checkpoint; missing {', '.join(missing)}"
        )
    _copy(to_copy, "model files", source_dir)
    staged.info.update(is_adapter=is_adapter, weights=weights, parameters=count_parameters(folder, weights))
    staged.info.update(check_loads(folder, is_adapter))
    return staged


def count_parameters(folder: Path, weights: list[str]) -> int:
    """Elements stored in the safetensors files, read from their headers (nothing is loaded)."""
    from safetensors import safe_open

    total = 0
    for name in weights:
        with safe_open(str(folder / name), framework="numpy") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def check_loads(folder: Path, is_adapter: bool) -> dict[str, Any]:
    """Load the staged config and tokenizer with transformers: what is uploaded must load."""
    from transformers import AutoConfig, AutoTokenizer

    from annotate.format import SPECIAL_TOKENS

    info: dict[str, Any] = {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # any failure to load is a reason not to publish
        raise PublishError(f"the staged tokenizer in {folder} does not load with transformers: {err}") from err
    vocab = tokenizer.get_vocab()
    info["tokenizer_class"] = type(tokenizer).__name__
    info["vocab_size"] = len(tokenizer)
    info["annotation_tokens"] = {token: token in vocab for token in SPECIAL_TOKENS}
    if is_adapter:
        adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        info["adapter_base"] = adapter.get("base_model_name_or_path")
        info["peft_type"] = adapter.get("peft_type")
        return info
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as err:
        raise PublishError(f"the staged config.json in {folder} does not load with transformers: {err}") from err
    info["model_type"] = getattr(config, "model_type", None)
    info["architectures"] = list(getattr(config, "architectures", None) or [])
    return info


# ---------------------------------------------------------------- dataset


def stage_dataset_files(source_dir: Path, folder: Path, shard_rows: int) -> Staged:
    """Parquet shards under ``data/`` (converted from a save_to_disk dir, or copied), plus the stats."""
    staged = Staged(folder)
    data_dir = source_dir / "data"
    if not data_dir.is_dir():
        raise PublishError(
            f"config key 'source_dir': {source_dir} has no data/ directory (the annotate stage's output)"
        )
    check_inside(data_dir, source_dir)
    stats = source_dir / "annotation_stats.json"
    if not stats.is_file():
        raise PublishError(f"config key 'source_dir': {stats} is missing; the dataset card needs the annotation stats")
    for path in sorted(source_dir.iterdir()):
        if path.name not in ("data", "annotation_stats.json", MANIFEST_NAME):
            staged.skip(
                path.name + ("/" if path.is_dir() else ""),
                "not part of the dataset upload (data/, annotation_stats.json and manifest.json are)",
            )
    if (data_dir / "dataset_dict.json").is_file() or (data_dir / "state.json").is_file():
        splits = _write_shards_from_saved(data_dir, folder, shard_rows)
        staged.info["data_source"] = "datasets save_to_disk directory, converted to parquet"
    else:
        splits = _copy_parquet_shards(data_dir, folder, staged, source_dir)
        staged.info["data_source"] = "parquet shards, copied as written"
    _copy(
        [(stats, folder / stats.name), (source_dir / MANIFEST_NAME, folder / MANIFEST_NAME)],
        "dataset files",
        source_dir,
    )
    staged.info["splits"] = describe_splits(folder, splits)
    return staged


def _write_shards_from_saved(data_dir: Path, folder: Path, shard_rows: int) -> dict[str, list[str]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(data_dir))
    except Exception as err:
        raise PublishError(f"{data_dir} does not load with datasets.load_from_disk: {err}") from err
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    splits: dict[str, list[str]] = {}
    for split, dataset in parts.items():
        if len(dataset) == 0:
            raise PublishError(f"{data_dir}: split {split!r} has no rows; nothing to publish")
        num_shards = math.ceil(len(dataset) / shard_rows)
        names = []
        for index in tqdm(range(num_shards), desc=f"writing {split} shards", unit="shard", disable=num_shards < 2):
            name = f"data/{split}-{index:05d}-of-{num_shards:05d}.parquet"
            (folder / "data").mkdir(parents=True, exist_ok=True)
            dataset.shard(num_shards=num_shards, index=index, contiguous=True).to_parquet(str(folder / name))
            names.append(name)
        splits[split] = names
    return splits


def _copy_parquet_shards(data_dir: Path, folder: Path, staged: Staged, source_dir: Path) -> dict[str, list[str]]:
    """Shards directly in data/ form split "train"; shards in data/NAME/ form split NAME."""
    splits: dict[str, list[str]] = {}
    to_copy = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(data_dir)
        if path.suffix != ".parquet" or any(part.startswith(".") for part in rel.parts):
            staged.skip(f"data/{rel.as_posix()}", "not a parquet shard")
            continue
        split = rel.parts[0] if len(rel.parts) > 1 else "train"
        name = f"data/{rel.as_posix()}"
        splits.setdefault(split, []).append(name)
        to_copy.append((path, folder / name))
    if not to_copy:
        raise PublishError(f"{data_dir} holds neither a datasets save_to_disk directory nor parquet shards")
    _copy(to_copy, "parquet shards", source_dir)
    return splits


def describe_splits(folder: Path, splits: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Rows, shards and columns of each split, read from the staged parquet files."""
    import pyarrow.parquet as pq

    described = {}
    for split, names in splits.items():
        rows = 0
        columns: list[tuple[str, str]] = []
        for name in names:
            meta = pq.ParquetFile(folder / name)
            rows += meta.metadata.num_rows
            if not columns:
                columns = [(f.name, str(f.type)) for f in meta.schema_arrow]
        described[split] = {"files": names, "rows": rows, "columns": columns}
    return described


def first_row(folder: Path, split_info: dict[str, Any]) -> dict[str, Any] | None:
    """The first row of a split's first shard (for the card's example), or None."""
    import pyarrow.parquet as pq

    for name in split_info.get("files", []):
        for batch in pq.ParquetFile(folder / name).iter_batches(batch_size=1):
            if batch.num_rows:
                return batch.to_pylist()[0]
    return None


# ---------------------------------------------------------------- listing


def list_folder(folder: Path, with_sha256: bool = False) -> list[dict[str, Any]]:
    """Every staged file with its size (and sha256): what the upload will send."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    files = []
    for path in tqdm(paths, desc="hashing staged files", unit="file", disable=not with_sha256 or len(paths) < 2):
        entry: dict[str, Any] = {"path": path.relative_to(folder).as_posix(), "bytes": path.stat().st_size}
        if with_sha256:
            entry["sha256"] = _sha256(path)
        files.append(entry)
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_digest(files: list[dict[str, Any]]) -> str:
    """One sha256 over every staged file's path and sha256 (all files, manifest.json included)."""
    digest = hashlib.sha256()
    for entry in files:
        digest.update(f"{entry['path']}\0{entry['sha256']}\n".encode())
    return "sha256:" + digest.hexdigest()


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def files_section(files: list[dict[str, Any]]) -> str:
    """Markdown table of the staged files (for the cards)."""
    lines = ["## Files", "", "| file | size |", "| --- | --- |"]
    lines += [f"| `{f['path']}` | {human_bytes(f['bytes'])} |" for f in files]
    return "\n".join(lines) + "\n"
