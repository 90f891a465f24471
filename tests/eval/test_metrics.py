"""Metric arithmetic on known inputs, fast forms against brute force, the real MiniLM."""

import math
from collections import Counter

import numpy as np
import pytest

from eval.metrics.drift import annotation_drift, smoothed_kl_bits, tag_counts
from eval.metrics.embedding import (
    distinct_k,
    mean_pairwise_dissimilarity,
    mean_pairwise_dissimilarity_bruteforce,
    threshold_partition,
    vendi_score,
    vendi_score_bruteforce,
)
from eval.metrics.entropy import entropy_bits, estimate_entropy_bits, key_label, semantic_entropy
from eval.metrics.lexical import compression_ratio, distinct_n, repeated_ngram_fraction


@pytest.mark.parametrize("n,d", [(2, 5), (30, 16), (16, 64), (100, 384)])
def test_pairwise_dissimilarity_fast_equals_bruteforce(n, d):
    X = np.random.default_rng(n * d).normal(size=(n, d))
    X[1] = X[0]  # a duplicate pair, as real samples have
    assert mean_pairwise_dissimilarity(X) == pytest.approx(mean_pairwise_dissimilarity_bruteforce(X), abs=1e-10)


def test_pairwise_dissimilarity_known_values():
    assert mean_pairwise_dissimilarity(np.ones((5, 3))) == pytest.approx(0.0, abs=1e-12)
    assert mean_pairwise_dissimilarity(np.eye(4)) == pytest.approx(1.0)
    assert mean_pairwise_dissimilarity(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    assert math.isnan(mean_pairwise_dissimilarity(np.ones((1, 3))))  # undefined, not 0


@pytest.mark.parametrize("n", [1, 5, 40])
def test_vendi_identical_is_one_and_orthogonal_is_n(n):
    assert vendi_score(np.tile(np.array([[0.3, -1.2, 2.0]]), (n, 1))) == pytest.approx(1.0)
    assert vendi_score(np.eye(n)) == pytest.approx(n)
    assert vendi_score(np.eye(n) * 7.0) == pytest.approx(n)  # rows are normalised first


@pytest.mark.parametrize("n,d", [(50, 8), (8, 50), (100, 384)])
def test_vendi_small_matrix_route_equals_bruteforce(n, d):
    X = np.random.default_rng(7).normal(size=(n, d))
    assert vendi_score(X) == pytest.approx(vendi_score_bruteforce(X), rel=1e-9)


def test_threshold_partition_is_greedy_first_match():
    X = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [1.0, 0.01], [-1.0, 0.0]])
    labels = threshold_partition(X, threshold=0.95)
    assert labels == [0, 0, 1, 0, 2]
    assert distinct_k(labels) == 3
    assert distinct_k(threshold_partition(X, threshold=1.01)) == 5  # nothing is equivalent


def test_distinct_n_pools_samples_and_never_crosses_them():
    texts = ["the cat sat", "The cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # lower-cased: the, cat, sat, ran
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (the cat) twice; no "sat the" bigram
    assert math.isnan(distinct_n(["one"], 2))
    assert repeated_ngram_fraction("a b a b a b", 2) == pytest.approx(1 - 2 / 5)


def test_compression_ratio_is_higher_for_more_varied_text():
    varied = [
        "The market rallied after the bank cut rates.",
        "A striker scored twice in the cup final.",
        "New phones shipped with faster chips this year.",
        "The minister resigned over the budget row.",
    ]
    repeated = ["The market rallied after the bank cut rates."] * 4
    assert compression_ratio(varied) > compression_ratio(repeated)
    assert math.isnan(compression_ratio([""]))


def test_entropy_bits_known_values():
    assert entropy_bits(["a", "a", "a"]) == 0.0
    assert entropy_bits(["a", "b"]) == pytest.approx(1.0)
    assert entropy_bits(["a", "b", "c", "d"]) == pytest.approx(2.0)
    assert entropy_bits(["a", "a", "b", "b", "c", "c", "d", "d"]) == pytest.approx(2.0)
    assert math.isnan(entropy_bits([]))


def test_semantic_entropy_per_key_with_coverage():
    tags = [
        [{"key": "topic", "value": "sport"}, {"key": "entity", "value": "B"}, {"key": "entity", "value": "A"}],
        [{"key": "topic", "value": "sport"}, {"key": "entity", "value": "A"}, {"key": "entity", "value": "B"}],
        [{"key": "topic", "value": "tech"}],
        [{"key": "topic", "value": "film"}],
    ]
    assert key_label(tags[0], "entity") == "A|B" == key_label(tags[1], "entity")
    labels = [{k: key_label(t, k) for k in ("topic", "entity", "location")} for t in tags]
    se = semantic_entropy(labels, ["topic", "entity", "location"])
    assert se["per_key"]["topic"] == pytest.approx(1.5)  # sport x2, tech, film
    assert se["per_key"]["entity"] == pytest.approx(1.0)  # A|B x2, <absent> x2: absence is a label
    assert se["coverage"] == {"topic": 1.0, "entity": 0.5, "location": 0.0}
    assert se["per_key"]["location"] == 0.0  # every sample <absent>: no diversity
    assert se["mean"] == pytest.approx((1.5 + 1.0 + 0.0) / 3)


def test_semantic_entropy_of_identical_labels_is_zero_whatever_the_coverage():
    # Identical topics with a location on 0, 1 or 16 of 16 samples: leaving unlabelled samples out and
    # dropping absent keys would give 0.99, 0.49 and 2.49 bits for what is one label.
    for with_location in (0, 1, 16):
        labels = [{"topic": "sport", "location": "London" if i < with_location else None} for i in range(16)]
        se = semantic_entropy(labels, ["topic", "location"])
        assert se["per_key"]["topic"] == 0.0
        expected_location = 0.0 if with_location in (0, 16) else entropy_bits(["L"] + ["-"] * 15)
        assert se["per_key"]["location"] == pytest.approx(expected_location)
    same = [{"topic": "sport", "location": "London"}] * 16
    assert semantic_entropy(same, ["topic", "location"])["mean"] == 0.0


def test_miller_madow_adds_the_bias_correction():
    counts = [8, 4, 4]
    plugin = estimate_entropy_bits(counts, "plugin")
    assert plugin == pytest.approx(1.5)
    assert estimate_entropy_bits(counts, "miller_madow") == pytest.approx(1.5 + 2 / (2 * 16 * math.log(2)))
    assert estimate_entropy_bits([16], "miller_madow") == 0.0
    with pytest.raises(ValueError, match="estimator"):
        estimate_entropy_bits(counts, "jackknife")


def test_annotation_drift_kl_zero_for_same_distribution_and_positive_otherwise():
    pre = tag_counts([[{"key": "topic", "value": "sport"}], [{"key": "topic", "value": "tech"}]] * 10)
    same = tag_counts([[{"key": "topic", "value": "sport"}], [{"key": "topic", "value": "tech"}]])
    narrow = tag_counts([[{"key": "topic", "value": "sport"}]] * 4)
    assert smoothed_kl_bits(same["topic"], pre["topic"], 0.5) == pytest.approx(0.0, abs=1e-12)
    narrow["tpoic"] = Counter({"x": 2})  # a misspelt key the model invented
    result = annotation_drift(narrow, pre, smoothing=0.5)
    drift = result["per_key"]
    assert result["sampled_keys_not_in_pretraining"] == {"tpoic": 2} and "tpoic" not in drift
    assert drift["topic"]["kl_sampled_vs_pretraining"] > 0.3
    assert drift["topic"]["entropy_sampled"] == 0.0 and drift["topic"]["entropy_pretraining"] == pytest.approx(1.0)
    assert drift["<keys>"]["n_sampled"] == 4
    # p_s = (4.5/5, 0.5/5), p_p = (10.5/21, 10.5/21): the documented formula
    expected = 0.9 * math.log2(0.9 / 0.5) + 0.1 * math.log2(0.1 / 0.5)
    assert drift["topic"]["kl_sampled_vs_pretraining"] == pytest.approx(expected)
    assert smoothed_kl_bits(Counter({"new": 1}), Counter({"old": 1}), 0.0) == math.inf


def test_real_minilm_embedder_orders_diversity():
    from eval.config import EmbedderConfig
    from eval.embedder import Embedder

    embedder = Embedder(EmbedderConfig())
    same = embedder.encode(["The team won the cup final."] * 4)
    varied = embedder.encode(
        [
            "The team won the cup final.",
            "Interest rates rose again.",
            "A new phone was launched.",
            "The film won an award.",
        ]
    )
    assert same.shape == (4, 384)
    assert np.linalg.norm(varied, axis=1) == pytest.approx(np.ones(4), abs=1e-5)
    assert mean_pairwise_dissimilarity(same) == pytest.approx(0.0, abs=1e-5)
    assert vendi_score(same) == pytest.approx(1.0, abs=1e-4)
    assert mean_pairwise_dissimilarity(varied) > 0.5
    assert vendi_score(varied) > 2.5
    assert distinct_k(threshold_partition(varied, 0.9)) == 4
