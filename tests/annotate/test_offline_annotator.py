"""The offline annotator: real keys from the text, saved and reloaded to the same tags."""

import pytest

from annotate import Tag, load_annotator
from annotate.annotators import AnnotatorLoadError
from annotate.config import OfflineConfig
from annotate.format import AnnotationSchema, validate_tags
from annotate.offline import OfflineAnnotator
from stage_io.records import RecordSource, load_records


def test_saved_annotator_reloads_to_the_same_tags(fitted_run):
    out, _ = fitted_run
    data = load_records(RecordSource(source=str(out / "data")))
    ok = data.filter(lambda r: r["status"] == "ok")
    annotator = load_annotator(out, progress=False)
    assert isinstance(annotator, OfflineAnnotator)
    assert annotator.version == ok["annotator_version"][0]
    again = annotator.annotate(ok["text"])
    assert [[{"key": t.key, "value": t.value} for t in tags] for tags in again] == ok["tags"]
    assert load_annotator(out / "annotator", progress=False).version == annotator.version


def test_tags_come_from_the_text(fitted_run):
    annotator = load_annotator(fitted_run[0], progress=False)
    text = (
        "Prime Minister Tony Blair said on Friday that Labour would win the election in May 2005. "
        '"We will cut taxes," he told reporters in London, where shares fell 3% to £1.2bn.'
    )
    (tags,) = annotator.annotate([text])
    keys = [t.key for t in tags]
    assert validate_tags(tags, annotator.schema) == []
    assert keys == sorted(keys, key=annotator.schema.keys.index)  # canonical order
    assert keys.count("topic") == 1 and keys.count("domain") == 1 and keys.count("sentiment") == 1
    assert Tag("entity", "Tony_Blair") in tags and Tag("location", "London") in tags
    assert Tag("time", "2005") in tags
    assert {t.value for t in tags if t.key == "topic"} <= set(annotator.topic_names)
    assert any(t.key == "action" for t in tags)


def test_fit_names_clusters_by_distinctive_terms_and_caps_tags():
    texts = [f"The striker scored a goal for the football club in match {i}." for i in range(6)]
    texts += [f"The bank raised interest rates and shares fell in trading {i}." for i in range(6)]
    schema = AnnotationSchema(keys=["topic", "entity", "sentiment"], max_tags=2)
    config = OfflineConfig(topic_clusters=2, domain_clusters=1, seed=0)
    annotator = OfflineAnnotator.fit([str(i) for i in range(12)], texts, config, schema, progress=False)
    assert len(annotator.topic_names) == 2 and len(set(annotator.topic_names)) == 2
    names = " ".join(annotator.topic_names)
    assert any(w in names for w in ("striker", "goal", "football", "club", "match", "scored"))
    assert any(w in names for w in ("bank", "rates", "shares", "interest", "trading", "raised"))
    tags = annotator.annotate(texts[:1] + texts[6:7])
    assert all(len(t) <= 2 and {x.key for x in t} <= {"topic", "entity", "sentiment"} for t in tags)
    assert tags[0][0].value != tags[1][0].value  # football and banking land in different topics


def test_loading_from_a_dir_without_an_annotator_is_a_clear_error(tmp_path):
    with pytest.raises(AnnotatorLoadError, match="no saved annotator"):
        load_annotator(tmp_path)
