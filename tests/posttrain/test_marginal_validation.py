"""loss_marginal: the anchored model's response NLL with annotations it samples itself, written by
posttrain into validation.json and by scripts/score_marginal_validation.py for finished runs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from posttrain_fixtures import sft_rows, tiny_posttrain_config, write_annotated
from transformers import AutoModelForCausalLM

from posttrain.config import DataConfig
from posttrain.examples import build_examples
from posttrain.sft_records import load_sft_rows
from posttrain.train import load_tokenizer, marginal_rules, run
from posttrain.validation import (
    annotation_seed,
    response_nlls,
    sample_annotations,
    total_nll,
    without_annotation,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "score_marginal_validation.py"


def load_script():
    spec = importlib.util.spec_from_file_location("score_marginal_validation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(bbc, model_dir, tmp_path_factory):
    """A tiny anchored SFT run with a held-out split, two sampled annotations per example."""
    root = tmp_path_factory.mktemp("marginal")
    ann = write_annotated(root / "ann", sft_rows(bbc, 40))
    data = DataConfig(
        annotations=str(ann),
        validation_fraction=0.15,
        validation_annotation_samples=2,
        validation_annotation_max_tokens=12,
    )
    config = tiny_posttrain_config(model_dir, root / "anchored", "anchored", data, {"max_steps": 2})
    return config, run(config)


def naive_marginal_k1(model, examples, rules, pad_id):
    """K=1 by hand: one annotation per example drawn without a KV cache, then its response NLL."""
    sequences = []
    for example in examples:
        ids, start = without_annotation(example)
        context = ids[:start] + [rules.open_id]
        generator = torch.Generator().manual_seed(annotation_seed(example.id, 0))
        body = []
        while len(body) < rules.max_tokens:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([context + body])).logits[0, -1].float()
            token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            if token == rules.close_id or token in rules.stop_ids:
                break
            body.append(token)
        z = [rules.open_id] + body + [rules.close_id]
        sequences.append((ids[:start] + z + ids[start:], start + len(z)))
    return total_nll(response_nlls(model, sequences, pad_id, "cpu", batch_size=4))


def test_posttrain_writes_a_finite_marginal_loss_with_its_k(trained):
    config, out = trained
    report = json.loads((out / "validation.json").read_text())
    assert report["k"] == 2 and report["n_examples"] > 0
    assert math.isfinite(report["loss_marginal"]) and report["loss_marginal"] > 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["validation_loss_marginal"] == report["loss_marginal"]


def test_script_with_one_sample_equals_a_direct_computation_and_matches_the_ids(trained):
    config, out = trained
    result = load_script().score_run(out, k=1, device="cpu")
    report = json.loads((out / "validation.json").read_text())
    assert json.loads((out / "validation_marginal.json").read_text()) == result
    assert (result["k"], result["ids_sha256"], result["n_examples"], result["n_response_tokens"]) == (
        1,
        report["ids_sha256"],
        report["n_examples"],
        report["n_response_tokens"],
    )
    tokenizer = load_tokenizer(config)
    held_out = build_examples(load_sft_rows(config.data, need_annotations=True), tokenizer, config).validation
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    rules = marginal_rules(config, tokenizer)
    total, count = naive_marginal_k1(model, held_out, rules, tokenizer.pad_token_id)
    assert count == result["n_response_tokens"]
    assert result["loss_marginal"] == pytest.approx(total / count, rel=1e-5)


def test_script_reproduces_posttrains_marginal_loss_with_the_same_k(trained):
    _, out = trained
    result = load_script().score_run(out, k=None, device="cpu")
    report = json.loads((out / "validation.json").read_text())
    assert result["k"] == report["k"] == 2
    assert result["loss_marginal"] == pytest.approx(report["loss_marginal"], rel=1e-5)


def test_sampled_annotations_are_delimited_and_capped(trained):
    config, out = trained
    tokenizer = load_tokenizer(config)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    rules = marginal_rules(config, tokenizer)
    prompt = tokenizer("Instruction: Write a news article.\nResponse:\n")["input_ids"]
    annotations = sample_annotations(model, prompt, "some-id", rules, "cpu")
    assert len(annotations) == 2 and annotations == sample_annotations(model, prompt, "some-id", rules, "cpu")
    for z in annotations:
        assert z[0] == rules.open_id and z[-1] == rules.close_id and len(z) <= rules.max_tokens + 2
        assert not set(z[1:-1]) & {rules.close_id, *rules.stop_ids}  # a stop inside forces the close


def test_script_refuses_a_run_dir_whose_held_out_ids_differ(trained, tmp_path):
    _, out = trained
    report = json.loads((out / "validation.json").read_text())
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("manifest.json",):
        (copy / name).write_text((out / name).read_text())
    (copy / "validation.json").write_text(json.dumps({**report, "ids_sha256": "sha256:other"}))
    with pytest.raises(ValueError, match="held-out split"):
        load_script().score_run(copy, k=1, device="cpu", root=Path("/"))
