"""summary.json: every metric per arm and temperature with intervals, collapse and ratios,
parse failures, annotation drift, and the provenance of every number."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from eval.attribute_classifier import load_or_fit
from eval.bootstrap import mean_ci, paired_statistic_ci
from eval.collapse import collapse, collapse_ratio
from eval.config import ArmConfig, BootstrapConfig, EvalConfig
from eval.generate import GENERATIONS, temperature_key
from eval.jsonl_store import dedupe, read_rows, sanitize, write_json
from eval.metrics.drift import annotation_drift, load_pretraining_tags, tag_counts
from eval.metrics.entropy import ABSENT, pooled_entropy
from eval.metrics.fidelity import annotation_values, fidelity, preservation, value_label_map
from eval.prompts import load_prompts
from eval.score import SCORES, SCORING_PROVENANCE, diversity_metric_names, quality_metric_names
from stage_io.config import config_to_dict
from stage_io.manifest import config_fingerprint, git_commit, package_versions
from stage_io.records import RecordSource, load_records

SUMMARY = "summary.json"


def _values(scores: list[dict], arm: str, temperature: float, metric: str) -> dict[str, float | None]:
    return {
        s["prompt_id"]: s["metrics"].get(metric)
        for s in scores
        if s["arm"] == arm and temperature_key(s["temperature"]) == temperature_key(temperature)
    }


def build_summary(config: EvalConfig, run_dir: Path) -> dict:
    scores = _read_unique_rows(run_dir / SCORES)
    if not scores:
        raise ValueError(f"{run_dir / SCORES}: no scores (run the score stage first)")
    generations = _read_unique_rows(run_dir / GENERATIONS)
    diversity = diversity_metric_names(config)
    temperatures = sorted({s["temperature"] for s in scores})
    intents = _prompt_intents(config)
    arms = {}
    for arm in config.arms:
        per_temperature = {}
        for temperature in temperatures:
            group = _group_scores(scores, arm.name, temperature)
            if group:
                entry = _temperature_entry(config, arm, temperature, group, intents)
                if arm.base_arm is not None:
                    entry["collapse"] = _collapse_against_base(config, arm, scores, temperature)
                per_temperature[temperature_key(temperature)] = entry
        arms[arm.name] = {
            "model": arm.model,
            "mode": arm.mode,
            "base_arm": arm.base_arm,
            "temperatures": per_temperature,
        }
    return {
        "provenance": _provenance(config, run_dir, scores),
        "metric_names": {"diversity": diversity, "quality": quality_metric_names(config)},
        "arms": arms,
        "collapse_ratios": _ratios(config, scores, temperatures, diversity),
        "annotation_drift": _drift(config, generations, temperatures),
        "annotation_fidelity": _fidelity(config, generations, scores, temperatures),
        "restricted_value": _restricted_value_check(config, scores),
        "judge": ((_provenance_scoring(run_dir) or {}).get("labeller_details")),
    }


def _read_unique_rows(path: Path) -> list[dict]:
    rows, _ = read_rows(path, repair=False)
    return dedupe(rows)[0]


def _group_scores(scores: list[dict], arm: str, temperature: float) -> list[dict]:
    """The score rows of one arm at one temperature."""
    key = temperature_key(temperature)
    return [s for s in scores if s["arm"] == arm and temperature_key(s["temperature"]) == key]


def _temperature_entry(
    config: EvalConfig, arm: ArmConfig, temperature: float, group: list[dict], intents: dict[str, str]
) -> dict:
    """One arm at one temperature: every metric's mean with its interval, parse and stop counts,
    the per-prompt values, and what the configured metrics add (restricted share, labels)."""
    boot = config.bootstrap
    diversity, quality = diversity_metric_names(config), quality_metric_names(config)
    restricted = ["restricted_share"] if config.metrics.restricted_value.attribute is not None else []
    entry = {
        "temperature": temperature,
        "n_prompts": len(group),
        "n_samples": sum(s["n_samples"] for s in group),
        "incomplete_groups": sum(1 for s in group if not s.get("complete", True)),
        "metrics": {
            m: mean_ci([s["metrics"].get(m) for s in group], boot.resamples, boot.confidence, boot.seed)
            for m in diversity + quality
        },
        "parse": _parse_totals(group),
        "inner_annotations": sum(s.get("inner_annotations", 0) for s in group),
        "empty_responses": sum(s.get("empty_responses", 0) for s in group),
        "length_stops": sum(s.get("length_stops", 0) for s in group),
    }
    # Per-prompt values, so that runs over several training seeds can build (seed, prompt) columns.
    entry["per_prompt"] = {
        m: {s["prompt_id"]: s["metrics"].get(m) for s in sorted(group, key=lambda s: s["prompt_id"])}
        for m in diversity + quality + restricted
    }
    if restricted:
        entry["restricted_share"] = _restricted_share(config, group)
    if arm.mode == "anchored":
        entry["by_annotation_status"] = _by_annotation_status(config, group, diversity)
    if quality:
        entry["quality_failures"] = sum(s.get("quality_failures", 0) for s in group)
    if any("semantic" in s for s in group):
        entry["label_failures"] = sum(s["semantic"]["label_failures"] for s in group if "semantic" in s)
        entry["semantic_per_key"] = _semantic_per_key(group, boot)
        entry["semantic_pooled"] = _semantic_pooled(config, group, intents)
    return entry


def _collapse_against_base(config: EvalConfig, arm: ArmConfig, scores: list[dict], temperature: float) -> dict:
    """Per diversity metric: the arm's collapse against its base arm at ``temperature``."""
    boot = config.bootstrap
    return {
        m: collapse(
            {
                arm.base_arm: _values(scores, arm.base_arm, temperature, m),
                arm.name: _values(scores, arm.name, temperature, m),
            },
            arm.name,
            arm.base_arm,
            boot.resamples,
            boot.confidence,
            boot.seed,
        )
        for m in diversity_metric_names(config)
    }


def _parse_totals(group: list[dict]) -> dict:
    expected = any(s["parse"]["expected"] for s in group)
    ok = sum(s["parse"]["ok"] for s in group)
    failed = sum(s["parse"]["failed"] for s in group)
    reasons: Counter = Counter()
    for s in group:
        reasons.update(s["parse"]["by_reason"])
    constrained = sum(s["parse"].get("syntax_constrained", 0) for s in group)
    return {
        "expected": expected,
        "attempted": ok + failed,
        "ok": ok,
        "failed": failed,
        "failure_rate": failed / (ok + failed) if ok + failed else None,
        "by_reason": dict(reasons),
        "syntax_constrained": constrained,
        # Of the constrained annotations, the share where the model put over half its probability
        # outside the syntax at some step (eval.annotation_syntax).
        "mostly_outside_syntax_rate": (
            sum(s["parse"].get("mostly_outside_syntax", 0) for s in group) / constrained if constrained else None
        ),
    }


def _restricted_share(config: EvalConfig, group: list[dict]) -> dict:
    """Share of samples judged to have the restricted value: mean over prompts of each prompt's
    share, with the prompt bootstrap interval, and the pooled counts."""
    restricted, boot = config.metrics.restricted_value, config.bootstrap
    flags = [f for s in group for f in s.get("restricted_per_sample") or () if f is not None]
    return {
        "attribute": restricted.attribute,
        "value": restricted.value,
        **mean_ci([s["metrics"].get("restricted_share") for s in group], boot.resamples, boot.confidence, boot.seed),
        "samples_judged": len(flags),
        "samples_with_value": int(sum(flags)),
    }


def _restricted_value_check(config: EvalConfig, scores: list[dict]) -> dict | None:
    """Whether any sample of any arm was judged to have the restricted value; when none was,
    the labels that were seen (a value spelt unlike the labeller's labels reads as a share of 0)."""
    restricted = config.metrics.restricted_value
    if restricted.attribute is None:
        return None
    seen = Counter(lab.get(restricted.attribute) for s in scores if "semantic" in s for lab in s["semantic"]["labels"])
    out = {
        "attribute": restricted.attribute,
        "value": restricted.value,
        "value_seen": seen.get(restricted.value, 0) > 0,
    }
    if not out["value_seen"]:
        out["warning"] = (
            f"no sample of any arm was judged {restricted.attribute} = {restricted.value!r}; labels seen: "
            + ", ".join(f"{k} ({v})" for k, v in seen.most_common() if k is not None)
        )
    return out


def _pooled_ratio(numerators: list[float], denominators: list[float], boot: BootstrapConfig) -> dict:
    """sum(numerators) / sum(denominators) over prompts, with a prompt bootstrap interval."""
    num, den = np.array(numerators, dtype=np.float64), np.array(denominators, dtype=np.float64)
    keep = den > 0
    stat = paired_statistic_ci(
        [num[keep], den[keep]],
        lambda x, n: float(x.sum() / n.sum()) if n.sum() else None,
        boot.resamples,
        boot.confidence,
        boot.seed,
    )
    return {"mean": stat["value"], "ci_low": stat["ci_low"], "ci_high": stat["ci_high"], "n": stat["n"]}


def _by_annotation_status(config: EvalConfig, group: list[dict], diversity: list[str]) -> dict:
    """An anchored arm's figures over the samples whose annotation parsed, and over those whose
    annotation failed (the sampler forced the close; the continuation is what is scored).

    Diversity within a part is computed per prompt over that part's samples and averaged over the
    prompts where it is defined (plug-in entropy of fewer samples reads lower: compare parts of
    similar size); restricted share and quality pool the part's samples over prompts.
    """
    boot = config.bootstrap
    rows = [s for s in group if "by_annotation_status" in s]
    primary = "semantic_entropy" if "semantic_entropy" in diversity else "pairwise_dissimilarity"
    total = sum(s["by_annotation_status"][k]["n_samples"] for s in rows for k in ("parsed", "failed"))
    parsed = sum(s["by_annotation_status"]["parsed"]["n_samples"] for s in rows)
    out: dict = {}
    for status in ("parsed", "failed"):
        parts = [s["by_annotation_status"][status] for s in rows]
        n = sum(p["n_samples"] for p in parts)
        entry = {
            # groups: prompts whose score row carries the split (rows scored by older code do not: rescore=true).
            "n_samples": n,
            "share_of_samples": n / total if total else None,
            "groups": len(rows),
            "parse_rate": parsed / total if total else None,
            "primary_metric": primary,
            "metrics": {
                m: mean_ci([p.get(m) for p in parts], boot.resamples, boot.confidence, boot.seed)
                for m in ("semantic_entropy", "pairwise_dissimilarity")
                if any(m in p for p in parts)
            },
        }
        entry["primary"] = entry["metrics"].get(primary)
        if any("restricted_judged" in p for p in parts):
            entry["restricted_share"] = _pooled_ratio(
                [p.get("restricted_hits", 0) for p in parts], [p.get("restricted_judged", 0) for p in parts], boot
            )
        if any("quality_n" in p for p in parts):
            entry["quality"] = _pooled_ratio(
                [p.get("quality_sum", 0.0) for p in parts], [p.get("quality_n", 0) for p in parts], boot
            )
        out[status] = entry
    return out


def _semantic_per_key(group: list[dict], boot: BootstrapConfig) -> dict:
    keys = sorted({k for s in group if "semantic" in s for k in s["semantic"]["per_key"]})
    out = {}
    for key in keys:
        entropies = [s["semantic"]["per_key"].get(key) for s in group if "semantic" in s]
        coverage = [s["semantic"]["coverage"].get(key, 0.0) for s in group if "semantic" in s]
        out[key] = {
            "entropy": mean_ci(entropies, boot.resamples, boot.confidence, boot.seed),
            "coverage": sum(coverage) / len(coverage) if coverage else None,
        }
    return out


def _prompt_intents(config: EvalConfig) -> dict[str, str]:
    """prompt id -> intent (empty when prompts.intent_field is unset: one intent for all)."""
    if config.prompts.intent_field is None:
        return {}
    return {p.id: p.intent for p in load_prompts(config.prompts)[0]}


def _semantic_pooled(config: EvalConfig, group: list[dict], intents: dict[str, str]) -> dict:
    """Per key: label entropy pooled over the prompts of one intent (eval.metrics.entropy.pooled_entropy),
    with a bootstrap interval resampling prompts."""
    rows = [s for s in group if "semantic" in s]
    boot, estimator = config.bootstrap, config.metrics.semantic_entropy.estimator
    keys = sorted({k for s in rows for k in s["semantic"]["per_key"]})
    out = {}
    for key in keys:
        groups = [
            (
                intents.get(s["prompt_id"], "all"),
                Counter(ABSENT if lab.get(key) is None else lab[key] for lab in s["semantic"]["labels"]),
            )
            for s in rows
        ]
        index = np.arange(len(groups), dtype=np.float64)
        stat = paired_statistic_ci(
            [index],
            lambda i, groups=groups: pooled_entropy([groups[int(k)] for k in i], estimator),
            boot.resamples,
            boot.confidence,
            boot.seed,
        )
        out[key] = {
            "mean": stat["value"],
            "ci_low": stat["ci_low"],
            "ci_high": stat["ci_high"],
            "n": stat["n"],
            "intents": len({g[0] for g in groups}),
        }
    return out


def _ratios(config: EvalConfig, scores: list[dict], temperatures: list[float], diversity: list[str]) -> dict:
    collapse_config, boot = config.collapse, config.bootstrap
    names = {a.name for a in config.arms}
    pairs = [[collapse_config.plain_arm, collapse_config.anchored_arm]] + [list(p) for p in collapse_config.extra_pairs]
    out: dict = {"pairs": {}, "skipped": {}}
    for pair in pairs:
        if len(pair) != 2:
            out["skipped"][str(pair)] = "collapse.extra_pairs entries must be [plain_arm, anchored_arm]"
            continue
        plain, anchored = pair
        label = f"{plain}/{anchored}"
        missing = [a for a in pair if a not in names]
        if missing:
            out["skipped"][label] = f"arm(s) {', '.join(missing)} not in this run"
            continue
        bases = {a: config.arm(a).base_arm for a in pair}
        if any(v is None for v in bases.values()):
            out["skipped"][label] = "both arms need a base_arm"
            continue
        per_t = {}
        for t in temperatures:
            per_t[temperature_key(t)] = {
                m: collapse_ratio(
                    {a: _values(scores, a, t, m) for a in {plain, anchored, bases[plain], bases[anchored]}},
                    plain,
                    bases[plain],
                    anchored,
                    bases[anchored],
                    collapse_config.min_denominator,
                    boot.resamples,
                    boot.confidence,
                    boot.seed,
                )
                for m in diversity
            }
        out["pairs"][label] = per_t
    return out


def _drift(config: EvalConfig, generations: list[dict], temperatures: list[float]) -> dict:
    drift_config = config.metrics.drift
    anchored = [a.name for a in config.arms if a.mode == "anchored"]
    if not anchored:
        return {"status": "no anchored arm"}
    if not drift_config.pretraining_annotations:
        return {"status": "not configured (metrics.drift.pretraining_annotations is null)"}
    pretraining, info = load_pretraining_tags(drift_config.pretraining_annotations, drift_config.max_rows)
    by_arm_t: dict[tuple[str, str], list] = defaultdict(list)
    unparsed: Counter = Counter()
    for row in generations:
        if row["arm"] in anchored:
            key = (row["arm"], temperature_key(row["temperature"]))
            if row.get("parse_ok"):
                by_arm_t[key].append(row.get("tags") or [])
            else:
                unparsed[key] += 1
    arms: dict = {}
    for arm in anchored:
        arms[arm] = {}
        for t in temperatures:
            key = (arm, temperature_key(t))
            if key not in by_arm_t and key not in unparsed:
                continue
            arms[arm][key[1]] = {
                "annotations_used": len(by_arm_t[key]),
                "annotations_unparsed_excluded": unparsed[key],
                **annotation_drift(tag_counts(by_arm_t[key]), pretraining, drift_config.smoothing),
            }
    return {"status": "ok", "smoothing": drift_config.smoothing, "pretraining": info, "arms": arms}


def _fidelity(config: EvalConfig, generations: list[dict], scores: list[dict], temperatures: list[float]) -> dict:
    """Preservation and fidelity of the anchored arms' annotations (eval.metrics.fidelity)."""
    f, se = config.metrics.fidelity, config.metrics.semantic_entropy
    anchored = [a for a in config.arms if a.mode == "anchored"]
    if f.annotation_key is None:
        return {"status": "not configured (metrics.fidelity.annotation_key is null)"}
    if not anchored:
        return {"status": "no anchored arm"}
    if not config.metrics.drift.pretraining_annotations:
        return {"status": "not configured (metrics.drift.pretraining_annotations is null)"}
    judged_key = se.primary_key() or (se.label_keys()[0] if se.labels != "none" else None)
    mapping, map_info, known = _value_map(config, f)
    samples: dict[tuple, list[dict]] = defaultdict(list)
    for row in generations:
        samples[(row["arm"], temperature_key(row["temperature"]), row["prompt_id"])].append(row)
    for rows in samples.values():
        rows.sort(key=lambda r: r["sample_index"])
    judged = {
        (s["arm"], temperature_key(s["temperature"]), s["prompt_id"]): s["semantic"]["labels"]
        for s in scores
        if "semantic" in s
    }

    def values_of(arm: str, t: str) -> dict[str, list[str | None]]:
        """prompt id -> each sample's annotation value of the key (None: unparsed or absent)."""
        return {
            p: annotation_values([r.get("tags") if r.get("parse_ok") else None for r in rows], f.annotation_key)
            for (a, tt, p), rows in sorted(samples.items())
            if a == arm and tt == t
        }

    arms: dict = {}
    for arm in anchored:
        reference = arm.base_arm if arm.base_arm and config.arm(arm.base_arm).mode == "anchored" else None
        arms[arm.name] = {}
        for t in map(temperature_key, temperatures):
            by_prompt = values_of(arm.name, t)
            if not by_prompt:
                continue
            asked = [[mapping.get(v) for v in vs] for vs in by_prompt.values()]
            told = [
                [None] * len(vs)
                if judged.get((arm.name, t, p)) is None or judged_key is None
                else [lab.get(judged_key) for lab in judged[(arm.name, t, p)]]
                for p, vs in by_prompt.items()
            ]
            ref = None if reference is None else [v for vs in values_of(reference, t).values() for v in vs]
            arms[arm.name][t] = {
                "reference_arm": reference,
                "preservation": preservation([v for vs in by_prompt.values() for v in vs], ref, known, mapping),
                "fidelity": _fidelity_with_interval(asked, told, config.bootstrap),
            }
    return {
        "status": "ok",
        "annotation_key": f.annotation_key,
        "judged_attribute": judged_key,
        "value_map": map_info,
        "arms": arms,
    }


def _fidelity_with_interval(asked: list[list[str | None]], told: list[list[str | None]], boot: BootstrapConfig) -> dict:
    """fidelity() over all samples, with a bootstrap interval resampling prompts (ratio of sums)."""
    out = fidelity([a for row in asked for a in row], [j for row in told for j in row])
    pairs = [[(a, j) for a, j in zip(ar, jr) if a is not None and j is not None] for ar, jr in zip(asked, told)]
    hits = np.array([sum(a == j for a, j in row) for row in pairs], dtype=np.float64)
    counts = np.array([len(row) for row in pairs], dtype=np.float64)
    ci = paired_statistic_ci(
        [hits, counts],
        lambda h, n: float(h.sum() / n.sum()) if n.sum() else None,
        boot.resamples,
        boot.confidence,
        boot.seed,
    )
    return out | {"ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}


def _value_map(config: EvalConfig, f) -> tuple[dict[str, str], dict, set[str]]:
    """Annotation value -> judge label, from the pretraining annotations; and every known value."""
    data = Path(config.metrics.drift.pretraining_annotations) / "data"
    columns = ("tags",) + ((f.label_column,) if f.label_column else ("text",))
    records = load_records(RecordSource(source=str(data), limit=config.metrics.drift.max_rows), required_fields=columns)
    has_status = "status" in records.column_names
    rows = [r for r in records if not has_status or r["status"] == "ok"]
    if f.label_column:
        gold = [r[f.label_column] for r in rows]
        how = f"majority of the column '{f.label_column}'"
    else:
        classifier = load_or_fit(
            config.metrics.semantic_entropy.classifier, Path(config.output_dir) / "attribute_classifier"
        )
        gold = classifier.predict([r["text"] for r in rows])
        how = "majority of the attribute classifier's labels of the chunk texts"
    mapping, info = value_label_map(zip((r["tags"] for r in rows), gold), f.annotation_key)
    info.update(how=how, chunks_read=len(rows))
    known = {t["value"] for r in rows for t in r["tags"] or () if t["key"] == f.annotation_key}
    return mapping, info, known


def _provenance_scoring(run_dir: Path) -> dict | None:
    scoring_file = run_dir / SCORING_PROVENANCE
    return json.loads(scoring_file.read_text(encoding="utf-8")) if scoring_file.exists() else None


def _provenance(config: EvalConfig, run_dir: Path, scores: list[dict]) -> dict:
    scoring = _provenance_scoring(run_dir)
    scorers_seen = []
    for row in scores:
        if row.get("scorer") not in scorers_seen:
            scorers_seen.append(row.get("scorer"))
    sampling = config.sampling
    return {
        "note": "every number in this file was computed with the scorers below; 'scorers_seen' lists more than one "
        "if scores.jsonl mixes rows scored under different settings (rescore=true to redo them)",
        "scoring": scoring,
        "scorers_seen": scorers_seen,
        "sampling": {
            "backend": sampling.backend,
            "samples_per_prompt": sampling.samples_per_prompt,
            "temperatures": sampling.temperatures,
            "top_p": sampling.top_p,
            "max_new_tokens": sampling.max_new_tokens,
            "annotation_temperature": sampling.annotation_temperature,
            "max_annotation_tokens": sampling.max_annotation_tokens,
            "no_annotation": sampling.no_annotation,
            "seed": sampling.seed,
            "seed_rule": "blake2b(sample, run seed, prompt id, sample index); phases derive their own",
        },
        "arms": {
            a.name: {"model": a.model, "revision": a.revision, "mode": a.mode, "base_arm": a.base_arm}
            for a in config.arms
        },
        "prompts": config_to_dict(config.prompts),
        "bootstrap": config_to_dict(config.bootstrap)
        | {"method": "percentile, prompts resampled (paired across arms)"},
        "collapse": config_to_dict(config.collapse),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "config_fingerprint": config_fingerprint(config),
    }


def write_summary(config: EvalConfig, run_dir: Path) -> dict:
    """Write summary.json and return it as written (NaN/inf as None, plain types)."""
    summary = sanitize(build_summary(config, run_dir))
    write_json(run_dir / SUMMARY, summary)
    return summary
