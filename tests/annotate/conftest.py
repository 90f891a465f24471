"""Shared fixtures for the annotate tests: one small fitted run, one tiny random LLM."""

import pytest
from annotate_fixtures import make_tiny_config
from model_fixtures import tiny_lm_config


@pytest.fixture
def tiny_config():
    """``tiny_config(output_dir, "key=value", ...)``: the tiny YAML with overrides."""
    return make_tiny_config


@pytest.fixture(scope="session")
def fitted_run(tiny_annotated_corpus):
    """A finished offline run on 12 BBC articles: (output dir, stats); the session's shared one."""
    return tiny_annotated_corpus


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """A random-weight Llama with a byte-level BPE tokenizer trained on the spot."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny_llm")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<eos>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = [
        "topic:election entity:Tony_Blair location:London time:2005",
        "Describe the text below with tags.",
        "Shares in the company rose sharply after the announcement.",
    ]
    tokenizer.train_from_iterator(corpus * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<pad>")
    fast.save_pretrained(path)
    config = tiny_lm_config(LlamaConfig, fast, max_position_embeddings=1024, bos_token_id=None)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path
