"""Throughput benchmark of the pretraining loop: ``python -m pretrain.bench``.

Prints, on the tiny config (configs/pretrain/tiny.yaml) over stand-in annotations of
BBC articles (pretrain/standin_annotations.py):

1. training tokens/s of the stage's loop (``pretrain.train.run``: accelerate, packing,
   logging and all) against a bare PyTorch loop on the same model config, batches and
   data (goal: ratio >= 0.95);
2. packing efficiency, real tokens over sequence slots (goal >= 0.99);
3. step time of the anchored arm over the plain arm at equal tokens (goal <= 1.02).

Timings are median step times after a warm-up, best of ``--repeats`` alternating runs
(the machine may be shared: the median ignores disturbed steps, the best run is the least
disturbed one). With CUDA it also prints bf16 tokens/s and MFU
of the stage's train step for ~150M and ~0.6B OLMo-2 models on synthetic packed
documents (``--cuda-models``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrain.config import PretrainConfig
from pretrain.model_configs import matmul_parameters, parameter_count
from pretrain.packing import PackedStream, forward_packed, uses_varlen_flash
from pretrain.schedule import make_scheduler
from pretrain.sequences import TokenizedCorpus
from pretrain.standin_annotations import write_standin_annotations
from pretrain.throughput import flops_per_token, mfu, peak_flops
from stage_io.config import load_config

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "tiny.yaml"
WARMUP_STEPS = 3  # excluded from timings: first-call allocations and caches


def median_step_seconds(step_seconds: list[float]) -> float:
    """The median step after warm-up: robust to the odd step slowed by another process."""
    return float(np.median(step_seconds[WARMUP_STEPS:]))


def tokens_per_second(step_seconds: list[float], tokens_per_step: int) -> float:
    return tokens_per_step / median_step_seconds(step_seconds)


def tiny_config(work: Path, ann: Path, arm: str, steps: int, run_id: str) -> PretrainConfig:
    return load_config(
        PretrainConfig,
        TINY_YAML,
        [
            f"data.annotations={ann}",
            f"data.arm={arm}",
            f"output_dir={work}/{run_id}/{{arm}}",
            f"tokenizer.path={work}/tokenizer",
            f"train.max_steps={steps}",
            "train.train_tokens=null",
            "train.checkpoint_every=0",
            "logging.report_to=[]",
            f"logging.log_every={steps}",
        ],
    )


def stage_run(config: PretrainConfig):
    from pretrain.train import run

    return run(config)


def bare_run(config: PretrainConfig, steps: int) -> list[float]:
    """The same training as the stage's, in plain PyTorch: same model, rows, optimizer, schedule."""
    from pretrain.tokenizer import prepare_tokenizer
    from pretrain.train import build_model, chunk_texts, make_optimizer

    train = config.train
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(train.cpu_threads)
    tokenizer = prepare_tokenizer(config.tokenizer, lambda: chunk_texts(config))
    corpus = TokenizedCorpus.load(Path(config.resolved_output_dir) / "data")  # tokenized by the stage run
    torch.manual_seed(train.seed)
    model = build_model(config, tokenizer, device).to(device)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config.schedule, steps)
    stream = PackedStream(
        corpus, train.seq_len, seed=train.seed, shuffle=config.data.shuffle, pad_id=tokenizer.pad_token_id
    )
    flatten = uses_varlen_flash(model.config)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        rows = stream.next_rows(train.micro_batch * train.grad_accum)
        loss_sum = torch.zeros((), device=device)
        for micro in range(train.grad_accum):
            batch = rows.select(slice(micro * train.micro_batch, (micro + 1) * train.micro_batch))
            with autocast:
                loss = forward_packed(model, batch.to_model_inputs(device, flatten)).loss
            (loss / train.grad_accum).backward()
            loss_sum += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        (loss_sum / train.grad_accum).item()
        seconds.append(time.perf_counter() - started)
    return seconds


def cpu_benchmarks(work: Path, steps: int, repeats: int) -> None:
    ann = write_standin_annotations(work / "ann", n_docs=200, stride=10)
    tokens_per_step = None
    stage, bare, step_time = [], [], {"plain": [], "anchored": []}
    packing = None
    for r in range(repeats):
        config = tiny_config(work, ann, "anchored", steps, f"stage{r}")
        result = stage_run(config)
        tokens_per_step = result.tokens_per_step
        stage.append(tokens_per_second(result.step_seconds, tokens_per_step))
        step_time["anchored"].append(median_step_seconds(result.step_seconds))
        packing = result.counters
        bare.append(tokens_per_second(bare_run(config, steps), tokens_per_step))
        plain = stage_run(tiny_config(work, ann, "plain", steps, f"stage{r}"))
        step_time["plain"].append(median_step_seconds(plain.step_seconds))
        assert plain.counters["tokens"] == result.counters["tokens"]  # equal tokens in both arms

    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"\n== pretrain benchmark: tiny config, {steps} steps of {tokens_per_step:,} tokens, "
        f"best of {repeats}, on {device} =="
    )
    ratio = max(stage) / max(bare)
    print(f"stage loop   {max(stage):>10,.0f} tokens/s")
    print(f"bare PyTorch {max(bare):>10,.0f} tokens/s")
    print(f"ratio stage/bare            {ratio:.3f}   (goal >= 0.95)  {'ok' if ratio >= 0.95 else 'BELOW GOAL'}")
    eff = packing["packing_efficiency"]
    print(
        f"packing efficiency          {eff:.4f}  (goal >= 0.99)  {'ok' if eff >= 0.99 else 'BELOW GOAL'}"
        f"   [{packing['tokens']:,} real tokens / {packing['slots']:,} slots; "
        f"{packing['loss_tokens'] / packing['slots']:.4f} of slots carry a loss; "
        f"{packing['split_at_row_end']} of {packing['pieces']} pieces cut at a row end; "
        f"{packing['annotation_in_view_share']:.3f} of content tokens see their annotation]"
    )
    slow = min(step_time["anchored"]) / min(step_time["plain"])
    print(
        f"step time anchored/plain    {slow:.3f}   (goal <= 1.02)  {'ok' if slow <= 1.02 else 'ABOVE GOAL'}"
        f"   [{1000 * min(step_time['anchored']):.1f} ms vs {1000 * min(step_time['plain']):.1f} ms per step]"
    )


def cuda_benchmark(
    preset: str, steps: int, seq_len: int, micro_batch: int, vocab: int | None = None, mixed_precision: str = "bf16"
) -> dict:
    """bf16 tokens/s and MFU of the stage's train step for one preset at one shape
    (``python -m pretrain.bench --cuda-models``): ``config_benchmark`` on the tiny config's
    optimizer and schedule with the preset swapped in."""
    config = load_config(
        PretrainConfig,
        TINY_YAML,
        [
            f"model.preset={preset}",
            f"train.seq_len={seq_len}",
            f"train.micro_batch={micro_batch}",
            "train.grad_accum=1",
        ],
    )
    return config_benchmark(config, steps, vocab=vocab, mixed_precision=mixed_precision)


def config_benchmark(
    config: PretrainConfig,
    steps: int,
    vocab: int | None = None,
    mixed_precision: str = "bf16",
    measured_peak: float | None = None,
) -> dict:
    """Tokens/s and MFU of the stage's train step at a pretrain config's shape (preset, sequence
    length, micro-batch, gradient checkpointing, optimizer; one micro-batch per step) on synthetic
    packed documents, and the peak memory torch allocated and reserved beside each term of the memory
    plan. Under ``accelerate launch`` it runs in the launcher's setup (e.g. DeepSpeed ZeRO-2).
    ``measured_peak``: a measured matmul rate, for an MFU against it besides the datasheet's.
    scripts/gpu_check.py runs it at the paper's shapes (and on CPU, tiny and in fp32, as a dry run)."""
    from accelerate import Accelerator

    accelerator = Accelerator(
        mixed_precision=mixed_precision, step_scheduler_with_optimizer=False, cpu=not torch.cuda.is_available()
    )
    cuda = accelerator.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    bench = _BenchModel.prepare(config, accelerator, steps, vocab)
    seconds = _time_steps(config, bench, accelerator, steps)
    result = _benchmark_row(config, bench, accelerator, seconds, mixed_precision, measured_peak)
    _print_benchmark(result)
    del bench
    accelerator.free_memory()
    if cuda:
        torch.cuda.empty_cache()
    return result


@dataclass
class _BenchModel:
    """A freshly initialised model of the config's shape with its optimizer and schedule, prepared by accelerate."""

    model: Any
    optimizer: Any
    scheduler: Any
    # The transformers config the model was built from.
    hf_config: Any
    parameters: int
    matmul_parameters: int
    # Packed rows go to the model flattened (varlen flash attention).
    flatten: bool

    @classmethod
    def prepare(cls, config: PretrainConfig, accelerator, steps: int, vocab: int | None) -> "_BenchModel":
        from transformers import AutoModelForCausalLM

        from pretrain.model_configs import build_hf_config, resolve_preset
        from pretrain.train import attn_implementation, configure_deepspeed, make_optimizer

        vocab = vocab or resolve_preset(config.model).vocab_size
        hf_config = build_hf_config(config.model, vocab, config.train.seq_len, 1, 2, 0)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(
            hf_config, attn_implementation=attn_implementation("auto", accelerator.device)
        )
        if config.model.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        optimizer = make_optimizer(model.to(accelerator.device), config)
        scheduler = make_scheduler(optimizer, config.schedule, steps)
        counted = dict(
            hf_config=hf_config,
            parameters=parameter_count(model),
            matmul_parameters=matmul_parameters(model),
            flatten=uses_varlen_flash(model.config),
        )
        configure_deepspeed(accelerator, config)
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        return cls(model, optimizer, scheduler, **counted)


def _time_steps(config: PretrainConfig, bench: _BenchModel, accelerator, steps: int) -> list[float]:
    """Wall seconds of each of ``steps`` train steps on synthetic packed rows (one micro-batch each)."""
    from pretrain.train import train_step

    train = config.train
    stream = PackedStream(synthetic_corpus(bench.hf_config.vocab_size), train.seq_len, seed=0)
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        rows = stream.next_rows(train.micro_batch)
        train_step(
            accelerator,
            bench.model,
            bench.optimizer,
            bench.scheduler,
            rows,
            train.micro_batch,
            1,
            config.optim.grad_clip,
            bench.flatten,
        )
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds


def _benchmark_row(
    config: PretrainConfig,
    bench: _BenchModel,
    accelerator,
    seconds: list[float],
    mixed_precision: str,
    measured_peak: float | None,
) -> dict:
    """The benchmark's result: throughput, MFU, the measured memory peaks and the memory plan's terms."""
    from pretrain.memory_plan import launcher_sharding, plan_for_model

    train, hf_config = config.train, bench.hf_config
    cuda = accelerator.device.type == "cuda"
    tokens_per_step = train.micro_batch * train.seq_len
    tok_s = tokens_per_second(seconds, tokens_per_step)
    training_flops = flops_per_token(
        bench.matmul_parameters, hf_config.num_hidden_layers, hf_config.hidden_size, train.seq_len
    )
    peak = peak_flops(None, accelerator.device)
    sharding, world = launcher_sharding()
    plan = plan_for_model(
        config, hf_config, bench.parameters, world, sharding, bf16=mixed_precision == "bf16", cuda=cuda
    )
    return {
        "preset": config.model.preset,
        "parameters": bench.parameters,
        "attention": bench.model.config._attn_implementation,
        "precision": mixed_precision,
        "sharding": sharding,
        "world_size": world,
        "seq_len": train.seq_len,
        "micro_batch": train.micro_batch,
        "gradient_checkpointing": config.model.gradient_checkpointing,
        "tokens_per_step": tokens_per_step,
        "steps": len(seconds),
        "device": device_name(accelerator.device),
        "step_seconds": [round(s, 4) for s in seconds],
        "tokens_per_second": tok_s,
        "flops_per_token": training_flops,
        "mfu": mfu(tok_s, training_flops, peak),
        "peak_flops": peak,
        "mfu_vs_measured_matmul": mfu(tok_s, training_flops, measured_peak) if measured_peak else None,
        "peak_memory_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "peak_memory_reserved_bytes": torch.cuda.max_memory_reserved() if cuda else None,
        # Each term of the plan, to set beside the measured peaks (the allocator's peak excludes
        # the CUDA context: compare it with the plan without its fixed overhead).
        "memory_plan": plan.terms(),
        "memory_plan_bytes": plan.total,
        "memory_plan_without_overhead_bytes": plan.total - plan.overhead,
    }


def _print_benchmark(row: dict) -> None:
    utilisation, peak = row["mfu"], row["peak_flops"]
    print(
        f"{row['preset']:>5} ({row['parameters'] / 1e6:.0f}M params, {row['attention']}, {row['precision']}, "
        f"{row['micro_batch']}x{row['seq_len']} tokens/step, sharding {row['sharding']}): "
        f"{row['tokens_per_second']:,.0f} tokens/s, "
        f"MFU {'n/a' if utilisation is None else f'{100 * utilisation:.1f}%'} "
        f"(peak {f'{peak:.3g}' if peak else 'unknown'} FLOP/s, {row['device']})",
        flush=True,
    )


def synthetic_corpus(vocab: int) -> TokenizedCorpus:
    """Documents of 50 to 3,000 random tokens: several per row, some split across rows."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 3000, 4000)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = rng.integers(3, vocab, int(offsets[-1])).astype(np.uint32)
    return TokenizedCorpus(tokens, np.zeros(len(tokens), dtype=np.uint8), offsets)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pretrain.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per timed run (CPU)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs; the best is reported")
    parser.add_argument(
        "--cuda-models",
        nargs="*",
        default=["150m", "0.6b"],
        choices=["150m", "0.6b", "1b", "2.5b"],
        help="model presets for the CUDA benchmark (ignored without a GPU)",
    )
    parser.add_argument("--cuda-steps", type=int, default=20, help="steps per CUDA model")
    parser.add_argument("--cuda-seq-len", type=int, default=4096, help="row length for the CUDA benchmark")
    parser.add_argument("--cuda-micro-batch", type=int, default=4, help="rows per step for the CUDA benchmark")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pretrain-bench-") as tmp:
        cpu_benchmarks(Path(tmp), args.steps, args.repeats)
    if torch.cuda.is_available():
        print("\n== CUDA: the stage's train step, bf16 ==")
        for preset in args.cuda_models:
            cuda_benchmark(preset, args.cuda_steps, args.cuda_seq_len, args.cuda_micro_batch)
    else:
        print("\n(no CUDA device: the bf16 tokens/s and MFU figures for 150M and 0.6B models were not run)")


if __name__ == "__main__":
    main()
