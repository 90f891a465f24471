"""A score row is a function of the group's samples and the models' outputs alone (no model loads)."""

import numpy as np

from eval.config import MetricsConfig, RestrictedValueConfig, SemanticEntropyConfig
from eval.group_row import GroupRowInput, RowSettings, group_row


def _sample(index: int, response: str, parse_ok: bool, error: str | None = None) -> dict:
    return {
        "id": f"anchored|t=1|p0|{index}",
        "arm": "anchored",
        "mode": "anchored",
        "temperature": 1.0,
        "prompt_id": "p0",
        "response": response,
        "parse_ok": parse_ok,
        "parse_error": error,
        "finish_reason": "length" if index == 3 else "stop",
    }


def _group(quality_bar: float = 0.5) -> GroupRowInput:
    metrics = MetricsConfig(
        distinct_n=[1],
        semantic_entropy=SemanticEntropyConfig(labels="judge", attributes=["section"], primary="section"),
        restricted_value=RestrictedValueConfig(attribute="section", value="sport"),
    )
    settings = RowSettings(
        metrics=metrics,
        samples_per_prompt=4,
        quality_bar=quality_bar,
        label_keys=("section",),
        secondary_label_keys=(),
        scorer={"embedder": "test"},
    )
    samples = [
        _sample(0, "the match ended late", True),
        _sample(1, "the election was close", True),
        _sample(2, "the match ended late", False, "annotation truncated at max_annotation_tokens=4"),
        _sample(3, "", False, "no annotation at the start"),
    ]
    return GroupRowInput(
        group_id="anchored|t=1|p0",
        samples=samples,
        embeddings=np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]),
        classes=[0, 1, 0, 2],
        quality=[0.9, 0.2, None, 0.7],
        labels=[{"section": "sport"}, {"section": "politics"}, {"section": "sport"}, {"section": None}],
        label_failed=[False, False, False, True],
        secondary_labels=None,
        settings=settings,
    )


def test_a_group_row_reads_only_its_input():
    row = group_row(_group())
    assert row["id"] == "anchored|t=1|p0" and row["complete"] and row["scorer"] == {"embedder": "test"}
    metrics = row["metrics"]
    assert metrics["distinct_k"] == 3.0
    assert metrics["pass_rate"] == 0.5 and row["passes"] == [True, False, False, True]
    assert row["quality_failures"] == 1 and abs(metrics["quality"] - 0.6) < 1e-9
    assert metrics["restricted_share"] == 2 / 3 and row["restricted_per_sample"] == [True, False, True, None]
    assert row["semantic"]["label_failures"] == 1
    assert row["parse"]["by_reason"] == {"truncated": 1, "no_annotation": 1}
    assert (row["parse"]["ok"], row["parse"]["failed"]) == (2, 2)
    assert (row["empty_responses"], row["length_stops"]) == (1, 1)
    split = row["by_annotation_status"]
    assert split["parsed"]["n_samples"] == 2 and split["failed"]["restricted_hits"] == 1
    assert split["failed"]["quality_n"] == 1


def test_the_quality_bar_in_the_settings_decides_what_passes():
    assert group_row(_group(quality_bar=0.1))["passes"] == [True, True, False, True]
    assert group_row(_group(quality_bar=0.95))["metrics"]["effective_pairwise_dissimilarity"] is None
