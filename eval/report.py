"""Stage 3: summary.json, then report.md with PNG plots (matplotlib, Agg: no display)."""

from __future__ import annotations

from pathlib import Path

from eval.capabilities import evaluated_arms, read_capabilities, render_capabilities
from eval.config import EvalConfig
from eval.summary import SUMMARY, write_summary
from stage_io.report_format import NA, cell, interval, interval_or_value, stat, table

REPORT = "report.md"
PLOTS = "plots"
QUALITY_NOTES = {
    "proxy": " (a PROXY: reference-model log-likelihood minus a repetition penalty, not a judgement)",
    "ngram": " (mean per-word log-prob under a trigram model of the corpus text minus a repetition penalty: "
    "favours neither arm, measures local fluency, not a judgement)",
}


HEADER_NOTE = (
    "Diversity is measured on responses with their annotations stripped. Intervals are "
    "{confidence:.0%} percentile bootstrap intervals over prompts "
    "({resamples} resamples, seed {seed}). "
    "Metric definitions: eval/README.md."
)
STATUS_NOTE = (
    "Anchored arms by annotation status (failed: the sampler closed the annotation; the continuation is "
    "scored). Diversity is within each part's samples per prompt."
)
COLLAPSE_NOTE = "Collapse = D(base) - D(arm), paired over prompts (positive: less diverse than its base)."
PAIR_NOTE = (
    "Pair {label}: collapse = D(base) - D(arm); difference = collapse(plain) - collapse(anchored); "
    "the ratio only where both collapses are positive with intervals excluding 0 (eval/collapse.py)."
)
SEMANTIC_NOTE = (
    "Label entropy per key (bits; a sample without a label counts as `<absent>`): per prompt, and pooled "
    "over the prompts of one intent; coverage = share of samples with a label."
)
FIDELITY_NOTE = (
    "Annotation key `{key}`; each value stands for the `{attribute}` label "
    "of most of its pretraining chunks ({how}; {values} values, purity {purity}). "
    "Preservation: the arm's values against its reference's (its base, before SFT); fidelity: share of "
    "samples whose judged response label is the one its annotation stands for, beside chance."
)
# The parse table's header as its Markdown reads.
PARSE_COLUMNS = tuple(
    "arm | annotations parsed | parse failures (by reason) | inner annotations stripped | empty responses | "
    "stopped at length".split(" | ")
)
STATUS_COLUMNS = ("arm", "annotation", "samples", "diversity (primary)", "restricted share", "quality")
DRIFT_COLUMNS = (
    "key",
    "entropy sampled",
    "entropy pretraining",
    "KL(sampled‖pretraining)",
    "n sampled",
    "n pretraining",
)
FIDELITY_COLUMNS = (
    "arm",
    "T",
    "reference",
    "value in pretraining",
    "value entropy (ref)",
    "mapped entropy (ref)",
    "JS values",
    "JS mapped",
    "fidelity [CI]",
    "chance",
    "n",
)


def run_report(config: EvalConfig, run_dir: Path) -> dict:
    summary = write_summary(config, run_dir)
    plot_dir = run_dir / PLOTS
    plot_dir.mkdir(exist_ok=True)
    plots = {
        "diversity": plot_diversity(summary, plot_dir / "diversity.png"),
        "frontier": plot_frontier(summary, plot_dir / "frontier.png"),
        "drift": plot_drift(summary, plot_dir / "drift.png"),
    }
    evaluated = [arm.name for arm in evaluated_arms(config)[0]]
    capabilities = render_capabilities(
        read_capabilities(run_dir), config.collapse.plain_arm, config.collapse.anchored_arm, evaluated
    )
    (run_dir / REPORT).write_text(render_report(summary, plots, capabilities), encoding="utf-8")
    return {"plots": [str(p.relative_to(run_dir)) for p in plots.values() if p is not None]}


def _arms_with(arms: dict, t: str, key: str) -> list[tuple[str, dict]]:
    """(arm, its entry at temperature t) for the arms whose entry has ``key``."""
    return [(n, a["temperatures"][t][key]) for n, a in arms.items() if key in a["temperatures"].get(t, {})]


def restricted_and_status_lines(arms: dict, t: str) -> list[str]:
    """The restricted-value share per arm, and the anchored arms' figures by annotation status."""
    lines: list[str] = []
    shares = _arms_with(arms, t, "restricted_share")
    if shares:
        r = shares[0][1]
        lines += [
            f"Share of samples judged {r['attribute']} = {r['value']} (the value the SFT set is restricted to):",
            "",
            *table(
                ("arm", "share (mean over prompts)", "samples judged"),
                [(n, stat(r), f"{r['samples_with_value']}/{r['samples_judged']}") for n, r in shares],
            ),
            "",
        ]
    splits = _arms_with(arms, t, "by_annotation_status")
    if splits:
        rows = [
            (
                n,
                status,
                f"{e['n_samples']} ({cell(e['share_of_samples'])})",
                f"{e['primary_metric']} {stat(e.get('primary'))}",
                stat(e.get("restricted_share")),
                stat(e.get("quality")),
            )
            for n, split in splits
            for status, e in ((s, split[s]) for s in ("parsed", "failed"))
        ]
        lines += [STATUS_NOTE, "", *table(STATUS_COLUMNS, rows), ""]
    return lines


def render_report(summary: dict, plots: dict[str, Path | None], capabilities: list[str] | None = None) -> str:
    """report.md; ``capabilities`` is the capabilities section's lines (eval.capabilities.render_capabilities)."""
    arms = summary["arms"]
    lines = ["# Evaluation report", "", *header_lines(summary), ""]
    for t in sorted({t for a in arms.values() for t in a["temperatures"]}, key=float):
        lines += temperature_lines(summary, t)
    skipped = summary["collapse_ratios"]["skipped"]
    if skipped:
        lines += ["Collapse ratios not computed: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()), ""]
    lines += fidelity_lines(summary.get("annotation_fidelity") or {})
    lines += capabilities or []
    lines += drift_lines(summary["annotation_drift"])
    lines += plot_lines(plots)
    return "\n".join(lines) + "\n"


def header_lines(summary: dict) -> list[str]:
    """How the numbers were made: bootstrap, scorers, judge, sampling, commit."""
    prov = summary["provenance"]
    scoring = prov.get("scoring") or {}
    quality = (scoring.get("quality") or {}).get("kind")
    entropy = scoring.get("semantic_entropy") or {}
    primary = f", primary attribute `{entropy.get('primary')}`" if entropy.get("primary") else ""
    warning = (summary.get("restricted_value") or {}).get("warning")
    sampling = prov["sampling"]
    return [
        HEADER_NOTE.format(**prov["bootstrap"]),
        "",
        f"- embedder: `{scoring.get('embedder_details', {}).get('model', scoring.get('embedder', NA))}`",
        f"- quality: `{quality or NA}`" + QUALITY_NOTES.get(quality, ""),
        f"- semantic entropy labels: `{entropy.get('labels', NA)}`{primary}, "
        f"estimator `{entropy.get('estimator', 'plugin')}`",
        judge_line(summary.get("judge")),
        *([f"- **restricted value: {warning}**"] if warning else []),
        f"- sampling: {sampling['backend']}, {sampling['samples_per_prompt']} samples/prompt, "
        f"temperatures {sampling['temperatures']}, top_p {sampling['top_p']}",
        f"- git commit `{prov.get('git_commit')}`, config `{prov['config_fingerprint'][:19]}`",
    ]


def temperature_lines(summary: dict, t: str) -> list[str]:
    """One temperature's section: metrics, parse counts, restricted share, collapse, pairs, label entropy."""
    names, arms = summary["metric_names"], summary["arms"]
    present = [(name, arm, arm["temperatures"][t]) for name, arm in arms.items() if t in arm["temperatures"]]
    cols = names["diversity"] + names["quality"]
    metric_rows = [
        (name, arm["mode"], e["n_prompts"], *(stat(e["metrics"][m]) for m in cols)) for name, arm, e in present
    ]
    lines = [f"## Temperature {t}", "", *table(("arm", "mode", "prompts", *cols), metric_rows), ""]
    lines += [*table(PARSE_COLUMNS, [parse_cells(name, e) for name, _, e in present]), ""]
    lines += restricted_and_status_lines(arms, t)
    lines += collapse_lines(arms, t, names["diversity"])
    for label, per_t in summary["collapse_ratios"]["pairs"].items():
        if per_t.get(t):
            rows = [(m, *pair_cells(r)) for m, r in per_t[t].items()]
            lines += [PAIR_NOTE.format(label=label), "", *table(("metric", *PAIR_COLUMNS), rows), ""]
    return lines + semantic_lines(arms, t)


def parse_cells(name: str, e: dict) -> tuple:
    """An arm's annotation parse counts, inner annotations, empty responses and length stops."""
    p = e["parse"]
    parsed = f"{p['ok']}/{p['attempted']}" if p["expected"] else "not expected"
    failed = f"{p['failed']} {p['by_reason']}" if p["expected"] else "-"
    return (name, parsed, failed, e["inner_annotations"], e["empty_responses"], e["length_stops"])


def collapse_lines(arms: dict, t: str, diversity: list[str]) -> list[str]:
    """Each arm's collapse against its base, per diversity metric."""
    rows = [(n, e["collapse"]) for n, a in arms.items() if "collapse" in (e := a["temperatures"].get(t, {}))]
    if not rows:
        return []
    cells = [(n, next(iter(c.values()))["base_arm"], *(stat(c[m]) for m in diversity)) for n, c in rows]
    return [COLLAPSE_NOTE, "", *table(("arm", "base", *diversity), cells), ""]


def drift_lines(drift: dict) -> list[str]:
    """Sampled annotations against the pretraining annotations, per arm, temperature and key."""
    lines = ["## Annotation drift", ""]
    if drift.get("status") != "ok":
        return lines + [f"Not computed: {drift.get('status')}.", ""]
    lines += [
        f"Sampled annotations vs the pretraining annotations ({drift['pretraining']['rows_read']} chunks read; "
        f"KL in bits with additive smoothing {drift['smoothing']}).",
        "",
    ]
    for arm, per_t in drift["arms"].items():
        for t, d in per_t.items():
            rows = [
                (
                    key,
                    cell(k["entropy_sampled"]),
                    cell(k["entropy_pretraining"]),
                    cell(k["kl_sampled_vs_pretraining"]),
                    k["n_sampled"],
                    k["n_pretraining"],
                )
                for key, k in d["per_key"].items()
            ]
            lines += [
                f"**{arm}, temperature {t}** ({d['annotations_used']} parsed annotations; "
                f"{d['annotations_unparsed_excluded']} unparsed, excluded)",
                "",
                *table(DRIFT_COLUMNS, rows),
                "",
            ]
            if d["sampled_keys_not_in_pretraining"]:
                lines += [f"Sampled keys pretraining never used (counts): {d['sampled_keys_not_in_pretraining']}", ""]
    return lines


def plot_lines(plots: dict[str, Path | None]) -> list[str]:
    lines = ["## Plots", ""]
    for name, path in plots.items():
        if path is None:
            lines.append(f"- {name}: not drawn (nothing to plot)")
        else:
            lines += [f"![{name}]({PLOTS}/{path.name})", ""]
    return lines


PAIR_COLUMNS = (
    "collapse plain [CI]",
    "collapse anchored [CI]",
    "difference [CI]",
    "ratio [CI] or status",
    "gap closed [CI]",
)


def pair_cells(r: dict) -> list[str]:
    """The cells of one (plain, anchored) pair (eval.collapse.pair_statistics): the ratio and
    gap closed only with status ok, else the status's text in their place."""
    if r.get("status") == "ok":
        ratio = interval(r["ratio"], r.get("ci_low"), r.get("ci_high"), digits=2)
        gap = interval_or_value(r.get("gap_closed"), r.get("gap_closed_ci"))
    else:
        ratio, gap = f"no ratio: {r.get('reason', r.get('status'))}", "-"
    return [
        interval_or_value(r.get("collapse_plain"), r.get("collapse_plain_ci")),
        interval_or_value(r.get("collapse_anchored"), r.get("collapse_anchored_ci")),
        interval_or_value(r.get("difference"), r.get("difference_ci")),
        ratio,
        gap,
    ]


def judge_line(judge: dict | None) -> str:
    if not judge:
        return "- attribute judge: none"
    if judge.get("kind") == "classifier":
        return (
            f"- attribute judge: a classifier of `{judge['attribute']}` trained on the gold labels "
            f"(`{judge['source']}`, column `{judge['label_field']}`), held-out accuracy "
            f"{judge['heldout_accuracy']:.3f} on {judge['n_test']} records; independent of the annotations"
        )
    if judge.get("kind") == "annotator":
        return f"- attribute labels: the offline annotator ({judge.get('note')})"
    return f"- attribute judge: `{judge.get('model')}`"


def semantic_lines(arms: dict, t: str) -> list[str]:
    """Per labelled key: the per-prompt entropy and the entropy pooled over prompts of one intent."""
    rows = [
        (name, arm["temperatures"][t])
        for name, arm in arms.items()
        if t in arm["temperatures"] and arm["temperatures"][t].get("semantic_per_key")
    ]
    if not rows:
        return []
    keys = sorted({k for _, e in rows for k in e["semantic_per_key"]})
    columns = ["arm", *(f"{k}: {part}" for k in keys for part in ("per prompt", "pooled", "coverage"))]
    cells = [
        (
            name,
            *(
                text
                for k in keys
                for text in (
                    stat(e["semantic_per_key"].get(k, {}).get("entropy")),
                    stat(e.get("semantic_pooled", {}).get(k)),
                    cell(e["semantic_per_key"].get(k, {}).get("coverage")),
                )
            ),
        )
        for name, e in rows
    ]
    return [SEMANTIC_NOTE, "", *table(columns, cells), ""]


def fidelity_lines(fid: dict) -> list[str]:
    lines = ["## Annotation preservation and fidelity (anchored arms)", ""]
    if fid.get("status") != "ok":
        return lines + [f"Not computed: {fid.get('status', NA)}.", ""]
    vm = fid["value_map"]
    note = FIDELITY_NOTE.format(
        key=fid["annotation_key"],
        attribute=fid["judged_attribute"],
        how=vm["how"],
        values=vm["values"],
        purity=cell(vm["purity"]),
    )
    rows = [
        fidelity_cells(arm, t, e["reference_arm"], e["preservation"], e["fidelity"])
        for arm, per_t in fid["arms"].items()
        for t, e in per_t.items()
    ]
    return lines + [note, "", *table(FIDELITY_COLUMNS, rows), ""]


def fidelity_cells(arm: str, t: str, reference: str | None, p: dict, f: dict) -> tuple:
    """One arm's preservation (against its reference arm, in brackets) and fidelity beside chance."""
    return (
        arm,
        t,
        reference or "-",
        cell(p["share_value_in_pretraining"]),
        f"{cell(p['value_entropy'])} ({cell(p.get('reference_value_entropy'))})",
        f"{cell(p['mapped_entropy'])} ({cell(p.get('reference_mapped_entropy'))})",
        cell(p.get("js_divergence")),
        cell(p.get("mapped_js_divergence")),
        interval_or_value(f["fidelity"], (f.get("ci_low"), f.get("ci_high"))),
        cell(f["chance"]),
        f["n"],
    )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, title: str | None = None) -> Path:
    """Lay out, write and close a figure (with its title above the panels, if given)."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_diversity(summary: dict, path: Path) -> Path | None:
    """One panel per diversity metric: arms on x, mean with CI, one marker per temperature."""
    plt = _pyplot()
    metrics = summary["metric_names"]["diversity"]
    arms = list(summary["arms"])
    temps = sorted({t for a in summary["arms"].values() for t in a["temperatures"]}, key=float)
    if not metrics or not arms:
        return None
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for j, t in enumerate(temps):
            xs, ys, lo, hi = [], [], [], []
            for i, arm in enumerate(arms):
                stat = summary["arms"][arm]["temperatures"].get(t, {}).get("metrics", {}).get(metric)
                if not stat or stat["mean"] is None:
                    continue
                xs.append(i + (j - (len(temps) - 1) / 2) * 0.12)
                ys.append(stat["mean"])
                lo.append(stat["mean"] - stat["ci_low"])
                hi.append(stat["ci_high"] - stat["mean"])
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=f"T={t}")
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return _save(plt, fig, path, "Diversity per arm (mean over prompts, bootstrap CI)")


def plot_frontier(summary: dict, path: Path) -> Path | None:
    """Quality (x) against diversity (y) for each arm across the temperature sweep."""
    plt = _pyplot()
    if "quality" not in summary["metric_names"]["quality"]:
        return None
    ys = [m for m in ("pairwise_dissimilarity", "semantic_entropy") if m in summary["metric_names"]["diversity"]]
    fig, axes = plt.subplots(1, len(ys), figsize=(5 * len(ys), 4), squeeze=False)
    drawn = False
    for ax, metric in zip(axes.flat, ys):
        for arm, data in summary["arms"].items():
            pts = []
            for t, e in sorted(data["temperatures"].items(), key=lambda kv: float(kv[0])):
                q, d = e["metrics"].get("quality"), e["metrics"].get(metric)
                if q and d and q["mean"] is not None and d["mean"] is not None:
                    pts.append((t, q, d))
            if not pts:
                continue
            drawn = True
            ax.errorbar(
                [p[1]["mean"] for p in pts],
                [p[2]["mean"] for p in pts],
                xerr=[[p[1]["mean"] - p[1]["ci_low"] for p in pts], [p[1]["ci_high"] - p[1]["mean"] for p in pts]],
                yerr=[[p[2]["mean"] - p[2]["ci_low"] for p in pts], [p[2]["ci_high"] - p[2]["mean"] for p in pts]],
                fmt="-o",
                capsize=2,
                label=arm,
            )
            for t, q, d in pts:
                ax.annotate(f"T={t}", (q["mean"], d["mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("quality (mean over prompts)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if not drawn:
        plt.close(fig)
        return None
    return _save(plt, fig, path, "Diversity-quality frontier over temperature")


def plot_drift(summary: dict, path: Path) -> Path | None:
    """Per key: entropy of sampled vs pretraining annotations, and KL(sampled || pretraining)."""
    plt = _pyplot()
    drift = summary["annotation_drift"]
    if drift.get("status") != "ok":
        return None
    panels = [(arm, t, d) for arm, per_t in drift["arms"].items() for t, d in per_t.items()]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 3.2 * len(panels)), squeeze=False)
    for (arm, t, d), (ax_h, ax_kl) in zip(panels, axes):
        keys = list(d["per_key"])
        xs = range(len(keys))
        hs = [d["per_key"][k]["entropy_sampled"] or 0.0 for k in keys]
        hp = [d["per_key"][k]["entropy_pretraining"] or 0.0 for k in keys]
        ax_h.bar([x - 0.2 for x in xs], hs, width=0.4, label="sampled")
        ax_h.bar([x + 0.2 for x in xs], hp, width=0.4, label="pretraining")
        ax_h.set_xticks(list(xs))
        ax_h.set_xticklabels(keys, rotation=30, ha="right", fontsize=8)
        ax_h.set_ylabel("entropy (bits)")
        ax_h.set_title(f"{arm}, T={t}: entropy per key", fontsize=9)
        ax_h.legend(fontsize=7)
        kl = [d["per_key"][k]["kl_sampled_vs_pretraining"] or 0.0 for k in keys]
        ax_kl.bar(list(xs), kl, color="tab:red")
        ax_kl.set_xticks(list(xs))
        ax_kl.set_xticklabels(keys, rotation=30, ha="right", fontsize=8)
        ax_kl.set_ylabel("KL (bits)")
        ax_kl.set_title(f"{arm}, T={t}: KL(sampled || pretraining)", fontsize=9)
    return _save(plt, fig, path)


__all__ = ["run_report", "SUMMARY", "REPORT"]
