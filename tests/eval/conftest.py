"""Tiny real models for the eval tests, built once per session in a temp dir.

A byte-level BPE trained on BBC text, wrapped as PreTrainedTokenizerFast with eos/pad and
the two annotation tokens; two tiny Llama models trained a few dozen steps on
``Instruction/Response`` text, one plain, one with an annotation before each response
(so it learns to close annotations). The annotate output used for semantic entropy and drift is the real annotate stage's tiny run
(``tiny_annotated_corpus`` in tests/conftest.py, one per session); a keyword annotator stands in
for ``annotate.load_annotator`` only where the annotate stage does not provide it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from model_fixtures import tiny_lm_config

from annotate.format import SPECIAL_TOKENS, Tag, make_tags, render_annotation
from posttrain.prompt_format import PromptFormat
from stage_io.records import RecordSource, load_records

EOS, PAD = "<|endoftext|>", "<|pad|>"
TOPIC_WORDS = {
    "business": ["market", "company", "shares", "profit", "economy", "bank", "firm", "sales"],
    "politics": ["government", "minister", "election", "labour", "party", "tory", "blair", "vote"],
    "sport": ["match", "game", "player", "cup", "team", "win", "coach", "season"],
    "tech": ["software", "computer", "users", "net", "mobile", "phone", "technology", "digital"],
    "entertainment": ["film", "music", "award", "star", "band", "show", "album", "actor"],
}


def bbc_rows(limit: int = 250) -> list[dict]:
    ds = load_records(RecordSource(source="embedded:bbc_news"))
    rows = [ds[i] for i in range(0, len(ds), max(1, len(ds) // limit))][:limit]
    return rows


def article_tags(row: dict) -> tuple[Tag, ...]:
    # Two easy tags: a tiny model learns to write and close them in a few seconds.
    return make_tags([("topic", row["topic"]), ("domain", "news")])


def train_tokenizer(rows: list[dict], out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=[EOS, PAD, *SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([r["text"] for r in rows], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    fast.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    fast.save_pretrained(out)
    return fast


def train_tiny_llama(tokenizer, texts: list[str], out: Path, steps: int = 80, seed: int = 0) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = tiny_lm_config(
        LlamaConfig,
        tokenizer,
        hidden=64,
        heads=4,
        max_position_embeddings=256,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    encoded = [tokenizer.encode(t, add_special_tokens=False)[:96] for t in texts]
    model.train()
    for _ in range(steps):
        batch = rng.sample(encoded, 8)
        width = max(len(b) for b in batch)
        ids = torch.full((8, width), tokenizer.pad_token_id)
        labels = torch.full((8, width), -100)
        for i, b in enumerate(batch):
            ids[i, : len(b)] = torch.tensor(b)
            labels[i, : len(b)] = torch.tensor(b)
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


FORMAT = PromptFormat()
PROMPTS = ["Write a news article about business.", "Write a news article about sport.", "Report on an election."]


def sft_text(row: dict, anchored: bool) -> str:
    prompt = FORMAT.render_prompt(f"Write a news article about {row['topic']}.")
    annotation = render_annotation(article_tags(row)) if anchored else ""
    body = " ".join(row["text"].split()[:40])
    return prompt + annotation + body + EOS


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_models")
    rows = bbc_rows()
    tokenizer = train_tokenizer(rows, root / "tokenizer")
    plain, anchored = root / "plain", root / "anchored"
    train_tiny_llama(tokenizer, [sft_text(r, False) for r in rows], plain)
    train_tiny_llama(tokenizer, [sft_text(r, True) for r in rows], anchored, steps=150)
    return {"plain": str(plain), "anchored": str(anchored), "tokenizer": str(root / "tokenizer")}


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    return str(path)


class StandInAnnotator:
    """Keyword annotator standing in for annotate.load_annotator(...) where the annotate
    stage does not provide it (it was written in parallel with eval)."""

    def annotate(self, texts: list[str]) -> list[tuple[Tag, ...]]:
        out = []
        for text in texts:
            lower = text.lower()
            scores = {t: sum(lower.count(w) for w in ws) for t, ws in TOPIC_WORDS.items()}
            topic = max(scores, key=scores.get)
            pairs = [("topic", topic)] if scores[topic] else []
            pairs.append(("style", "long" if len(text.split()) > 15 else "short"))
            out.append(make_tags(pairs))
        return out


def real_annotate_stage():
    """The annotate stage's public API, or None while it does not exist."""
    try:
        from annotate import AnnotateConfig, load_annotator, run  # noqa: F401
    except ImportError:
        return None
    return AnnotateConfig, run


@pytest.fixture
def annotator_for_eval(monkeypatch):
    """Nothing to do when annotate.load_annotator exists; else patch in the stand-in."""
    import annotate

    if real_annotate_stage() is None:
        monkeypatch.setattr(annotate, "load_annotator", lambda path: StandInAnnotator(), raising=False)
        return "stand-in"
    return "real"


@pytest.fixture(scope="session")
def annotate_output(tiny_annotated_corpus) -> str:
    """An annotate output dir (ANN/data with tags and status, ANN/annotator): the real annotate
    stage's tiny run, shared with the annotate tests."""
    return str(tiny_annotated_corpus[0])


@pytest.fixture(scope="session")
def attribute_judge(tmp_path_factory):
    """The section classifier with default settings (what configs/eval/tiny.yaml judges with), fitted once
    per session on the BBC gold labels: (its folder, the judge). Copy the folder to reuse it elsewhere."""
    from eval.attribute_classifier import load_or_fit
    from eval.config import ClassifierJudgeConfig

    folder = tmp_path_factory.mktemp("attribute_judge")
    return folder, load_or_fit(ClassifierJudgeConfig(), folder)
