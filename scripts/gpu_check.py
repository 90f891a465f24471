"""The GPU paths checked in one command: ``bash scripts/gpu_check.sh [--dry-run] [--out FILE]``.

On one H100/H200 (budget: 8 minutes), each check timed and written to one JSON:

1. ``pretrain_throughput``: bf16 tokens/s and MFU of the pretraining step at ~150M and
   ~0.6B (``pretrain.bench.cuda_benchmark``), with torch's peak allocated memory against
   the memory plan (``pretrain.memory_plan``);
2. ``pretrain_stage``: the pretrain stage itself (tiny config, bf16 auto on CUDA, stand-in
   annotations of BBC articles), whose checkpoint the later checks use;
3. ``deepspeed_zero2_step``: the same stage under ``accelerate launch`` with
   configs/accelerate/deepspeed_zero2.yaml on one process;
4. ``sft_bf16_steps``: 20 bf16 SFT steps with TRL (the posttrain stage, tiny config);
5. ``eval_sampling``: sampling with the transformers backend on CUDA (the eval stage).

It installs nothing: what it needs beyond torch/transformers/accelerate/peft is listed in
scripts/gpu_check_wheels.txt (``scripts/download_gpu_check_wheels.sh`` fetches them for
carrying to a machine without network). A check whose package is missing is recorded as
skipped, with the reason, and the others still run. ``--dry-run`` runs the same checks on
CPU at tiny sizes in fp32 (DeepSpeed is skipped there), so CI exercises the script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (preset, vocabulary (None: the preset's), row length, rows per step) per throughput model.
SIZES = {
    "gpu": {"bench": [("150m", None, 4096, 4), ("0.6b", None, 4096, 2)], "bench_steps": 12, "precision": "bf16",
            "stage_steps": 20, "sft_steps": 20, "samples": 4},
    "dry": {"bench": [("tiny", 512, 64, 2)], "bench_steps": 4, "precision": "no",
            "stage_steps": 3, "sft_steps": 3, "samples": 2},
}
SFT_PROMPT = "Write a short news article."


def run_stage(args: list[str], log: Path, launcher: list[str] | None = None) -> dict:
    """One stage in its own process (as a user runs it); its output kept in ``log``."""
    command = [*(launcher or [sys.executable]), "-m", *args]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with open(log, "w", encoding="utf-8") as handle:
        code = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command)} exited with {code}; log {log}:\n{tail}")
    return {"command": " ".join(command), "log": str(log)}


def write_sft_records(path: Path, n: int = 64) -> Path:
    """Plain SFT records (messages) from BBC articles: an instruction and the article."""
    from stage_io.records import RecordSource, load_records

    ds = load_records(RecordSource(source="embedded:bbc_news"))
    with open(path, "w", encoding="utf-8") as handle:
        for k in range(n):
            text = ds[k * 17]["text"][:150]  # fits the tiny model's 128-token rows with the prompt
            handle.write(json.dumps({"id": f"r{k}", "messages": [{"role": "user", "content": SFT_PROMPT},
                                                               {"role": "assistant", "content": text}]}) + "\n")
    return path


def check_throughput(size: dict) -> dict:
    from pretrain.bench import cuda_benchmark

    return {"models": [cuda_benchmark(preset, size["bench_steps"], seq, rows, vocab=vocab,
                                      mixed_precision=size["precision"])
                       for preset, vocab, seq, rows in size["bench"]]}


def pretrain_args(work: Path, ann: Path, name: str, steps: int) -> list[str]:
    return ["pretrain", "configs/pretrain/tiny.yaml", f"data.annotations={ann}", "data.arm=plain",
            f"output_dir={work}/{name}/{{arm}}", f"tokenizer.path={work}/tokenizer", f"train.max_steps={steps}",
            "train.train_tokens=null", "train.checkpoint_every=0", "logging.report_to=[]", "train.cpu_threads=1"]


def check_pretrain_stage(work: Path, ann: Path, size: dict) -> dict:
    out = run_stage(pretrain_args(work, ann, "pretrain", size["stage_steps"]), work / "pretrain.log")
    manifest = json.loads((work / "pretrain" / "plain" / "manifest.json").read_text())
    return {**out, "throughput": manifest.get("throughput"), "final_loss": manifest["counts"]["final_loss"]}


def check_deepspeed(work: Path, ann: Path, cuda: bool) -> dict:
    if not cuda:
        return {"skipped": "no CUDA device (DeepSpeed's ZeRO-2 step needs one)"}
    if importlib.util.find_spec("deepspeed") is None:
        return {"skipped": "deepspeed is not installed (scripts/gpu_check_wheels.txt)"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                "configs/accelerate/deepspeed_zero2.yaml", "--num_processes", "1"]
    out = run_stage(pretrain_args(work, ann, "deepspeed", 3), work / "deepspeed.log", launcher)
    manifest = json.loads((work / "deepspeed" / "plain" / "manifest.json").read_text())
    return {**out, "final_loss": manifest["counts"]["final_loss"]}


def check_sft(work: Path, size: dict, cuda: bool) -> dict:
    records = write_sft_records(work / "sft.jsonl")
    out = run_stage(["posttrain", "configs/posttrain/tiny_plain.yaml", f"model_path={work}/pretrain/plain",
                     "data.annotations=null", f"data.source.source={records}", f"output_dir={work}/sft",
                     "max_seq_len=128",
                     f"training.max_steps={size['sft_steps']}", f"training.bf16={str(cuda).lower()}",
                     "training.save_steps=1000"], work / "sft.log")
    history = json.loads((work / "sft" / "log_history.json").read_text())
    losses = [entry["loss"] for entry in history if "loss" in entry]
    return {**out, "steps": size["sft_steps"], "bf16": cuda, "first_loss": losses[0], "final_loss": losses[-1]}


def check_eval(work: Path, size: dict, cuda: bool) -> dict:
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{k}", "prompt": SFT_PROMPT}) + "\n" for k in range(2)))
    arms = json.dumps([{"name": "sft", "model": str(work / "sft"), "mode": "plain"}])
    out = run_stage(["eval", "configs/eval/tiny.yaml", f"output_dir={work}/eval", f"prompts.source.source={prompts}",
                     f"arms={arms}", "stages=[generate]", "sampling.backend=transformers",
                     f"sampling.device={'cuda' if cuda else 'cpu'}", f"sampling.samples_per_prompt={size['samples']}",
                     "sampling.temperatures=[1.0]"], work / "eval.log")
    rows = (work / "eval" / "generations.jsonl").read_text().splitlines()
    return {**out, "device": "cuda" if cuda else "cpu", "rows": len(rows)}


def timed(name: str, fn, results: dict) -> None:
    started = time.perf_counter()
    try:
        results[name] = {"ok": True, **fn()}
        if "skipped" in results[name]:
            results[name]["ok"] = None
    except Exception as err:  # one failing path must not hide the others' results
        results[name] = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
    results[name]["seconds"] = round(time.perf_counter() - started, 1)
    print(f"gpu_check: {name}: {'skipped' if results[name]['ok'] is None else 'ok' if results[name]['ok'] else 'FAILED'} "
          f"({results[name]['seconds']} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, fp32: checks the script itself")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON written")
    parser.add_argument("--work", default=None, help="working directory (default: a temporary one)")
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("gpu_check: no CUDA device; use --dry-run for the CPU check of this script", file=sys.stderr)
        return 2
    size = SIZES["gpu" if cuda else "dry"]
    if not cuda:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the dry run's stage processes stay on CPU as well
    report = {"dry_run": args.dry_run, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
              "python": platform.python_version(), "torch": torch.__version__, "checks": {}}
    for package in ("transformers", "accelerate", "trl", "peft", "deepspeed", "flash_attn"):
        report[package] = (importlib.util.find_spec(package) and __import__(package).__version__) or None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        from pretrain.standin_annotations import write_standin_annotations

        ann = write_standin_annotations(work / "ann", n_docs=40 if args.dry_run else 200, stride=10)
        checks = report["checks"]
        timed("pretrain_throughput", lambda: check_throughput(size), checks)
        timed("pretrain_stage", lambda: check_pretrain_stage(work, ann, size), checks)
        timed("deepspeed_zero2_step", lambda: check_deepspeed(work, ann, cuda), checks)
        timed("sft_bf16_steps", lambda: check_sft(work, size, cuda), checks)
        timed("eval_sampling", lambda: check_eval(work, size, cuda), checks)
    report["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"gpu_check: wrote {args.out} ({report['seconds']} s)")
    return 0 if all(c["ok"] is not False for c in report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
