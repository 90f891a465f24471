import math

import pytest

from annotate.stats import StatsAccumulator, entropy_bits, format_table


def test_entropy_of_known_distributions():
    assert entropy_bits({f"v{i}": 5 for i in range(8)}) == pytest.approx(3.0)
    assert entropy_bits([2, 1, 1]) == pytest.approx(1.5)
    assert entropy_bits({"only": 10}) == 0.0
    assert entropy_bits([]) == 0.0
    assert entropy_bits([1, 3]) == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)))


def test_accumulator_counts_coverage_entropy_and_failures():
    acc = StatsAccumulator(keys=["topic", "entity"], length_unit="characters")
    tag = lambda k, v: {"key": k, "value": v}  # noqa: E731
    acc.add("ok", [tag("topic", "a"), tag("entity", "X"), tag("entity", "Y")], 10, "d1")
    acc.add("ok", [tag("topic", "b")], 20, "d1")
    acc.add("ok", [tag("topic", "a"), tag("entity", "X")], 30, "d2")
    acc.add("ok", [tag("topic", "b"), tag("mood", "calm")], 40, "d3")
    acc.add("failed", [], 5, "d3", "malformed after 3 attempts: no tags")
    acc.add("skipped", [], 0, "d4", "empty document")
    summary = acc.summary()
    overall = summary["overall"]
    assert (overall["chunks"], overall["ok"], overall["failed"], overall["skipped"]) == (6, 4, 1, 1)
    assert overall["documents"] == 4 and overall["characters"] == 105
    assert overall["mean_tags_per_ok_chunk"] == pytest.approx(8 / 4)
    assert list(summary["keys"]) == ["topic", "entity", "mood"]  # schema order, then the rest
    assert summary["keys"]["topic"] == {
        "coverage": 1.0,
        "distinct_values": 2,
        "entropy_bits": 1.0,
        "top_values": [["a", 2], ["b", 2]],
    }
    assert summary["keys"]["entity"]["coverage"] == 0.5
    assert summary["keys"]["entity"]["entropy_bits"] == pytest.approx(entropy_bits([2, 1]))
    assert overall["max_entropy_key"] == "topic" and overall["max_entropy_bits"] == 1.0
    assert overall["failure_reasons"] == {"malformed after 3 attempts": 1, "empty document": 1}
    table = format_table(summary)
    assert "topic" in table and "failed 1" in table and "skipped 1" in table
