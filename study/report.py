"""The study report: every seed's evaluation side by side, and the collapse across seeds.

Each seed's ``eval/seedN/summary.json`` already holds per-arm diversity with bootstrap
intervals over prompts and the collapse ratios. This page puts the seeds together:

- per arm and metric, the mean over seeds, and each seed's value with its interval;
- collapse(arm) = D(base) - D(arm) per seed, and the headline ratio
  collapse(plain_sft) / collapse(anchored) per seed (paired bootstrap interval over
  prompts) and pooled (the ratio of the seed-mean collapses);
- quality beside every diversity figure, and the annotation parse failures.

Numbers are copied from the summaries as measured, whatever they show.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from study.config import StudyConfig

HEADLINE_METRICS = ("pairwise_dissimilarity", "vendi", "semantic_entropy", "distinct_k", "distinct_2")
ARM_ORDER = ("base", "anchored_base", "plain_sft", "anchored", "anchored_no_annotation", "anchored_sft_on_plain")
PAIRS = (("plain_sft/anchored", "headline"), ("plain_sft/anchored_no_annotation", "ablation (b): no annotation sampled"),
         ("plain_sft/anchored_sft_on_plain", "ablation (a): anchored SFT on the plain-pretrained model"))


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
    lines = ["| arm | mean over seeds | " + " | ".join(f"seed {s} [95% CI]" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    arms = [a for a in ARM_ORDER if any(a in summaries[s]["arms"] for s in seeds)]
    for arm in arms:
        entries = [summaries[s]["arms"].get(arm, {}).get("temperatures", {}).get(temperature, {}).get("metrics", {}).get(metric)
                   for s in seeds]
        means = [e["mean"] for e in entries if e and e.get("mean") is not None]
        lines.append(f"| {arm} | {_fmt(statistics.fmean(means) if means else None)} | "
                     + " | ".join(_ci(e) for e in entries) + " |")
    return lines


def ratio_table(summaries: dict[int, dict], temperature: str, metric: str) -> list[str]:
    seeds = sorted(summaries)
    lines = ["| comparison | seed | collapse plain SFT | collapse anchored | ratio [95% CI] | gap closed |",
             "|---|---|---|---|---|---|"]
    for pair, label in PAIRS:
        plain_c, anchored_c = [], []
        for s in seeds:
            r = summaries[s].get("collapse_ratios", {}).get("pairs", {}).get(pair, {}).get(temperature, {}).get(metric)
            if not r:
                continue
            if r.get("collapse_plain") is not None:
                plain_c.append(r["collapse_plain"])
                anchored_c.append(r["collapse_anchored"])
            ratio = r.get("ratio")
            ratio_text = (f"{ratio:.2f} [{_fmt(r.get('ci_low'), 2)}, {_fmt(r.get('ci_high'), 2)}]"
                          if ratio is not None else f"{r.get('status')} ({r.get('reason', '')})")
            lines.append(f"| {label} | {s} | {_fmt(r.get('collapse_plain'))} | {_fmt(r.get('collapse_anchored'))} | "
                         f"{ratio_text} | {_fmt(r.get('gap_closed'), 2)} |")
        if plain_c:
            mp, ma = statistics.fmean(plain_c), statistics.fmean(anchored_c)
            pooled = f"{mp / ma:.2f}" if abs(ma) > 1e-9 else "undefined (anchored collapse ~ 0)"
            lines.append(f"| {label} | pooled over {len(plain_c)} seeds | {_fmt(mp)} | {_fmt(ma)} | {pooled} | "
                         f"{_fmt(1 - ma / mp if abs(mp) > 1e-9 else None, 2)} |")
    return lines


def parse_lines(summaries: dict[int, dict], temperature: str) -> list[str]:
    lines = ["| arm | seed | annotations parsed | parse failures | failure rate | failures by reason |",
             "|---|---|---|---|---|---|"]
    for s in sorted(summaries):
        for arm, data in summaries[s]["arms"].items():
            parse = data.get("temperatures", {}).get(temperature, {}).get("parse", {})
            if parse.get("expected"):
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(parse.get("by_reason", {}).items(), key=lambda kv: -kv[1]))
                lines.append(f"| {arm} | {s} | {parse.get('ok')} | {parse.get('failed')} | "
                             f"{_fmt(parse.get('failure_rate'))} | {reasons or '-'} |")
    return lines


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
        rows.append(f"| {arm} | {trained:,} | {annotation:,} | {100 * annotation / max(1, trained):.1f}% | "
                    f"{c.get('content_tokens', 0):,} | {annotation:,} |")
    if not rows:
        return []
    return ["## Pretraining token budget", "",
            "Both arms train on the same number of tokens; in the anchored arm annotation tokens take the place "
            "of content tokens, so it sees that many fewer tokens of text.", "",
            "| arm | trained tokens | annotation tokens | annotation share | content tokens | content tokens lost to annotations |",
            "|---|---|---|---|---|---|", *rows, ""]


def override_lines(cfg: StudyConfig) -> list[str]:
    """Which keys of each stage YAML the study set (the paths and settings that chain the stages)."""
    from study.runner import plan_steps, stage_overrides

    lines = ["## Stage config keys the study set", "",
             "The study runs each stage YAML with these keys replaced: those of the study config's `overrides` "
             "for that step, then the study's own chaining (the YAML's values for them are not used).", "",
             "| step | stage YAML | keys set by the study config's overrides | keys set by the study |",
             "|---|---|---|---|"]
    for step in plan_steps(cfg):
        own = ", ".join(f"`{o.split('=', 1)[0]}`" for o in step.ref.overrides) or "-"
        keys = ", ".join(f"`{k}`" for k in stage_overrides(step))
        lines.append(f"| {step.name} | `{step.ref.config}` | {own} | {keys} |")
    return lines + [""]


def write_study_report(cfg: StudyConfig, out: Path) -> Path:
    summaries = load_summaries(out, cfg.seeds)
    target = out / "report.md"
    lines = [f"# Study report: {out}", ""]
    if not summaries:
        lines.append("No evaluation summary was found: no result to report.")
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
        "Intervals are 95% percentile bootstraps over prompts within a seed. Collapse reference "
        f"(`collapse_reference: {cfg.collapse_reference}`): "
        + ("each arm against the pretrained model it was fine-tuned from (plain_sft and anchored_sft_on_plain "
           "against `base`, anchored arms against `anchored_base`)." if cfg.collapse_reference == "own"
           else "every arm against `base`, the plain-pretrained model.")
        + " Per-seed details: `eval/seedN/report.md`.",
        "",
        *scorer_lines(provenance.get("scoring")),
        "",
        *token_budget_lines(out),
        *override_lines(cfg),
    ]
    for t in temperatures:
        lines += [f"## Temperature {t}", "", "### Collapse ratio collapse(plain_sft) / collapse(anchored)", ""]
        for metric in metrics[:3]:
            lines += [f"**{metric}**", "", *ratio_table(summaries, t, metric), ""]
        lines += ["### Quality (beside every diversity figure)", ""]
        for metric in quality:
            lines += [f"**{metric}**", "", *seed_table(summaries, t, metric), ""]
        lines += ["### Diversity per arm", ""]
        for metric in metrics:
            lines += [f"**{metric}**", "", *seed_table(summaries, t, metric), ""]
        lines += ["### Annotation parsing (anchored arms)", "", *parse_lines(summaries, t), ""]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target
