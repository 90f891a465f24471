"""One BOS rule for pretraining documents, SFT examples and prompts at evaluation, whether
or not the tokenizer adds BOS itself."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from posttrain.prompt_format import PromptFormat, encode_prompt, with_bos
from pretrain.tokenizer import train_bpe

TEXTS = ["The match ended in a draw after extra time.", "Shares rose as the market recovered."] * 20


def bpe_without_post_processor(bos: str | None) -> PreTrainedTokenizerFast:
    """A byte-level BPE that adds nothing itself; ``bos`` names its BOS token (OLMo-2 names
    <|endoftext|> and never adds it) or None for a tokenizer without one."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        TEXTS,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=bos, eos_token="<|endoftext|>")


@pytest.mark.parametrize("kind", ["adds_bos", "names_bos_adds_none"])
def test_prompts_start_with_exactly_one_bos_like_pretraining_documents(kind):
    tokenizer = train_bpe(TEXTS, 300) if kind == "adds_bos" else bpe_without_post_processor("<|endoftext|>")
    bos = tokenizer.bos_token_id
    prompt = PromptFormat().render_prompt("Write about the match.")
    ids = encode_prompt(tokenizer, prompt)
    document = with_bos(tokenizer, tokenizer(prompt, add_special_tokens=False)["input_ids"])  # as pretraining builds it
    assert ids == document and ids[0] == bos and ids.count(bos) == 1
    assert encode_prompt(tokenizer, tokenizer.bos_token + prompt) == ids  # a template that writes BOS: not doubled


def test_a_tokenizer_without_bos_gets_no_prefix():
    tokenizer = bpe_without_post_processor(None)
    assert encode_prompt(tokenizer, "Shares rose.") == tokenizer("Shares rose.", add_special_tokens=False)["input_ids"]
