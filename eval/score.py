"""Stage 2: score every (arm, temperature, prompt) group of samples into scores.jsonl.

One row per group, id ``arm|t=T|prompt_id``. Groups already in the file are skipped
(``rescore=true`` starts the file over); new rows are appended per chunk of groups, so a
killed scoring run resumes where it stopped. Every metric is computed on the
responses with their annotations stripped (generations.jsonl ``response``).

Scores are cheap next to generation, so they are redone rather than refused when what
they were computed from changed: the file starts over when the scoring settings
(``scoring_identity``, recorded in run.json) differ from the ones it was scored under, and
a group whose samples grew since it was scored (a partial run resumed, more samples per
prompt) is scored again.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eval.config import EvalConfig
from eval.generate import GENERATIONS, temperature_key
from eval.jsonl_store import append_rows, dedupe, read_rows, replace_rows, write_json
from eval.metrics.embedding import (
    classifier_partition,
    distinct_k,
    mean_pairwise_dissimilarity,
    threshold_partition,
    vendi_score,
)
from eval.metrics.entropy import semantic_entropy
from eval.metrics.lexical import compression_ratio, distinct_n
from stage_io.run_identity import (
    RUN_FILE,
    Identity,
    compare_identity,
    config_identity,
    describe_changes,
    read_identity,
    write_identity,
)

logger = logging.getLogger(__name__)

SCORES = "scores.jsonl"
SCORING_PROVENANCE = "scoring_provenance.json"
GROUPS_PER_CHUNK = 32
# The run.json entry holding the settings scores.jsonl was scored under.
SCORING_ENTRY = "scoring"
# metrics keys that change no score: batch sizes, devices, judge engine placement, and
# drift (the report computes it from generations.jsonl).
RESUMABLE_METRICS = (
    "drift",
    "embedder.batch_size",
    "embedder.device",
    "quality.batch_size",
    "quality.judge.batch_size",
    "quality.judge.tensor_parallel_size",
    "quality.judge.gpu_memory_utilization",
    "semantic_entropy.judge.batch_size",
    "semantic_entropy.judge.tensor_parallel_size",
    "semantic_entropy.judge.gpu_memory_utilization",
)


def group_id(arm: str, temperature: float, prompt_id: str) -> str:
    return f"{arm}|t={temperature_key(temperature)}|{prompt_id}"


def diversity_metric_names(config: EvalConfig) -> list[str]:
    """Every diversity metric this config computes (higher = more diverse)."""
    names = ["pairwise_dissimilarity", "vendi", "distinct_k"]
    names += [f"distinct_{n}" for n in config.metrics.distinct_n] + ["compression_ratio"]
    if config.metrics.semantic_entropy.labels != "none":
        names.append("semantic_entropy")
    if config.metrics.semantic_entropy.annotator_secondary:
        names.append("annotator_entropy")
    if config.metrics.quality.kind != "none":
        names.append("effective_pairwise_dissimilarity")
    return names


def quality_metric_names(config: EvalConfig) -> list[str]:
    return [] if config.metrics.quality.kind == "none" else ["quality", "pass_rate"]


def parse_error_category(error: str | None) -> str:
    """A short bucket for a parse error message (the full message stays in generations.jsonl)."""
    if error is None:
        return "ok"
    if error.startswith("annotation truncated"):
        return "truncated"
    if "ended its turn inside" in error:
        return "ended_inside_annotation"
    if error.startswith("no annotation at the start"):
        return "no_annotation"
    if error.startswith("no <|/ann|>"):
        return "no_close_delimiter"
    return "malformed_tags"


class GroupScorer:
    """Loads each scoring model on first use and keeps it for the run."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self._embedder = None
        self._labeller = None
        self._secondary_labeller = None
        self._quality: dict[str, object] = {}
        self._classifier = None
        self._judges: dict[tuple, object] = {}
        # The quality bar in force: the absolute metrics.quality.bar, or the quantile bar once resolved.
        self.bar = config.metrics.quality.bar
        self.bar_rule: dict = {"kind": "absolute", "bar": self.bar}
        # Quality already computed per sample id (the reference arm's, scored to set a quantile bar).
        self._quality_by_id: dict[str, float | None] = {}

    def judge_for(self, judge_config):
        """A judge with ``judge_config``'s own settings (max_new_tokens, temperature, template,
        seed) on one engine per distinct judge model: quality and labels share the engine
        when they name the same model (two copies of a 30B judge would not fit beside each
        other), never each other's settings."""
        from eval.judge import Judge, engine_key, load_engine

        key = engine_key(judge_config)
        if key not in self._judges:
            self._judges[key] = load_engine(judge_config)
        return Judge(judge_config, self._judges[key])

    @property
    def embedder(self):
        if self._embedder is None:
            from eval.embedder import Embedder

            self._embedder = Embedder(self.config.metrics.embedder)
        return self._embedder

    @property
    def labeller(self):
        if self._labeller is None and self.config.metrics.semantic_entropy.labels != "none":
            from eval.labels import load_labeller

            se = self.config.metrics.semantic_entropy
            self._labeller = load_labeller(
                se,
                self.judge_for(se.judge) if se.labels == "judge" else None,
                classifier_dir=Path(self.config.output_dir) / "attribute_classifier",
            )
        return self._labeller

    @property
    def secondary_labeller(self):
        """The annotator's labels beside an independent primary labeller (annotator_secondary)."""
        if self._secondary_labeller is None and self.config.metrics.semantic_entropy.annotator_secondary:
            from eval.labels import AnnotatorLabels

            self._secondary_labeller = AnnotatorLabels(self.config.metrics.semantic_entropy)
        return self._secondary_labeller

    def quality_model(self, arm_model: str):
        q = self.config.metrics.quality
        if q.kind in ("judge", "ngram"):
            key = q.kind  # one scorer for every arm
        else:
            key = q.reference_model or arm_model
        if key not in self._quality:
            for old in self._quality.values():  # one model in memory at a time
                old.close()
            self._quality.clear()
            if q.kind == "judge":
                from eval.metrics.quality import JudgeQuality

                self._quality[key] = JudgeQuality(q, self.judge_for(q.judge))
            elif q.kind == "ngram":
                from eval.metrics.quality import NgramQuality

                self._quality[key] = NgramQuality(q)
            else:
                from eval.metrics.quality import ProxyQuality

                self._quality[key] = ProxyQuality(
                    key, q, device=self.config.sampling.device, dtype=self.config.sampling.dtype
                )
        return self._quality[key]

    def same_class(self, a: str, b: str) -> bool:
        dk = self.config.metrics.distinct_k
        if self._classifier is None:
            from sentence_transformers import CrossEncoder

            self._classifier = CrossEncoder(dk.classifier)
        return float(np.ravel(self._classifier.predict([(a, b)]))[0]) >= dk.classifier_threshold

    def describe(self) -> dict:
        """What produced the scores (recorded in every row and in scoring_provenance.json)."""
        m = self.config.metrics
        quality = {"kind": m.quality.kind}
        if m.quality.kind == "proxy":
            quality.update(
                reference_model=m.quality.reference_model or "<each arm's own model>",
                note="PROXY: mean token log-likelihood minus a repetition penalty, not a judgement of quality",
                degeneration_ngram=m.quality.degeneration_ngram,
                degeneration_weight=m.quality.degeneration_weight,
            )
        elif m.quality.kind == "ngram":
            quality.update(
                corpus=m.quality.ngram.corpus,
                max_rows=m.quality.ngram.max_rows,
                note="mean per-word log-prob (nats) under an interpolated Kneser-Ney word trigram model of the corpus "
                "text minus a repetition penalty; no arm's model is involved",
                degeneration_ngram=m.quality.degeneration_ngram,
                degeneration_weight=m.quality.degeneration_weight,
            )
        elif m.quality.kind == "judge":
            quality.update(judge=m.quality.judge.model, backend=m.quality.judge.backend)
        quality["bar"] = self.bar
        quality["bar_rule"] = self.bar_rule
        labels = {
            "labels": m.semantic_entropy.labels,
            "primary": m.semantic_entropy.primary_key(),
            "estimator": m.semantic_entropy.estimator,
        }
        if m.semantic_entropy.annotator_secondary:
            labels["secondary"] = {
                "labels": "annotator",
                "annotator_dir": m.semantic_entropy.annotator_dir,
                "note": "not independent of the anchored arm",
            }
        if m.semantic_entropy.labels == "classifier":
            c = m.semantic_entropy.classifier
            labels["classifier"] = {"source": c.source.source, "label_field": c.label_field, "attribute": c.attribute}
        if m.semantic_entropy.labels == "annotator":
            labels["annotator_dir"] = m.semantic_entropy.annotator_dir
        elif m.semantic_entropy.labels == "judge":
            labels["judge"] = m.semantic_entropy.judge.model
        out = {
            "embedder": m.embedder.model,
            "distinct_k": {"classifier": m.distinct_k.classifier}
            if m.distinct_k.classifier
            else {"threshold": m.distinct_k.threshold},
            "quality": quality,
            "semantic_entropy": labels,
        }
        if m.restricted_value.attribute is not None:
            out["restricted_value"] = {"attribute": m.restricted_value.attribute, "value": m.restricted_value.value}
        return out

    def close(self) -> None:
        for model in self._quality.values():
            model.close()
        for labeller in (self._labeller, self._secondary_labeller):
            if labeller is not None:
                labeller.close()
        for engine in self._judges.values():
            engine.close()

    def quality_of(self, rows: list[dict]) -> list[float | None]:
        """Quality of each sample row (all of one arm), by the configured judge or proxy."""
        scorer = self.quality_model(self.config.arm(rows[0]["arm"]).model)
        prompts, responses = [row["prompt"] for row in rows], [row["response"] for row in rows]
        if self.config.metrics.quality.kind == "judge":
            return scorer.score(prompts, responses, [row["id"] for row in rows])
        return scorer.score(prompts, responses)

    def resolve_quantile_bar(self, groups: dict[str, list[dict]], existing: list[dict]) -> None:
        """Set the bar to ``bar_quantile`` of the reference arm's quality scores (scale-free).

        Scores already in scores.jsonl are reused; the reference arm's other samples are scored
        once here and kept, so scoring its groups afterwards does not score them again.
        """
        q = self.config.metrics.quality
        if q.kind == "none" or q.bar_quantile is None:
            return
        scored = {row["id"]: row for row in existing}
        values: list[float] = []
        todo: list[dict] = []
        for gid, rows in groups.items():
            if rows[0]["arm"] != q.bar_reference_arm:
                continue
            if gid in scored and scored[gid].get("quality_per_sample") is not None:
                values += [v for v in scored[gid]["quality_per_sample"] if v is not None]
            else:
                todo += rows
        if todo:
            fresh = self.quality_of(todo)
            self._quality_by_id.update({row["id"]: v for row, v in zip(todo, fresh)})
            values += [v for v in fresh if v is not None]
        if not values:
            raise ValueError(
                f"metrics.quality.bar_quantile: arm '{q.bar_reference_arm}' (metrics.quality."
                "bar_reference_arm) has no scored samples to take the quantile of"
            )
        self.bar = float(np.quantile(values, q.bar_quantile))
        self.bar_rule = {
            "kind": "quantile",
            "quantile": q.bar_quantile,
            "reference_arm": q.bar_reference_arm,
            "reference_samples": len(values),
            "bar": self.bar,
        }
        logger.info(
            f"eval: quality bar = {self.bar:.4f}, the {q.bar_quantile} quantile of {len(values)} "
            f"'{q.bar_reference_arm}' samples' quality"
        )

    def score_groups(self, groups: list[tuple[str, list[dict]]]) -> list[dict]:
        cfg = self.config.metrics
        flat = [row for _, rows in groups for row in rows]
        responses = [row["response"] for row in flat]
        prompts = [row["prompt"] for row in flat]
        embeddings = self.embedder.encode(responses)

        quality: list[float | None] | None = None
        if cfg.quality.kind != "none":
            if flat and all(row["id"] in self._quality_by_id for row in flat):
                quality = [self._quality_by_id[row["id"]] for row in flat]
            else:
                quality = self.quality_of(flat)

        labels = label_failures_per_row = None
        if self.labeller is not None:
            labels, _, failures = self.labeller.label(prompts, responses, [row["id"] for row in flat])
            label_failures_per_row = [all(v is None for v in lab.values()) for lab in labels]
        secondary = None
        if self.secondary_labeller is not None:
            secondary = self.secondary_labeller.label(prompts, responses, [row["id"] for row in flat])[0]

        out, start = [], 0
        describe = self.describe()
        for gid, rows in groups:
            stop = start + len(rows)
            out.append(
                self._group_row(
                    gid,
                    rows,
                    embeddings[start:stop],
                    None if quality is None else quality[start:stop],
                    None if labels is None else labels[start:stop],
                    None if labels is None else label_failures_per_row[start:stop],
                    None if secondary is None else secondary[start:stop],
                    describe,
                )
            )
            start = stop
        return out

    def _group_row(self, gid, rows, E, quality, labels, label_failed, secondary, describe) -> dict:
        cfg = self.config.metrics
        texts = [row["response"] for row in rows]
        first = rows[0]
        if cfg.distinct_k.classifier:
            classes = classifier_partition(texts, self.same_class)
        else:
            classes = threshold_partition(E, cfg.distinct_k.threshold)
        metrics = {
            "pairwise_dissimilarity": mean_pairwise_dissimilarity(E),
            "vendi": vendi_score(E),
            "distinct_k": float(distinct_k(classes)),
        }
        for n in cfg.distinct_n:
            metrics[f"distinct_{n}"] = distinct_n(texts, n)
        metrics["compression_ratio"] = compression_ratio(texts)
        row = {
            "id": gid,
            "arm": first["arm"],
            "mode": first["mode"],
            "temperature": first["temperature"],
            "prompt_id": first["prompt_id"],
            "n_samples": len(rows),
            "complete": len(rows) == self.config.sampling.samples_per_prompt,
            "distinct_k_classes": classes,
        }
        if quality is not None:
            bar = self.bar
            passes = [q is not None and q >= bar for q in quality]
            finite = [q for q in quality if q is not None]
            metrics["quality"] = sum(finite) / len(finite) if finite else float("nan")
            metrics["pass_rate"] = sum(passes) / len(passes)
            passing = E[np.array(passes, dtype=bool)] if len(passes) else E[:0]
            metrics["effective_pairwise_dissimilarity"] = mean_pairwise_dissimilarity(passing)
            row.update(quality_per_sample=quality, passes=passes, quality_failures=sum(q is None for q in quality))
        if labels is not None:
            se_config = cfg.semantic_entropy
            se = semantic_entropy(labels, list(self.labeller.keys), se_config.estimator)
            primary = se_config.primary_key()
            metrics["semantic_entropy"] = se["per_key"][primary] if primary else se["mean"]
            row["semantic"] = {
                "per_key": se["per_key"],
                "coverage": se["coverage"],
                "labels": labels,
                "label_failures": int(sum(label_failed)),
            }
        if secondary is not None:
            se = semantic_entropy(secondary, list(self.secondary_labeller.keys), cfg.semantic_entropy.estimator)
            metrics["annotator_entropy"] = se["mean"]
            row["annotator_semantic"] = {"per_key": se["per_key"], "coverage": se["coverage"]}
        restricted = self._restricted_flags(labels)
        if restricted is not None:
            judged = [f for f in restricted if f is not None]
            metrics["restricted_share"] = sum(judged) / len(judged) if judged else float("nan")
            row["restricted_per_sample"] = restricted
        parse_expected = first["mode"] == "anchored"
        if parse_expected:
            row["by_annotation_status"] = self._by_annotation_status(rows, E, quality, labels, restricted)
        reasons = Counter(parse_error_category(r.get("parse_error")) for r in rows) if parse_expected else Counter()
        row["parse"] = {
            "expected": parse_expected,
            "ok": sum(1 for r in rows if r.get("parse_ok") is True),
            "failed": sum(1 for r in rows if r.get("parse_ok") is False),
            "by_reason": {k: v for k, v in reasons.items() if k != "ok"},
            # Annotations sampled under the syntax constraint, and those of them where the model put
            # most of its probability outside the syntax at some step (it would likely have left it).
            "syntax_constrained": sum(1 for r in rows if r.get("annotation_mass_outside_syntax") is not None),
            "mostly_outside_syntax": sum(1 for r in rows if (r.get("annotation_mass_outside_syntax") or 0) > 0.5),
        }
        row["inner_annotations"] = sum(int(r.get("inner_annotations") or 0) for r in rows)
        row["empty_responses"] = sum(1 for t in texts if not t.strip())
        row["length_stops"] = sum(1 for r in rows if r.get("finish_reason") == "length")
        row["metrics"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
        row["scorer"] = describe
        return row

    def ngram_details(self) -> dict | None:
        """The fitted corpus n-gram model's size and discounts (kind ngram, once loaded)."""
        model = self._quality.get("ngram")
        return None if model is None else model.details

    def check_restricted_value(self) -> None:
        """A classifier has a closed set of labels: refuse a restricted value outside it before
        scoring (a misspelt value would read as a share of 0 in every arm)."""
        r = self.config.metrics.restricted_value
        if r.attribute is None or self.config.metrics.semantic_entropy.labels != "classifier":
            return
        known = [str(v) for v in self.labeller.describe().get("labels") or ()]
        if known and r.value not in known:
            raise ValueError(
                f"metrics.restricted_value.value={r.value!r} is not a label the {r.attribute} classifier "
                f"gives ({', '.join(sorted(known))})"
            )

    def _restricted_flags(self, labels: list[dict] | None) -> list[bool | None] | None:
        """Per sample: whether its judged label is the restricted value (None: not labelled)."""
        r = self.config.metrics.restricted_value
        if labels is None or r.attribute is None:
            return None
        return [None if lab.get(r.attribute) is None else lab[r.attribute] == r.value for lab in labels]

    def _by_annotation_status(self, rows, E, quality, labels, restricted) -> dict:
        """The group's samples split by whether their annotation parsed: per part the sample
        count, diversity within the part (fewer samples: plug-in entropy reads lower), the
        restricted-value hits and the quality sums, for the summary to pool over prompts."""
        se = self.config.metrics.semantic_entropy
        out = {}
        for status, flag in (("parsed", True), ("failed", False)):
            idx = [i for i, r in enumerate(rows) if bool(r.get("parse_ok")) == flag]
            part: dict = {
                "n_samples": len(idx),
                "pairwise_dissimilarity": _finite_or_none(mean_pairwise_dissimilarity(E[idx])),
            }
            if labels is not None:
                entropy = None
                if idx:
                    result = semantic_entropy([labels[i] for i in idx], list(self.labeller.keys), se.estimator)
                    primary = se.primary_key()
                    entropy = _finite_or_none(result["per_key"][primary] if primary else result["mean"])
                part["semantic_entropy"] = entropy
            if restricted is not None:
                flags = [restricted[i] for i in idx if restricted[i] is not None]
                part.update(restricted_hits=int(sum(flags)), restricted_judged=len(flags))
            if quality is not None:
                values = [quality[i] for i in idx if quality[i] is not None]
                part.update(quality_sum=float(sum(values)), quality_n=len(values))
            out[status] = part
        return out


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def load_generation_groups(run_dir: Path) -> tuple[dict[str, list[dict]], dict]:
    """generations.jsonl grouped by (arm, temperature, prompt), samples in index order."""
    rows, torn = read_rows(run_dir / GENERATIONS, repair=False)
    rows, duplicates = dedupe(rows)
    if not rows:
        raise ValueError(f"{run_dir / GENERATIONS}: no generations (run the generate stage first)")
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[group_id(row["arm"], row["temperature"], row["prompt_id"])].append(row)
    for members in groups.values():
        members.sort(key=lambda r: r["sample_index"])
    return dict(groups), {
        "generation_rows": len(rows),
        "torn_generation_lines": torn,
        "duplicate_generation_rows": duplicates,
    }


def scoring_identity(config: EvalConfig) -> Identity:
    """What a score row depends on besides its group's samples: the metric settings, and
    samples_per_prompt (each row says whether its group is complete)."""
    metrics = config_identity(config.metrics, RESUMABLE_METRICS)
    return {
        **{f"metrics.{k}": v for k, v in metrics.items()},
        "sampling.samples_per_prompt": config.sampling.samples_per_prompt,
    }


def scoring_changes(config: EvalConfig, run_dir: Path) -> str | None:
    """Why scores.jsonl must start over under this config's scoring settings, or None."""
    if not (run_dir / SCORES).exists():
        return None
    saved = read_identity(run_dir / RUN_FILE, SCORING_ENTRY)
    if saved is None:
        return "no scoring settings are recorded for it (scored by older code)"
    changes = describe_changes(saved, scoring_identity(config))
    return f"scoring settings changed: {changes}" if changes else None


def check_scores_current(config: EvalConfig, run_dir: Path) -> None:
    """Before a report without the score stage: refuse scores made under other scoring
    settings (scores from before run.json recorded them are taken as they are)."""
    saved = read_identity(run_dir / RUN_FILE, SCORING_ENTRY)
    if saved is not None:
        compare_identity(
            str(run_dir / SCORES),
            saved,
            scoring_identity(config),
            start_over="run the score stage too (stages=[score,report]) to rescore",
        )


def run_score(config: EvalConfig, run_dir: Path) -> dict:
    groups, counts = load_generation_groups(run_dir)
    scorer = GroupScorer(config)
    try:
        scorer.check_restricted_value()  # before scores.jsonl may be started over
        return _score_pending(config, run_dir, groups, counts, scorer)
    finally:
        scorer.close()


def _score_pending(config: EvalConfig, run_dir: Path, groups: dict, counts: dict, scorer: GroupScorer) -> dict:
    path = run_dir / SCORES
    why = "rescore=true" if config.rescore and path.exists() else scoring_changes(config, run_dir)
    if why is not None:
        logger.info(f"eval: starting {path} over: {why}")
        path.unlink()
    write_identity(run_dir / RUN_FILE, scoring_identity(config), SCORING_ENTRY)
    existing, torn = read_rows(path)
    existing, duplicates = dedupe(existing)
    grown = {row["id"] for row in existing if row["id"] in groups and row["n_samples"] != len(groups[row["id"]])}
    if grown:  # scored before all its samples were there: drop the row, score the group again
        existing = [row for row in existing if row["id"] not in grown]
        replace_rows(path, existing)
    counts.update(started_over_because=why, groups_grown_since_scored=len(grown))
    done = {row["id"] for row in existing}
    arm_order = {arm.name: i for i, arm in enumerate(config.arms)}
    unknown = sorted({rows[0]["arm"] for rows in groups.values()} - set(arm_order))
    pending = [gid for gid in groups if gid not in done and groups[gid][0]["arm"] in arm_order]
    # Group by arm so a per-arm quality model loads once.
    pending.sort(key=lambda gid: (arm_order[groups[gid][0]["arm"]], groups[gid][0]["temperature"], gid))
    counts.update(
        groups_total=len(groups),
        groups_already_scored=len(done),
        torn_score_lines_removed=torn,
        duplicate_score_rows_ignored=duplicates,
        groups_scored=0,
        groups_skipped_unknown_arm=sum(1 for rows in groups.values() if rows[0]["arm"] in unknown),
        unknown_arms=unknown,
        incomplete_groups=sum(1 for rows in groups.values() if len(rows) != config.sampling.samples_per_prompt),
    )
    scorer.resolve_quantile_bar(groups, existing)  # reads scores.jsonl; scores only what it lacks
    counts["quality_bar"] = scorer.bar_rule
    chunks = []
    for gid in pending:
        if (
            not chunks
            or len(chunks[-1]) >= GROUPS_PER_CHUNK
            or groups[chunks[-1][0]][0]["arm"] != groups[gid][0]["arm"]
        ):
            chunks.append([])
        chunks[-1].append(gid)
    for chunk in tqdm(chunks, desc="score", unit="chunk"):
        rows = scorer.score_groups([(gid, groups[gid]) for gid in chunk])
        counts["groups_scored"] += append_rows(path, rows)
    if pending:
        from stage_io.manifest import package_versions

        provenance = scorer.describe()
        provenance["embedder_details"] = scorer.embedder.describe()
        if scorer.labeller is not None:
            provenance["labeller_details"] = scorer.labeller.describe()
        if scorer.ngram_details() is not None:
            provenance["quality_details"] = scorer.ngram_details()
        provenance["versions"] = package_versions()
        write_json(run_dir / SCORING_PROVENANCE, provenance)
    return counts
