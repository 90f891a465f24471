"""The capabilities stage: lm-evaluation-harness tasks on every arm, into capabilities.json.

A diversity gain bought with lost capability is no gain, so beside diversity the eval stage
runs lm-eval (its Python API, ``lm_eval.simple_evaluate``; task definitions are lm-eval task
YAMLs, ours or lm-eval's own) on each arm's checkpoint:

- ``load_tasks`` resolves every task BEFORE any model is loaded: an unknown name, a missing
  ``include_path`` directory or local data file, or a hub task whose data cannot be had
  (offline, not cached) is a ``CapabilityTaskError`` naming the task;
- each (arm, task) is one ``simple_evaluate`` call, its result written to capabilities.json
  at once (atomically), so an interrupted run resumes: an entry is kept when its identity
  (model, task config hash, limit, backend, dtype, lm-eval version) is what this run would
  use, and redone, with a message, when not;
- anchored models are evaluated as the paper does: lm-eval's own prompts, nothing
  inserted, no annotation forced or sampled before the answer (log-likelihood tasks score
  the answer right after the prompt). Arms with mode no_annotation are left out by default:
  they are their anchored arm's checkpoint, and would repeat its numbers.

capabilities.json: ``{"lm_eval_version", "arms": {arm: {task: {metric, value, stderr, n,
lm_eval_version, task_config_sha256, num_fewshot, limit, backend, all_metrics, seconds,
identity}}}, "arms_left_out": {arm: why}}``.
"""

from __future__ import annotations

import difflib
import functools
import gc
import hashlib
import json
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.config import ArmConfig, CapabilitiesConfig, CapabilityTaskConfig, EvalConfig
from posttrain.prompt_format import with_bos
from stage_io.manifest import fingerprint, read_manifest, write_json_atomic
from stage_io.report_format import NA, interval, number, table, with_stderr

logger = logging.getLogger(__name__)

CAPABILITIES = "capabilities.json"
# Two-sided 95% normal quantile, for the anchored - plain interval.
Z95 = 1.959964
CAPABILITIES_TITLE = "## Capabilities (lm-evaluation-harness)"
CAPABILITIES_NOTE = (
    "lm-eval {version}; value ± its stderr as lm-eval reports it. Anchored models answer "
    "without an annotation (none forced or sampled: lm-eval's prompts as they are). "
    "Difference intervals: 95% normal, se = sqrt(se_a² + se_p²) (conservative: the arms share the items)."
)


class CapabilityTaskError(ValueError):
    """A capabilities task that cannot be run: unknown, missing, or its data unavailable."""


@dataclass
class ResolvedTask:
    spec: CapabilityTaskConfig
    # The lm-eval Task object (its data loaded), num_fewshot already applied.
    task: Any
    # sha256 over lm-eval's dump of the task config (+ the local task directory's files).
    config_sha256: str
    # The task YAML lm-eval read it from.
    yaml_path: str | None
    # Whether it came from capabilities.include_path (ours) rather than lm-eval's own tasks.
    local: bool
    # The TaskManager that resolved it (to build a fresh Task object for the next arm).
    manager: Any = None


def lm_eval_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("lm_eval")


def evaluated_arms(config: EvalConfig) -> tuple[list[ArmConfig], dict[str, str]]:
    """The arms capabilities are run on, and why each other arm is left out."""
    cap = config.capabilities
    chosen, left_out = [], {}
    for arm in config.arms:
        if cap.arms is not None:
            if arm.name in cap.arms:
                chosen.append(arm)
            else:
                left_out[arm.name] = "not in capabilities.arms"
        elif arm.mode == "no_annotation":
            left_out[arm.name] = (
                "mode no_annotation: the same checkpoint as its anchored arm (lm-eval forces no annotation)"
            )
        else:
            chosen.append(arm)
    return chosen, left_out


def task_manager(cap: CapabilitiesConfig, names: list[str]):
    """An lm-eval TaskManager that knows every name in ``names`` when lm-eval can know it.

    Indexing lm-eval's own ~15,000 task YAMLs takes tens of seconds, so include_path is
    indexed alone first and lm-eval's own tasks only when a name is not found there.
    """
    for path in cap.include_path:
        if not Path(path).is_dir():
            raise CapabilityTaskError(
                f"capabilities.include_path '{path}': no such directory (tasks {', '.join(names)}); "
                "the embedded task is written by "
                "`python -m eval.next_passage_task configs/eval/capability_tasks/bbc_next_passage.yaml`"
            )
    paths = tuple(str(Path(p).resolve()) for p in cap.include_path)
    if paths:
        local = _indexed(paths, include_defaults=False)
        if all(name in local.all_tasks for name in names):
            return local
    return _indexed(paths, include_defaults=True)


@functools.lru_cache(maxsize=4)
def _indexed(paths: tuple[str, ...], include_defaults: bool):
    """One TaskManager per (include_path, defaults) per process: indexing is the slow part."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(paths) or None, include_defaults=include_defaults)


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _config_sha256(task: Any, local_dir: Path | None) -> str:
    digest = hashlib.sha256(json.dumps(task.dump_config(), sort_keys=True, default=str).encode("utf-8"))
    if local_dir is not None:  # a local task's data file is ours: its bytes count too
        digest.update(fingerprint(local_dir).encode("utf-8"))
    return "sha256:" + digest.hexdigest()


def _metric_keys(task: Any) -> list[str]:
    """The metric names lm-eval will report for ``task`` (metric,filter)."""
    filters = [f.name for f in getattr(task, "_filters", [])] or ["none"]
    return [f"{metric},{flt}" for flt in filters for metric in task.aggregation()]


def metric_key(metric: str) -> str:
    return metric if "," in metric else f"{metric},none"


def load_tasks(cap: CapabilitiesConfig, manager=None) -> dict[str, ResolvedTask]:
    """Resolve and load every task (data included) before any model is: errors name the task."""
    from lm_eval.api.task import Task

    names = [t.name for t in cap.tasks]
    manager = manager or task_manager(cap, names)
    include_dirs = [Path(p).resolve() for p in cap.include_path]
    resolved = {}
    for i, spec in enumerate(cap.tasks):
        where = f"capabilities.tasks[{i}] '{spec.name}'"
        entry = manager.task_index.get(spec.name)
        if entry is None:
            close = difflib.get_close_matches(spec.name, manager.all_tasks, n=3)
            searched = ", ".join(cap.include_path) + (" and " if cap.include_path else "") + "lm-eval's own tasks"
            raise CapabilityTaskError(
                f"{where}: lm-eval {lm_eval_version()} knows no such task (searched {searched})"
                + (f"; close names: {', '.join(close)}" if close else "")
            )
        if entry.kind.name not in ("TASK", "PY_TASK"):
            raise CapabilityTaskError(
                f"{where}: an lm-eval {entry.kind.name.lower()}, not a task; list its tasks one by one"
            )
        try:
            loaded = manager.load([spec.name])["tasks"]
        except Exception as err:  # datasets/hub raise many types; the user needs the task's name
            hint = (
                " The hub is off (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE) and the data is not in the local"
                " cache: run once with network, or drop the task."
                if _offline()
                else ""
            )
            raise CapabilityTaskError(
                f"{where}: its data could not be loaded ({type(err).__name__}: {err}).{hint}"
            ) from err
        task = loaded[spec.name]
        if not isinstance(task, Task):
            raise CapabilityTaskError(f"{where}: lm-eval built a {type(task).__name__}, not a task")
        if spec.num_fewshot is not None:
            task.set_config(key="num_fewshot", value=spec.num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)  # what simple_evaluate does for a task without a default
        available = _metric_keys(task)
        if metric_key(spec.metric) not in available:
            raise CapabilityTaskError(f"{where}: no metric '{spec.metric}' (lm-eval reports: {', '.join(available)})")
        yaml_path = Path(entry.yaml_path).resolve() if entry.yaml_path else None
        local = yaml_path is not None and any(d in yaml_path.parents for d in include_dirs)
        resolved[spec.name] = ResolvedTask(
            spec,
            task,
            _config_sha256(task, yaml_path.parent if local else None),
            str(yaml_path) if yaml_path else None,
            local,
            manager,
        )
    return resolved


def _backend(cap: CapabilitiesConfig) -> str:
    if cap.backend != "auto":
        return cap.backend
    import importlib.util

    import torch

    return "vllm" if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available() else "hf"


def _identity(config: EvalConfig, arm: ArmConfig, task: ResolvedTask, backend: str) -> dict:
    manifest = read_manifest(arm.model) if Path(arm.model).is_dir() else None
    return {
        "model": arm.model,
        "tokenizer": arm.tokenizer,
        "revision": arm.revision,
        # A retrained checkpoint at the same path has another manifest.
        "model_manifest": f"{manifest.get('config_fingerprint')}@{manifest.get('created')}" if manifest else None,
        "task_config_sha256": task.config_sha256,
        "metric": task.spec.metric,
        "limit": config.capabilities.limit,
        "backend": backend,
        "dtype": config.sampling.dtype,
        "seed": config.capabilities.seed,
        "lm_eval_version": lm_eval_version(),
    }


def _make_lm(config: EvalConfig, arm: ArmConfig, backend: str):
    from lm_eval.api.registry import get_model

    s = config.sampling
    args: dict[str, Any] = {"pretrained": arm.model, "dtype": s.dtype}
    if arm.tokenizer:
        args["tokenizer"] = arm.tokenizer
    if arm.revision:
        args["revision"] = arm.revision
    if backend == "vllm":
        args.update(seed=config.capabilities.seed, **s.engine_kwargs())
        device = None
    else:
        import torch

        device = s.device if s.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    lm = get_model(backend).create_from_arg_obj(args, {"batch_size": config.capabilities.batch_size, "device": device})
    follow_one_bos_rule(lm)
    return lm


def follow_one_bos_rule(lm) -> None:
    """Make lm-eval encode as every other stage does: the text without the tokenizer's own special
    tokens, then exactly one BOS (``posttrain.prompt_format.with_bos``; OLMo-2's tokenizer adds
    none itself). Both lm-eval encoders are replaced on this instance: ``tok_encode``
    (log-likelihoods, and vLLM's generation) and HF's ``tok_batch_encode`` (HF's generation)."""
    tokenizer, encode = lm.tokenizer, lm.tok_encode

    def one(text: str, left_truncate_len: int | None) -> list[int]:
        ids = with_bos(tokenizer, encode(text, add_special_tokens=False))
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_encode(string, add_special_tokens=None, left_truncate_len=None, **_):
        if isinstance(string, str):
            return one(string, left_truncate_len)
        return [one(text, left_truncate_len) for text in string]

    def tok_batch_encode(strings, padding_side="left", left_truncate_len=None, truncation=False):
        import torch

        rows = [one(text, left_truncate_len if truncation or left_truncate_len else None) for text in strings]
        width, pad = max(map(len, rows)), tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        pads = [[pad] * (width - len(r)) for r in rows]
        ids = [p + r if padding_side == "left" else r + p for r, p in zip(rows, pads)]
        mask = [
            [0] * len(p) + [1] * len(r) if padding_side == "left" else [1] * len(r) + [0] * len(p)
            for r, p in zip(rows, pads)
        ]
        return torch.tensor(ids), torch.tensor(mask)

    lm.tok_encode = tok_encode
    if hasattr(lm, "tok_batch_encode"):
        lm.tok_batch_encode = tok_batch_encode


def release_lm(lm, backend: str) -> None:
    """Free an arm's lm-eval model before the next one loads: lm-eval's vLLM engine (its ``model``)
    is shut down like the sampling engines (worker processes and GPU memory), not only dropped."""
    if backend == "vllm" and getattr(lm, "model", None) is not None:
        from eval.backends.vllm_backend import release_engine

        release_engine(lm.model)
        lm.model = None
    gc.collect()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _entry(result: dict, task: ResolvedTask, identity: dict, seconds: float) -> dict:
    name, key = task.spec.name, metric_key(task.spec.metric)
    metrics = result["results"][name]
    metric, flt = key.split(",", 1)
    return {
        "metric": task.spec.metric,
        "value": _number(metrics.get(key)),
        "stderr": _number(metrics.get(f"{metric}_stderr,{flt}")),
        "n": result.get("n-samples", {}).get(name, {}).get("effective"),
        "lm_eval_version": identity["lm_eval_version"],
        "task_config_sha256": task.config_sha256,
        "task_yaml": task.yaml_path,
        "local_task": task.local,
        "num_fewshot": task.task.get_config("num_fewshot"),
        "limit": identity["limit"],
        "backend": identity["backend"],
        "all_metrics": {k: _number(v) for k, v in metrics.items() if _number(v) is not None},
        "seconds": round(seconds, 2),
        "identity": identity,
    }


def read_capabilities(run_dir: Path) -> dict:
    path = Path(run_dir) / CAPABILITIES
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def run_capabilities(config: EvalConfig, run_dir: Path, tasks: dict[str, ResolvedTask] | None = None) -> dict:
    """Every (evaluated arm, task) not already in capabilities.json under the same identity."""
    import lm_eval

    cap = config.capabilities
    tasks = tasks if tasks is not None else load_tasks(cap)
    backend = _backend(cap)
    arms, left_out = evaluated_arms(config)
    data = read_capabilities(run_dir)
    data.setdefault("arms", {})
    data.update(lm_eval_version=lm_eval_version(), arms_left_out=left_out)
    counts = {"evaluated": 0, "kept": 0, "redone": 0, "arms_left_out": sorted(left_out)}
    used: set[str] = set()  # lm-eval keeps per-run state on a Task object: a second run gets a fresh one
    for arm in arms:
        done = data["arms"].setdefault(arm.name, {})
        todo = []
        for name, task in tasks.items():
            identity = _identity(config, arm, task, backend)
            previous = done.get(name)
            if previous is not None and previous.get("identity") == identity:
                counts["kept"] += 1
                continue
            if previous is not None:
                changed = sorted(k for k in identity if previous.get("identity", {}).get(k) != identity[k])
                logger.info(f"eval: capabilities {arm.name}/{name}: redone ({', '.join(changed)} changed)")
                counts["redone"] += 1
            todo.append((name, identity))
        if not todo:
            continue
        lm = _make_lm(config, arm, backend)
        for name, identity in todo:
            task = _reload(cap, tasks[name]) if name in used else tasks[name]
            used.add(name)
            start = time.perf_counter()
            # Our TaskManager: without one, simple_evaluate indexes all of lm-eval's tasks again (tens of seconds).
            result = lm_eval.simple_evaluate(
                model=lm,
                tasks=[task.task],
                num_fewshot=None,
                limit=cap.limit,
                bootstrap_iters=cap.bootstrap_iters,
                log_samples=False,
                task_manager=task.manager,
                random_seed=cap.seed,
                numpy_random_seed=cap.seed,
                torch_random_seed=cap.seed,
                fewshot_random_seed=cap.seed,
            )
            done[name] = _entry(result, task, identity, time.perf_counter() - start)
            counts["evaluated"] += 1
            write_json_atomic(Path(run_dir) / CAPABILITIES, data)
            e = done[name]
            logger.info(
                f"eval: capabilities {arm.name}/{name}: {e['metric']} {with_stderr(e)} (n={e['n']}, {e['seconds']:.1f} s)"
            )
        release_lm(lm, backend)
        del lm
    write_json_atomic(Path(run_dir) / CAPABILITIES, data)
    return counts


def _reload(cap: CapabilitiesConfig, task: ResolvedTask) -> ResolvedTask:
    """A fresh Task object for the next run (lm-eval keeps per-run state on it); same config hash."""
    one = CapabilitiesConfig(tasks=[task.spec], include_path=cap.include_path)
    fresh = load_tasks(one, manager=task.manager)[task.spec.name]
    if fresh.config_sha256 != task.config_sha256:
        raise CapabilityTaskError(f"capabilities task '{task.spec.name}': its config changed during the run")
    return fresh


def difference(anchored: dict | None, plain: dict | None) -> dict | None:
    """anchored - plain with a 95% normal interval, from two entries' values and stderrs.

    se = sqrt(se_a^2 + se_p^2) treats the two arms' item samples as independent. They share
    the items, and their per-item errors are usually positively correlated, so this
    overstates the uncertainty of the difference (a conservative interval).
    """
    if not anchored or not plain or anchored.get("value") is None or plain.get("value") is None:
        return None
    diff = anchored["value"] - plain["value"]
    if anchored.get("stderr") is None or plain.get("stderr") is None:
        return {"diff": diff, "ci_low": None, "ci_high": None}
    se = math.sqrt(anchored["stderr"] ** 2 + plain["stderr"] ** 2)
    return {"diff": diff, "se": se, "ci_low": diff - Z95 * se, "ci_high": diff + Z95 * se}


def difference_over_seeds(diffs: list[dict]) -> dict:
    """anchored - plain over seeds: the mean of the seeds' differences (``difference``) with a 95%
    normal interval whose se is the MEAN of their standard errors, not divided by sqrt(seeds): every
    seed is scored on the same items, so item-sampling error is shared across seeds, not averaged away.
    No interval (None bounds) when a seed has no stderr."""
    mean = statistics.fmean(d["diff"] for d in diffs)
    ses = [d["se"] for d in diffs if d.get("se") is not None]
    if len(ses) != len(diffs):
        return {"diff": mean, "ci_low": None, "ci_high": None, "n_seeds": len(diffs)}
    se = statistics.fmean(ses)
    return {"diff": mean, "se": se, "ci_low": mean - Z95 * se, "ci_high": mean + Z95 * se, "n_seeds": len(diffs)}


def difference_text(d: dict | None) -> str:
    """anchored - plain as ``+0.040 [+0.010, +0.070]``; ``[no stderr]`` in place of a missing interval."""
    if d is None:
        return NA
    if d.get("ci_low") is None:
        return f"{number(d['diff'], sign=True)} [no stderr]"
    return interval(d["diff"], d["ci_low"], d["ci_high"], sign=True)


def render_capabilities(
    data: dict, plain_arm: str, anchored_arm: str, arms_evaluated: list[str] | None = None
) -> list[str]:
    """The report's capabilities section: per arm and task value ± stderr, and anchored - plain.

    ``arms_evaluated``: the arms this config evaluates (an arm dropped from the config keeps its
    entries in capabilities.json, and the report leaves it out, as it does for samples).
    """
    arms = {a: t for a, t in data.get("arms", {}).items() if t and (arms_evaluated is None or a in arms_evaluated)}
    if not arms:
        return []
    rows = [
        (arm, task, e["metric"], with_stderr(e), e.get("n"), e.get("num_fewshot"), e.get("limit"))
        for arm, tasks in arms.items()
        for task, e in tasks.items()
    ]
    lines = [
        CAPABILITIES_TITLE,
        "",
        CAPABILITIES_NOTE.format(version=data.get("lm_eval_version")),
        "",
        *table(("arm", "task", "metric", "value ± stderr", "n", "few-shot", "limit"), rows),
        "",
    ]
    if plain_arm in arms and anchored_arm in arms:
        columns = ("task", "metric", anchored_arm, plain_arm, f"{anchored_arm} - {plain_arm} [95% CI]")
        rows = [
            (task, a["metric"], with_stderr(a), with_stderr(p), difference_text(difference(a, p)))
            for task, a in arms[anchored_arm].items()
            for p in [arms[plain_arm].get(task)]
        ]
        lines += [*table(columns, rows), ""]
    if data.get("arms_left_out"):
        lines += ["Arms left out: " + "; ".join(f"{k}: {v}" for k, v in data["arms_left_out"].items()), ""]
    return lines
