"""The study report: every seed's evaluation side by side, and the collapse across seeds.

Each seed's ``eval/seedN/summary.json`` already holds per-arm diversity with bootstrap
intervals over prompts and the collapse ratios. This page puts the seeds together:

- first the headline: the judged collapse of the primary attribute (semantic_entropy) of
  plain SFT and of the anchored arm, their difference, and the ratio or the status saying
  why there is none, per seed and pooled over seeds (the training seed is the replication
  unit: a hierarchical bootstrap of seeds with one prompt resample shared by the seeds, and
  a seed t interval, over the per-prompt collapses each summary keeps; eval.collapse's rules);
- then the annotation parse rates, preservation and fidelity of the anchored arms;
- quality beside every diversity figure, the secondary metrics (embedding dissimilarity,
  the annotator's labels), every arm's diversity per seed, and empty responses.
- capabilities (lm-eval, ``eval/seedN/capabilities.json``): per arm and task the value with
  its stderr per seed, and anchored - plain_sft with a 95% normal interval per seed and over
  seeds (eval.capabilities.difference);
- last, when the study has an entropy sweep, its section (study.sweep_report).

Numbers are copied from the summaries as measured, whatever they show; only the pooled
rows are computed here, from the summaries' per-prompt values.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from eval.capabilities import CAPABILITIES, Z95, difference
from eval.collapse import STATUS_TEXT, pair_status
from eval.report import PAIR_COLUMNS, judge_line, pair_cells
from study.config import StudyConfig
from study.frontier import mean_statistic, seed_prompt_intervals
from study.frontier_report import write_frontier
from study.plan import plan_steps, stage_overrides
from study.sweep_report import write_sweep

HEADLINE_METRICS = (
    "semantic_entropy",
    "pairwise_dissimilarity",
    "annotator_entropy",
    "vendi",
    "distinct_k",
    "distinct_2",
)
ARM_ORDER = ("base", "anchored_base", "plain_sft", "anchored", "anchored_no_annotation", "anchored_sft_on_plain")
PAIRS = (
    ("plain_sft/anchored", "headline"),
    ("plain_sft/anchored_no_annotation", "ablation (b): no annotation sampled"),
    ("plain_sft/anchored_sft_on_plain", "ablation (a): anchored SFT on the plain-pretrained model"),
)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    return f"{entry['mean']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def load_summaries(out: Path, seeds: list[int]) -> dict[int, dict]:
    summaries = {}
    for seed in seeds:
        path = out / "eval" / f"seed{seed}" / "summary.json"
        if path.is_file():
            summaries[seed] = json.loads(path.read_text(encoding="utf-8"))
    return summaries


def seed_table(summaries: dict[int, dict], temperature: str, metric: str) -> list[str]:
    seeds = sorted(summaries)
    lines = [
        "| arm | mean over seeds | " + " | ".join(f"seed {s} [95% CI]" for s in seeds) + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    arms = [a for a in ARM_ORDER if any(a in summaries[s]["arms"] for s in seeds)]
    for arm in arms:
        entries = [
            summaries[s]["arms"]
            .get(arm, {})
            .get("temperatures", {})
            .get(temperature, {})
            .get("metrics", {})
            .get(metric)
            for s in seeds
        ]
        means = [e["mean"] for e in entries if e and e.get("mean") is not None]
        lines.append(
            f"| {arm} | {_fmt(statistics.fmean(means) if means else None)} | "
            + " | ".join(_ci(e) for e in entries)
            + " |"
        )
    return lines


def ratio_table(summaries: dict[int, dict], temperature: str, metric: str) -> list[str]:
    """Per comparison: each seed's pair statistics, then the pooled ones over seeds: the hierarchical
    bootstrap (seeds, and one prompt resample shared by the seeds) and a seed t interval (eval.collapse's
    rules on the hierarchical intervals: the ratio only where both collapses are clearly positive, else the status)."""
    seeds = sorted(summaries)
    provenance = summaries[seeds[0]].get("provenance", {})
    b = provenance.get("bootstrap", {})
    min_denominator = provenance.get("collapse", {}).get("min_denominator", 1e-6)
    lines = ["| comparison | seed | " + " | ".join(PAIR_COLUMNS) + " |", "|---|---|" + "---|" * len(PAIR_COLUMNS)]
    for pair, label in PAIRS:
        per_seed = []
        for s in seeds:
            r = summaries[s].get("collapse_ratios", {}).get("pairs", {}).get(pair, {}).get(temperature, {}).get(metric)
            if not r:
                continue
            per_seed.append(r.get("per_prompt"))
            lines.append(f"| {label} | {s} | " + " | ".join(pair_cells(r)) + " |")
        if len(per_seed) > 1 and all(per_seed):
            pooled = pooled_over_seeds(
                per_seed, min_denominator, b.get("resamples", 1000), b.get("confidence", 0.95), b.get("seed", 0)
            )
            for kind, text in (("hierarchical", "hierarchical bootstrap"), ("seed_t", "seed t")):
                lines.append(
                    f"| {label} | pooled over {len(per_seed)} seeds, {text} | "
                    + " | ".join(pair_cells(pooled[kind]))
                    + " |"
                )
    return lines


def pooled_over_seeds(
    per_seed: list[dict], min_denominator: float, resamples: int, confidence: float, seed: int
) -> dict:
    """One (plain, anchored) pair pooled over seeds from each seed's per-prompt collapses.

    Columns (n_seeds, n_prompts) over the prompts every seed has. Two renderings of eval.collapse's pair
    figures: intervals from the hierarchical bootstrap (status and ratio from them) and from the seed t
    interval (the t value is the mean of the seed-level values).
    """
    prompts = sorted(set.intersection(*(set(s["prompt_ids"]) for s in per_seed)))
    cols = {
        name: np.array([[dict(zip(s["prompt_ids"], s[name]))[p] for p in prompts] for s in per_seed])
        for name in ("collapse_plain", "collapse_anchored")
    }
    plain = seed_prompt_intervals([cols["collapse_plain"]], mean_statistic, resamples, confidence, seed)
    anchored = seed_prompt_intervals([cols["collapse_anchored"]], mean_statistic, resamples, confidence, seed)
    diff = seed_prompt_intervals(
        [cols["collapse_plain"], cols["collapse_anchored"]],
        lambda a, c: float(np.mean(a) - np.mean(c)),
        resamples,
        confidence,
        seed,
    )

    def ratio(a: np.ndarray, c: np.ndarray) -> float | None:
        return None if np.mean(c) <= min_denominator else float(np.mean(a) / np.mean(c))

    out = {}
    for kind in ("hierarchical", "seed_t"):
        ci = {
            name: ((r.get(kind) or {}).get("ci_low"), (r.get(kind) or {}).get("ci_high"))
            for name, r in (("plain", plain), ("anchored", anchored), ("diff", diff))
        }
        point = (lambda r: r["value"]) if kind == "hierarchical" else (lambda r: (r.get("seed_t") or {}).get("value"))
        entry = {
            "collapse_plain": point(plain),
            "collapse_plain_ci": list(ci["plain"]),
            "collapse_anchored": point(anchored),
            "collapse_anchored_ci": list(ci["anchored"]),
            "difference": point(diff),
            "difference_ci": list(ci["diff"]),
            "n_prompts": len(prompts),
        }
        if None in (*ci["plain"], *ci["anchored"]):
            entry.update(
                status="no_interval",
                reason="interval not available (" + ", ".join(plain["missing"]) + ")"
                if plain["missing"]
                else "interval not available",
            )
        else:
            entry["status"] = pair_status(ci["plain"], ci["anchored"], min_denominator)
            entry["reason"] = STATUS_TEXT[entry["status"]]
        if entry["status"] == "ok":
            r = seed_prompt_intervals(
                [cols["collapse_plain"], cols["collapse_anchored"]], ratio, resamples, confidence, seed
            )
            rci = r.get(kind) or {}
            entry.update(
                ratio=r["value"] if kind == "hierarchical" else rci.get("value"),
                ci_low=rci.get("ci_low"),
                ci_high=rci.get("ci_high"),
                gap_closed=1.0 - entry["collapse_anchored"] / entry["collapse_plain"],
                gap_closed_ci=None,
            )
        out[kind] = entry
    return out


def fidelity_table(summaries: dict[int, dict], temperature: str) -> list[str]:
    lines = [
        "| arm | seed | value in pretraining | value entropy (base) | mapped entropy (base) | JS mapped | "
        "fidelity [CI] | chance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(summaries):
        fid = summaries[s].get("annotation_fidelity") or {}
        for arm, per_t in (fid.get("arms") or {}).items():
            e = per_t.get(temperature)
            if not e:
                continue
            p, f = e["preservation"], e["fidelity"]
            fidelity_text = (
                "n/a"
                if f["fidelity"] is None
                else f"{f['fidelity']:.3f} [{_fmt(f.get('ci_low'))}, {_fmt(f.get('ci_high'))}] (n={f['n']})"
            )
            lines.append(
                f"| {arm} | {s} | {_fmt(p['share_value_in_pretraining'])} | {_fmt(p['value_entropy'])} "
                f"({_fmt(p.get('reference_value_entropy'))}) | {_fmt(p['mapped_entropy'])} "
                f"({_fmt(p.get('reference_mapped_entropy'))}) | {_fmt(p.get('mapped_js_divergence'))} | "
                f"{fidelity_text} | {_fmt(f['chance'])} |"
            )
    return lines


def empty_lines(summaries: dict[int, dict], temperature: str) -> list[str]:
    lines = ["| arm | " + " | ".join(f"seed {s}" for s in sorted(summaries)) + " |", "|---|" + "---|" * len(summaries)]
    arms = [a for a in ARM_ORDER if any(a in summaries[s]["arms"] for s in summaries)]
    for arm in arms:
        cells = []
        for s in sorted(summaries):
            e = summaries[s]["arms"].get(arm, {}).get("temperatures", {}).get(temperature)
            cells.append("n/a" if not e else f"{e.get('empty_responses', 0)} of {e.get('n_samples')}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def parse_lines(summaries: dict[int, dict], temperature: str) -> list[str]:
    entries = [
        (s, arm, parse)
        for s in sorted(summaries)
        for arm, data in summaries[s]["arms"].items()
        if (parse := data.get("temperatures", {}).get(temperature, {}).get("parse", {})).get("expected")
    ]
    # Columns for syntax-constrained sampling only where some annotation was sampled under it.
    constrained = any(parse.get("syntax_constrained") for _, _, parse in entries)
    extra = " syntax-constrained | mostly outside the syntax |" if constrained else ""
    lines = [
        "| arm | seed | annotations parsed | parse failures | failure rate | failures by reason |" + extra,
        "|---|---|---|---|---|---|" + ("---|---|" if constrained else ""),
    ]
    for s, arm, parse in entries:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(parse.get("by_reason", {}).items(), key=lambda kv: -kv[1]))
        row = (
            f"| {arm} | {s} | {parse.get('ok')} | {parse.get('failed')} | "
            f"{_fmt(parse.get('failure_rate'))} | {reasons or '-'} |"
        )
        if constrained:
            row += f" {parse.get('syntax_constrained', 0)} | {_fmt(parse.get('mostly_outside_syntax_rate'))} |"
        lines.append(row)
    if constrained:
        lines += [
            "",
            "Annotations were sampled under the annotation syntax (`sampling.annotation_syntax`): tokens "
            "that would make them unparseable were removed, so these parse rates count only annotations cut at "
            "the length cap and do not measure the model's own syntax. *Mostly outside the syntax*: the share "
            "of constrained annotations where the model put over half its probability outside the syntax at "
            "some step, i.e. would likely have broken it unconstrained. Keys and values were not constrained.",
        ]
    return lines


def _value(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    return f"{entry['value']:.3f}" + (f" ± {entry['stderr']:.3f}" if entry.get("stderr") is not None else "")


def capability_lines(capabilities: dict[int, dict], plain: str = "plain_sft", anchored: str = "anchored") -> list[str]:
    """Per arm and task: value ± stderr per seed; then anchored - plain per seed and over seeds.

    Over seeds the difference is the mean of the seeds' differences, and its interval uses the
    mean of their standard errors (not divided by sqrt(seeds)): every seed is scored on the same
    items, so item-sampling error is shared across seeds, not averaged away.
    """
    seeds = sorted(s for s, d in capabilities.items() if d.get("arms"))
    if not seeds:
        return []
    first = capabilities[seeds[0]]
    lines = [
        "## Capabilities (lm-evaluation-harness)",
        "",
        f"lm-eval {first.get('lm_eval_version')}; value ± stderr as lm-eval reports it. Anchored models answer without "
        "an annotation (none forced or sampled: lm-eval's prompts as they are). Per-seed files: "
        "`eval/seedN/capabilities.json`.",
        "",
        "| arm | task | metric | n | mean over seeds | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---|---|---|---|" + "---|" * len(seeds),
    ]
    arms = [a for a in ARM_ORDER if any(a in capabilities[s]["arms"] for s in seeds)]
    arms += sorted({a for s in seeds for a in capabilities[s]["arms"]} - set(arms))
    for arm in arms:
        tasks = sorted({t for s in seeds for t in capabilities[s]["arms"].get(arm, {})})
        for task in tasks:
            entries = [capabilities[s]["arms"].get(arm, {}).get(task) for s in seeds]
            known = [e for e in entries if e and e.get("value") is not None]
            mean = statistics.fmean(e["value"] for e in known) if known else None
            lines.append(
                f"| {arm} | {task} | {known[0]['metric'] if known else 'n/a'} | {known[0].get('n') if known else 'n/a'} | "
                f"{_fmt(mean)} | " + " | ".join(_value(e) for e in entries) + " |"
            )
    lines.append("")
    tasks = sorted({t for s in seeds for t in capabilities[s]["arms"].get(anchored, {})})
    if not tasks or not any(plain in capabilities[s]["arms"] for s in seeds):
        return lines
    lines += [
        f"{anchored} - {plain}: 95% normal interval, se = sqrt(se_a² + se_p²) per seed (conservative: the arms "
        "share the items).",
        "",
        f"| task | seed | {anchored} | {plain} | difference [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for task in tasks:
        diffs = []
        for s in seeds:
            a = capabilities[s]["arms"].get(anchored, {}).get(task)
            p = capabilities[s]["arms"].get(plain, {}).get(task)
            d = difference(a, p)
            if d is None:
                continue
            diffs.append(d)
            ci = f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d.get("ci_low") is not None else "[no stderr]"
            lines.append(f"| {task} | {s} | {_value(a)} | {_value(p)} | {d['diff']:+.3f} {ci} |")
        if len(diffs) > 1:
            mean = statistics.fmean(d["diff"] for d in diffs)
            ses = [d["se"] for d in diffs if d.get("se") is not None]
            ci = (
                f"[{mean - Z95 * statistics.fmean(ses):+.3f}, {mean + Z95 * statistics.fmean(ses):+.3f}]"
                if len(ses) == len(diffs)
                else "[no stderr]"
            )
            lines.append(f"| {task} | mean over {len(diffs)} seeds | | | {mean:+.3f} {ci} |")
    lines.append("")
    return lines


def load_capabilities(out: Path, seeds: list[int]) -> dict[int, dict]:
    found = {}
    for seed in seeds:
        path = out / "eval" / f"seed{seed}" / CAPABILITIES
        if path.is_file():
            found[seed] = json.loads(path.read_text(encoding="utf-8"))
    return found


def scorer_lines(scoring: dict | None) -> list[str]:
    """What scored the samples, one line per scorer, in full (never cut mid-value)."""
    if not scoring:
        return ["Scorers: not recorded."]
    return ["Scorers:", ""] + [f"- {name}: `{json.dumps(value, default=str)}`" for name, value in scoring.items()]


def token_budget_lines(out: Path) -> list[str]:
    """Each pretraining arm's tokens: annotations replace content tokens at an equal budget."""
    rows = []
    for arm in ("plain", "anchored"):
        path = out / "pretrain" / arm / "manifest.json"
        if not path.is_file():
            continue
        c = json.loads(path.read_text(encoding="utf-8")).get("counts", {})
        trained, annotation = c.get("trained_tokens"), c.get("annotation_tokens")
        if trained is None or annotation is None:
            continue
        rows.append(
            f"| {arm} | {trained:,} | {annotation:,} | {100 * annotation / max(1, trained):.1f}% | "
            f"{c.get('content_tokens', 0):,} | {annotation:,} |"
        )
    if not rows:
        return []
    return [
        "## Pretraining token budget",
        "",
        "Both arms train on the same number of tokens; in the anchored arm annotation tokens take the place "
        "of content tokens, so it sees that many fewer tokens of text.",
        "",
        "| arm | trained tokens | annotation tokens | annotation share | content tokens | content tokens lost to annotations |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def override_lines(cfg: StudyConfig) -> list[str]:
    """Which keys of each stage YAML the study set (the paths and settings that chain the stages)."""
    lines = [
        "## Stage config keys the study set",
        "",
        "The study runs each stage YAML with these keys replaced: those of the study config's `overrides` "
        "for that step, then the study's own chaining (the YAML's values for them are not used).",
        "",
        "| step | stage YAML | keys set by the study config's overrides | keys set by the study |",
        "|---|---|---|---|",
    ]
    for step in plan_steps(cfg):
        own = ", ".join(f"`{o.split('=', 1)[0]}`" for o in step.ref.overrides) or "-"
        keys = ", ".join(f"`{k}`" for k in stage_overrides(step))
        lines.append(f"| {step.name} | `{step.ref.config}` | {own} | {keys} |")
    return lines + [""]


def _sweep_section(cfg: StudyConfig, out: Path) -> list[str]:
    """The controlled entropy sweep's section (and its sweep.json and plot), when the study has a sweep."""
    if cfg.entropy_sweep is None:
        return []
    return write_sweep(cfg, out)


def _frontier_section(cfg: StudyConfig, out: Path) -> list[str]:
    """The fit frontier's summary (frontier/report.md has the rest), when the study has a frontier."""
    return [] if cfg.fit_frontier is None else write_frontier(cfg, out)


def write_study_report(cfg: StudyConfig, out: Path) -> Path:
    summaries = load_summaries(out, cfg.seeds) if cfg.main_comparison else {}
    target = out / "report.md"
    if not cfg.main_comparison and load_summaries(out, cfg.seeds):
        # Another config's main comparison shares this directory (the frontier reuses the embedded study's):
        # its report stays as it is.
        target = out / "report_main_comparison_off.md"
    lines = [f"# Study report: {out}", ""]
    if not summaries:
        lines += [
            "No evaluation summary of the main comparison was found: no result to report."
            if cfg.main_comparison
            else "The main comparison is off (`main_comparison: false`).",
            "",
        ]
        lines += _frontier_section(cfg, out)
        lines += _sweep_section(cfg, out)
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return target
    first = summaries[min(summaries)]
    temperatures = sorted({t for arm in first["arms"].values() for t in arm.get("temperatures", {})}, key=float)
    diversity = first.get("metric_names", {}).get("diversity", [])
    quality = first.get("metric_names", {}).get("quality", [])
    metrics = [m for m in HEADLINE_METRICS if m in diversity] + [m for m in diversity if m not in HEADLINE_METRICS]
    provenance = first.get("provenance", {})
    lines += [
        f"Seeds: {', '.join(str(s) for s in sorted(summaries))} (each seed trains every SFT arm and samples with that seed). "
        "Per-seed intervals are 95% percentile bootstraps over prompts within that seed; pooled ones resample seeds "
        "too (hierarchical bootstrap) or use the seed-level values (t). Collapse reference "
        f"(`collapse_reference: {cfg.collapse_reference}`): "
        + (
            "each arm against the pretrained model it was fine-tuned from (plain_sft and anchored_sft_on_plain "
            "against `base`, anchored arms against `anchored_base`)."
            if cfg.collapse_reference == "own"
            else "every arm against `base`, the plain-pretrained model."
        )
        + " Per-seed details: `eval/seedN/report.md`.",
        "",
    ]
    scoring = provenance.get("scoring") or {}
    primary = (scoring.get("semantic_entropy") or {}).get("primary") or "the mean over labelled keys"
    lines += [judge_line(first.get("judge")), ""]
    for t in temperatures:
        lines += [
            f"## Temperature {t}",
            "",
            f"### Headline: judged collapse of the {primary} (semantic_entropy, bits per prompt)",
            "",
            "Collapse = D(base) - D(arm); difference = collapse(plain SFT) - collapse(anchored), the primary "
            "figure; a ratio only where both collapses are positive with intervals excluding 0, otherwise the "
            "reason. Pooled: the seed is the replication unit; a hierarchical bootstrap (seeds resampled, one "
            "prompt resample shared by the seeds) and a Student t interval over the seed-level values.",
            "",
        ]
        if "semantic_entropy" in diversity:
            lines += [*ratio_table(summaries, t, "semantic_entropy"), ""]
        lines += [
            "### Annotation parsing (anchored arms)",
            "",
            *parse_lines(summaries, t),
            "",
            "### Annotation preservation and fidelity (anchored arms)",
            "",
            "Value in pretraining: share of samples whose annotation's topic exists in the pretraining "
            "annotations. Entropies of the topic values and of the sections they stand for, against the base "
            "before SFT in brackets; JS: Jensen-Shannon divergence (bits) of the sections from the base's. "
            "Fidelity: share of responses the judge gives the section their annotation stands for; chance: "
            "the agreement if responses ignored their annotations.",
            "",
            *fidelity_table(summaries, t),
            "",
        ]
        lines += ["### Quality (beside every diversity figure)", ""]
        for metric in quality:
            lines += [f"**{metric}**", "", *seed_table(summaries, t, metric), ""]
        lines += ["### Secondary diversity metrics", ""]
        for metric in [m for m in ("pairwise_dissimilarity", "annotator_entropy") if m in diversity]:
            note = (
                " (the offline annotator's labels: NOT independent of the anchored arm)"
                if metric == "annotator_entropy"
                else ""
            )
            lines += [f"**{metric}**{note}", "", *ratio_table(summaries, t, metric), ""]
        lines += ["### Diversity per arm", ""]
        for metric in metrics:
            lines += [f"**{metric}**", "", *seed_table(summaries, t, metric), ""]
        lines += [
            "### Empty responses (they share one embedding and one label: they look like collapse)",
            "",
            *empty_lines(summaries, t),
            "",
        ]
    lines += capability_lines(load_capabilities(out, cfg.seeds))
    # How the numbers were made, after the numbers: scorers, token budgets, the keys the study set.
    lines += [
        "## Provenance",
        "",
        *scorer_lines(provenance.get("scoring")),
        "",
        *token_budget_lines(out),
        *override_lines(cfg),
    ]
    lines += _frontier_section(cfg, out)
    lines += _sweep_section(cfg, out)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target
