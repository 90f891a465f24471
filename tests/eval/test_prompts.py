"""Prompt sets: any RecordSource, a (dotted) prompt field, skips counted."""

import json

import pytest

from eval.config import PromptSetConfig
from eval.prompts import field_at, load_prompts
from stage_io.records import RecordSource, RecordSourceError


def test_dotted_prompt_field_reaches_into_conversations(tmp_path):
    path = tmp_path / "chats.jsonl"
    rows = [
        {"conversation_hash": "h1", "conversation": [{"role": "user", "content": "Tell me a joke"}]},
        {"conversation_hash": "h2", "conversation": [{"role": "user", "content": "  "}]},
        {"conversation_hash": "h3", "conversation": []},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = PromptSetConfig(
        source=RecordSource(source=str(path), id_field="conversation_hash"), prompt_field="conversation.0.content"
    )
    prompts, skipped = load_prompts(config)
    assert [(p.id, p.text) for p in prompts] == [("h1", "Tell me a joke")]
    assert skipped == {"empty_or_not_text": 2}
    assert field_at({"a": [{"b": 1}]}, "a.-1.b") == 1 and field_at({"a": []}, "a.0") is None


def test_shipped_prompt_files_load_and_a_missing_field_is_named(tmp_path):
    news, _ = load_prompts(PromptSetConfig())
    assert len(news) == 23 and news[0].id == "news-000"
    stories, _ = load_prompts(PromptSetConfig(source=RecordSource(source="configs/eval/prompts/stories.jsonl")))
    assert all("Once upon a time" in p.text for p in stories)
    with pytest.raises(RecordSourceError, match="field 'question' not found"):
        load_prompts(PromptSetConfig(prompt_field="question"))
