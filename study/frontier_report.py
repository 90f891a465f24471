"""The fit frontier's report: each SFT arm's collapse against its held-out validation loss, and the arms
compared at equal validation loss.

Reads, per seed, ``frontier/eval/seedS/scores.jsonl`` (per arm and prompt: the diversity metrics,
quality, restricted share, parse counts, length stops) and ``summary.json`` (bootstrap settings, the
parsed/failed split), and per arm, point and seed ``frontier/POINT/ARM/seedS/validation.json`` (the
held-out SFT loss on response tokens: ``loss`` in the arm's training format, ``loss_no_annotation``
after the prompt only, ``loss_marginal`` the anchored model's marginal -log p(y|x) estimated with K
annotations it samples itself, an upper bound that tightens with K; for runs trained before posttrain
wrote it, ``validation_marginal.json`` from scripts/score_marginal_validation.py, used only when its
held-out ids are those of validation.json). A field that is missing is reported as "not measured",
never guessed.

Collapse of an arm on a prompt = D(its base arm) - D(arm), D the judged section entropy
(semantic_entropy) of that seed's samples; the bases are those of study.plan.frontier_eval_arms.
The headline (study.frontier) places every point by its validation loss, joins plain SFT's points into
a frontier and reports, per anchored point inside plain's loss range, plain's interpolated collapse
minus the anchored collapse, with the hierarchical bootstrap and seed t intervals. The anchored points
are placed by ``loss_marginal`` when every one of them has it (the quantity comparable with plain's
loss: the response's likelihood under the model's own annotations), else by ``loss_no_annotation``;
the tables by ``loss_no_annotation`` (a context the anchored model never trained on: pessimistic) and
by ``loss`` (credited with the true annotation: optimistic) stay beside it as bounds on either side.

Writes OUT/frontier/report.md, OUT/frontier/frontier.json, OUT/frontier/plots/frontier.png; returns
the lines the study report carries.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from eval.jsonl_store import dedupe, read_rows
from eval.score import SCORES
from stage_io.report_format import NA, bounds, estimate, number, table
from study.config import StudyConfig
from study.frontier import (
    constant_column,
    equal_fit_difference,
    mean_statistic,
    seed_prompt_intervals,
    verdict,
)
from study.plan import (
    frontier_arm_dir,
    frontier_arm_name,
    frontier_eval_arms,
    frontier_eval_dir,
)

METRIC = "semantic_entropy"
FAMILIES = ("plain_sft", "anchored", "anchored_sft_on_plain", "anchored_no_annotation")
ANCHORED_FAMILIES = FAMILIES[1:]
VALIDATION = "validation.json"
# Written by scripts/score_marginal_validation.py for runs whose validation.json has no loss_marginal.
VALIDATION_MARGINAL = "validation_marginal.json"
LOSS_KINDS = ("loss_marginal", "loss_no_annotation", "loss")
PLACEMENT_WHY = {
    "loss_marginal": "It is the quantity comparable with plain SFT's loss: the anchored model's -log p(response | "
    "prompt), estimated as -log of the mean over K annotations the model samples itself of "
    "p(response | prompt, annotation); its expectation is an upper bound on the true marginal "
    "loss that tightens as K grows, so it errs against the anchored arm (placed at a worse fit).",
    "loss_no_annotation": "A lower bound on the anchored arm's fit: the response straight after the prompt is a "
    "context the anchored model never trained on, so this loss places it at a worse fit "
    "than it has.",
    "loss": "An upper bound on the anchored arm's fit: the loss given the example's own annotation credits the "
    "model with what the true annotation says about the response.",
}
LOSS_TITLES = {
    "loss_marginal": "their marginal validation loss (annotations sampled by the model, K per example)",
    "loss_no_annotation": "their validation loss with NO annotation in the context",
    "loss": "their validation loss given the example's own annotation (training format)",
}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def planned_points(cfg: StudyConfig) -> list[dict]:
    """Every (family, point) of the frontier: its eval arm, the model directory arm, and its planned base arm."""
    frontier = cfg.fit_frontier
    bases = {
        a["name"]: a["base_arm"]
        for a in frontier_eval_arms(cfg, {"plain": Path(), "anchored": Path()}, Path(), cfg.seeds[0], {})
    }
    points = []
    for family in FAMILIES:
        model_arm = "anchored" if family == "anchored_no_annotation" else family
        for p in frontier.points:
            name = frontier_arm_name(family, p.name)
            if name in bases:
                points.append(
                    {
                        "family": family,
                        "point": p.name,
                        "arm": name,
                        "model_arm": model_arm,
                        "base_arm": bases[name],
                        "overrides": p.overrides,
                    }
                )
    return points


def load_seed(out: Path, seed: int) -> dict:
    """One seed's frontier evaluation: score rows by (arm, temperature key), and the summary (None if absent)."""
    eval_dir = frontier_eval_dir(out, seed)
    rows, _ = read_rows(eval_dir / SCORES, repair=False)
    rows, _ = dedupe(rows)
    by_arm: dict = {}
    for row in rows:
        by_arm.setdefault((row["arm"], str(float(row["temperature"]))), []).append(row)
    return {"rows": by_arm, "summary": _read_json(eval_dir / "summary.json")}


def prompt_values(rows: list[dict], key: str) -> dict[str, float]:
    """Per prompt, the finite value of metric ``key`` (scores' ``metrics``, else the row itself)."""
    values = {}
    for row in rows:
        value = _finite((row.get("metrics") or {}).get(key, row.get(key)))
        if value is not None:
            values[row["prompt_id"]] = value
    return values


def collapse_values(seed_data: dict, arm: str, base: str | None, t: str) -> dict[str, float]:
    """Per prompt, D(base) - D(arm) of the primary metric (empty where either is missing)."""
    if base is None:
        return {}
    own = prompt_values(seed_data["rows"].get((arm, t), []), METRIC)
    ref = prompt_values(seed_data["rows"].get((base, t), []), METRIC)
    return {p: ref[p] - own[p] for p in own.keys() & ref.keys()}


def aligned(per_seed: list[dict[str, float]]) -> tuple[list[str], np.ndarray]:
    """The prompts every seed has, and the (n_seeds, n_prompts) column of their values."""
    prompts = sorted(set.intersection(*(set(v) for v in per_seed))) if per_seed else []
    return prompts, np.array([[v[p] for p in prompts] for v in per_seed], dtype=np.float64).reshape(
        len(per_seed), len(prompts)
    )


def _summary_entry(seed_data: dict, arm: str, t: str) -> dict:
    summary = seed_data.get("summary") or {}
    temps = (summary.get("arms", {}).get(arm) or {}).get("temperatures", {})
    return next((e for k, e in temps.items() if str(float(k)) == t), {}) or {}


def read_validation(run_dir: Path, family: str) -> dict:
    """A run's validation losses: validation.json, with ``loss_marginal`` (and ``k``) from
    validation_marginal.json when validation.json lacks it and the held-out ids agree; plain SFT's
    marginal loss is its loss."""
    validation = dict(_read_json(run_dir / VALIDATION) or {})
    if family == "plain_sft":
        validation.setdefault("loss_marginal", validation.get("loss"))
    elif validation.get("loss_marginal") is None:
        extra = _read_json(run_dir / VALIDATION_MARGINAL) or {}
        if extra.get("ids_sha256") is not None and extra.get("ids_sha256") == validation.get("ids_sha256"):
            validation.update(loss_marginal=extra.get("loss_marginal"), k=extra.get("k"))
    return validation


def point_figures(point: dict, seeds: dict[int, dict], out: Path, t: str, b: dict) -> dict:
    """Every figure of one (arm, point): validation losses, ending share, collapse, restricted share, quality, parse."""
    arm = point["arm"]
    figures: dict = {k: point[k] for k in ("family", "point", "arm", "base_arm")}
    validation = {
        s: read_validation(frontier_arm_dir(out, point["point"], point["model_arm"], s), point["family"]) for s in seeds
    }
    for kind in LOSS_KINDS:
        per_seed = {s: _finite(v.get(kind)) for s, v in validation.items()}
        known = [v for v in per_seed.values() if v is not None]
        figures[kind] = {"per_seed": per_seed, "mean": float(np.mean(known)) if known else None}
    figures["marginal_k"] = sorted({v["k"] for v in validation.values() if v.get("k") is not None})
    rows = [r for s in seeds for r in seeds[s]["rows"].get((arm, t), [])]
    samples = sum(int(r.get("n_samples", 0)) for r in rows)
    stops = sum(int(r.get("length_stops", 0)) for r in rows)
    figures["ended"] = {
        "share": (samples - stops) / samples if samples else None,
        "n_samples": samples,
        "length_stops": stops,
    }
    collapse = {s: collapse_values(d, arm, point["base_arm"], t) for s, d in seeds.items()}
    measured = [s for s in seeds if collapse[s]]
    figures["collapse"] = _intervals([collapse[s] for s in measured], measured, b)
    shares = {s: prompt_values(seeds[s]["rows"].get((arm, t), []), "restricted_share") for s in seeds}
    with_share = [s for s in seeds if shares[s]]
    figures["restricted_share"] = _intervals([shares[s] for s in with_share], with_share, b)
    quality = [v for s in seeds for v in prompt_values(seeds[s]["rows"].get((arm, t), []), "quality").values()]
    figures["quality"] = float(np.mean(quality)) if quality else None
    ok = sum(int((r.get("parse") or {}).get("ok", 0)) for r in rows if (r.get("parse") or {}).get("expected"))
    failed = sum(int((r.get("parse") or {}).get("failed", 0)) for r in rows if (r.get("parse") or {}).get("expected"))
    figures["parse_rate"] = ok / (ok + failed) if ok + failed else None
    figures["by_annotation_status"] = {
        s: (
            _summary_entry(d, arm, t).get("by_annotation_status")
            or ((d.get("summary") or {}).get("arms", {}).get(arm) or {}).get("by_annotation_status")
        )
        for s, d in seeds.items()
    }
    return figures


def _intervals(per_seed: list[dict[str, float]], seeds: list[int], b: dict) -> dict:
    """Mean over seeds and prompts with its hierarchical and seed t intervals (None value: not measured)."""
    _, column = aligned(per_seed)
    result = seed_prompt_intervals([column], mean_statistic, b["resamples"], b["confidence"], b["seed"])
    result["seeds"] = seeds
    return result


def headline(points: list[dict], seeds: dict[int, dict], t: str, b: dict, loss_kind: str) -> list[dict]:
    """Per anchored point: plain's frontier at its validation loss minus its collapse, with intervals.

    Plain points are always placed by ``loss`` (for plain SFT it equals ``loss_no_annotation``); the anchored
    points by ``loss_kind``. Seeds: those where every plain point and the anchored point have a loss and
    collapses; prompts: those all of them share.
    """
    plain = [p for p in points if p["family"] == "plain_sft"]
    results = []
    for anchored in (p for p in points if p["family"] in ANCHORED_FAMILIES):
        entry = {
            "arm": anchored["arm"],
            "family": anchored["family"],
            "point": anchored["point"],
            "loss_kind": loss_kind,
            "anchored_loss": None,
            "plain_loss_range": None,
            "intervals": None,
        }
        involved = [(p, "loss") for p in plain] + [(anchored, loss_kind)]
        usable = [
            s
            for s in seeds
            if all(p[k]["per_seed"].get(s) is not None and p["collapse_per_seed"].get(s) for p, k in involved)
        ]
        if len(plain) < 2 or not usable:
            entry["why"] = (
                "fewer than 2 plain points" if len(plain) < 2 else "no seed with every loss and collapse measured"
            )
            results.append(entry)
            continue
        per_prompt = [[p["collapse_per_seed"][s] for s in usable] for p, _ in involved]
        common = set.intersection(*(set(v) for series in per_prompt for v in series))
        prompts = sorted(common)
        collapse_cols = [np.array([[v[q] for q in prompts] for v in series]) for series in per_prompt]
        loss_cols = [constant_column([p[k]["per_seed"][s] for s in usable], len(prompts)) for p, k in involved]
        columns = [*loss_cols[:-1], *collapse_cols[:-1], loss_cols[-1], collapse_cols[-1]]
        plain_losses = [float(c.mean()) for c in loss_cols[:-1]]
        entry.update(
            anchored_loss=float(loss_cols[-1].mean()),
            plain_loss_range=[min(plain_losses), max(plain_losses)],
            anchored_collapse=float(collapse_cols[-1].mean()),
            seeds=usable,
            n_prompts=len(prompts),
        )
        entry["intervals"] = (
            seed_prompt_intervals(columns, equal_fit_difference(len(plain)), b["resamples"], b["confidence"], b["seed"])
            if prompts
            else None
        )
        entry["verdict"] = verdict(entry["intervals"] or {})
        results.append(entry)
    return results


def collect(cfg: StudyConfig, out: Path) -> dict:
    """Every point's figures and the equal-fit headline, per temperature, as measured."""
    seeds = {s: load_seed(out, s) for s in cfg.seeds if (frontier_eval_dir(out, s) / SCORES).is_file()}
    summary = next((d["summary"] for d in seeds.values() if d.get("summary")), None) or {}
    b = {"resamples": 1000, "confidence": 0.95, "seed": 0, **(summary.get("provenance", {}).get("bootstrap") or {})}
    temperatures = sorted({t for d in seeds.values() for _, t in d["rows"]}, key=float)
    data = {
        "metric": METRIC,
        "seeds": sorted(seeds),
        "bootstrap": b,
        "temperatures": {},
        "quality_scorer": (summary.get("provenance", {}).get("scoring") or {}).get("quality"),
    }
    for t in temperatures:
        points = []
        for point in planned_points(cfg):
            figures = point_figures(point, seeds, out, t, b)
            figures["collapse_per_seed"] = {
                s: collapse_values(d, point["arm"], point["base_arm"], t) for s, d in seeds.items()
            }
            points.append(figures)
        data["temperatures"][t] = {
            "points": points,
            "headline_kind": headline_kind(points),
            "headline": {k: headline(points, seeds, t, b, k) for k in LOSS_KINDS},
        }
    return data


def headline_kind(points: list[dict]) -> str:
    """The headline placement of the anchored points: ``loss_marginal`` when every anchored point has it
    wherever it has ``loss_no_annotation`` (one placement for the whole table; a point never trained has
    neither), else ``loss_no_annotation``."""
    anchored = [p for p in points if p["family"] in ANCHORED_FAMILIES]
    complete = all(
        p["loss_marginal"]["per_seed"].get(s) is not None
        for p in anchored
        for s, v in p["loss_no_annotation"]["per_seed"].items()
        if v is not None
    )
    measured = any(p["loss_marginal"]["mean"] is not None for p in anchored)
    return "loss_marginal" if complete and measured else "loss_no_annotation"


NOT_MEASURED = "not measured"
STATUS_COLUMNS = (
    "arm",
    "seed",
    "parsed: samples",
    f"parsed: {METRIC}",
    "parsed: restricted share",
    "parsed: quality",
    "failed: samples",
    f"failed: {METRIC}",
    "failed: restricted share",
    "failed: quality",
)
POINT_COLUMNS = (
    "arm",
    "point",
    "validation loss (training format)",
    "validation loss, no annotation",
    "validation loss, marginal (K)",
    "ended by themselves",
    "collapse [hierarchical CI] (t CI)",
    "restricted share [CI] (t CI)",
    "quality",
    "parse rate",
)
HEADLINE_COLUMNS = (
    "arm",
    "point",
    "its validation loss",
    "plain's loss range",
    "plain's frontier there",
    "its collapse",
    "difference (plain - it)",
    "hierarchical CI",
    "seed t CI",
    "undefined resamples",
    "verdict",
)
INTRO = (
    "Every SFT arm trained at {n_points} fit points ({points}) for seeds {seeds}; evaluated seeds: "
    "{evaluated}. Collapse = D(base) - D(arm) of the judged {metric} "
    "(bits per prompt): plain-pretrained arms against `base`, anchored-pretrained ones against `anchored_base`, "
    "no-annotation arms against `anchored_base_no_annotation` (sampled the same way). Intervals: "
    "{confidence:.0%} hierarchical bootstrap ({resamples} resamples of seeds, with one prompt "
    "resample shared by the seeds) and, in brackets after t, a Student t interval over the seed-level values. "
    "Quality scorer: `{quality_scorer}`. Data: `frontier.json`."
)
HEADLINE_NOTE = (
    "Plain SFT's points (validation loss, collapse) joined by straight lines; for each anchored point "
    "inside plain's loss range, plain's collapse there minus the anchored collapse (positive: the anchored "
    "arm collapses less at the same fit). The anchored points are placed by {title}. {why}"
)
POINTS_NOTE = (
    "Ended by themselves: responses that stopped before the length cap (what SFT teaches here: to "
    "answer with an article and end it). Restricted share: share of samples the independent judge gives "
    "the SFT set's one value. Parse rate: annotations that parsed (anchored sampling)."
)
OVERALL = {
    "above": "collapses LESS than plain SFT at equal validation loss (above the plain frontier) at every compared point",
    "below": "collapses MORE than plain SFT at equal validation loss (below the plain frontier) at every compared point",
    "indistinguishable": "is indistinguishable from the plain frontier at every compared point",
}


def _measured(x: float | None) -> str:
    return number(x, missing=NOT_MEASURED)


def _bounds(result: dict | None) -> str:
    """``[low, high]`` of an interval result, n/a without one."""
    if not result or result.get("ci_low") is None:
        return NA
    return bounds(result["ci_low"], result["ci_high"])


def _with_intervals(entry: dict | None) -> str:
    """value [hierarchical CI] (seed t CI), or "not measured"."""
    if not entry or entry.get("value") is None:
        return NOT_MEASURED
    return f"{number(entry['value'])} {_bounds(entry.get('hierarchical'))} (t {_bounds(entry.get('seed_t'))})"


def _num(value) -> float | None:
    """A figure that is a number or an interval entry ({"mean"|"value": ...})."""
    if isinstance(value, dict):
        value = estimate(value)
    return _finite(value)


def _status_cells(e: dict) -> list[str]:
    """One annotation status's samples, primary metric, restricted share and quality."""
    metrics = e.get("metrics") or {}
    return [
        str(e.get("n_samples", NOT_MEASURED)),
        *(_measured(_num(e.get(key, metrics.get(key)))) for key in (METRIC, "restricted_share", "quality")),
    ]


def status_rows(points: list[dict]) -> list[str]:
    """The anchored arms' figures split by annotation status, per seed, as the eval summary has them."""
    rows = [
        [p["arm"], seed, *_status_cells(split.get("parsed") or {}), *_status_cells(split.get("failed") or {})]
        for p in points
        for seed, split in sorted(p["by_annotation_status"].items())
        if split
    ]
    if not rows:
        return ["Split by annotation status: not measured (no `by_annotation_status` in the eval summaries)."]
    return table(STATUS_COLUMNS, rows)


def _point_cells(p: dict) -> tuple:
    ended = p["ended"]
    ended_text = (
        NOT_MEASURED
        if ended["share"] is None
        else f"{number(ended['share'])} ({ended['n_samples'] - ended['length_stops']} of {ended['n_samples']})"
    )
    parse = "-" if p["family"] in ("plain_sft", "anchored_no_annotation") else _measured(p["parse_rate"])
    k = ", ".join(str(v) for v in p.get("marginal_k", []))
    marginal = _measured(p["loss_marginal"]["mean"]) + (
        f" (K={k})" if k and p["loss_marginal"]["mean"] is not None else ""
    )
    return (
        p["family"],
        p["point"],
        _measured(p["loss"]["mean"]),
        _measured(p["loss_no_annotation"]["mean"]),
        marginal,
        ended_text,
        _with_intervals(p["collapse"]),
        _with_intervals(p["restricted_share"]),
        _measured(p["quality"]),
        parse,
    )


def point_rows(points: list[dict]) -> list[str]:
    return table(POINT_COLUMNS, [_point_cells(p) for p in points])


def _headline_cells(r: dict) -> tuple:
    if r.get("why") or r["anchored_loss"] is None:
        return (r["family"], r["point"], NOT_MEASURED, *[""] * 7, r.get("why", NOT_MEASURED))
    iv = r.get("intervals") or {}
    hier = iv.get("hierarchical") or {}
    value = iv.get("value")
    low, high = r["plain_loss_range"]
    plain_there = None if value is None else value + r["anchored_collapse"]
    return (
        r["family"],
        r["point"],
        number(r["anchored_loss"]),
        f"{number(low)}-{number(high)}",
        _measured(plain_there),
        number(r["anchored_collapse"]),
        _measured(value),
        _bounds(hier),
        _bounds(iv.get("seed_t")),
        hier.get("undefined_resamples", NA),
        {"outside": "outside plain's range: not compared"}.get(r["verdict"], r["verdict"]),
    )


def headline_rows(results: list[dict]) -> list[str]:
    return table(HEADLINE_COLUMNS, [_headline_cells(r) for r in results])


def verdict_sentences(results: list[dict]) -> list[str]:
    """Per anchored arm, one sentence: where its points lie against plain SFT's frontier."""
    sentences = []
    for family in ANCHORED_FAMILIES:
        mine = [r for r in results if r["family"] == family]
        if not mine:
            continue
        counts = {
            v: sum(1 for r in mine if r.get("verdict") == v) for v in ("above", "below", "indistinguishable", "outside")
        }
        unmeasured = len(mine) - sum(counts.values())
        compared = counts["above"] + counts["below"] + counts["indistinguishable"]
        if not compared:
            sentences.append(
                f"- **{family}**: no point could be compared with plain SFT at equal validation loss "
                f"({counts['outside']} outside plain's range, {unmeasured} not measured)."
            )
            continue
        unanimous = [v for v in OVERALL if counts[v] == compared]
        overall = OVERALL[unanimous[0]] if unanimous else "is not consistently above or below the plain frontier"
        sentences.append(
            f"- **{family}** {overall}: above at {counts['above']}, below at {counts['below']}, "
            f"indistinguishable at {counts['indistinguishable']} of {compared} points inside plain's "
            f"validation-loss range ({counts['outside']} outside, {unmeasured} not measured)."
        )
    return sentences


def plot(points: list[dict], path: Path, temperature: str, anchored_kind: str = "loss_no_annotation") -> None:
    """Collapse against validation loss, one line per arm, seed t intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, family in enumerate(FAMILIES):
        xs, ys, lows, highs = [], [], [], []
        kind = "loss" if family == "plain_sft" else anchored_kind
        for p in points:
            if p["family"] != family or p[kind]["mean"] is None or p["collapse"].get("value") is None:
                continue
            t_interval = p["collapse"].get("seed_t") or {}
            y = p["collapse"]["value"]
            xs.append(p[kind]["mean"])
            ys.append(y)
            lows.append(y - t_interval["ci_low"] if t_interval.get("ci_low") is not None else 0.0)
            highs.append(t_interval["ci_high"] - y if t_interval.get("ci_high") is not None else 0.0)
        if not xs:
            continue
        order = np.argsort(xs)
        ax.errorbar(
            np.array(xs)[order],
            np.array(ys)[order],
            yerr=[np.array(lows)[order], np.array(highs)[order]],
            fmt="-o",
            ms=4,
            capsize=3,
            color=f"C{i}",
            label=family,
        )
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    placed = {"loss_marginal": "marginal", "loss_no_annotation": "no annotation", "loss": "true annotation"}[
        anchored_kind
    ]
    ax.set_xlabel(f"held-out SFT validation loss (nats/token; anchored arms: {placed})")
    ax.set_ylabel(f"collapse of {METRIC} (bits)")
    ax.set_title(f"Fit frontier, temperature {temperature} (error bars: seed t 95%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_frontier(cfg: StudyConfig, out: Path) -> list[str]:
    """Write frontier/report.md, frontier.json and plots/frontier.png; return the study report's section."""
    root = out / "frontier"
    root.mkdir(parents=True, exist_ok=True)
    data = collect(cfg, out)
    (root / "frontier.json").write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return render_frontier(cfg, data, root)


def render_frontier(cfg: StudyConfig, data: dict, root: Path) -> list[str]:
    """Draw the plots and write ROOT/report.md from ``collect``'s data; return the study report's section."""
    lines = ["# Fit frontier", "", intro(cfg, data), ""]
    if not data["temperatures"]:
        lines += ["No frontier evaluation was found: no result to report.", ""]
    for t, per_t in data["temperatures"].items():
        plot_path = root / "plots" / ("frontier.png" if len(data["temperatures"]) == 1 else f"frontier_t{t}.png")
        plot(per_t["points"], plot_path, t, per_t["headline_kind"])
        lines += temperature_lines(t, per_t, plot_path.relative_to(root))
    (root / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    section = ["## Fit frontier", "", "Full tables and plot: `frontier/report.md`.", ""]
    for t, per_t in data["temperatures"].items():
        kind = per_t["headline_kind"]
        section += [
            f"Temperature {t}, anchored points placed by {LOSS_TITLES[kind]}:",
            "",
            *verdict_sentences(per_t["headline"][kind]),
            "",
        ]
    return section


def intro(cfg: StudyConfig, data: dict) -> str:
    """What was trained and evaluated, how collapse and its intervals are defined."""
    points = cfg.fit_frontier.points
    return INTRO.format(
        n_points=len(points),
        points=", ".join(f"{p.name}: " + (" ".join(p.overrides) or "the YAML as it is") for p in points),
        seeds=", ".join(str(s) for s in cfg.seeds),
        evaluated=", ".join(str(s) for s in data["seeds"]) or "none",
        metric=METRIC,
        quality_scorer=json.dumps(data.get("quality_scorer")),
        **data["bootstrap"],
    )


def placement_lines(results: list[dict]) -> list[str]:
    """One placement of the anchored points: the verdict sentences, then the table."""
    return [*verdict_sentences(results), "", *headline_rows(results), ""]


def temperature_lines(t: str, per_t: dict, plot_path: Path) -> list[str]:
    """One temperature: the headline placement, the other two as bounds, every point, the status split."""
    kind = per_t["headline_kind"]
    lines = [
        f"## Temperature {t}",
        "",
        "### Headline: collapse at equal validation loss",
        "",
        HEADLINE_NOTE.format(title=LOSS_TITLES[kind], why=PLACEMENT_WHY[kind]),
        "",
        *placement_lines(per_t["headline"][kind]),
        f"![collapse against validation loss]({plot_path})",
        "",
    ]
    for other in (k for k in LOSS_KINDS if k != kind):
        lines += [
            f"### The same, anchored points placed by {LOSS_TITLES[other]}",
            "",
            PLACEMENT_WHY[other],
            "",
            *placement_lines(per_t["headline"][other]),
        ]
    anchored = [p for p in per_t["points"] if p["family"] in ("anchored", "anchored_sft_on_plain")]
    return lines + [
        "### Every arm and point",
        "",
        POINTS_NOTE,
        "",
        *point_rows(per_t["points"]),
        "",
        "### Anchored arms by annotation status",
        "",
        *status_rows(anchored),
        "",
    ]
