"""Tiny real components for the posttrain tests: a BPE trained on BBC text, a tiny OLMo-2,
and annotated SFT sets written the way the annotate stage writes them."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import tiny_lm_config
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import Olmo2Config, Olmo2ForCausalLM, PreTrainedTokenizerFast

from annotate.format import SPECIAL_TOKENS
from stage_io.records import RecordSource, load_records

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"

# One thread: on 2 shared cores a second torch thread spin-waits and makes tiny steps 50x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def bbc():
    return load_records(RecordSource(source="embedded:bbc_news"))


@pytest.fixture(scope="session")
def tokenizer(bbc):
    """A byte-level BPE with BOS prepended by its post-processor, like the pretrain stage's."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS, *SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator((t for t in bbc.select(range(0, 2225, 10))["text"]), trainer=trainer)
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, core.token_to_id(BOS))]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    tok.add_special_tokens({"extra_special_tokens": list(SPECIAL_TOKENS)}, replace_extra_special_tokens=False)
    return tok


@pytest.fixture(scope="session")
def model_dir(tokenizer, tmp_path_factory):
    """A tiny pretrained checkpoint on disk (random weights: what matters is the format)."""
    path = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    config = tiny_lm_config(Olmo2Config, tokenizer, max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id)
    Olmo2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
