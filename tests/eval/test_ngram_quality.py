"""The neutral quality reference: a Kneser-Ney word trigram model of the corpus text."""

import random

import datasets
import numpy as np
import pytest

from eval.config import EvalConfig, NgramQualityConfig, QualityConfig
from eval.metrics.ngram import TrigramKN, fit_corpus_model, words
from eval.metrics.quality import NgramQuality
from stage_io.config import ConfigError, load_config
from tests.eval.conftest import bbc_rows
from tests.eval.test_run import TINY


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """An annotate-shaped output: data/*.parquet with text, tags and status (tags carry a word
    that never appears in any text)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "data").mkdir()
    rows = [
        {
            "id": r["id"],
            "text": r["text"][:800],
            "status": "ok",
            "tags": [{"key": "topic", "value": "zzyzxannotationonly"}],
        }
        for r in bbc_rows(150)
    ]
    rows.append({"id": "empty", "text": " ", "status": "failed", "tags": []})
    datasets.Dataset.from_list(rows[:100]).to_parquet(str(root / "data" / "shard-00000.parquet"))
    datasets.Dataset.from_list(rows[100:]).to_parquet(str(root / "data" / "shard-00001.parquet"))
    return root


def test_probabilities_of_every_word_sum_to_one_in_seen_and_unseen_contexts():
    model = TrigramKN(["the cat sat on the mat .", "the dog sat on the log .", "a cat saw the dog"])
    vocabulary = list(model.vocab) + ["unseenword"]
    for context in ("the cat", "sat on", "on the", "dog zebra", "zebra yak"):
        total = sum(np.exp(model.logprobs(f"{context} {w}")[-1]) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-9), context


def test_a_corpus_text_scores_higher_than_its_words_shuffled(corpus_dir):
    model, details = fit_corpus_model(corpus_dir, max_rows=None)
    assert details["rows_read"] == 151 and details["empty_rows_skipped"] == 1 and details["files"] == 2
    rng = random.Random(0)
    for row in bbc_rows(150)[:5]:
        text = " ".join(row["text"].split()[:60])
        shuffled = text.split()
        rng.shuffle(shuffled)
        assert model.mean_logprob(text) > model.mean_logprob(" ".join(shuffled)) + 0.5


def test_the_annotations_are_never_read(corpus_dir):
    model, _ = fit_corpus_model(corpus_dir, max_rows=None)
    assert "zzyzxannotationonly" not in model.vocab and "topic" not in model.vocab
    assert set(words("Shares rose, it's 5%.")) == {"shares", "rose", ",", "it", "'", "s", "5", "%", "."}


def test_quality_is_mean_word_logprob_minus_the_repetition_penalty(corpus_dir):
    config = QualityConfig(
        kind="ngram",
        ngram=NgramQualityConfig(corpus=str(corpus_dir), max_rows=50),
        degeneration_ngram=2,
        degeneration_weight=2.0,
    )
    scorer = NgramQuality(config)
    assert scorer.details["rows_read"] == 50
    looping = "the match the match the match the match"
    fluent, empty = scorer.score(["p", "p"], [looping, ""])
    # 7 bigrams, 2 distinct: the repeated fraction is 5/7.
    assert fluent == pytest.approx(scorer.model.mean_logprob(looping) - 2.0 * 5 / 7)
    assert empty is None


def test_ngram_quality_without_a_corpus_fails_at_config_load_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="metrics.quality.ngram.corpus"):
        load_config(EvalConfig, TINY, ["metrics.quality.kind=ngram"])
    with pytest.raises(ValueError, match="metrics.quality.ngram.corpus: no .*parquet"):
        fit_corpus_model(tmp_path, max_rows=None)
