import pytest

from annotate.format import (
    ANNOTATION_CLOSE,
    ANNOTATION_OPEN,
    AnnotationError,
    AnnotationSchema,
    Tag,
    annotation_char_spans,
    make_tags,
    parse_annotation,
    render_annotation,
    split_generation,
    validate_tags,
)


def test_round_trip_is_exact():
    schema = AnnotationSchema()
    tags = make_tags(
        [
            ("entity", "Mrs  Sinclair"),
            ("topic", "family"),
            ("location", "Baghdad"),
            ("entity", "Ali"),
            ("time", "12:30"),
        ],
        schema,
    )
    text = render_annotation(tags)
    assert (
        text
        == f"{ANNOTATION_OPEN}topic:family entity:Mrs_Sinclair entity:Ali location:Baghdad time:12:30{ANNOTATION_CLOSE}"
    )
    assert parse_annotation(text) == tags


def test_normalisation_removes_whitespace_and_delimiters():
    tags = make_tags([("Topic ", " world  news "), ("entity", f"a{ANNOTATION_CLOSE}b"), ("style", "   ")])
    assert tags == (Tag("topic", "world_news"), Tag("entity", "ab"))


@pytest.mark.parametrize(
    "text",
    [
        "topic:family",  # no delimiters
        f"{ANNOTATION_OPEN}topic family{ANNOTATION_CLOSE}",  # no colon
        f"{ANNOTATION_OPEN}Topic:family{ANNOTATION_CLOSE}",  # key not lower case
        f"{ANNOTATION_OPEN}topic:{ANNOTATION_CLOSE}",  # empty value
        f"{ANNOTATION_OPEN}topic:a  entity:b{ANNOTATION_CLOSE}",  # double space
        f"{ANNOTATION_OPEN}topic:a{ANNOTATION_OPEN}x:y{ANNOTATION_CLOSE}",  # nested
    ],
)
def test_malformed_annotations_raise(text):
    with pytest.raises(AnnotationError):
        parse_annotation(text)


def test_validation_against_schema():
    schema = AnnotationSchema(keys=["topic", "entity"], min_tags=1, max_tags=2, max_value_chars=5)
    assert validate_tags((Tag("topic", "war"),), schema) == []
    problems = validate_tags((Tag("mood", "x"), Tag("topic", "toolongvalue"), Tag("entity", "a")), schema)
    assert any("'mood' is not in the configured keys" in p for p in problems)
    assert any("more than max_tags" in p for p in problems)
    assert any("more than 5" in p for p in problems)
    assert validate_tags((), schema) == ["0 tags, fewer than min_tags=1"]
    with pytest.raises(ValueError, match="Bad"):
        AnnotationSchema(keys=["Bad"])


def test_split_generation_strips_and_keeps_annotation():
    ok = split_generation(f"{ANNOTATION_OPEN}topic:war{ANNOTATION_CLOSE} The army marched.")
    assert ok.tags == (Tag("topic", "war"),) and ok.response == " The army marched." and ok.error is None
    unclosed = split_generation(f"{ANNOTATION_OPEN}topic:war The army")
    assert unclosed.tags is None and unclosed.response == "" and "no <|/ann|>" in unclosed.error
    bad = split_generation(f"{ANNOTATION_OPEN}topic war{ANNOTATION_CLOSE}Text")
    assert bad.tags is None and bad.response == "Text" and bad.error
    missing = split_generation("Just text")
    assert missing.tags is None and missing.response == "Just text"


def test_char_spans_cover_rendering_by_role():
    tags = (Tag("topic", "war"), Tag("entity", "Ali"))
    text = render_annotation(tags)
    spans = annotation_char_spans(tags)
    assert "".join(text[s:e] for s, e, _ in spans) == text
    assert [text[s:e] for s, e, role in spans if role == "value"] == ["war", "Ali"]
    assert [text[s:e] for s, e, role in spans if role == "key"] == ["topic", "entity"]
