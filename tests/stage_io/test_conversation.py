"""One rule in both SFT paths: roles mapped, the last assistant turn is the reply."""

import pytest

from annotate.config import SFTConfig
from annotate.sft import MalformedExample, response_of
from posttrain.config import DataConfig
from posttrain.sft_records import record_from_row
from stage_io.conversation import ConversationError, split_last_reply


def turns(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


SHAREGPT = turns(("system", "Be brief."), ("human", "Hi"), ("gpt", "Hello."), ("human", "Score?"), ("gpt", "2-1."))
TRAILING_USER = turns(("user", "Hi"), ("assistant", "Hello."), ("user", "And the score?"))


def test_human_gpt_roles_are_mapped_in_both_paths():
    assert response_of({"messages": SHAREGPT}, SFTConfig()) == "2-1."
    record = record_from_row({"id": "a", "messages": SHAREGPT}, DataConfig(), with_annotation=False)
    assert record.response == "2-1." and [m["role"] for m in record.conversation] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


def test_a_custom_role_map_and_no_map():
    data = turns(("asker", "Q"), ("bot", "A"))
    assert response_of({"messages": data}, SFTConfig(role_map={"asker": "user", "bot": "assistant"})) == "A"
    with pytest.raises(MalformedExample, match="no assistant turn.*roles: gpt, human"):
        response_of({"messages": turns(("human", "Q"), ("gpt", "A"))}, SFTConfig(role_map={}))


def test_turns_after_the_last_reply_are_cut_the_same_way_in_both_paths():
    """A user turn after the last reply: both paths take "Hello." as the reply to "Hi" (not as the
    answer to "And the score?", and the raw path does not skip the row)."""
    assert response_of({"messages": TRAILING_USER}, SFTConfig()) == "Hello."
    raw = record_from_row({"id": "r", "messages": TRAILING_USER}, DataConfig(), with_annotation=False)
    annotated_row = {"id": "r", "messages": TRAILING_USER, "response": "Hello."}
    annotated = record_from_row(annotated_row, DataConfig(), with_annotation=False)
    for record in (raw, annotated):
        assert record.conversation == turns(("user", "Hi")) and record.response == "Hello." and record.turns_cut == 1


def test_split_reports_reasons():
    with pytest.raises(ConversationError) as err:
        split_last_reply(turns(("user", "x")), {}, "messages")
    assert err.value.reason == "no_assistant_turn"
    assert split_last_reply(turns(("user", "x"), ("assistant", "y")), {}, "m").turns_cut == 0
