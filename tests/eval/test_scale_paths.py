"""The paths a GPU run takes first, checked on tiny real models: stop tokens, prompts that do
not fit the engine, judge settings per requester, vLLM's token-id prompts and shutdown."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from transformers import AutoTokenizer

from annotate.format import ANNOTATION_CLOSE
from eval.backends.base import GenerationRequest, special_token_id, split_stops
from eval.config import ArmConfig, EvalConfig, JudgeConfig, MetricsConfig, QualityConfig, SemanticEntropyConfig
from posttrain.prompt_format import encode_prompt
from stage_io.config import load_config

REPO = Path(__file__).resolve().parents[2]


def ordinary_one_token_string(tokenizer) -> str:
    """A multi-character string of plain text that the tokenizer writes as one token."""
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if (
            token_id not in special
            and len(text) >= 3
            and tokenizer.encode(text, add_special_tokens=False) == [token_id]
        ):
            return text
    raise AssertionError("no multi-character token in the vocabulary")


def test_only_special_and_added_tokens_stop_by_id(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["plain"])
    ordinary = ordinary_one_token_string(tokenizer)
    assert special_token_id(tokenizer, ordinary) is None  # stopped on as text, wherever it appears
    close_id = tokenizer.convert_tokens_to_ids(ANNOTATION_CLOSE)
    assert special_token_id(tokenizer, ANNOTATION_CLOSE) == close_id
    assert special_token_id(tokenizer, tokenizer.eos_token) == tokenizer.eos_token_id
    ids, strings = split_stops(tokenizer, (ANNOTATION_CLOSE, ordinary, "\n\n\n"))
    assert ids == {close_id: ANNOTATION_CLOSE} and strings == (ordinary, "\n\n\n")


def test_prompts_over_max_model_len_are_skipped_and_counted(tmp_path, tiny_models):
    from eval.stage import run

    prompts = tmp_path / "prompts.jsonl"
    texts = ["Write about the match.", "Write about the market.", "Write about " + "the election and the vote " * 40]
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": t}) + "\n" for i, t in enumerate(texts)))
    config = load_config(
        EvalConfig,
        REPO / "configs" / "eval" / "tiny.yaml",
        [f"output_dir={tmp_path / 'run'}", f"prompts.source.source={prompts}"],
    )
    arms = [
        ArmConfig(name="plain", model=tiny_models["plain"], mode="plain"),
        ArmConfig(name="anchored", model=tiny_models["anchored"], mode="anchored"),
    ]
    sampling = dataclasses.replace(config.sampling, temperatures=[1.0], samples_per_prompt=2, max_model_len=120)
    run_dir = run(dataclasses.replace(config, arms=arms, sampling=sampling, stages=["generate"]))
    rows = [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    assert {r["prompt_id"] for r in rows} == {"p0", "p1"} and len(rows) == 2 * 2 * 2
    counts = json.loads((run_dir / "manifest.json").read_text())["counts"]["generate"]
    assert counts["prompts_too_long"] == {"plain": 1, "anchored": 1}


def test_a_shared_judge_engine_keeps_each_requesters_settings(tiny_models):
    from eval.scoring_models import ScoringModels

    quality_judge = JudgeConfig(model=tiny_models["plain"], backend="transformers", max_new_tokens=3)
    label_judge = dataclasses.replace(quality_judge, max_new_tokens=7, temperature=1.0)
    metrics = MetricsConfig(
        quality=QualityConfig(kind="judge", judge=quality_judge),
        semantic_entropy=SemanticEntropyConfig(labels="judge", judge=label_judge),
    )
    models = ScoringModels(EvalConfig(metrics=metrics))
    quality, labels = models.quality_model("unused").judge, models.labeller.judge
    assert quality.backend is labels.backend and len(models.judge_engines) == 1  # one engine
    assert (quality.config.max_new_tokens, quality.config.temperature) == (3, 0.0)
    assert (labels.config.max_new_tokens, labels.config.temperature) == (7, 1.0)
    models.close()


def test_judge_inputs_over_the_context_are_not_sent_and_count_as_unparsed(tiny_models):
    from eval.judge import Judge

    judge = Judge(
        JudgeConfig(
            model=tiny_models["plain"],
            backend="transformers",
            max_new_tokens=4,
            use_chat_template=False,
            max_model_len=40,
        )
    )
    answers = judge.ask(["Rate: fine.", "Rate: " + "very long story " * 30], ["a", "b"])
    assert answers[1] == "" and judge.too_long == 1 and len(answers) == 2
    judge.close()


def test_vllm_receives_the_ids_encode_prompt_builds(tiny_models):
    from eval.backends.vllm_backend import token_prompts

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["plain"])
    tokenizer.bos_token = tokenizer.eos_token  # a tokenizer with a BOS that it does not add itself (OLMo-2's kind)
    requests = [GenerationRequest(text="Instruction: hi\nResponse:\n", seed=1)]
    ids = token_prompts(tokenizer, requests)[0]["prompt_token_ids"]
    assert ids == encode_prompt(tokenizer, requests[0].text) and ids[0] == tokenizer.bos_token_id


def test_vllm_engine_is_shut_down_explicitly():
    from eval.backends.vllm_backend import shutdown_engine

    calls = []

    class Core:
        def shutdown(self):
            calls.append("engine_core")

    class OlderLLM:  # no LLM.shutdown(): the v1 engine core is shut down
        llm_engine = type("Engine", (), {"engine_core": Core()})()

    class NewerLLM(OlderLLM):
        def shutdown(self):
            calls.append("llm")

    shutdown_engine(OlderLLM())
    shutdown_engine(NewerLLM())
    assert calls == ["engine_core", "llm"]


def test_prompts_past_the_models_positions_are_skipped_on_the_transformers_backend(tmp_path, tiny_models):
    from eval.backends.transformers_backend import TransformersBackend
    from eval.stage import run

    backend = TransformersBackend(tiny_models["plain"], device="cpu")
    assert backend.max_model_len == 256  # the tiny model's max_position_embeddings, with no max_model_len set
    assert TransformersBackend(tiny_models["plain"], device="cpu", max_model_len=9999).max_model_len == 256
    prompts = tmp_path / "prompts.jsonl"
    texts = ["Write about the match.", "Write about " + "the election and the vote " * 120]
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": t}) + "\n" for i, t in enumerate(texts)))
    config = load_config(
        EvalConfig,
        REPO / "configs" / "eval" / "tiny.yaml",
        [f"output_dir={tmp_path / 'run'}", f"prompts.source.source={prompts}"],
    )
    sampling = dataclasses.replace(
        config.sampling, temperatures=[1.0], samples_per_prompt=1, max_model_len=None, max_new_tokens=8
    )
    arms = [ArmConfig(name="plain", model=tiny_models["plain"], mode="plain")]
    run_dir = run(dataclasses.replace(config, arms=arms, sampling=sampling, stages=["generate"]))
    rows = [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    assert {r["prompt_id"] for r in rows} == {"p0"}
    assert json.loads((run_dir / "manifest.json").read_text())["counts"]["generate"]["prompts_too_long"] == {"plain": 1}
