"""Per-sample seeds, the batched sampling loop and anchored sampling on real tiny models."""

import pytest
import torch

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN
from eval.backends.base import GenerationRequest
from eval.backends.transformers_backend import TransformersBackend, nucleus_filter
from eval.config import ArmConfig, SamplingConfig
from eval.sampling import SampleSpec, parse_sample, sample_batch, strip_annotations
from eval.seeds import phase_seed, sample_seed, stable_seed

PROMPT = "Instruction: Write a news article about sport.\nResponse:\n"


def test_seeds_are_stable_hashes_not_python_hash():
    assert sample_seed(0, "p1", 3) == sample_seed(0, "p1", 3)
    # Pinned value: the same on every machine and process (PYTHONHASHSEED has no effect).
    assert stable_seed("sample", 0, "p1", 3) == sample_seed(0, "p1", 3)
    assert sample_seed(0, "p1", 3) == 8292734929887534886
    seeds = {sample_seed(0, f"p{i}", k) for i in range(50) for k in range(20)}
    assert len(seeds) == 1000
    assert sample_seed(1, "p1", 3) != sample_seed(0, "p1", 3)
    assert phase_seed(5, "annotation") != phase_seed(5, "response")
    assert 0 <= sample_seed(0, "x", 0) < 2**63


@pytest.fixture(scope="module")
def backend(tiny_models):
    torch.set_num_threads(1)
    return TransformersBackend(tiny_models["plain"], batch_size=8, device="cpu", dtype="float32")


def test_same_seed_reproduces_a_sample_and_different_seeds_differ(backend):
    requests = [GenerationRequest(text=PROMPT, seed=sample_seed(0, "p", k), max_new_tokens=20) for k in range(6)]
    first = backend.generate(requests)
    again = backend.generate(requests)
    assert [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first}) == 6  # every sample differs
    # A sample replayed alone draws the same random stream from its own generator.
    alone = backend.generate([requests[2]])
    assert alone[0].num_tokens > 0
    assert all(c.finish_reason in ("stop", "length") for c in first)


def test_temperature_zero_is_greedy_and_matches_transformers_generate(backend):
    request = GenerationRequest(text=PROMPT, seed=1, temperature=0.0, max_new_tokens=12)
    ours = backend.generate(
        [request, GenerationRequest(text="Instruction: hi\nResponse:\n", seed=2, temperature=0.0, max_new_tokens=12)]
    )[0]
    ids = backend.tokenizer(PROMPT, return_tensors="pt").input_ids
    ref = backend.model.generate(ids, do_sample=False, max_new_tokens=12, pad_token_id=backend.tokenizer.pad_token_id)
    ref_ids = ref[0, ids.shape[1] :].tolist()
    if backend.tokenizer.eos_token_id in ref_ids:
        ref_ids = ref_ids[: ref_ids.index(backend.tokenizer.eos_token_id)]
    assert ours.text == backend.tokenizer.decode(ref_ids, skip_special_tokens=False)


def test_banned_tokens_never_appear_and_stop_strings_cut(backend):
    banned = backend.generate(
        [
            GenerationRequest(
                text=PROMPT + ANNOTATION_OPEN, seed=k, max_new_tokens=30, banned=(ANNOTATION_OPEN, ANNOTATION_CLOSE)
            )
            for k in range(4)
        ]
    )
    assert all(ANNOTATION_OPEN not in c.text and ANNOTATION_CLOSE not in c.text for c in banned)
    free = backend.generate([GenerationRequest(text=PROMPT, seed=3, max_new_tokens=30)])[0]
    word = free.text.split()[1] if len(free.text.split()) > 1 else free.text[:2]
    cut = backend.generate([GenerationRequest(text=PROMPT, seed=3, max_new_tokens=30, stop=(word,))])[0]
    assert cut.finish_reason == "stop" and cut.stop_reason == word
    assert word not in cut.text and free.text.startswith(cut.text)


def test_a_banned_string_of_several_tokens_is_refused_naming_the_string(backend):
    with pytest.raises(ValueError, match="banned string 'Instruction: Write' is not a single token"):
        backend.generate([GenerationRequest(text=PROMPT, seed=0, max_new_tokens=2, banned=("Instruction: Write",))])


def test_nucleus_filter_keeps_the_smallest_set_reaching_top_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.5, 0.3, 0.15, 0.05]])
    out = nucleus_filter(probs, torch.tensor([0.7, 1.0]))
    assert out[0].tolist() == pytest.approx([0.5, 0.3, 0.0, 0.0])
    assert out[1].tolist() == pytest.approx(probs[1].tolist())


def test_parse_sample_strips_annotations_and_counts_failures():
    ok = parse_sample("<|ann|>topic:sport entity:Wales<|/ann|>Wales won. <|ann|>topic:rugby<|/ann|>Again.", "anchored")
    assert ok["parse_ok"] is True and ok["tags"] == [
        {"key": "topic", "value": "sport"},
        {"key": "entity", "value": "Wales"},
    ]
    assert ok["response"] == "Wales won. Again." and ok["inner_annotations"] == 1
    assert ok["annotation"] == "<|ann|>topic:sport entity:Wales<|/ann|>"
    bad = parse_sample("<|ann|>topic sport<|/ann|>Text here", "anchored")
    assert bad["parse_ok"] is False and "has no ':'" in bad["parse_error"] and bad["tags"] is None
    assert bad["response"] == "Text here"  # kept, not replaced
    forced = parse_sample(
        "<|ann|>topic:sp<|/ann|>Text", "anchored", note="annotation truncated at max_annotation_tokens=4 (close forced)"
    )
    assert forced["parse_ok"] is False and forced["tags"] is None and forced["response"] == "Text"
    unclosed = parse_sample("<|ann|>topic:sport and on", "anchored")
    assert unclosed["parse_ok"] is False and unclosed["response"] == ""
    plain = parse_sample("Plain text <|ann|>topic:x<|/ann|> more", "plain")
    assert plain["parse_ok"] is None and plain["response"] == "Plain text  more" and plain["inner_annotations"] == 1
    assert strip_annotations("a<|/ann|>b") == ("ab", 0)


def sport_specs(n: int = 8) -> list[SampleSpec]:
    """``n`` samples of one sports prompt at temperature 1, seeded as the eval stage seeds them."""
    return [
        SampleSpec(
            id=f"a|{k}",
            prompt_id="p",
            prompt="Write a news article about sport.",
            sample_index=k,
            seed=sample_seed(0, "p", k),
            temperature=1.0,
        )
        for k in range(n)
    ]


def test_anchored_sampling_writes_annotation_first_and_strips_it(tiny_models):
    backend = TransformersBackend(tiny_models["anchored"], batch_size=8, device="cpu", dtype="float32")
    sampling = SamplingConfig(max_new_tokens=16, max_annotation_tokens=16, annotation_temperature=0.5)
    specs = sport_specs()
    arm = ArmConfig(name="anchored", model=tiny_models["anchored"], mode="anchored")
    rows = sample_batch(backend, arm, sampling, specs)
    assert [r["id"] for r in rows] == [s.id for s in specs]
    for row in rows:
        assert row["raw"].startswith(ANNOTATION_OPEN) and row["annotation"].startswith(ANNOTATION_OPEN)
        assert ANNOTATION_OPEN not in row["response"] and ANNOTATION_CLOSE not in row["response"]
        assert row["parse_ok"] in (True, False)
        assert (row["parse_error"] is None) == row["parse_ok"]
        assert row["input_text"].endswith("Response:\n")
    assert any(r["parse_ok"] for r in rows)  # the trained model closes some annotations
    assert rows == sample_batch(backend, arm, sampling, specs)  # the whole batch replays exactly
    ablation = ArmConfig(name="noann", model=tiny_models["anchored"], mode="no_annotation")
    for row in sample_batch(backend, ablation, sampling, specs):
        assert ANNOTATION_OPEN not in row["raw"] and row["parse_ok"] is None
    empty = sample_batch(
        backend, ablation, SamplingConfig(max_new_tokens=8, no_annotation="empty_annotation"), specs[:2]
    )
    assert all(r["raw"].startswith(ANNOTATION_OPEN + ANNOTATION_CLOSE) for r in empty)


def test_annotation_syntax_keeps_every_annotation_inside_the_syntax_and_records_the_mass_removed(tiny_models):
    """Under the syntax every annotation is a parseable prefix: closed ones parse, the rest were cut
    at the cap; keys and values stay the model's own, and the mass removed is recorded. The plain
    tiny model, which never saw an annotation, puts most of its probability outside the syntax."""
    from annotate.format import SYNTAX_KEY_START, syntax_advance

    specs = sport_specs()
    constrained = SamplingConfig(max_new_tokens=4, max_annotation_tokens=24, annotation_syntax=True)
    rows = {}
    for name in ("plain", "anchored"):
        backend = TransformersBackend(tiny_models[name], batch_size=8, device="cpu", dtype="float32")
        arm = ArmConfig(name=name, model=tiny_models[name], mode="anchored")
        rows[name] = sample_batch(backend, arm, constrained, specs)
        for row in rows[name]:
            body = row["annotation"][len(ANNOTATION_OPEN) : -len(ANNOTATION_CLOSE)]
            assert syntax_advance(SYNTAX_KEY_START, body) is not None, body
            assert row["parse_ok"] == (row["annotation_finish"] == "close"), body
            assert row["parse_ok"] or "truncated" in row["parse_error"]
            assert 0.0 <= row["annotation_mass_outside_syntax"] <= 1.0
        assert rows[name] == sample_batch(backend, arm, constrained, specs)  # replays exactly
        if name == "anchored":
            free = sample_batch(backend, arm, SamplingConfig(max_new_tokens=4, max_annotation_tokens=24), specs)
            assert all("annotation_mass_outside_syntax" not in r for r in free)
            assert sum(r["parse_ok"] for r in rows[name]) > sum(r["parse_ok"] for r in free)
    plain_mass = [r["annotation_mass_outside_syntax"] for r in rows["plain"]]
    assert sum(plain_mass) / len(plain_mass) > 0.5
    # Values are not restricted to any vocabulary: at a value's start every word piece is allowed.
    from annotate.format import SYNTAX_VALUE_START

    table = backend.syntax_table(len(backend.tokenizer))
    pieces = [
        t
        for t in range(len(backend.tokenizer))
        if t not in backend.tokenizer.all_special_ids and backend.tokenizer.decode([t]).isalnum()
    ]
    assert len(pieces) > 100 and all(table.allowed[SYNTAX_VALUE_START, t] for t in pieces)


def test_the_syntax_automaton_accepts_what_the_parser_accepts():
    from annotate.format import SYNTAX_ACCEPTING, SYNTAX_KEY_START, AnnotationError, parse_tags, syntax_advance

    bodies = [
        "topic:sport",
        "topic:sport sentiment:positive style:formal",
        "entity:Mrs_Sinclair",
        "topic:a:b",
        "",
        "topic:",
        "topic:_x",
        "topic:x_",
        "Topic:x",
        "topic:x  style:y",
        "topic:x\nstyle:y",
        "topic x",
        "topic:x ",
        "1topic:x",
        "topic:x style",
    ]
    for body in bodies:
        try:
            parses = bool(parse_tags(body))
        except AnnotationError:
            parses = False
        assert (syntax_advance(SYNTAX_KEY_START, body) in SYNTAX_ACCEPTING) == parses, body


def test_vllm_refuses_the_annotation_syntax_at_config_load():
    with pytest.raises(ValueError, match="sampling.annotation_syntax"):
        SamplingConfig(backend="vllm", annotation_syntax=True)
