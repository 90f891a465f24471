"""The key:value grammar as a regex: it accepts what the annotator renders, rejects the rest,
and the vLLM backend hands it to the engine as a structured output."""

import re
import sys
import types

import pytest

from annotate import AnnotationSchema, load_annotator, parse_tags, render_annotation
from annotate.chunking import Chunker
from annotate.config import ChunkingConfig, LLMConfig
from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, annotation_body_regex
from annotate.llm import GRAMMAR_SEPARATORS, LLMAnnotator
from stage_io.records import RecordSource, load_records

TINY_KEYS = ["topic", "domain", "genre", "entity", "action", "location", "time", "sentiment", "style"]


def test_the_regex_accepts_every_rendered_annotation_of_embedded_articles(fitted_run):
    annotator = load_annotator(fitted_run[0], progress=False)
    schema = annotator.schema
    articles = load_records(RecordSource(source="embedded:bbc_news", limit=60))
    chunker = Chunker(ChunkingConfig())
    texts = [c.text for doc_id, text in zip(articles["id"], articles["text"]) for c in chunker.chunk(doc_id, text)]
    pattern = re.compile(annotation_body_regex(schema))
    rendered = [render_annotation(tags) for tags in annotator.annotate(texts)]
    assert len(rendered) > 150
    for annotation in rendered:
        body = annotation[len(ANNOTATION_OPEN) : -len(ANNOTATION_CLOSE)]
        assert pattern.fullmatch(body), annotation
        assert re.fullmatch(annotation_body_regex(schema, GRAMMAR_SEPARATORS), body.replace(" ", "\n"))
        assert render_annotation(parse_tags(body)) == annotation


@pytest.mark.parametrize(
    "body",
    [
        "",
        "topic",
        "topic:",
        ":sport",
        "mood:happy",
        "Topic:sport",
        "topic:sport  entity:Blair",
        "topic:sport ",
        " topic:sport",
        "topic:_sport",
        "topic:sport_",
        "topic:spo rt",
        "topic:a<b",
        "topic:a|b",
        "topic:a>b",
        "topic:<|ann|>",
        "topic:sport\tentity:Blair",
        "topic:" + "x" * 49,
        " ".join(["topic:a"] * 13),
        "topic:sport\nentity:Blair",
    ],
)
def test_the_regex_rejects_malformed_bodies(body):
    assert not re.fullmatch(annotation_body_regex(AnnotationSchema(keys=TINY_KEYS)), body)


def test_the_regex_keeps_the_schema_bounds():
    schema = AnnotationSchema(keys=["topic", "entity"], min_tags=2, max_tags=3, max_value_chars=5)
    pattern = re.compile(annotation_body_regex(schema))
    assert pattern.fullmatch("topic:a entity:abcde") and pattern.fullmatch("topic:a entity:b topic:c")
    assert not pattern.fullmatch("topic:a") and not pattern.fullmatch("topic:a entity:abcdef")
    assert not pattern.fullmatch("topic:a entity:b topic:c topic:d")


class FakeVLLM:
    """A stand-in for the ``vllm`` module: it records every SamplingParams and answers with tags."""

    def __init__(self):
        self.requests = []
        fake = self

        class SamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        class StructuredOutputsParams:
            def __init__(self, regex=None, **kwargs):
                self.regex = regex

        class LLM:
            def __init__(self, **kwargs):
                self.kwargs = kwargs
                self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=4096))

            def get_tokenizer(self):
                return types.SimpleNamespace(chat_template=None)

            def generate(self, texts, params, use_tqdm=False):
                fake.requests.extend(zip(texts, params))
                return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text="topic:sport")]) for _ in texts]

        self.module = types.ModuleType("vllm")
        self.module.LLM, self.module.SamplingParams = LLM, SamplingParams
        self.sampling_params = types.ModuleType("vllm.sampling_params")
        self.sampling_params.StructuredOutputsParams = StructuredOutputsParams
        self.module.sampling_params = self.sampling_params


@pytest.fixture
def fake_vllm(monkeypatch):
    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", fake.sampling_params)
    return fake


def test_every_vllm_request_carries_the_annotation_regex(fake_vllm):
    schema = AnnotationSchema(keys=TINY_KEYS)
    annotator = LLMAnnotator(LLMConfig(backend="vllm", model="any"), schema, progress=False)
    results = annotator.annotate_batch(["a", "b"], ["One text.", "Another text."])
    assert [r.status for r in results] == ["ok", "ok"]
    assert len(fake_vllm.requests) == 2
    for _, params in fake_vllm.requests:
        assert params.kwargs["structured_outputs"].regex == annotation_body_regex(schema, GRAMMAR_SEPARATORS)
        assert params.kwargs["seed"] is not None
    assert "+grammar" in annotator.version


def test_the_vllm_engine_is_built_with_the_llm_sections_engine_keys(fake_vllm):
    config = LLMConfig(backend="vllm", model="any", tensor_parallel_size=2, gpu_memory_utilization=0.5, seed=3)
    annotator = LLMAnnotator(config, AnnotationSchema(keys=TINY_KEYS), progress=False)
    assert annotator.engine.llm.kwargs == {"model": "any", "seed": 3, **config.engine_kwargs()}
    assert annotator.engine.llm.kwargs["gpu_memory_utilization"] == 0.5


def test_structured_output_can_be_turned_off(fake_vllm):
    config = LLMConfig(backend="vllm", model="any", structured_output=False)
    annotator = LLMAnnotator(config, AnnotationSchema(keys=TINY_KEYS), progress=False)
    annotator.annotate_batch(["a"], ["One text."])
    assert "structured_outputs" not in fake_vllm.requests[0][1].kwargs and "+grammar" not in annotator.version


def test_evals_vllm_backend_refuses_the_annotation_syntax_saying_why(fake_vllm):
    from eval.backends.base import GenerationRequest
    from eval.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend(model="any")
    request = GenerationRequest(text="<|ann|>topic:", seed=1, annotation_syntax=True)
    with pytest.raises(ValueError, match="cannot end the annotation on its close delimiter, a special token"):
        backend.generate([request])
    assert fake_vllm.requests == []
