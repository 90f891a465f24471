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

from eval.capabilities import CAPABILITIES, difference, difference_over_seeds, difference_text
from eval.report import PAIR_COLUMNS, judge_line, pair_cells
from stage_io.report_format import NA, interval, number, stat, table, with_stderr
from study.config import StudyConfig
from study.frontier_report import write_frontier
from study.plan import plan_steps, stage_overrides
from study.pooled import pooled_over_seeds, restricted_share_over_seeds
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
SEEDS_NOTE = (
    "Seeds: {seeds} (each seed trains every SFT arm and samples with that seed). "
    "Per-seed intervals are 95% percentile bootstraps over prompts within that seed; pooled ones resample seeds "
    "too (hierarchical bootstrap) or use the seed-level values (t). Collapse reference "
    "(`collapse_reference: {reference}`): {against} Per-seed details: `eval/seedN/report.md`."
)
REFERENCE_TEXT = {
    "own": "each arm against the pretrained model it was fine-tuned from (plain_sft and anchored_sft_on_plain "
    "against `base`, anchored arms against `anchored_base`).",
    "base": "every arm against `base`, the plain-pretrained model.",
}
HEADLINE_NOTE = (
    "Collapse = D(base) - D(arm); difference = collapse(plain SFT) - collapse(anchored), the primary "
    "figure; a ratio only where both collapses are positive with intervals excluding 0, otherwise the "
    "reason. Pooled: the seed is the replication unit; a hierarchical bootstrap (seeds resampled, one "
    "prompt resample shared by the seeds) and a Student t interval over the seed-level values."
)
RESTRICTED_SHARE_NOTE = (
    "Share of each arm's responses the judge gives that value (per seed: bootstrap over prompts); SFT on a set "
    "leaning towards it shifts the arms towards it. Differences: plain SFT's share minus the other arm's "
    "(positive: the other arm shifted less); pooled with a Student t interval over the seed-level values."
)
FIDELITY_NOTE = (
    "Value in pretraining: share of samples whose annotation's topic exists in the pretraining "
    "annotations. Entropies of the topic values and of the sections they stand for, against the base "
    "before SFT in brackets; JS: Jensen-Shannon divergence (bits) of the sections from the base's. "
    "Fidelity: share of responses the judge gives the section their annotation stands for; chance: "
    "the agreement if responses ignored their annotations."
)
FIDELITY_COLUMNS = (
    "arm",
    "seed",
    "value in pretraining",
    "value entropy (base)",
    "mapped entropy (base)",
    "JS mapped",
    "fidelity [CI]",
    "chance",
)
SYNTAX_NOTE = (
    "Annotations were sampled under the annotation syntax (`sampling.annotation_syntax`): tokens "
    "that would make them unparseable were removed, so these parse rates count only annotations cut at "
    "the length cap and do not measure the model's own syntax. *Mostly outside the syntax*: the share "
    "of constrained annotations where the model put over half its probability outside the syntax at "
    "some step, i.e. would likely have broken it unconstrained. Keys and values were not constrained."
)
PARSE_COLUMNS = ("arm", "seed", "annotations parsed", "parse failures", "failure rate", "failures by reason")
SYNTAX_COLUMNS = ("syntax-constrained", "mostly outside the syntax")
CAPABILITIES_NOTE = (
    "lm-eval {version}; value ± stderr as lm-eval reports it. Anchored models answer without "
    "an annotation (none forced or sampled: lm-eval's prompts as they are). Per-seed files: "
    "`eval/seedN/capabilities.json`."
)
CAPABILITY_DIFFERENCE_NOTE = (
    "{anchored} - {plain}: 95% normal interval, se = sqrt(se_a² + se_p²) per seed (conservative: the arms "
    "share the items)."
)
TOKEN_BUDGET_NOTE = (
    "Both arms train on the same number of tokens; in the anchored arm annotation tokens take the place "
    "of content tokens, so it sees that many fewer tokens of text."
)
TOKEN_BUDGET_COLUMNS = (
    "arm",
    "trained tokens",
    "annotation tokens",
    "annotation share",
    "content tokens",
    "content tokens lost to annotations",
)
OVERRIDES_NOTE = (
    "The study runs each stage YAML with these keys replaced: those of the study config's `overrides` "
    "for that step, then the study's own chaining (the YAML's values for them are not used)."
)
OVERRIDES_COLUMNS = ("step", "stage YAML", "keys set by the study config's overrides", "keys set by the study")
ANNOTATOR_ENTROPY_NOTE = " (the offline annotator's labels: NOT independent of the anchored arm)"
EMPTY_TITLE = "### Empty responses (they share one embedding and one label: they look like collapse)"


def load_summaries(out: Path, seeds: list[int]) -> dict[int, dict]:
    return _load_per_seed(out, seeds, "summary.json")


def load_capabilities(out: Path, seeds: list[int]) -> dict[int, dict]:
    return _load_per_seed(out, seeds, CAPABILITIES)


def _load_per_seed(out: Path, seeds: list[int], name: str) -> dict[int, dict]:
    """Each seed's ``eval/seedN/NAME`` that exists, parsed."""
    found = {}
    for seed in seeds:
        path = out / "eval" / f"seed{seed}" / name
        if path.is_file():
            found[seed] = json.loads(path.read_text(encoding="utf-8"))
    return found


def _arms_in_order(per_seed: dict[int, dict], seeds: list[int]) -> list[str]:
    return [a for a in ARM_ORDER if any(a in per_seed[s]["arms"] for s in seeds)]


def _temperature_entry(summary: dict, arm: str, temperature: str) -> dict | None:
    return summary["arms"].get(arm, {}).get("temperatures", {}).get(temperature)


def seed_table(summaries: dict[int, dict], temperature: str, metric: str) -> list[str]:
    seeds = sorted(summaries)
    rows = []
    for arm in _arms_in_order(summaries, seeds):
        entries = [
            (_temperature_entry(summaries[s], arm, temperature) or {}).get("metrics", {}).get(metric) for s in seeds
        ]
        means = [e["mean"] for e in entries if e and e.get("mean") is not None]
        rows.append((arm, number(statistics.fmean(means) if means else None), *(stat(e) for e in entries)))
    return table(("arm", "mean over seeds", *(f"seed {s} [95% CI]" for s in seeds)), rows)


def ratio_table(summaries: dict[int, dict], temperature: str, metric: str) -> list[str]:
    """Per comparison: each seed's pair statistics, then the pooled ones over seeds: the hierarchical
    bootstrap (seeds, and one prompt resample shared by the seeds) and a seed t interval (eval.collapse's
    rules on the hierarchical intervals: the ratio only where both collapses are clearly positive, else the status)."""
    seeds = sorted(summaries)
    provenance = summaries[seeds[0]].get("provenance", {})
    b = provenance.get("bootstrap", {})
    min_denominator = provenance.get("collapse", {}).get("min_denominator", 1e-6)
    rows = []
    for pair, label in PAIRS:
        per_seed = []
        for s in seeds:
            r = summaries[s].get("collapse_ratios", {}).get("pairs", {}).get(pair, {}).get(temperature, {}).get(metric)
            if not r:
                continue
            per_seed.append(r.get("per_prompt"))
            rows.append((label, s, *pair_cells(r)))
        if len(per_seed) > 1 and all(per_seed):
            pooled = pooled_over_seeds(
                per_seed, min_denominator, b.get("resamples", 1000), b.get("confidence", 0.95), b.get("seed", 0)
            )
            for kind, text in (("hierarchical", "hierarchical bootstrap"), ("seed_t", "seed t")):
                rows.append((label, f"pooled over {len(per_seed)} seeds, {text}", *pair_cells(pooled[kind])))
    return table(("comparison", "seed", *PAIR_COLUMNS), rows)


def restricted_share_lines(summaries: dict[int, dict], temperature: str) -> list[str]:
    """Each arm's share of the value the SFT set leans towards (metrics.restricted_value), per seed and pooled,
    and plain SFT's share minus the others'; nothing when eval measured no restricted value."""
    seeds = sorted(summaries)
    arms = _arms_in_order(summaries, seeds)
    entries = {
        arm: [(_temperature_entry(summaries[s], arm, temperature) or {}).get("restricted_share") for s in seeds]
        for arm in arms
    }
    measured = [e for per_seed in entries.values() for e in per_seed if e]
    if not measured:
        return []
    confidence = summaries[seeds[0]].get("provenance", {}).get("bootstrap", {}).get("confidence", 0.95)
    shares = {arm: [e.get("mean") if e else None for e in per_seed] for arm, per_seed in entries.items()}
    pooled = restricted_share_over_seeds(shares, confidence)
    value_rows = [(arm, stat(pooled["arms"][arm]), *(stat(e) for e in entries[arm])) for arm in arms]
    difference_rows = [
        (f"plain_sft - {other}", *(number(d, sign=True) for d in diff["per_seed"]), stat(diff))
        for other, diff in pooled["differences"].items()
    ]
    first = measured[0]
    return [
        f"### Share of {first['attribute']} {first['value']} (the value the SFT set leans towards)",
        "",
        RESTRICTED_SHARE_NOTE,
        "",
        *table(("arm", "over seeds [seed t]", *(f"seed {s} [95% CI]" for s in seeds)), value_rows),
        "",
        *table(("difference", *(f"seed {s}" for s in seeds), "over seeds [seed t]"), difference_rows),
        "",
    ]


def fidelity_table(summaries: dict[int, dict], temperature: str) -> list[str]:
    rows = []
    for s in sorted(summaries):
        fid = summaries[s].get("annotation_fidelity") or {}
        for arm, per_t in (fid.get("arms") or {}).items():
            e = per_t.get(temperature)
            if e:
                rows.append(_fidelity_cells(arm, s, e["preservation"], e["fidelity"]))
    return table(FIDELITY_COLUMNS, rows)


def _fidelity_cells(arm: str, seed: int, p: dict, f: dict) -> tuple:
    fidelity = (
        NA if f["fidelity"] is None else f"{interval(f['fidelity'], f.get('ci_low'), f.get('ci_high'))} (n={f['n']})"
    )
    return (
        arm,
        seed,
        number(p["share_value_in_pretraining"]),
        f"{number(p['value_entropy'])} ({number(p.get('reference_value_entropy'))})",
        f"{number(p['mapped_entropy'])} ({number(p.get('reference_mapped_entropy'))})",
        number(p.get("mapped_js_divergence")),
        fidelity,
        number(f["chance"]),
    )


def empty_lines(summaries: dict[int, dict], temperature: str) -> list[str]:
    seeds = sorted(summaries)
    rows = []
    for arm in _arms_in_order(summaries, seeds):
        entries = [_temperature_entry(summaries[s], arm, temperature) for s in seeds]
        rows.append(
            (arm, *(NA if not e else f"{e.get('empty_responses', 0)} of {e.get('n_samples')}" for e in entries))
        )
    return table(("arm", *(f"seed {s}" for s in seeds)), rows)


def parse_lines(summaries: dict[int, dict], temperature: str) -> list[str]:
    entries = [
        (s, arm, parse)
        for s in sorted(summaries)
        for arm, data in summaries[s]["arms"].items()
        if (parse := data.get("temperatures", {}).get(temperature, {}).get("parse", {})).get("expected")
    ]
    # Columns for syntax-constrained sampling only where some annotation was sampled under it.
    constrained = any(parse.get("syntax_constrained") for _, _, parse in entries)
    rows = []
    for s, arm, parse in entries:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(parse.get("by_reason", {}).items(), key=lambda kv: -kv[1]))
        cells = [arm, s, parse.get("ok"), parse.get("failed"), number(parse.get("failure_rate")), reasons or "-"]
        if constrained:
            cells += [parse.get("syntax_constrained", 0), number(parse.get("mostly_outside_syntax_rate"))]
        rows.append(cells)
    lines = table(PARSE_COLUMNS + (SYNTAX_COLUMNS if constrained else ()), rows)
    return lines + ["", SYNTAX_NOTE] if constrained else lines


def capability_lines(capabilities: dict[int, dict], plain: str = "plain_sft", anchored: str = "anchored") -> list[str]:
    """Per arm and task: value ± stderr per seed; then anchored - plain per seed and over seeds
    (eval.capabilities.difference and difference_over_seeds)."""
    seeds = sorted(s for s, d in capabilities.items() if d.get("arms"))
    if not seeds:
        return []
    lines = [
        "## Capabilities (lm-evaluation-harness)",
        "",
        CAPABILITIES_NOTE.format(version=capabilities[seeds[0]].get("lm_eval_version")),
        "",
        *capability_value_table(capabilities, seeds),
        "",
    ]
    tasks = sorted({t for s in seeds for t in capabilities[s]["arms"].get(anchored, {})})
    if not tasks or not any(plain in capabilities[s]["arms"] for s in seeds):
        return lines
    return lines + [
        CAPABILITY_DIFFERENCE_NOTE.format(anchored=anchored, plain=plain),
        "",
        *capability_difference_table(capabilities, seeds, tasks, plain, anchored),
        "",
    ]


def capability_value_table(capabilities: dict[int, dict], seeds: list[int]) -> list[str]:
    """Per arm and task: the metric, n, the mean of the seeds' values and each seed's value ± stderr."""
    arms = _arms_in_order(capabilities, seeds)
    arms += sorted({a for s in seeds for a in capabilities[s]["arms"]} - set(arms))
    rows = []
    for arm in arms:
        for task in sorted({t for s in seeds for t in capabilities[s]["arms"].get(arm, {})}):
            entries = [capabilities[s]["arms"].get(arm, {}).get(task) for s in seeds]
            known = [e for e in entries if e and e.get("value") is not None]
            mean = statistics.fmean(e["value"] for e in known) if known else None
            first = known[0] if known else {"metric": NA, "n": NA}
            rows.append((arm, task, first["metric"], first.get("n"), number(mean), *(with_stderr(e) for e in entries)))
    return table(("arm", "task", "metric", "n", "mean over seeds", *(f"seed {s}" for s in seeds)), rows)


def capability_difference_table(
    capabilities: dict[int, dict], seeds: list[int], tasks: list[str], plain: str, anchored: str
) -> list[str]:
    """Per task: anchored - plain per seed, and over seeds where more than one seed has it."""
    rows = []
    for task in tasks:
        diffs = []
        for s in seeds:
            a = capabilities[s]["arms"].get(anchored, {}).get(task)
            p = capabilities[s]["arms"].get(plain, {}).get(task)
            d = difference(a, p)
            if d is not None:
                diffs.append(d)
                rows.append((task, s, with_stderr(a), with_stderr(p), difference_text(d)))
        if len(diffs) > 1:
            rows.append((task, f"mean over {len(diffs)} seeds", "", "", difference_text(difference_over_seeds(diffs))))
    return table(("task", "seed", anchored, plain, "difference [95% CI]"), rows)


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
        share = f"{100 * annotation / max(1, trained):.1f}%"
        rows.append(
            (arm, f"{trained:,}", f"{annotation:,}", share, f"{c.get('content_tokens', 0):,}", f"{annotation:,}")
        )
    if not rows:
        return []
    return ["## Pretraining token budget", "", TOKEN_BUDGET_NOTE, "", *table(TOKEN_BUDGET_COLUMNS, rows), ""]


def override_lines(cfg: StudyConfig) -> list[str]:
    """Which keys of each stage YAML the study set (the paths and settings that chain the stages)."""
    rows = [
        (
            step.name,
            f"`{step.ref.config}`",
            ", ".join(f"`{o.split('=', 1)[0]}`" for o in step.ref.overrides) or "-",
            ", ".join(f"`{k}`" for k in stage_overrides(step)),
        )
        for step in plan_steps(cfg)
    ]
    return ["## Stage config keys the study set", "", OVERRIDES_NOTE, "", *table(OVERRIDES_COLUMNS, rows), ""]


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
    if summaries:
        lines += main_comparison_lines(cfg, out, summaries)
    elif cfg.main_comparison:
        lines += ["No evaluation summary of the main comparison was found: no result to report.", ""]
    else:
        lines += ["The main comparison is off (`main_comparison: false`).", ""]
    lines += _frontier_section(cfg, out)
    lines += _sweep_section(cfg, out)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def main_comparison_lines(cfg: StudyConfig, out: Path, summaries: dict[int, dict]) -> list[str]:
    """Seeds and reference, then per temperature every table, then capabilities, then provenance."""
    first = summaries[min(summaries)]
    temperatures = sorted({t for arm in first["arms"].values() for t in arm.get("temperatures", {})}, key=float)
    provenance = first.get("provenance", {})
    seeds = ", ".join(str(s) for s in sorted(summaries))
    against = REFERENCE_TEXT["own" if cfg.collapse_reference == "own" else "base"]
    lines = [SEEDS_NOTE.format(seeds=seeds, reference=cfg.collapse_reference, against=against), ""]
    lines += [judge_line(first.get("judge")), ""]
    for t in temperatures:
        lines += temperature_lines(summaries, t)
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
    return lines


def temperature_lines(summaries: dict[int, dict], t: str) -> list[str]:
    """One temperature: the headline, parsing, fidelity, quality, secondary metrics, diversity, empty responses."""
    first = summaries[min(summaries)]
    diversity = first.get("metric_names", {}).get("diversity", [])
    quality = first.get("metric_names", {}).get("quality", [])
    metrics = [m for m in HEADLINE_METRICS if m in diversity] + [m for m in diversity if m not in HEADLINE_METRICS]
    scoring = first.get("provenance", {}).get("scoring") or {}
    primary = (scoring.get("semantic_entropy") or {}).get("primary") or "the mean over labelled keys"
    lines = [
        f"## Temperature {t}",
        "",
        f"### Headline: judged collapse of the {primary} (semantic_entropy, bits per prompt)",
        "",
        HEADLINE_NOTE,
        "",
    ]
    if "semantic_entropy" in diversity:
        lines += [*ratio_table(summaries, t, "semantic_entropy"), ""]
    lines += restricted_share_lines(summaries, t)
    lines += ["### Annotation parsing (anchored arms)", "", *parse_lines(summaries, t), ""]
    lines += ["### Annotation preservation and fidelity (anchored arms)", "", FIDELITY_NOTE, ""]
    lines += [*fidelity_table(summaries, t), ""]
    lines += ["### Quality (beside every diversity figure)", ""]
    for metric in quality:
        lines += [f"**{metric}**", "", *seed_table(summaries, t, metric), ""]
    lines += ["### Secondary diversity metrics", ""]
    for metric in [m for m in ("pairwise_dissimilarity", "annotator_entropy") if m in diversity]:
        note = ANNOTATOR_ENTROPY_NOTE if metric == "annotator_entropy" else ""
        lines += [f"**{metric}**{note}", "", *ratio_table(summaries, t, metric), ""]
    lines += ["### Diversity per arm", ""]
    for metric in metrics:
        lines += [f"**{metric}**", "", *seed_table(summaries, t, metric), ""]
    return lines + [EMPTY_TITLE, "", *empty_lines(summaries, t), ""]
