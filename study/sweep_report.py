"""The controlled entropy sweep's report (the paper's ablation d): output entropy against SFT-set entropy.

Per sweep subset and seed, each arm's judged section entropy of its outputs is read from
``sweep/NAME/eval/seedN/summary.json`` (``arms.ARM.temperatures.T.metrics.semantic_entropy``:
mean over prompts with its bootstrap interval over prompts). The subset's own section
entropy is computed from the ``topic`` column of its ``sft_set/sft.jsonl`` (log2 k for a
balanced subset of k sections, up to the few articles skipped for length).

Per arm, the least-squares line of output entropy on subset entropy is fitted over every
(subset, seed) point. Its interval is the classical one: slope +- t(n-2, 0.975) x its
standard error from the residuals. It treats the points as independent and each point's mean
as exact (the per-prompt bootstrap intervals are shown in the plot and table, not propagated).
Plain SFT that copies its SFT set's distribution has a slope near 1 (below the base's entropy);
an arm that keeps the pretrained distribution has a slope near 0.

Writes OUT/sweep.json and OUT/sweep_entropy.png; returns the report section's lines.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from stage_io.report_format import NA, bounds, interval, number, table
from study.config import StudyConfig
from study.plan import sweep_dir

SWEEP_ARMS = ("base", "anchored_base", "plain_sft", "anchored")
METRIC = "semantic_entropy"
SWEEP_JSON = "sweep.json"
SWEEP_PLOT = "sweep_entropy.png"


def entropy_bits(labels: list[str]) -> float:
    counts = Counter(labels)
    total = sum(counts.values())
    return sum(-(c / total) * math.log2(c / total) for c in counts.values())


def least_squares_slope(x: list[float], y: list[float], confidence: float = 0.95) -> dict:
    """Slope and intercept of y on x, the slope's standard error and its t interval.

    The standard error is sqrt(residual variance / Sxx), residual variance = RSS / (n - 2); it and
    the interval are None with fewer than 3 points. The slope is None when x does not vary.
    """
    from scipy.stats import t as student_t

    n = len(x)
    if n != len(y) or n < 2:
        return {"slope": None, "intercept": None, "se": None, "ci_low": None, "ci_high": None, "n_points": n}
    mean_x, mean_y = sum(x) / n, sum(y) / n
    sxx = sum((a - mean_x) ** 2 for a in x)
    if sxx == 0:
        return {"slope": None, "intercept": None, "se": None, "ci_low": None, "ci_high": None, "n_points": n}
    slope = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y)) / sxx
    intercept = mean_y - slope * mean_x
    result = {"slope": slope, "intercept": intercept, "se": None, "ci_low": None, "ci_high": None, "n_points": n}
    if n >= 3:
        rss = sum((b - intercept - slope * a) ** 2 for a, b in zip(x, y))
        se = math.sqrt(rss / (n - 2) / sxx)
        half = float(student_t.ppf(0.5 + confidence / 2, n - 2)) * se
        result.update(se=se, ci_low=slope - half, ci_high=slope + half)
    return result


def collect(cfg: StudyConfig, out: Path) -> dict:
    """Every subset's entropy and every arm's output entropy per seed and temperature, as measured."""
    sweep = cfg.entropy_sweep
    subsets = []
    for name, topics in zip(sweep.names(), sweep.subsets):
        root = sweep_dir(out, name)
        sft_path = root / "sft_set" / "sft.jsonl"
        labels = (
            [json.loads(line)["topic"] for line in sft_path.read_text(encoding="utf-8").splitlines()]
            if sft_path.is_file()
            else []
        )
        arms: dict = {}
        for seed in cfg.seeds:
            path = root / "eval" / f"seed{seed}" / "summary.json"
            if not path.is_file():
                continue
            summary = json.loads(path.read_text(encoding="utf-8"))
            for arm in SWEEP_ARMS:
                for t, entry in summary["arms"].get(arm, {}).get("temperatures", {}).items():
                    m = entry.get("metrics", {}).get(METRIC)
                    if m and m.get("mean") is not None:
                        arms.setdefault(arm, {}).setdefault(t, {})[str(seed)] = {
                            k: m.get(k) for k in ("mean", "ci_low", "ci_high")
                        }
        subsets.append(
            {
                "name": name,
                "topics": topics,
                "examples": len(labels),
                "examples_by_topic": dict(sorted(Counter(labels).items())),
                "subset_entropy_bits": entropy_bits(labels) if labels else None,
                "arms": arms,
            }
        )
    temperatures = sorted({t for s in subsets for per_t in s["arms"].values() for t in per_t}, key=float)
    slopes = {}
    for t in temperatures:
        for arm in SWEEP_ARMS:
            x, y = [], []
            for s in subsets:
                for point in s["arms"].get(arm, {}).get(t, {}).values():
                    if s["subset_entropy_bits"] is not None:
                        x.append(s["subset_entropy_bits"])
                        y.append(point["mean"])
            if x:
                slopes.setdefault(t, {})[arm] = least_squares_slope(x, y)
    return {
        "metric": METRIC,
        "seeds": cfg.seeds,
        "documents": sweep.documents,
        "subsets": subsets,
        "slopes": slopes,
        "slope_interval": "least squares over (subset, seed) points; 95% t interval from the residual standard "
        "error (n-2 degrees of freedom); per-point bootstrap intervals not propagated",
    }


def plot(data: dict, temperature: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    offsets = {arm: (i - 1.5) * 0.02 for i, arm in enumerate(SWEEP_ARMS)}
    xs_all = [s["subset_entropy_bits"] for s in data["subsets"] if s["subset_entropy_bits"] is not None]
    for arm in SWEEP_ARMS:
        line_x, line_y = [], []
        for s in data["subsets"]:
            points = s["arms"].get(arm, {}).get(temperature, {})
            if not points or s["subset_entropy_bits"] is None:
                continue
            x = s["subset_entropy_bits"] + offsets[arm]
            means = [p["mean"] for p in points.values()]
            line_x.append(x)
            line_y.append(sum(means) / len(means))
            lows = [p["mean"] - p["ci_low"] for p in points.values() if p["ci_low"] is not None]
            highs = [p["ci_high"] - p["mean"] for p in points.values() if p["ci_high"] is not None]
            if len(lows) == len(means) == len(highs):
                ax.errorbar(
                    [x] * len(means),
                    means,
                    yerr=[lows, highs],
                    fmt="o",
                    ms=3,
                    capsize=2,
                    color=f"C{SWEEP_ARMS.index(arm)}",
                    alpha=0.6,
                )
        if line_x:
            fit = data["slopes"].get(temperature, {}).get(arm, {})
            label = arm if fit.get("slope") is None else f"{arm} (slope {fit['slope']:.2f})"
            ax.plot(line_x, line_y, "-", color=f"C{SWEEP_ARMS.index(arm)}", label=label)
    if xs_all:
        ax.plot([0, max(xs_all)], [0, max(xs_all)], ":", color="grey", label="output = SFT set")
    ax.set_xlabel("SFT subset section entropy (bits)")
    ax.set_ylabel("judged section entropy of outputs (bits)")
    ax.set_title(f"Controlled entropy sweep, temperature {temperature}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SWEEP_NOTE = (
    "The paper's ablation (d): SFT sets of {documents} articles split equally over 1..k sections, plain "
    "and anchored SFT on each from this study's pretrained models, and the judged section entropy "
    "(semantic_entropy, bits per prompt) of every arm's outputs against the SFT set's own section entropy. "
    "Seeds: {seeds}. Cells: each seed's mean [95% bootstrap CI over prompts]. "
    "Slope: least squares over the (subset, seed) points, with a 95% t interval from the residual standard "
    "error (points treated as independent; the per-prompt intervals are not propagated). Copying the SFT "
    "set gives a slope near 1, keeping the pretrained distribution near 0. Data: `{data}`."
)
SLOPE_COLUMNS = ("arm", "slope", "95% CI", "standard error", "intercept", "points")


def subset_rows(data: dict, t: str) -> list[str]:
    """Per subset: its topics, size and entropy, and each arm's per-seed output entropy with its interval."""
    rows = []
    for s in data["subsets"]:
        cells = [
            "; ".join(
                interval(p["mean"], p["ci_low"], p["ci_high"]) for p in s["arms"].get(arm, {}).get(t, {}).values()
            )
            or NA
            for arm in SWEEP_ARMS
        ]
        rows.append((s["name"], ", ".join(s["topics"]), s["examples"], number(s["subset_entropy_bits"]), *cells))
    return table(("subset", "topics", "examples", "subset entropy", *SWEEP_ARMS), rows)


def slope_rows(slopes: dict) -> list[str]:
    rows = [
        (
            arm,
            number(fit["slope"]),
            bounds(fit["ci_low"], fit["ci_high"]),
            number(fit["se"]),
            number(fit["intercept"]),
            fit["n_points"],
        )
        for arm, fit in slopes.items()
    ]
    return table(SLOPE_COLUMNS, rows)


def write_sweep(cfg: StudyConfig, out: Path) -> list[str]:
    """Write sweep.json and sweep_entropy.png; return the study report's "Controlled entropy sweep" section."""
    data = collect(cfg, out)
    (out / SWEEP_JSON).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return render_sweep(data, out)


def render_sweep(data: dict, out: Path) -> list[str]:
    """Draw the plots into OUT from ``collect``'s data; return the report section's lines."""
    seeds = ", ".join(str(s) for s in data["seeds"])
    lines = [
        "## Controlled entropy sweep",
        "",
        SWEEP_NOTE.format(documents=data["documents"], seeds=seeds, data=SWEEP_JSON),
        "",
    ]
    temperatures = list(data["slopes"])
    if not temperatures:
        return lines + ["No sweep evaluation summary was found: no result to report.", ""]
    for t in temperatures:
        path = out / (SWEEP_PLOT if len(temperatures) == 1 else f"sweep_entropy_t{t}.png")
        plot(data, t, path)
        lines += [
            f"### Temperature {t}",
            "",
            f"![output entropy against SFT-set entropy]({path.name})",
            "",
            *subset_rows(data, t),
            "",
            *slope_rows(data["slopes"][t]),
            "",
        ]
    return lines
