"""The models the score stage asks about samples, each loaded on first use and kept for the run.

The embedder, the attribute labellers, the quality model (a judge, the corpus n-gram model, or
a reference LM per arm), the distinct-k classifier and the judge engines behind them.
``ScoringModels`` only loads, caches and runs them; what a score row is made of from their
outputs is ``eval.group_row``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.config import EvalConfig, JudgeConfig
from eval.embedder import Embedder
from eval.judge import Judge, engine_key, load_engine
from eval.labels import AnnotatorLabels, load_labeller


class ScoringModels:
    """Loads each scoring model on first use and keeps it for the run (``close`` frees them)."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self._embedder: Embedder | None = None
        self._labeller = None
        self._secondary_labeller: AnnotatorLabels | None = None
        # The quality model in memory, by what it scores for (one model at a time).
        self._quality: dict[str, object] = {}
        self._classifier = None
        # One judge engine per distinct judge model (engine_key), shared by its requesters.
        self.judge_engines: dict[tuple, object] = {}
        # Quality already computed per sample id, reused when a chunk asks for the same samples again.
        self._quality_by_id: dict[str, float | None] = {}

    def judge_for(self, judge_config: JudgeConfig) -> Judge:
        """A judge with ``judge_config``'s own settings (max_new_tokens, temperature, template,
        seed) on one engine per distinct judge model: quality and labels share the engine
        when they name the same model (two copies of a 30B judge would not fit beside each
        other), never each other's settings."""
        key = engine_key(judge_config)
        if key not in self.judge_engines:
            self.judge_engines[key] = load_engine(judge_config)
        return Judge(judge_config, self.judge_engines[key])

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.config.metrics.embedder)
        return self._embedder

    @property
    def labeller(self):
        """The primary attribute labeller (None: metrics.semantic_entropy.labels is none)."""
        entropy_config = self.config.metrics.semantic_entropy
        if self._labeller is None and entropy_config.labels != "none":
            self._labeller = load_labeller(
                entropy_config,
                self.judge_for(entropy_config.judge) if entropy_config.labels == "judge" else None,
                classifier_dir=Path(self.config.output_dir) / "attribute_classifier",
            )
        return self._labeller

    @property
    def secondary_labeller(self) -> AnnotatorLabels | None:
        """The annotator's labels beside an independent primary labeller (annotator_secondary)."""
        if self._secondary_labeller is None and self.config.metrics.semantic_entropy.annotator_secondary:
            self._secondary_labeller = AnnotatorLabels(self.config.metrics.semantic_entropy)
        return self._secondary_labeller

    def quality_model(self, arm_model: str):
        """The quality model that scores ``arm_model``'s samples; loading another frees the one before."""
        quality_config = self.config.metrics.quality
        if quality_config.kind in ("judge", "ngram"):
            key = quality_config.kind  # one scorer for every arm
        else:
            key = quality_config.reference_model or arm_model
        if key not in self._quality:
            for previous in self._quality.values():  # one model in memory at a time
                previous.close()
            self._quality.clear()
            self._quality[key] = self._load_quality_model(key)
        return self._quality[key]

    def _load_quality_model(self, key: str):
        # torch comes with it: the report and study code import this module and need no quality model.
        from eval.metrics.quality import JudgeQuality, NgramQuality, ProxyQuality

        quality_config = self.config.metrics.quality
        if quality_config.kind == "judge":
            return JudgeQuality(quality_config, self.judge_for(quality_config.judge))
        if quality_config.kind == "ngram":
            return NgramQuality(quality_config)
        sampling = self.config.sampling
        return ProxyQuality(key, quality_config, device=sampling.device, dtype=sampling.dtype)

    def quality_of(self, samples: list[dict]) -> list[float | None]:
        """Quality of each sample row (all of one arm), by the configured judge or proxy; samples
        scored before (all of them) are not scored again."""
        if samples and all(sample["id"] in self._quality_by_id for sample in samples):
            return [self._quality_by_id[sample["id"]] for sample in samples]
        scorer = self.quality_model(self.config.arm(samples[0]["arm"]).model)
        prompts, responses = [row["prompt"] for row in samples], [row["response"] for row in samples]
        if self.config.metrics.quality.kind == "judge":
            values = scorer.score(prompts, responses, [row["id"] for row in samples])
        else:
            values = scorer.score(prompts, responses)
        self._quality_by_id.update({sample["id"]: value for sample, value in zip(samples, values)})
        return values

    def same_class(self, first: str, second: str) -> bool:
        """Whether the distinct-k classifier puts the two texts in one equivalence class."""
        distinct_k_config = self.config.metrics.distinct_k
        if self._classifier is None:
            from sentence_transformers import CrossEncoder  # heavy; only the classifier variant needs it

            self._classifier = CrossEncoder(distinct_k_config.classifier)
        score = float(np.ravel(self._classifier.predict([(first, second)]))[0])
        return score >= distinct_k_config.classifier_threshold

    def ngram_details(self) -> dict | None:
        """The fitted corpus n-gram model's size and discounts (kind ngram, once loaded)."""
        model = self._quality.get("ngram")
        return None if model is None else model.details

    def details(self) -> dict:
        """What the loaded models say of themselves, for scoring_provenance.json."""
        out = {"embedder_details": self.embedder.describe()}
        if self.labeller is not None:
            out["labeller_details"] = self.labeller.describe()
        if self.ngram_details() is not None:
            out["quality_details"] = self.ngram_details()
        return out

    def close(self) -> None:
        for model in self._quality.values():
            model.close()
        for labeller in (self._labeller, self._secondary_labeller):
            if labeller is not None:
                labeller.close()
        for engine in self.judge_engines.values():
            engine.close()
