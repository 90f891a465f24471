"""The capabilities stage: lm-eval really runs the local next-passage task on tiny models.

lm-eval indexes its own ~15,000 task YAMLs in tens of seconds; tests that need its own tasks
(an unknown name, a hub task offline, the paper suite's names) share one index per process
(eval.capabilities keeps it).
"""

import json
from pathlib import Path

import pytest
import yaml

from eval.capabilities import CAPABILITIES, CapabilityTaskError, difference, load_tasks, task_manager
from eval.config import EvalConfig
from eval.next_passage_task import NextPassageTaskConfig
from eval.next_passage_task import run as write_task
from eval.stage import run
from stage_io.config import load_config
from stage_io.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "eval" / "tiny.yaml"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("capability_task")
    write_task(NextPassageTaskConfig(output_dir=str(out), passages_per_article=1))
    return out


def config(tmp_path: Path, arms: list[dict], task_dir: Path | str, *overrides: str) -> EvalConfig:
    return load_config(
        EvalConfig,
        TINY,
        [
            f"output_dir={tmp_path / 'run'}",
            "stages=[capabilities]",
            "arms=" + json.dumps(arms),
            "capabilities.include_path=" + json.dumps([str(task_dir)]),
            "capabilities.limit=20",
            *overrides,
        ],
    )


def test_lm_eval_runs_the_local_task_on_tiny_models_then_resumes(tmp_path, tiny_models, task_dir):
    arms = [
        {"name": "plain_sft", "model": tiny_models["plain"]},
        {"name": "anchored", "model": tiny_models["anchored"], "mode": "anchored"},
        {"name": "anchored_no_annotation", "model": tiny_models["anchored"], "mode": "no_annotation"},
    ]
    cfg = config(tmp_path, arms, task_dir)
    run_dir = run(cfg)
    data = json.loads((run_dir / CAPABILITIES).read_text())
    assert set(data["arms"]) == {"plain_sft", "anchored"}
    assert "anchored_no_annotation" in data["arms_left_out"]  # the anchored checkpoint again
    for arm in ("plain_sft", "anchored"):
        entry = data["arms"][arm]["bbc_next_passage"]
        assert entry["metric"] == "acc_norm" and 0.0 <= entry["value"] <= 1.0
        assert 0.0 < entry["stderr"] < 0.5 and entry["n"] == 20 and entry["num_fewshot"] == 0
        assert entry["lm_eval_version"] == data["lm_eval_version"] and entry["task_config_sha256"].startswith("sha256:")
        assert entry["local_task"] and 0.0 <= entry["all_metrics"]["acc,none"] <= 1.0
    assert read_manifest(run_dir)["counts"]["capabilities"]["evaluated"] == 2

    # Resumed: both (arm, task) entries are current, nothing is evaluated again.
    run(cfg)
    assert read_manifest(run_dir)["counts"]["capabilities"] | {"arms_left_out": []} == {
        "evaluated": 0,
        "kept": 2,
        "redone": 0,
        "arms_left_out": [],
    }
    assert json.loads((run_dir / CAPABILITIES).read_text())["arms"] == data["arms"]

    # An interrupted run (one entry missing) resumes with that entry alone.
    del data["arms"]["anchored"]["bbc_next_passage"]
    (run_dir / CAPABILITIES).write_text(json.dumps(data))
    run(cfg)
    counts = read_manifest(run_dir)["counts"]["capabilities"]
    assert (counts["evaluated"], counts["kept"]) == (1, 1)
    again = json.loads((run_dir / CAPABILITIES).read_text())["arms"]["anchored"]["bbc_next_passage"]
    assert 0.0 <= again["value"] <= 1.0

    # Another limit is another identity: redone, not reused.
    run(config(tmp_path, arms, task_dir, "capabilities.limit=10"))
    counts = read_manifest(run_dir)["counts"]["capabilities"]
    assert (counts["evaluated"], counts["redone"]) == (2, 2)
    assert json.loads((run_dir / CAPABILITIES).read_text())["arms"]["plain_sft"]["bbc_next_passage"]["n"] == 10


# An arm no model could be loaded from: a bad task must fail before anything tries.
NO_MODEL = [{"name": "plain_sft", "model": "/nonexistent/checkpoint"}]


def test_unknown_task_fails_before_any_model_is_loaded(tmp_path, task_dir):
    cfg = config(
        tmp_path,
        NO_MODEL,
        task_dir,
        "capabilities.tasks=[{name: bbc_next_pasage, metric: acc}]",
        "stages=[generate, capabilities]",
    )
    with pytest.raises(
        CapabilityTaskError, match=r"'bbc_next_pasage'.*knows no such task.*close names: bbc_next_passage"
    ):
        run(cfg)


def test_missing_include_path_names_the_task(tmp_path):
    cfg = config(tmp_path, NO_MODEL, tmp_path / "not_written")
    with pytest.raises(
        CapabilityTaskError, match=r"include_path .*not_written.*no such directory \(tasks bbc_next_passage\)"
    ):
        run(cfg)


def test_missing_local_data_file_names_the_task(tmp_path):
    out = tmp_path / "task"
    write_task(NextPassageTaskConfig(output_dir=str(out), passages_per_article=1))
    (out / "bbc_next_passage.jsonl").unlink()
    with pytest.raises(CapabilityTaskError, match=r"'bbc_next_passage': its data could not be loaded"):
        run(config(tmp_path, NO_MODEL, out))


def test_unknown_metric_is_an_error_naming_what_lm_eval_reports(tmp_path, task_dir):
    cfg = config(tmp_path, NO_MODEL, task_dir, "capabilities.tasks=[{name: bbc_next_passage, metric: f1}]")
    with pytest.raises(CapabilityTaskError, match=r"no metric 'f1' \(lm-eval reports: acc,none, acc_norm,none\)"):
        run(cfg)


def test_hub_task_while_offline_names_the_task(tmp_path, task_dir, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = config(tmp_path, NO_MODEL, task_dir, "capabilities.tasks=[{name: copa, metric: acc}]")
    with pytest.raises(CapabilityTaskError, match=r"'copa': its data could not be loaded.*hub is off"):
        run(cfg)


def test_paper_suite_names_validate_against_lm_evals_own_tasks():
    cfg = load_config(EvalConfig, REPO / "configs" / "eval" / "stories.yaml")
    cap = cfg.capabilities
    assert "capabilities" in cfg.stages and cap.backend == "auto"
    assert [t.name for t in cap.tasks] == [
        "arc_easy",
        "arc_challenge",
        "boolq",
        "copa",
        "hellaswag",
        "openbookqa",
        "piqa",
        "sciq",
        "winogrande",
        "gsm8k",
    ]
    index = task_manager(cap, [t.name for t in cap.tasks]).task_index
    for task in cap.tasks:
        entry = index[task.name]  # known without downloading anything
        assert entry.kind.name == "TASK", task.name
        own = yaml.safe_load(Path(entry.yaml_path).read_text().replace("!function", ""))  # its metrics and filters
        metric, _, flt = task.metric.partition(",")
        metrics = [m["metric"] for m in own.get("metric_list", [])]
        if not metrics and "include" in own:  # the task reuses another YAML's metric list
            base = yaml.safe_load((Path(entry.yaml_path).parent / own["include"]).read_text().replace("!function", ""))
            metrics = [m["metric"] for m in base.get("metric_list", [])]
        assert metric in metrics, (task.name, metrics)
        if flt:
            assert flt in [f["name"] for f in own.get("filter_list", [])], task.name
    gsm8k = next(t for t in cap.tasks if t.name == "gsm8k")
    assert gsm8k.num_fewshot is None  # as lm-eval defines it
    assert all(t.num_fewshot == 0 for t in cap.tasks if t.name != "gsm8k")  # zero-shot


def test_difference_is_a_normal_interval_from_the_two_stderrs():
    d = difference({"value": 0.60, "stderr": 0.03}, {"value": 0.55, "stderr": 0.04})
    assert d["diff"] == pytest.approx(0.05) and d["se"] == pytest.approx(0.05)
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(0.05 - 1.959964 * 0.05), pytest.approx(0.05 + 1.959964 * 0.05))
    assert difference(None, {"value": 0.5}) is None


def test_load_tasks_hashes_the_local_tasks_data(tmp_path):
    out = tmp_path / "task"
    write_task(NextPassageTaskConfig(output_dir=str(out), passages_per_article=1))
    cap = config(tmp_path, NO_MODEL, out).capabilities
    first = load_tasks(cap)["bbc_next_passage"].config_sha256
    assert load_tasks(cap)["bbc_next_passage"].config_sha256 == first
    data = out / "bbc_next_passage.jsonl"
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:-1]))  # one item fewer
    assert load_tasks(cap)["bbc_next_passage"].config_sha256 != first


def test_report_section_lists_arms_and_anchored_minus_plain():
    from eval.capabilities import render_capabilities

    def entry(value, stderr):
        return {"metric": "acc_norm", "value": value, "stderr": stderr, "n": 192, "num_fewshot": 0, "limit": None}

    data = {
        "lm_eval_version": "0.4.13",
        "arms_left_out": {"anchored_no_annotation": "same checkpoint"},
        "arms": {
            "plain_sft": {"t": entry(0.30, 0.03)},
            "anchored": {"t": entry(0.34, 0.04)},
            "dropped": {"t": entry(0.9, 0.01)},
        },
    }
    lines = render_capabilities(data, "plain_sft", "anchored", ["plain_sft", "anchored"])
    assert "| plain_sft | t | acc_norm | 0.300 ± 0.030 | 192 | 0 | None |" in lines
    assert "| t | acc_norm | 0.340 ± 0.040 | 0.300 ± 0.030 | +0.040 [-0.058, +0.138] |" in lines
    assert not any("dropped" in line for line in lines)  # an arm no longer in the config is left out
    assert "Arms left out: anchored_no_annotation: same checkpoint" in lines
