"""The LLM annotator: retries with fresh seeds, failures recorded, a real tiny model generating."""

import json

from annotate_fixtures import records_config

from annotate import AnnotationSchema, Tag, load_annotator, run
from annotate.config import LLMConfig
from annotate.llm import LLMAnnotator, request_seed
from annotate.llm_backends import TransformersBackend, render_prompt
from stage_io.records import RecordSource, load_records


class ScriptedBackend:
    """A backend that answers each prompt from a script, one answer per attempt."""

    def __init__(self, script: dict[str, list[str]]):
        self.script = script
        self.calls: list[tuple[str, int, float]] = []

    def generate(self, prompts, seeds, temperature):
        outputs = []
        for prompt, seed in zip(prompts, seeds):
            text = prompt.rsplit("Text:\n", 1)[1].strip()
            attempt = sum(1 for p, _, _ in self.calls if p == text)
            self.calls.append((text, seed, temperature))
            answers = self.script[text]
            outputs.append(answers[min(attempt, len(answers) - 1)])
        return outputs


def test_malformed_output_is_retried_then_succeeds_or_is_recorded():
    script = {
        "good": ["topic:sport entity:Arsenal"],
        "fixed": ["Sure, here are tags", "topic:war, location: Baghdad"],
        "hopeless": ["no tags here", "still none", "mood:bad"],
    }
    engine = ScriptedBackend(script)
    config = LLMConfig(max_retries=2, temperature=0.0, batch_size=2)
    annotator = LLMAnnotator(config, AnnotationSchema(), engine=engine)
    good, fixed, hopeless = annotator.annotate_batch(["c1", "c2", "c3"], ["good", "fixed", "hopeless"])

    assert good.status == "ok" and good.tags == (Tag("topic", "sport"), Tag("entity", "Arsenal"))
    assert fixed.status == "ok" and fixed.tags == (Tag("topic", "war"), Tag("location", "Baghdad"))
    assert fixed.raw_output == "topic:war, location: Baghdad"
    assert hopeless.status == "failed" and hopeless.tags == ()
    assert hopeless.raw_output == "mood:bad"
    assert (
        hopeless.error.startswith("malformed after 3 attempts")
        and "'mood' is not in the configured keys" in hopeless.error
    )

    attempts = {text: [(seed, temp) for t, seed, temp in engine.calls if t == text] for text in script}
    assert len(attempts["good"]) == 1 and len(attempts["fixed"]) == 2 and len(attempts["hopeless"]) == 3
    # Each attempt has its own seed, derived from the chunk id; retries sample even if attempt 0 was greedy.
    assert [s for s, _ in attempts["hopeless"]] == [request_seed(0, "c3", a) for a in range(3)]
    assert len({s for s, _ in attempts["hopeless"]}) == 3
    assert attempts["hopeless"][0][1] == 0.0 and attempts["hopeless"][1][1] > 0


def test_transformers_backend_generates_with_a_tiny_model(tiny_llm):
    config = LLMConfig(backend="transformers", model=str(tiny_llm), max_new_tokens=6, temperature=1.0, max_retries=1)
    backend = TransformersBackend(config)
    first = backend.generate(["Describe the text", "Shares rose"], [11, 12], 1.0)
    again = backend.generate(["Describe the text", "Shares rose"], [11, 12], 1.0)
    other = backend.generate(["Describe the text", "Shares rose"], [13, 14], 1.0)
    assert len(first) == 2 and all(isinstance(t, str) and t for t in first)
    assert first == again  # per-request seeds make it reproducible
    assert first != other
    # Random weights write junk: every chunk is retried, then recorded as failed.
    annotator = LLMAnnotator(config, AnnotationSchema(), engine=backend)
    results = annotator.annotate_batch(["a#0", "b#0"], ["Shares in the company rose.", "Tony Blair spoke."])
    assert [r.status for r in results] == ["failed", "failed"]
    assert all(r.error.startswith("malformed after 2 attempts") and r.raw_output for r in results)


def test_chat_template_is_used_when_the_tokenizer_has_one(tiny_llm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llm)
    assert render_prompt(tokenizer, "hi", True) == ("hi", False)
    tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    assert render_prompt(tokenizer, "hi", True) == ("<user>hi<assistant>", True)
    assert render_prompt(tokenizer, "hi", False) == ("hi", False)


def test_llm_stage_records_failures_with_raw_output(tmp_path, tiny_llm):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "\n".join(
            json.dumps({"text": t})
            for t in ["Shares rose in London on Monday.", "", "Tony Blair won the election in 2005."]
        )
        + "\n"
    )
    out = tmp_path / "out"
    stats = run(
        records_config(
            out,
            docs,
            "annotator.kind=llm",
            "llm.backend=transformers",
            f"llm.model={tiny_llm}",
            "llm.max_new_tokens=6",
            "llm.max_retries=1",
            "llm.batch_size=2",
        )
    )
    ds = load_records(RecordSource(source=str(out / "data")))
    assert ds["id"] == ["0#0", "1#0", "2#0"]
    assert ds["status"] == ["failed", "skipped", "failed"]
    assert ds["error"][1] == "empty document"
    assert all(ds["raw_output"][i] and ds["tags"][i] == [] and ds["annotation"][i] == "" for i in (0, 2))
    assert stats["overall"]["failed"] == 2 and stats["overall"]["skipped"] == 1 and stats["overall"]["ok"] == 0
    assert ds["annotator"][0] == f"llm:{tiny_llm}"
    saved = load_annotator(out)  # eval can rebuild the same prompt and model
    assert isinstance(saved, LLMAnnotator) and saved.config.model == str(tiny_llm)
