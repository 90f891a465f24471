"""SFT records: rows of an SFT set read into (conversation, response, annotation).

Row shapes accepted (column names are config keys under ``data``):

- ``messages``: a list of ``{role, content}`` ending with the assistant's reply, or
  ending with the user's turn when a ``response`` column holds the reply;
- ``prompt`` / ``completion``: the prompt as a string or a list of messages, the
  completion as a string or a one-message assistant list;
- the annotate stage's SFT output adds ``response`` (the assistant text it annotated:
  what is trained), ``annotation`` (rendered, delimiters included, "" when not ok),
  ``status`` (ok | failed | skipped) and ``error``.

Roles are renamed through ``data.role_map`` (ShareGPT's ``human``/``gpt`` by default), and
the reply is the conversation's last assistant turn (``stage_io.conversation``, the rule the
annotate stage uses to pick the reply it annotates); turns after it are cut and counted
(``SFTRecord.turns_cut``). The annotate output's ``response`` column, when present, is
trained in that turn's place (annotate took it from that turn). Only that reply is trained; earlier turns are part of the prompt and
masked. Both arms do this, so they train on the same tokens of the same replies, and
the annotation (which describes one response) always sits right before the text it
describes.

A row that cannot be an SFT example raises ``MalformedRecord`` with a short reason key;
the caller counts it. A column problem (the whole dataset is unusable) raises
``SFTDataError`` naming the source and the config key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import datasets

from annotate.format import AnnotationError, parse_annotation
from posttrain.config import DataConfig
from posttrain.prompt_format import Message, PromptFormatError, check_conversation
from stage_io.conversation import ConversationError, map_roles, split_last_reply
from stage_io.records import RecordSource, load_records

# Columns the annotate stage writes beside the original ones (SFT mode).
ANNOTATION_FIELD = "annotation"
STATUS_FIELD = "status"
ERROR_FIELD = "error"


class SFTDataError(ValueError):
    """An SFT set that cannot be used as a whole (a missing column, too many bad rows)."""


class MalformedRecord(ValueError):
    """One row that cannot become an SFT example; ``reason`` is the key it is counted under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SFTRecord:
    id: str
    # Everything before the trained reply; ends with a user turn.
    conversation: list[Message]
    # The assistant reply that is trained.
    response: str
    # The rendered annotation (delimiters included) when usable, else None.
    annotation: str | None = None
    # Why the annotation is unusable ("status=failed: ...", "unparseable: ..."); None when usable.
    annotation_problem: str | None = None
    # Turns after the last assistant turn that were cut (no reply follows them).
    turns_cut: int = 0


def sft_source(data: DataConfig) -> RecordSource:
    """Where the records are read from: the annotate output's data/ when set, else ``data.source``."""
    if data.annotations is None:
        if not data.source.source:
            raise SFTDataError("data.source.source is empty and data.annotations is unset: no SFT data configured")
        return data.source
    folder = Path(data.annotations) / "data"
    if not folder.exists():
        raise SFTDataError(
            f"data.annotations={data.annotations}: no data/ folder there (is it an annotate stage output?)"
        )
    return RecordSource(source=str(folder), id_field=data.source.id_field, limit=data.source.limit)


def load_sft_rows(data: DataConfig, need_annotations: bool) -> datasets.Dataset:
    src = sft_source(data)
    rows = load_records(src)
    check_columns(rows.column_names, data, src.source, need_annotations)
    return rows


def check_columns(columns: Sequence[str], data: DataConfig, source: str, need_annotations: bool) -> None:
    has_messages = data.messages_field in columns
    has_prompt = data.prompt_field in columns and (data.completion_field in columns or data.response_field in columns)
    if not (has_messages or has_prompt):
        raise SFTDataError(
            f"{source}: neither a conversation column (data.messages_field='{data.messages_field}') nor prompt and "
            f"completion columns (data.prompt_field='{data.prompt_field}', data.completion_field="
            f"'{data.completion_field}'); columns: {', '.join(columns)}"
        )
    if need_annotations:
        missing = [c for c in (ANNOTATION_FIELD, STATUS_FIELD, data.response_field) if c not in columns]
        if missing:
            raise SFTDataError(
                f"{source}: the anchored arm needs the annotate stage's SFT columns; '{missing[0]}' is missing "
                f"(columns: {', '.join(columns)}). Set data.annotations to the annotate output directory."
            )


def record_from_row(row: Mapping[str, Any], data: DataConfig, with_annotation: bool) -> SFTRecord:
    """One row as an ``SFTRecord``; raises ``MalformedRecord`` for a row that cannot be trained."""
    conversation, response, turns_cut = _conversation_and_response(row, data)
    try:
        check_conversation(conversation, expect_final_assistant=False)
    except PromptFormatError as err:
        raise MalformedRecord("malformed_conversation", str(err)) from None
    if not isinstance(response, str):
        raise MalformedRecord("missing_response", f"the response is {type(response).__name__}, not text")
    if not response.strip():
        raise MalformedRecord("empty_response", "the assistant reply is empty")
    annotation, problem = (None, None)
    if with_annotation:
        annotation, problem = _usable_annotation(row)
    return SFTRecord(str(row["id"]), conversation, response, annotation, problem, turns_cut)


def _conversation_and_response(row: Mapping[str, Any], data: DataConfig) -> tuple[list[Message], Any, int]:
    explicit_response = row.get(data.response_field)
    messages = row.get(data.messages_field)
    if messages is not None:
        has_assistant = isinstance(messages, (list, tuple)) and any(
            isinstance(m, Mapping) and data.role_map.get(m.get("role"), m.get("role")) == "assistant" for m in messages
        )
        if not has_assistant and explicit_response is not None:  # a conversation ending on the user's turn + reply
            return map_roles(messages, data.role_map, data.messages_field), explicit_response, 0
        try:
            split = split_last_reply(messages, data.role_map, data.messages_field)
        except ConversationError as err:
            raise MalformedRecord(err.reason, str(err)) from None
        reply = explicit_response if explicit_response is not None else split.reply
        return split.prompt, reply, split.turns_cut
    prompt = row.get(data.prompt_field)
    if prompt is None:
        raise MalformedRecord(
            "malformed_conversation", f"no '{data.messages_field}' and no '{data.prompt_field}' in this record"
        )
    conversation = (
        [{"role": "user", "content": prompt}]
        if isinstance(prompt, str)
        else _as_messages(prompt, data.prompt_field, data.role_map)
    )
    if explicit_response is not None:
        return conversation, explicit_response, 0
    completion = row.get(data.completion_field)
    if isinstance(completion, list):
        completion = _as_messages(completion, data.completion_field, data.role_map)
        if len(completion) != 1 or completion[0].get("role") != "assistant":
            raise MalformedRecord("malformed_conversation", f"'{data.completion_field}' must be one assistant message")
        completion = completion[0].get("content")
    return conversation, completion, 0


def _as_messages(value: Any, field_name: str, role_map: Mapping[str, str] | None = None) -> list[Message]:
    try:
        return map_roles(value, role_map or {}, field_name)
    except ConversationError as err:
        raise MalformedRecord(err.reason, str(err)) from None


def _usable_annotation(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    status = row.get(STATUS_FIELD)
    if status != "ok":
        error = row.get(ERROR_FIELD) or "no error recorded"
        return None, f"status={status}: {error}"
    text = row.get(ANNOTATION_FIELD) or ""
    try:
        parse_annotation(text)
    except AnnotationError as err:
        return None, f"unparseable: {err}"
    return text, None
