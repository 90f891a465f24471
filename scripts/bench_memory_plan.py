"""The memory plan (pretrain/memory_plan.py) against the measured peak of a CPU training run.

    python scripts/bench_memory_plan.py [--tolerance 0.35]

Two optimizer steps of a small OLMo-2 model on CPU in fp32, with the pretrain stage's own
optimizer and packed forward, run in a fresh process per shape; the peak resident memory
above what the process held before building the model is compared with the plan. A tiny
reference run is subtracted from both the measured and the planned peak: what a process
holds besides the training state (libraries, first-use buffers, which vary with the
machine) cancels, and the difference is the model's. Printed per setting (activations
saved, and gradient checkpointing): the plan, the measured MiB over the reference, and the
ratio estimate/measured. Exits 1 when a ratio is further than ``--tolerance`` from 1.

It measures the machine, so it is a benchmark and not a test: on a busy machine the spread
grows. Measured ratios on an idle 2-core machine: 1.01-1.08 without checkpointing, 1.13-1.29
with it (the plan counts each checkpointed layer's recomputed activations in full).
Takes about a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pretrain.memory_plan import MemoryInputs, MemoryPlan, estimate  # noqa: E402

# (hidden, intermediate, layers, vocab, rows, seq_len): the measured shape and the tiny reference.
SHAPE = (256, 1024, 4, 4096, 4, 256)
REFERENCE_SHAPE = (32, 64, 1, 4096, 1, 16)

MEASURE = r"""
import json, resource, sys, threading
import numpy as np, torch
from transformers import AutoModelForCausalLM, Olmo2Config
from pretrain.config import PretrainConfig, TrainSection
from pretrain.packing import forward_packed, pack_sequences
from pretrain.train import make_optimizer
torch.set_num_threads(1)
h, i, layers, vocab, rows, seq, ckpt = json.loads(sys.argv[1])
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
docs = [np.random.default_rng(k).integers(3, vocab, 200).tolist() for k in range(rows * seq // 200 + 1)]
batch = pack_sequences(docs, seq)
batch = batch.select(slice(0, rows)).to_model_inputs("cpu")
def build(h, i, layers, vocab):
    config = Olmo2Config(vocab_size=vocab, hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=seq)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
warm = build(32, 64, 1, vocab)  # the runtime's own first-use allocations (autograd, oneDNN) before the baseline
forward_packed(warm, batch).loss.backward()
del warm
# The peak is sampled from the same counter as the baseline, during the steps only: the process's lifetime
# high-water mark (ru_maxrss) may have been set earlier, by imports or the warm-up, and then never moves.
before = rss()
peak = before
sampling = True
def sample():
    global peak
    while sampling:
        peak = max(peak, rss())
sys.setswitchinterval(1e-4)  # torch releases the GIL inside its kernels; the sampler gets to run often
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
model = build(h, i, layers, vocab)
if ckpt:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.train()
optimizer = make_optimizer(model, PretrainConfig(train=TrainSection(max_steps=1)))
for _ in range(2):
    loss = forward_packed(model, batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    del loss
sampling = False
sampler.join()
peak = max(peak, rss())
print(json.dumps({"peak_bytes": peak - before, "parameters": sum(p.numel() for p in model.parameters())}))
"""


def measure(shape: tuple[int, ...], checkpointing: bool) -> dict:
    """Peak bytes over the baseline and the parameter count of one run, in a fresh process."""
    env = {
        "OMP_NUM_THREADS": "1",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        # One malloc arena: how threads interleave on a busy machine then cannot change how much the heap fragments.
        "MALLOC_ARENA_MAX": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps([*shape, checkpointing])],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def planned(shape: tuple[int, ...], checkpointing: bool, parameters: int) -> MemoryPlan:
    h, i, layers, vocab, rows, seq = shape
    return estimate(
        MemoryInputs(
            parameters=parameters,
            trainable_parameters=parameters,
            num_layers=layers,
            hidden_size=h,
            intermediate_size=i,
            vocab_size=vocab,
            tokens_per_micro_batch=rows * seq,
            gradient_checkpointing=checkpointing,
        )
    )


def compare(checkpointing: bool) -> float:
    """Print the plan and the measured peak over the reference run; return estimate / measured."""
    big, small = measure(SHAPE, checkpointing), measure(REFERENCE_SHAPE, checkpointing)
    measured = big["peak_bytes"] - small["peak_bytes"]
    plan = planned(SHAPE, checkpointing, big["parameters"])
    estimate_bytes = plan.total - planned(REFERENCE_SHAPE, checkpointing, small["parameters"]).total
    ratio = estimate_bytes / measured
    setting = "checkpointed" if checkpointing else "saved"
    print(
        f"{setting}: {plan.describe()}; measured {measured / 2**20:.0f} MiB over the reference, "
        f"planned {estimate_bytes / 2**20:.0f} MiB, estimate/measured {ratio:.2f}",
        flush=True,
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tolerance", type=float, default=0.35, help="largest accepted |estimate/measured - 1| (exit 1 beyond it)"
    )
    args = parser.parse_args(argv)
    ratios = [compare(checkpointing) for checkpointing in (False, True)]
    outside = [r for r in ratios if abs(r - 1) > args.tolerance]
    print(f"ratios {', '.join(f'{r:.2f}' for r in ratios)}; {len(outside)} outside 1 +- {args.tolerance}")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
