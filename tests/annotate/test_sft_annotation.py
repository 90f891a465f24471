"""SFT responses annotated like corpus chunks, in both formats; malformed examples recorded."""

import pyarrow.parquet as pq
import pytest
from annotate_fixtures import ANNOTATION_COLUMNS, records_config, write_jsonl

from annotate import run
from annotate.config import SFTConfig
from annotate.sft import MalformedExample, response_of
from stage_io.records import RecordSource, load_records

SFT_COLUMNS = ["response", *ANNOTATION_COLUMNS]


def chat(*turns):
    return [{"role": role, "content": content} for role, content in turns]


def test_messages_format(tmp_path, fitted_run):
    rows = [
        {
            "id": "ok1",
            "messages": chat(
                ("user", "Write about the election."),
                ("assistant", "Tony Blair won the election in May 2005 in London."),
            ),
        },
        {
            "id": "multi",
            "messages": chat(
                ("system", "Be brief."),
                ("user", "Hi"),
                ("assistant", "Hello there."),
                ("user", "And shares?"),
                ("assistant", "Shares fell 3% on Friday."),
            ),
        },
        {"id": "noasst", "messages": chat(("user", "Anyone?"))},
        {"id": "empty", "messages": chat(("user", "Say nothing"), ("assistant", "   "))},
    ]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    out = tmp_path / "out"
    stats = run(records_config(out, data, "mode=sft", f"annotator.offline.fitted_state_from={fitted_run[0]}"))
    ds = load_records(RecordSource(source=str(out / "data")))
    assert set(ds.column_names) == {"id", "messages", *SFT_COLUMNS}
    (shard,) = (out / "data").glob("*.parquet")
    assert pq.read_schema(shard).names == ["id", "messages", *SFT_COLUMNS]
    assert "messages" in ds.column_names and ds["messages"][1] == rows[1]["messages"]
    assert ds["id"] == ["ok1", "multi", "noasst", "empty"]
    assert ds["response"][:2] == ["Tony Blair won the election in May 2005 in London.", "Shares fell 3% on Friday."]
    assert ds["status"] == ["ok", "ok", "skipped", "skipped"]
    assert ds["error"][2].startswith("malformed example: no assistant turn in 'messages' (roles: user;")
    assert ds["error"][3] == "malformed example: the last assistant turn in 'messages' is empty"
    assert {"key": "entity", "value": "Tony_Blair"} in ds["tags"][0]
    assert ds["annotation"][0].startswith("<|ann|>topic:") and ds["annotation"][2] == ""
    # The corpus run's annotator, reused as is: same version in both outputs.
    corpus = load_records(RecordSource(source=str(fitted_run[0] / "data")))
    assert ds["annotator_version"][0] == corpus["annotator_version"][0]
    assert stats["overall"]["ok"] == 2 and stats["overall"]["skipped"] == 2


def test_prompt_completion_format(tmp_path, fitted_run):
    rows = [
        {"prompt": "Tell a story", "completion": "Once upon a time in Paris, Marie found a letter."},
        {"prompt": "Numbers?", "completion": "Profits rose 76% to $1.1bn."},
        {"prompt": "Nothing", "completion": ""},
    ]
    data = write_jsonl(tmp_path / "pc.jsonl", rows)
    out = tmp_path / "out"
    fitted = f"annotator.offline.fitted_state_from={fitted_run[0]}"
    run(records_config(out, data, "mode=sft", "sft.format=prompt_completion", fitted))
    ds = load_records(RecordSource(source=str(out / "data")))
    assert ds["id"] == ["0", "1", "2"] and ds["prompt"] == ["Tell a story", "Numbers?", "Nothing"]
    assert ds["response"][:2] == [rows[0]["completion"], rows[1]["completion"]]
    assert ds["status"] == ["ok", "ok", "skipped"] and ds["error"][2] == "malformed example: empty 'completion'"
    assert {"key": "location", "value": "Paris"} in ds["tags"][0]


def test_conversational_completion_uses_its_assistant_message():
    config = SFTConfig(format="prompt_completion")
    example = {"prompt": chat(("user", "Numbers?")), "completion": chat(("assistant", "Profits rose 76%."))}
    assert response_of(example, config) == "Profits rose 76%."
    with pytest.raises(MalformedExample, match="no assistant turn in 'completion'"):
        response_of({"completion": chat(("user", "again?"))}, config)


def test_response_extraction_errors():
    messages = SFTConfig()
    with pytest.raises(MalformedExample, match="'messages' is not a list"):
        response_of({}, messages)
    with pytest.raises(MalformedExample, match="has no text content"):
        response_of({"messages": [{"role": "assistant", "content": None}]}, messages)
    completion = SFTConfig(format="prompt_completion")
    with pytest.raises(MalformedExample, match="'completion' is int"):
        response_of({"completion": 3}, completion)
    assert response_of({"completion": "fine"}, completion) == "fine"


@pytest.mark.parametrize(
    "messages",
    [
        [chat(("user", "Anyone?")), chat(("user", "Still there?"))],
        [chat(("system", "Be brief.")), []],
        [chat(("user", "Say nothing"), ("assistant", "  ")), chat(("user", "Hi"), ("assistant", ""))],
    ],
)
def test_an_sft_file_without_any_response_is_refused_naming_the_file(tmp_path, messages):
    data = write_jsonl(tmp_path / "sft.jsonl", [{"id": f"r{i}", "messages": m} for i, m in enumerate(messages)])
    out = tmp_path / "out"
    with pytest.raises(MalformedExample, match=rf"{data}: none of its 2 SFT examples has a response"):
        run(records_config(out, data, "mode=sft"))
    assert not (out / "data").exists()
