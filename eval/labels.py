"""Attribute labels per response, for semantic entropy: a classifier, an LLM judge or the annotator.

- classifier: a supervised classifier of one attribute trained on the corpus's gold
  labels (eval.attribute_classifier): independent of the annotations, the embedded
  default's judge;
- annotator: the annotate stage's offline annotator re-applied to the generated
  responses (``annotate.load_annotator(dir).annotate(texts) -> list[Tags]``); a key's
  label is its values (eval.metrics.entropy.key_label).
- judge: an LLM labels each response on configured attributes (the paper's 8 story
  attributes by default) as one JSON object; unparsed answers are counted, and their
  labels are None (counted as absent in the entropy, never replaced by a guess).

The annotator is NOT independent of the anchored arm (it wrote that arm's training
annotations); its labels are a secondary figure, named as such (``annotator_entropy``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from eval.attribute_classifier import load_or_fit
from eval.config import ATTRIBUTE_JUDGE_TEMPLATE, SemanticEntropyConfig
from eval.judge import Judge, fill_template, parse_attribute_labels
from eval.metrics.entropy import key_label


class AnnotatorLabels:
    def __init__(self, config: SemanticEntropyConfig) -> None:
        if not config.annotator_dir:
            raise ValueError("metrics.semantic_entropy.labels=annotator needs metrics.semantic_entropy.annotator_dir")
        try:
            from annotate import load_annotator
        except ImportError as err:
            raise ImportError(
                "metrics.semantic_entropy.labels=annotator needs annotate.load_annotator (the annotate stage)"
            ) from err
        self.keys = list(config.keys)
        self.annotator_dir = config.annotator_dir
        self.annotator = load_annotator(config.annotator_dir)
        self.source = f"annotator:{config.annotator_dir}"

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {
            "kind": "annotator",
            "annotator_dir": self.annotator_dir,
            "keys": self.keys,
            "note": "not independent of the anchored arm's training (the annotator wrote its annotations)",
        }

    def label(
        self, prompts: Sequence[str], responses: Sequence[str], ids: Sequence[str]
    ) -> tuple[list[dict], list[list[dict]], int]:
        """Per response: key -> label (None if absent); the raw tags; failures (always 0 here)."""
        tag_sets = self.annotator.annotate(list(responses))
        raw = [[{"key": t.key, "value": t.value} for t in tags] for tags in tag_sets]
        return [{k: key_label(tags, k) for k in self.keys} for tags in raw], raw, 0


class JudgeLabels:
    def __init__(self, config: SemanticEntropyConfig, judge: Judge | None = None) -> None:
        self.config = config
        self.keys = list(config.attributes)
        self.judge = judge or Judge(config.judge)
        self.source = f"judge:{config.judge.model}"

    def close(self) -> None:
        pass  # the judge is owned by whoever made it (it may be shared with quality)

    def describe(self) -> dict:
        return {"kind": "judge", "model": self.config.judge.model, "attributes": self.keys}

    def label(
        self, prompts: Sequence[str], responses: Sequence[str], ids: Sequence[str]
    ) -> tuple[list[dict], list, int]:
        listing = "\n".join(f"- {a}" for a in self.keys)
        template = self.config.judge.template or ATTRIBUTE_JUDGE_TEMPLATE
        contents = [
            fill_template(template, "metrics.semantic_entropy.judge.template", attributes=listing, response=r, prompt=p)
            for p, r in zip(prompts, responses)
        ]
        answers = self.judge.ask(contents, ids)
        labels, failures = [], 0
        for answer in answers:
            parsed = parse_attribute_labels(answer, self.keys)
            if parsed is None:
                failures += 1
                parsed = {k: None for k in self.keys}
            labels.append(parsed)
        return labels, answers, failures


class ClassifierLabels:
    def __init__(self, config: SemanticEntropyConfig, default_dir: Path) -> None:
        self.keys = [config.classifier.attribute]
        self.classifier = load_or_fit(config.classifier, default_dir)
        self.source = f"classifier:{config.classifier.source.source}:{config.classifier.label_field}"

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        info = self.classifier.info
        return {
            "kind": "classifier",
            "attribute": info["attribute"],
            "heldout_accuracy": info["heldout_accuracy"],
            "n_train": info["n_train"],
            "n_test": info["n_test"],
            "labels": info["labels"],
            "model": info["model"],
            "source": info["source"],
            "label_field": info["label_field"],
        }

    def label(
        self, prompts: Sequence[str], responses: Sequence[str], ids: Sequence[str]
    ) -> tuple[list[dict], list, int]:
        predicted = self.classifier.predict(list(responses))
        return [{self.keys[0]: label} for label in predicted], predicted, 0


def load_labeller(config: SemanticEntropyConfig, judge: Judge | None = None, classifier_dir: Path | None = None):
    """The primary labeller of ``config.labels`` (None for ``none``)."""
    if config.labels == "annotator":
        return AnnotatorLabels(config)
    if config.labels == "judge":
        return JudgeLabels(config, judge)
    if config.labels == "classifier":
        return ClassifierLabels(config, classifier_dir or Path("attribute_classifier"))
    return None
