"""Judge answers are parsed strictly; what does not parse is counted, never replaced."""

import pytest

from eval.config import JudgeConfig, QualityConfig, SemanticEntropyConfig
from eval.judge import normalise_label, parse_attribute_labels, parse_score


def test_parse_score_takes_the_final_verdict():
    pattern = QualityConfig().score_pattern
    assert parse_score("Reasoning... a score: 3 would be harsh.\nScore: 7", pattern) == 7.0
    assert parse_score("score = 8.5", pattern) == 8.5
    assert parse_score("I would give it seven.", pattern) is None


def test_parse_attribute_labels_reads_the_first_json_object():
    attributes = ["genre", "location", "main_character_name"]
    answer = 'Sure! {"Genre": " Fairy Tale. ", "location": "a dark  forest", "extra": 1} trailing {"x": 1}'
    assert parse_attribute_labels(answer, attributes) == {
        "genre": "fairy tale",
        "location": "a dark forest",
        "main_character_name": None,
    }
    assert parse_attribute_labels("no json here {broken", attributes) is None
    assert normalise_label({"nested": 1}) is None


def test_judges_on_a_tiny_model_count_every_unparsed_answer(tiny_models):
    from eval.labels import JudgeLabels
    from eval.metrics.quality import JudgeQuality

    judge = JudgeConfig(model=tiny_models["plain"], backend="transformers", max_new_tokens=6, batch_size=4)
    labeller = JudgeLabels(SemanticEntropyConfig(labels="judge", judge=judge))
    labels, answers, failures = labeller.label(["p"] * 3, ["Once upon a time", "A story", "Another"], ["a", "b", "c"])
    assert len(answers) == 3 and failures == 3  # a tiny LM writes no JSON
    assert all(set(lab) == set(labeller.keys) and all(v is None for v in lab.values()) for lab in labels)
    quality = JudgeQuality(QualityConfig(kind="judge", judge=judge))
    assert quality.score(["p", "q"], ["r", "s"], ["a", "b"]) == [None, None]
    # Deterministic: the same judge requests give the same answers.
    assert labeller.label(["p"] * 3, ["Once upon a time", "A story", "Another"], ["a", "b", "c"])[1] == answers


def test_quality_and_labels_share_one_judge_engine(tiny_models):
    from eval.config import EvalConfig, MetricsConfig
    from eval.scoring_models import ScoringModels

    judge = JudgeConfig(model=tiny_models["plain"], backend="transformers")
    metrics = MetricsConfig(
        quality=QualityConfig(kind="judge", judge=judge),
        semantic_entropy=SemanticEntropyConfig(labels="judge", judge=judge),
    )
    models = ScoringModels(EvalConfig(metrics=metrics))
    assert models.quality_model("unused").judge.backend is models.labeller.judge.backend
    assert len(models.judge_engines) == 1
    models.close()


def test_a_bad_judge_template_names_its_config_key():
    from eval.judge import fill_template

    assert fill_template("Q: {prompt} A: {response}", "k", prompt="p", response="r") == "Q: p A: r"
    with pytest.raises(ValueError, match=r"metrics.quality.judge.template: .*\{prompt\}, \{response\}"):
        fill_template("Rate {answer}", "metrics.quality.judge.template", prompt="p", response="r")
