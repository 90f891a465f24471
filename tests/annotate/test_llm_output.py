import pytest

from annotate.format import AnnotationSchema, Tag
from annotate.llm_output import MalformedOutput, parse_llm_tags

SCHEMA = AnnotationSchema(max_tags=6, max_value_chars=24)


@pytest.mark.parametrize(
    "text",
    [
        "topic:election entity:Tony_Blair location:London",
        "topic: election, entity: Tony Blair, location: London",
        "Topic: election\nEntity: Tony Blair\nLocation: London.",
        "- topic: election\n- entity: Tony Blair\n- location: London",
        "```\ntopic:election; entity:Tony Blair; location:London\n```",
        "<|ann|>topic:election entity:Tony_Blair location:London<|/ann|>",
        'Tags: topic:election entity:"Tony Blair" location:London',
    ],
)
def test_lenient_layouts_give_the_same_tags(text):
    assert parse_llm_tags(text, SCHEMA) == (
        Tag("topic", "election"),
        Tag("entity", "Tony_Blair"),
        Tag("location", "London"),
    )


def test_values_keep_colons_and_urls_are_not_keys():
    assert parse_llm_tags("time:12:30 topic:web", SCHEMA) == (Tag("topic", "web"), Tag("time", "12:30"))
    assert parse_llm_tags("entity:see https://x.org", SCHEMA) == (Tag("entity", "see_https://x.org"),)


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty output"),
        ("I cannot help with that.", "no key:value tags"),
        ("Sure! Here you go topic:war", "text before the first tag"),
        ("topic:war mood:grim", "'mood' is not in the configured keys"),
        ("topic:war and then a long explanation of why the text is about war", "more than 24"),
        ("topic:a topic:b topic:c topic:d topic:e topic:f topic:g", "more than max_tags"),
        ("topic:", "0 tags, fewer than min_tags"),
    ],
)
def test_malformed_outputs_say_why(text, why):
    with pytest.raises(MalformedOutput, match=why):
        parse_llm_tags(text, SCHEMA)
