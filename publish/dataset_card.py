"""The dataset card (README.md) of an annotated dataset: contents, format, stats, provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from huggingface_hub import DatasetCardData

from annotate.format import (
    ANNOTATION_CLOSE,
    ANNOTATION_OPEN,
    DEFAULT_KEYS,
    KEY_VALUE_SEPARATOR,
    TAG_SEPARATOR,
)
from publish.source_manifest import (
    CITATION,
    PAPER,
    config_yaml,
    find_list_of_strings,
    md_escape,
    provenance_section,
    versions_section,
)
from publish.staging import files_section
from stage_io.report_format import significant
from stage_io.report_format import table as markdown_table

MAX_STAT_ROWS = 40  # longer stat mappings (e.g. value counts) are cut, the rest stays in the file
MAX_CELL_CHARS = 160  # longer list cells (e.g. top values) are cut
EXAMPLE_CHARS = 400
INTRO = (
    "Text chunks with `key:value` annotations, written by the annotate stage of the annotation-anchored "
    "training project for annotation-anchored training ({paper}). The annotations describe each "
    "chunk's semantics (topic, entities, setting, style, ...); a model pretrained on annotated text "
    "learns to choose them before it writes, which keeps its semantic diversity through fine-tuning. "
    "Tags need not be accurate: what matters is a broad distribution over semantic choices.\n"
)
FORMAT_TEXT = (
    "An annotation is a set of `key{kv}value` tags between the delimiters "
    "`{open}` and `{close}` (special tokens in the project's tokenizers), "
    "tags separated by {tags}, key and value by the first "
    "`{kv}`. Keys are lower-case; values keep their case and hold no whitespace "
    "(runs of whitespace become `_`). Tags are in the schema's key order."
)
PARSE_TEXT = (
    "Parse and render them with the project's `annotate.format` (`parse_annotation`, `render_annotation`, "
    "`tags_from_records`), the one definition of the format."
)


def size_category(rows: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ):
        if rows < limit:
            return name
    return "n>100M"


def card_metadata(splits: Mapping[str, Mapping[str, Any]], license: str, pretty_name: str) -> DatasetCardData:
    total = sum(s["rows"] for s in splits.values())
    data_files = [{"split": split, "path": _split_glob(info["files"])} for split, info in splits.items()]
    return DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        tags=["annotation-anchored", "annotations", "semantic-diversity"],
        task_categories=["text-generation"],
        size_categories=[size_category(total)],
        configs=[{"config_name": "default", "data_files": data_files}],
    )


def _split_glob(files: list[str]) -> str | list[str]:
    """The data_files entry of a split: its folder glob when it has one, else the file list."""
    folders = {f.rsplit("/", 1)[0] for f in files}
    if len(folders) == 1 and folders != {"data"}:
        return f"{folders.pop()}/*.parquet"
    return files if len(files) > 1 else files[0]


def build_dataset_card(
    *,
    repo_id: str,
    manifest: Mapping[str, Any],
    stats: Any,
    splits: Mapping[str, Mapping[str, Any]],
    example: Mapping[str, Any] | None,
    data_source: str,
    metadata: DatasetCardData,
    files: list[dict[str, Any]],
    source_dir: Path,
    source_fingerprint: str,
    publish_commit: str | None,
) -> str:
    parts = [
        f"---\n{metadata.to_yaml()}\n---\n",
        f"# {repo_id.split('/')[-1]}\n",
        INTRO.format(paper=PAPER),
        _contents_section(repo_id, splits, data_source),
        _format_section(manifest, example),
        _stats_section(stats),
        provenance_section(manifest, source_dir, source_fingerprint),
        "### Annotate config\n\nThe resolved config of the annotate run (also in `manifest.json`):\n\n"
        f"```yaml\n{config_yaml(manifest)}```\n",
        files_section(files),
        versions_section(manifest, publish_commit),
        CITATION,
    ]
    return "\n".join(parts)


def _contents_section(repo_id: str, splits: Mapping[str, Mapping[str, Any]], data_source: str) -> str:
    split_rows = [(md_escape(s), f"{info['rows']:,}", len(info["files"])) for s, info in splits.items()]
    first = next(iter(splits.values()))
    column_rows = [(f"`{md_escape(name)}`", f"`{md_escape(tp)}`") for name, tp in first["columns"]]
    lines = [
        "## Contents",
        "",
        f"Data: {data_source}.",
        "",
        *markdown_table(["split", "rows", "shards"], split_rows, spaced=True),
        "",
        "Columns (Arrow types):",
        "",
        *markdown_table(["column", "type"], column_rows, spaced=True),
    ]
    lines += ["", f"Load it with `datasets.load_dataset({repo_id!r})`, or read the parquet shards directly."]
    return "\n".join(lines) + "\n"


def _format_section(manifest: Mapping[str, Any], example: Mapping[str, Any] | None) -> str:
    found = find_list_of_strings(manifest, "keys")
    if found:
        key_source, keys = f"from the annotate config (`{found[0]}`)", found[1]
    else:
        key_source, keys = (
            "`annotate.format.DEFAULT_KEYS` (the annotate manifest records no key list)",
            list(DEFAULT_KEYS),
        )
    lines = [
        "## Annotation format",
        "",
        FORMAT_TEXT.format(
            kv=KEY_VALUE_SEPARATOR,
            open=ANNOTATION_OPEN,
            close=ANNOTATION_CLOSE,
            tags="one space" if TAG_SEPARATOR == " " else repr(TAG_SEPARATOR),
        ),
        "",
        f"Keys, {key_source}: " + ", ".join(f"`{k}`" for k in keys) + ".",
        "",
        PARSE_TEXT,
    ]
    shown = _example_fields(example)
    if shown:
        lines += ["", "The first row of the data, fields that carry an annotation:", ""]
        for name, text in shown:
            lines += [f"- `{md_escape(name)}`:", "", "  ```text", f"  {text}", "  ```"]
    return "\n".join(lines) + "\n"


def _example_fields(example: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not example:
        return []
    shown = []
    for name, value in example.items():
        if isinstance(value, str) and ANNOTATION_OPEN in value:
            text = value if len(value) <= EXAMPLE_CHARS else value[:EXAMPLE_CHARS] + " [...]"
            shown.append((name, text.replace("\n", " ")))
    return shown


def _stats_section(stats: Any) -> str:
    """Tables of annotation_stats.json, whatever its shape: scalars, sections, per-key rows."""
    lines = ["## Annotation statistics", "", "From `annotation_stats.json` (uploaded with the data):", ""]
    if not isinstance(stats, Mapping):
        lines.append(f"The file holds a {type(stats).__name__}, not a mapping; see the file itself.")
        return "\n".join(lines) + "\n"
    not_shown: list[str] = []
    lines += _key_value_table({k: v for k, v in stats.items() if not isinstance(v, Mapping)}, "", not_shown)
    for key, section in stats.items():
        if isinstance(section, Mapping):
            lines += _section(str(key), section, not_shown)
    if not_shown:
        lines += [
            "",
            "Entries not shown (see the file): "
            + ", ".join(f"`{md_escape(k)}`" for k in not_shown[:30])
            + (f" and {len(not_shown) - 30} more" if len(not_shown) > 30 else "")
            + ".",
        ]
    return "\n".join(lines) + "\n"


def _section(name: str, section: Mapping[str, Any], not_shown: list[str]) -> list[str]:
    """A mapping of mappings (one row per key: coverage, entropy, ...) becomes one wide table;
    any other mapping a key/value table, with its nested mappings as tables of their own."""
    lines = ["", f"### {md_escape(name)}", ""]
    if not section:
        return lines + ["(empty)"]
    if all(isinstance(v, Mapping) for v in section.values()):
        columns = list(dict.fromkeys(c for row in section.values() for c in row))
        rows = list(section.items())
        cells = [
            [md_escape(entry), *_row_cells(f"{name}.{entry}", row, columns, not_shown)]
            for entry, row in rows[:MAX_STAT_ROWS]
        ]
        lines += markdown_table(["entry", *map(md_escape, columns)], cells, spaced=True)
        if len(rows) > MAX_STAT_ROWS:
            lines.append(f"\n{len(rows) - MAX_STAT_ROWS} more entries in `annotation_stats.json`.")
        return lines
    lines += _key_value_table({k: v for k, v in section.items() if not isinstance(v, Mapping)}, f"{name}.", not_shown)
    for key, value in section.items():
        if isinstance(value, Mapping):
            lines += _section(f"{name}.{key}", value, not_shown)
    return lines


def _row_cells(name: str, row: Mapping[str, Any], columns: list[str], not_shown: list[str]) -> list[str]:
    """One row's cells of a wide table: empty where the row lacks the column, named in ``not_shown``
    (and empty) where its value cannot be shown."""
    cells = []
    for column in columns:
        cell = _cell(row.get(column)) if column in row else ""
        if cell is None:
            not_shown.append(f"{name}.{column}")
        cells.append(cell or "")
    return cells


def _key_value_table(entries: Mapping[str, Any], prefix: str, not_shown: list[str]) -> list[str]:
    rows = []
    for key, value in entries.items():
        cell = _cell(value)
        if cell is None:
            not_shown.append(prefix + str(key))
        else:
            rows.append((key, cell))
    if not rows:
        return []
    if len(rows) > MAX_STAT_ROWS and all(_number(v) is not None for v in entries.values()):
        rows.sort(key=lambda kv: -_number(entries[kv[0]]))  # the largest counts first when cut
    lines = markdown_table(["entry", "value"], [(md_escape(k), cell) for k, cell in rows[:MAX_STAT_ROWS]], spaced=True)
    if len(rows) > MAX_STAT_ROWS:
        lines.append(f"\n{len(rows) - MAX_STAT_ROWS} more entries in `annotation_stats.json`.")
    return lines


def _cell(value: Any) -> str | None:
    """A table cell: scalars formatted, short lists of scalars or pairs (``[value, count]``)
    joined; None for anything else."""
    if _is_scalar(value):
        return _fmt(value)
    if isinstance(value, list):
        items = []
        for item in value:
            if _is_scalar(item):
                items.append(_fmt(item))
            elif isinstance(item, list) and len(item) == 2 and all(_is_scalar(x) for x in item):
                items.append(f"{_fmt(item[0])} ({_fmt(item[1])})")
            else:
                return None
        text = ", ".join(items)
        return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + " ..."
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return significant(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return md_escape(value)
