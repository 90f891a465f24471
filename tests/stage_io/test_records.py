import json

import datasets
import pytest

from stage_io.records import RecordSource, RecordSourceError, load_records


def test_embedded_bbc_news_is_real_text():
    ds = load_records(RecordSource(source="embedded:bbc_news"), required_fields=("text", "topic"))
    assert len(ds) == 2225
    assert set(ds["topic"]) == {"business", "entertainment", "politics", "sports", "tech"}
    assert len(set(ds["id"])) == len(ds)
    assert min(len(t) for t in ds["text"]) > 100


def test_jsonl_with_id_field_and_limit(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"doc": f"d{i}", "body": f"text {i}"}) for i in range(5)) + "\n")
    ds = load_records(RecordSource(source=str(path), id_field="doc", limit=3), required_fields=("body",))
    assert ds["id"] == ["d0", "d1", "d2"] and ds["body"][2] == "text 2"


def test_missing_field_lists_columns(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(RecordSourceError, match=r"field 'text' not found \(columns: body\)"):
        load_records(RecordSource(source=str(path)), required_fields=("text",))


def test_non_utf8_and_bad_json_name_the_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(RecordSourceError, match=r"docs.jsonl:2: not valid UTF-8"):
        load_records(RecordSource(source=str(path)))
    path.write_text('{"text": "fine"}\n{"text": \n')
    with pytest.raises(RecordSourceError, match=r"docs.jsonl:2: not valid JSON"):
        load_records(RecordSource(source=str(path)))


def test_missing_file_and_duplicate_ids(tmp_path):
    with pytest.raises(RecordSourceError, match="no such file"):
        load_records(RecordSource(source=str(tmp_path / "absent.jsonl")))
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n')
    with pytest.raises(RecordSourceError, match="duplicate id '1'"):
        load_records(RecordSource(source=str(path)))


def test_saved_dataset_dir_and_parquet(tmp_path):
    ds = datasets.Dataset.from_list([{"text": "a"}, {"text": "b"}])
    ds.save_to_disk(str(tmp_path / "saved"))
    assert load_records(RecordSource(source=str(tmp_path / "saved")))["text"] == ["a", "b"]
    ds.to_parquet(str(tmp_path / "one.parquet"))
    assert load_records(RecordSource(source=str(tmp_path / "one.parquet")))["id"] == ["0", "1"]


def test_mixed_column_types_are_a_clear_error(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "a"}\n{"text": ["b", "c"]}\n')
    with pytest.raises(RecordSourceError, match="different types"):
        load_records(RecordSource(source=str(path)))


def test_embedded_limit_reads_only_what_it_needs():
    ds = load_records(RecordSource(source="embedded:bbc_news", limit=3))
    assert len(ds) == 3 and ds["id"][0] == "business/001"


def test_a_missing_field_names_the_config_key_that_chose_it(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"body": "a text"}\n')
    with pytest.raises(RecordSourceError, match=r"field 'text' not found \(columns: body\); set text_field to"):
        load_records(RecordSource(source=str(path)), required_fields={"text": "text_field"})
