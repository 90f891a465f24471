"""lm-eval's model, as the capabilities stage builds it: one BOS per sequence, and an engine
shut down (not only dropped) before the next arm's model loads."""

from __future__ import annotations

import json
from pathlib import Path

from eval.capabilities import _make_lm, release_lm
from eval.config import EvalConfig
from stage_io.config import load_config

REPO = Path(__file__).resolve().parents[2]


def hf_lm(tiny_models, tmp_path):
    arms = [{"name": "plain_sft", "model": tiny_models["plain"]}]
    config = load_config(
        EvalConfig,
        REPO / "configs" / "eval" / "tiny.yaml",
        [f"output_dir={tmp_path}", "stages=[capabilities]", "arms=" + json.dumps(arms), "sampling.device=cpu"],
    )
    return _make_lm(config, config.arms[0], "hf")


def test_lm_eval_encodes_every_context_with_exactly_one_bos(tiny_models, tmp_path):
    lm = hf_lm(tiny_models, tmp_path)
    text = "The council met on Tuesday."
    plain = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert lm.tokenizer.bos_token_id is None and lm.tok_encode(text) == plain  # no BOS token, no prefix
    lm.tokenizer.bos_token = lm.tokenizer.eos_token  # as OLMo-2's: a BOS the tokenizer itself never adds
    bos = lm.tokenizer.bos_token_id
    assert lm.tok_encode(text) == [bos, *plain]
    assert lm.tok_encode(lm.tokenizer.decode([bos]) + text).count(bos) == 1  # a BOS already written is kept alone
    ids, mask = lm.tok_batch_encode([text, "Rain."])
    assert ids[0].tolist() == [bos, *plain] and (ids[:, 0] == bos).sum() == 1  # left-padded: the short row's BOS later
    assert mask[1].sum() == len(lm.tok_encode("Rain."))


class Engine:
    def __init__(self):
        self.stopped = False

    def shutdown(self):
        self.stopped = True


class VllmLike:
    def __init__(self):
        self.model = Engine()


def test_lm_evals_vllm_engine_is_shut_down_when_its_arm_is_done():
    lm = VllmLike()
    engine = lm.model
    release_lm(lm, "vllm")
    assert engine.stopped and lm.model is None
