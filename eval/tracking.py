"""The eval run's results in the run's trackers (``report_to``), as pretrain and posttrain log theirs.

At the end of ``eval.stage.run``: every number of summary.json under ``arms`` and
``collapse_ratios`` (per arm, temperature and metric: the value and its interval bounds), each
plot of ``plots/`` as an image, and the resolved config as text. ``tensorboard`` writes event
files under OUTPUT_DIR/logs; ``wandb`` and ``trackio`` (optional extras, ``pip install
.[trackers]``) log to the project ``tracker_project``, offline when their own variables say so
(``WANDB_MODE=offline``). Nothing is logged for a tracker not listed; an unknown or missing
tracker is an error naming ``report_to``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

TRACKERS = ("tensorboard", "wandb", "trackio")
SECTIONS = ("arms", "collapse_ratios")


class TrackingError(ValueError):
    """A tracker named in report_to that is unknown or not installed."""


def check_trackers(report_to: list[str]) -> None:
    for name in report_to:
        if name not in TRACKERS:
            raise TrackingError(f"report_to: '{name}' is not one of {', '.join(TRACKERS)}")
        module = "torch.utils.tensorboard" if name == "tensorboard" else name
        if importlib.util.find_spec(module.split(".")[0]) is None or (
            name == "tensorboard" and importlib.util.find_spec("tensorboard") is None
        ):
            raise TrackingError(f"report_to: '{name}' is not installed (pip install .[trackers])")


def scalars(summary: dict) -> dict[str, float]:
    """Every number of the summary's arms and collapse ratios, by its path (``arms/ARM/...``)."""
    found: dict[str, float] = {}

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            found[path] = float(node)

    for section in SECTIONS:
        walk(summary.get(section) or {}, section)
    return found


def log_results(config, run_dir: Path, summary_name: str = "summary.json", plots_dir: str = "plots") -> dict:
    """Log the run's summary, plots and resolved config to ``config.report_to``; returns counts."""
    check_trackers(list(config.report_to))
    run_dir = Path(run_dir)
    path = run_dir / summary_name
    numbers = scalars(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else {}
    plots = sorted((run_dir / plots_dir).glob("*.png")) if (run_dir / plots_dir).is_dir() else []
    settings = dataclasses.asdict(config)
    for name in config.report_to:
        {"tensorboard": _tensorboard, "wandb": _wandb, "trackio": _trackio}[name](
            config, run_dir, numbers, plots, settings
        )
    return {"trackers": list(config.report_to), "scalars": len(numbers), "plots": len(plots)}


def _tensorboard(config, run_dir: Path, numbers: dict, plots: list[Path], settings: dict) -> None:
    import matplotlib.image
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run_dir / "logs")) as writer:
        for tag, value in numbers.items():
            writer.add_scalar(tag, value, 0)
        for plot in plots:
            writer.add_image(f"plots/{plot.stem}", matplotlib.image.imread(plot)[..., :3], 0, dataformats="HWC")
        writer.add_text("config", "```\n" + json.dumps(settings, indent=1, default=str) + "\n```", 0)


def _wandb(config, run_dir: Path, numbers: dict, plots: list[Path], settings: dict) -> None:
    import wandb

    run = wandb.init(project=config.tracker_project, dir=str(run_dir), config=settings, job_type="eval")
    run.log({**numbers, **{f"plots/{p.stem}": wandb.Image(str(p)) for p in plots}})
    run.finish()


def _trackio(config, run_dir: Path, numbers: dict, plots: list[Path], settings: dict) -> None:
    import trackio

    trackio.init(project=config.tracker_project, config=settings)
    trackio.log({**numbers, **{f"plots/{p.stem}": trackio.Image(str(p)) for p in plots}})
    trackio.finish()
