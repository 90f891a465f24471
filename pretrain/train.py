"""The pretraining loop: ``accelerate launch -m pretrain CONFIG`` (or ``python -m pretrain CONFIG``).

One readable loop on top of accelerate, the same on one CPU process, several CPU
processes (gloo), DDP on GPUs, DeepSpeed ZeRO-2/3 and FSDP (configs/accelerate/):

1. the shared tokenizer and the arm's tokenized corpus (built once, cached);
2. the plan: tokens per step = seq_len * micro_batch * grad_accum * processes, and
   steps = train_tokens // tokens per step, identical for both arms;
3. an OLMo-2 model from its config, AdamW, warmup + cosine/WSD;
4. per step: the next rows of the packed stream (every process cuts the same global
   rows and takes its own), ``grad_accum`` forward/backward passes, clipping, one update;
5. logs (loss, lr, grad norm, tokens/s, MFU, annotation share, share of text that sees
   its annotation) to the console and the trackers; resumable states every
   ``checkpoint_every`` steps; at the end the HF checkpoint and ``manifest.json`` with
   the exact token counts.

Resume restores model, optimizer, scheduler, RNG and the stream position, so the losses
continue as if the run had never stopped (tests/pretrain/test_train.py checks it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM
from transformers.utils import is_flash_attn_2_available

from pretrain import checkpoint as ckpt
from pretrain.config import PretrainConfig, TrainSection
from pretrain.memory_plan import MemoryPlan, check_plan, launcher_sharding, plan_for_model
from pretrain.model_configs import (
    build_hf_config,
    matmul_parameters,
    padded_vocab_size,
    parameter_count,
    resolve_preset,
)
from pretrain.packing import PackedRows, PackedStream, forward_packed, uses_varlen_flash
from pretrain.schedule import make_scheduler
from pretrain.sequences import TokenizedCorpus, annotations_data_dir, build_corpus, corpus_key
from pretrain.throughput import flops_per_token, mfu, peak_flops
from pretrain.tokenizer import prepare_tokenizer, strip_delimiters
from stage_io.manifest import (
    config_fingerprint,
    read_manifest,
    set_aside_manifest,
    verify_outputs,
    weight_files,
    write_manifest,
)
from stage_io.records import RecordSource, load_records
from stage_io.run_identity import compare_identity, config_identity, flatten
from stage_io.run_lock import hold_lock, is_main_rank

logger = logging.getLogger(__name__)

# Keys that may change between an interrupted invocation and its resume.
RESUMABLE_CHANGES = (
    "output_dir",
    "data.cache_dir",
    "data.tokenize_batch_size",
    "train.resume",
    "train.stop_after_steps",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.cpu_threads",
    "train.memory_plan",
    "logging",
)


@dataclass
class TrainResult:
    output_dir: Path
    # True when the run reached its last step and wrote the HF checkpoint and manifest.
    finished: bool
    total_steps: int
    tokens_per_step: int
    # Optimizer steps done by this invocation: [start_step, end_step).
    start_step: int
    end_step: int
    # Per step of this invocation: the loss (mean over micro-batches and processes) and wall time.
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    # The data stream's cumulative counters (tokens, annotation tokens, documents, epochs, ...).
    counters: dict = field(default_factory=dict)


def run(config: PretrainConfig) -> TrainResult:
    with hold_lock(config.resolved_output_dir, "pretrain"):  # one writer per output directory
        return _run(config)


def _run(config: PretrainConfig) -> TrainResult:
    out = Path(config.resolved_output_dir)
    completed = completed_run(config, out)
    if completed is not None:
        return completed
    accelerator = make_accelerator(config, out)
    identity = resume_identity(config, accelerator.num_processes)
    resume_from = ckpt.checkpoint_to_resume(config.train.resume, out)
    if resume_from is not None:  # before any work: a refused resume should not cost a corpus build
        check_resume_identity(resume_from, identity)
    set_seed(config.train.seed)
    if accelerator.device.type == "cpu":
        torch.set_num_threads(config.train.cpu_threads)
    tokenizer, corpus = prepare_data(config, accelerator, out)
    steps = plan_steps(config.train, accelerator.num_processes)
    training = set_up_training(config, out, accelerator, tokenizer, corpus, steps, identity)
    start_step = restore_checkpoint(training, resume_from)
    end_step = steps.total if config.train.stop_after_steps is None else min(steps.total, config.train.stop_after_steps)
    announce_run(training)
    result = train_steps(training, start_step, end_step)
    if end_step == steps.total:
        ckpt.export_hf_checkpoint(accelerator, training.model, tokenizer, out)
        if accelerator.is_main_process:
            write_run_manifest(training, result)
        result.finished = True
    accelerator.end_training()
    return result


@dataclass
class StepPlan:
    """How a run's steps are cut: identical in both arms at one token budget."""

    # Rows each process trains per optimizer step (micro_batch * grad_accum).
    rows_per_process: int
    # Tokens per optimizer step over all processes.
    tokens_per_step: int
    # Optimizer steps of the whole run.
    total: int


def plan_steps(train: TrainSection, world: int) -> StepPlan:
    """Tokens per step = seq_len * micro_batch * grad_accum * processes; steps = train_tokens // tokens per step
    (or train.max_steps)."""
    rows_per_process = train.micro_batch * train.grad_accum
    tokens_per_step = rows_per_process * world * train.seq_len
    total = train.max_steps if train.max_steps is not None else train.train_tokens // tokens_per_step
    if total < 1:
        raise ValueError(f"train.train_tokens={train.train_tokens} is less than one step of {tokens_per_step} tokens")
    return StepPlan(rows_per_process, tokens_per_step, total)


@dataclass
class Training:
    """What the training loop works with, prepared by ``set_up_training``."""

    config: PretrainConfig
    out: Path
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    tokenizer: Any
    corpus: TokenizedCorpus
    stream: PackedStream
    steps: StepPlan
    # Stored in every checkpoint (resume_identity).
    identity: dict
    parameters: int
    # Training FLOPs per token and the device's peak FLOP/s (None: unknown), for the MFU.
    flops_per_token: float
    peak_flops: float | None
    # Packed rows go to the model flattened (varlen flash attention) rather than as a padded batch.
    flatten: bool


def completed_run(config: PretrainConfig, out: Path) -> TrainResult | None:
    """The result of a run already complete in ``out`` for this config, or None. A manifest whose outputs
    do not match it is set aside, and the run resumes from its latest checkpoint."""
    done = read_manifest(out)
    if done is None or done.get("config_fingerprint") != config_fingerprint(config):
        return None
    problems = verify_outputs(out, done)
    if not problems:
        logger.info(f"pretrain: {out} is already complete for this config (delete its manifest.json to retrain)")
        counts = done["counts"]
        steps = counts["steps"]
        return TrainResult(out, True, steps, counts["tokens_per_step"], steps, steps, counters=counts)
    if is_main_rank():
        set_aside_manifest(out)
    logger.info(
        f"pretrain: {out} has a manifest but its outputs do not match it ({'; '.join(problems)}); "
        "its manifest is set aside and the run resumes from its latest checkpoint"
    )
    return None


def prepare_data(config: PretrainConfig, accelerator: Accelerator, out: Path) -> tuple[Any, TokenizedCorpus]:
    """The shared tokenizer and the arm's tokenized corpus: the main process builds them, the others
    load what it saved."""
    with accelerator.main_process_first():
        tokenizer = prepare_tokenizer(config.tokenizer, lambda: chunk_texts(config))
        cache_dir = Path(config.data.cache_dir) if config.data.cache_dir else out / "data"
        key = corpus_key(config.data, config.tokenizer.path)
        corpus = build_corpus(config.data, tokenizer, config.tokenizer.add_bos, cache_dir, key)
    return tokenizer, corpus


def set_up_training(
    config: PretrainConfig,
    out: Path,
    accelerator: Accelerator,
    tokenizer,
    corpus: TokenizedCorpus,
    steps: StepPlan,
    identity: dict,
) -> Training:
    """The model (its memory plan checked first), optimizer and schedule prepared by accelerate, and the
    packed data stream at its start."""
    train = config.train
    set_seed(train.seed)  # the initial weights depend on the seed only
    model = build_model(config, tokenizer, accelerator.device)
    # Every rank checks (the same estimate), so a refusal stops them all; the main one prints.
    check_plan(
        memory_plan(config, model, accelerator),
        train.memory_plan,
        "train.memory_plan",
        "lower train.micro_batch (raise train.grad_accum to keep the batch) or set model.gradient_checkpointing=true",
        print_fn=accelerator.print,
    )
    parameters = parameter_count(model)
    layers, width = model.config.num_hidden_layers, model.config.hidden_size
    training_flops = flops_per_token(matmul_parameters(model), layers, width, train.seq_len)
    flatten = uses_varlen_flash(model.config)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config.schedule, steps.total)
    configure_deepspeed(accelerator, config)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    stream = PackedStream(
        corpus,
        train.seq_len,
        seed=train.seed,
        shuffle=config.data.shuffle,
        pad_id=tokenizer.pad_token_id,
        rows_start_at_chunks=config.data.rows_start_at_chunks,
    )
    return Training(
        config=config,
        out=out,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        tokenizer=tokenizer,
        corpus=corpus,
        stream=stream,
        steps=steps,
        identity=identity,
        parameters=parameters,
        flops_per_token=training_flops,
        peak_flops=peak_flops(config.logging.peak_flops, accelerator.device),
        flatten=flatten,
    )


def restore_checkpoint(training: Training, resume_from: Path | None) -> int:
    """Load ``resume_from`` (model, optimizer, scheduler, RNG, stream position) and drop the metrics
    rows a killed run logged after it; returns the step training starts at."""
    start_step = 0
    main = training.accelerator.is_main_process
    if resume_from is not None:
        state = ckpt.load_checkpoint(training.accelerator, resume_from)
        training.stream.load_state_dict(state["stream"])
        start_step = state["step"]
        if main:
            logger.info(f"pretrain: resumed from {resume_from} at step {start_step}")
    if main:  # rows a killed run logged after its last checkpoint are logged again as the steps are redone
        dropped = truncate_metrics(training.out, start_step)
        if dropped:
            logger.info(
                f"pretrain: removed {dropped} rows of metrics.jsonl logged after step {start_step} "
                "(they are logged again as the steps are redone)"
            )
    return start_step


def announce_run(training: Training) -> None:
    """Start the trackers and print the run's size (main process)."""
    config, accelerator = training.config, training.accelerator
    if config.logging.report_to:
        accelerator.init_trackers(config.logging.project, config=flat_config(config))
    if not accelerator.is_main_process:
        return
    steps, corpus = training.steps, training.corpus
    logger.info(
        f"pretrain: arm={config.data.arm} params={training.parameters / 1e6:.2f}M "
        f"processes={accelerator.num_processes} steps={steps.total} tokens/step={steps.tokens_per_step:,} "
        f"budget={steps.total * steps.tokens_per_step:,} tokens "
        f"corpus={corpus.n_tokens:,} tokens/epoch ({corpus.info.get('annotation_tokens', 0):,} annotation)"
    )


@dataclass
class LogWindow:
    """The steps since the last log line: their losses, wall time and the stream's token count at the start."""

    tokens: int
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


def train_steps(training: Training, start_step: int, end_step: int) -> TrainResult:
    """Optimizer steps ``[start_step, end_step)``: each on this process's share of the next global rows,
    logged every ``logging.log_every`` steps, with a resumable state every ``train.checkpoint_every``."""
    config, accelerator, stream, steps = training.config, training.accelerator, training.stream, training.steps
    train = config.train
    result = TrainResult(training.out, False, steps.total, steps.tokens_per_step, start_step, end_step)
    window = LogWindow(stream.counters.tokens)
    main = accelerator.is_main_process
    bar = tqdm(range(start_step, end_step), desc=f"pretrain ({config.data.arm})", disable=not main, unit="step")
    training.model.train()
    for step in bar:
        started = time.perf_counter()
        step_loss, grad_norm = train_step(
            accelerator,
            training.model,
            training.optimizer,
            training.scheduler,
            process_rows(training),
            train.micro_batch,
            train.grad_accum,
            config.optim.grad_clip,
            training.flatten,
        )
        check_finite(step + 1, step_loss, grad_norm, training.out)  # before anything of this step is saved
        seconds = time.perf_counter() - started
        result.losses.append(step_loss)
        result.step_seconds.append(seconds)
        window.seconds += seconds
        window.losses.append(step_loss)
        done_steps = step + 1
        if done_steps % config.logging.log_every == 0 or done_steps == end_step:
            log_window(training, window, done_steps, grad_norm, bar)
            window = LogWindow(stream.counters.tokens)
        save_now = train.checkpoint_every and done_steps % train.checkpoint_every == 0 and done_steps < steps.total
        if save_now or (done_steps == end_step < steps.total):
            state = {"step": done_steps, "identity": training.identity, "stream": stream.state_dict()}
            ckpt.save_checkpoint(accelerator, training.out, done_steps, state, train.keep_checkpoints)
    bar.close()
    result.counters = stream.counters.as_dict()
    return result


def process_rows(training: Training) -> PackedRows:
    """This process's rows of the next step: every process cuts the same global rows and takes its own."""
    per_process = training.steps.rows_per_process
    rank = training.accelerator.process_index
    rows = training.stream.next_rows(per_process * training.accelerator.num_processes)
    return rows.select(slice(rank * per_process, (rank + 1) * per_process))


def log_window(training: Training, window: LogWindow, step: int, grad_norm: float | None, bar) -> None:
    """Log the window's metrics to the trackers and (main process) to metrics.jsonl and the console."""
    metrics = window_metrics(training, window, grad_norm)
    training.accelerator.log(metrics, step=step)
    if training.accelerator.is_main_process:
        append_metrics(training.out, step, metrics)
        bar.write(format_metrics(step, training.steps.total, metrics))


def window_metrics(training: Training, window: LogWindow, grad_norm: float | None) -> dict:
    """Loss, learning rate, throughput and the data stream's shares over one logging window."""
    counters = training.stream.counters
    tokens_per_second = (counters.tokens - window.tokens) / window.seconds
    metrics = {
        "train/loss": sum(window.losses) / len(window.losses),
        "train/lr": training.scheduler.get_last_lr()[0],
        "train/tokens_per_second": tokens_per_second,
        "train/tokens": counters.tokens,
        "train/annotation_token_share": counters.annotation_tokens / max(1, counters.tokens),
        "train/epochs": counters.tokens / training.corpus.n_tokens,
        "train/packing_efficiency": counters.packing_efficiency,
        "train/chunk_start_in_view_share": counters.chunk_start_in_view_share or 0.0,
    }
    if counters.annotation_in_view_share is not None:  # the anchored arm
        metrics["train/annotation_in_view_share"] = counters.annotation_in_view_share
    if grad_norm is not None:
        metrics["train/grad_norm"] = grad_norm
    world = training.accelerator.num_processes
    utilisation = mfu(tokens_per_second / world, training.flops_per_token, training.peak_flops)
    if utilisation is not None:
        metrics["train/mfu"] = utilisation
    return metrics


def train_step(
    accelerator: Accelerator,
    model,
    optimizer,
    scheduler,
    rows: PackedRows,
    micro_batch: int,
    grad_accum: int,
    grad_clip: float,
    flatten: bool,
) -> tuple[float, float | None]:
    """One optimizer step on this process's ``rows`` (micro_batch * grad_accum of them).

    Returns the loss (mean over micro-batches and processes) and the gradient norm
    before clipping (None when not clipping, or where the engine does not report it).
    """
    loss_sum = torch.zeros((), device=accelerator.device)
    grad_norm = None
    for micro in range(grad_accum):
        batch = rows.select(slice(micro * micro_batch, (micro + 1) * micro_batch))
        with accelerator.accumulate(model):
            loss = forward_packed(model, batch.to_model_inputs(accelerator.device, flatten)).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and grad_clip > 0:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()  # a no-op inside accumulation; DeepSpeed steps in backward
            if accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
    step_loss = accelerator.reduce(loss_sum / grad_accum, reduction="mean").item()
    return step_loss, (float(grad_norm) if grad_norm is not None else None)


def make_accelerator(config: PretrainConfig, out: Path) -> Accelerator:
    precision = config.train.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(
        # Without a GPU, accelerate only forms a multi-process (gloo) group when told it runs on CPU.
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=config.train.grad_accum,
        mixed_precision=precision,
        log_with=list(config.logging.report_to) or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        # The schedule counts optimizer steps; by default accelerate would step it once per process.
        step_scheduler_with_optimizer=False,
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:  # never let N processes each train alone
        raise RuntimeError(
            f"launched as {launched} processes but accelerate formed a group of "
            f"{accelerator.num_processes} ({accelerator.distributed_type})"
        )
    return accelerator


def configure_deepspeed(accelerator: Accelerator, config: PretrainConfig) -> None:
    """Fill the DeepSpeed json's "auto" values that accelerate cannot infer without a DataLoader."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = config.train.micro_batch
    ds["gradient_accumulation_steps"] = config.train.grad_accum
    ds["train_batch_size"] = config.train.micro_batch * config.train.grad_accum * accelerator.num_processes
    ds["gradient_clipping"] = config.optim.grad_clip


def chunk_texts(config: PretrainConfig):
    """The texts a trained BPE learns from, in annotate's order: each chunk's text, followed by its
    annotation's tags (delimiters removed: they are special tokens) when tokenizer.train_on_annotations."""
    with_annotations = config.tokenizer.train_on_annotations
    fields = ["text", "annotation"] if with_annotations else ["text"]
    ds = load_records(
        RecordSource(source=str(annotations_data_dir(config.data.annotations))), required_fields=tuple(fields)
    )
    limit = config.tokenizer.max_train_chunks
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    for batch in ds.select_columns(fields).iter(batch_size=4096):
        if not with_annotations:
            yield from (text or "" for text in batch["text"])
            continue
        for text, annotation in zip(batch["text"], batch["annotation"]):
            yield text or ""
            tags = strip_delimiters(annotation or "")
            if tags:  # chunks without an annotation (failed, skipped) add nothing
                yield tags


def attn_implementation(requested: str, device: torch.device) -> str:
    if requested != "auto":
        return requested
    if device.type == "cuda" and is_flash_attn_2_available():
        return "flash_attention_2"
    return "sdpa"


def build_model(config: PretrainConfig, tokenizer, device: torch.device):
    preset = resolve_preset(config.model)
    vocab = padded_vocab_size(len(tokenizer), config.model.pad_vocab_to_multiple)
    if preset.vocab_size is not None and vocab != preset.vocab_size:
        logger.info(
            f"pretrain: note: vocabulary {vocab} differs from the preset's {preset.vocab_size}; "
            "the parameter count differs from the nominal size accordingly"
        )
    hf_config = build_hf_config(
        config.model,
        vocab,
        config.train.seq_len,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(
        hf_config, attn_implementation=attn_implementation(config.model.attn_implementation, device)
    )
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def memory_plan(config: PretrainConfig, model, accelerator: Accelerator) -> MemoryPlan:
    """The estimated peak memory per device of this run's training step (pretrain.memory_plan)."""
    sharding, world = launcher_sharding()
    bf16, cuda = accelerator.mixed_precision == "bf16", accelerator.device.type == "cuda"
    return plan_for_model(config, model.config, parameter_count(model), world, sharding, bf16, cuda)


def make_optimizer(model, config: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on weight matrices only (and on embeddings if optim.decay_embeddings)."""
    optim = config.optim
    embedding = model.get_input_embeddings().weight
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        is_matrix = len(full_shape(param)) >= 2 and (param is not embedding or optim.decay_embeddings)
        (decay if is_matrix else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)


def full_shape(param) -> tuple[int, ...]:
    """A parameter's shape, also under ``deepspeed.zero.Init`` (ZeRO-3), where every
    parameter is an empty partition and the real shape is kept in ``ds_shape``."""
    shape = getattr(param, "ds_shape", None)
    return tuple(shape) if shape is not None else tuple(param.shape)


def resume_identity(config: PretrainConfig, world: int) -> dict:
    """What a resumed run must share with the run that saved the checkpoint: the config
    minus RESUMABLE_CHANGES, and the number of processes. Stored in every checkpoint's
    training state and compared flattened (checkpoints that stored the config nested
    compare the same)."""
    return {"config": config_identity(config, RESUMABLE_CHANGES), "processes": world}


def check_resume_identity(checkpoint: Path, identity: dict) -> None:
    """Refuse to resume ``checkpoint`` if it was saved under another config or number of processes."""
    saved = ckpt.read_training_state(checkpoint)["identity"]
    compare_identity(
        str(checkpoint),
        flatten(saved),
        flatten(identity),
        start_over="set train.resume=never (or use another output_dir) to start over",
    )


def flat_config(config: PretrainConfig) -> dict:
    """The config as flat scalars (TensorBoard's hparams take nothing nested)."""
    return {
        key: value if isinstance(value, (int, float, str, bool)) else str(value)
        for key, value in config_identity(config).items()
    }


def format_metrics(step: int, total: int, m: dict) -> str:
    line = (
        f"step {step}/{total} | loss {m['train/loss']:.4f} | lr {m['train/lr']:.2e} | "
        f"{m['train/tokens_per_second']:,.0f} tok/s"
    )
    if "train/grad_norm" in m:
        line += f" | grad norm {m['train/grad_norm']:.3f}"
    if "train/mfu" in m:
        line += f" | MFU {100 * m['train/mfu']:.1f}%"
    line += f" | annotation share {100 * m['train/annotation_token_share']:.1f}%"
    if "train/annotation_in_view_share" in m:
        line += f" (in view of {100 * m['train/annotation_in_view_share']:.0f}% of text)"
    return line + f" | epoch {m['train/epochs']:.2f}"


def truncate_metrics(out: Path, step: int) -> int:
    """Keep only ``metrics.jsonl`` rows up to ``step`` (where training restarts); returns how
    many rows were removed. A torn last line (a kill mid-write) is removed too."""
    path = out / "metrics.jsonl"
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row_step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            row_step = None
        if isinstance(row_step, int) and row_step <= step:
            kept.append(line + "\n")
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)
    return dropped


class NonFiniteTrainingError(RuntimeError):
    """The loss or gradient norm became NaN or infinite: the run diverged."""


def check_finite(step: int, loss: float, grad_norm: float | None, out: Path) -> None:
    """Stop a diverged run at once: no checkpoint, model or manifest is written after a NaN/inf."""
    if math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm)):
        return
    raise NonFiniteTrainingError(
        f"step {step}: the loss is {loss} and the gradient norm {grad_norm}: training diverged and was stopped; "
        f"nothing of this step was saved and {out} holds no model or manifest from it; lower optim.lr or set "
        "optim.grad_clip, then run again (it resumes from the last checkpoint, if any)"
    )


def json_safe(value):
    """``value`` with every NaN or infinite float replaced by None (null), as strict JSON needs."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def append_metrics(out: Path, step: int, metrics: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(json_safe({"step": step, **metrics}), allow_nan=False) + "\n")


def write_run_manifest(training: Training, result: TrainResult) -> None:
    """manifest.json: the exact token counts of what the run trained on, its throughput and its model."""
    config, out, world = training.config, training.out, training.accelerator.num_processes
    counts = run_counts(result, training.corpus, world, training.parameters)
    counters = result.counters
    logger.info(
        f"pretrain: arm={config.data.arm}: annotations are {100 * counts['annotation_share']:.1f}% of the "
        f"{counters['tokens']:,} trained tokens; {counters['annotation_tokens']:,} content tokens fewer than a plain arm "
        f"at the same budget ({counters['content_tokens']:,} content tokens)"
    )
    timed = result.step_seconds[1:] or result.step_seconds  # the first step includes warm-up work
    tokens_per_second = result.tokens_per_step * len(timed) / sum(timed) if timed else None
    throughput = {
        "tokens_per_second": tokens_per_second,
        "flops_per_token": training.flops_per_token,
        "peak_flops_per_device": training.peak_flops,
        "mfu": mfu(tokens_per_second / world, training.flops_per_token, training.peak_flops)
        if tokens_per_second
        else None,
    }
    write_manifest(
        out,
        stage="pretrain",
        config=config,
        inputs={"annotations": annotations_data_dir(config.data.annotations), "tokenizer": config.tokenizer.path},
        counts=counts,
        extra={
            "arm": config.data.arm,
            "throughput": throughput,
            "model": dataclasses.asdict(resolve_preset(config.model)),
        },
        outputs=weight_files(out),
    )


def run_counts(result: TrainResult, corpus: TokenizedCorpus, world: int, parameters: int) -> dict:
    """The manifest's counts: what the run trained on, exactly (identical totals in both arms)."""
    counters = result.counters
    corpus_info = {k: v for k, v in corpus.info.items() if k != "key"}
    return {
        "steps": result.total_steps,
        "tokens_per_step": result.tokens_per_step,
        "processes": world,
        # What the run trained on, exactly (identical totals in both arms).
        "trained_tokens": counters["tokens"],
        "annotation_tokens": counters["annotation_tokens"],
        "content_tokens": counters["content_tokens"],
        "loss_tokens": counters["loss_tokens"],
        "sequence_slots": counters["slots"],
        "packing_efficiency": counters["packing_efficiency"],
        "documents_started": counters["documents_started"],
        "documents_completed": counters["documents_completed"],
        "document_pieces": counters["pieces"],
        "pieces_cut_at_row_end": counters["split_at_row_end"],
        # data.rows_start_at_chunks: slots left empty so that a chunk starts the next row whole.
        "padding_slots": counters["padding_slots"],
        "chunks_moved_to_next_row": counters["chunks_moved_to_next_row"],
        # Content tokens trained with their own chunk's start (annotation, in the anchored arm) earlier in
        # their piece; the annotation share is None in the plain arm.
        "content_tokens_chunk_start_in_view": counters["content_tokens_chunk_start_in_view"],
        "chunk_start_in_view_share": counters["chunk_start_in_view_share"],
        "content_tokens_annotation_in_view": counters["content_tokens_annotation_in_view"],
        "annotation_in_view_share": counters["annotation_in_view_share"],
        "epochs": counters["tokens"] / corpus.n_tokens,
        "epochs_completed": counters["epochs_completed"],
        "corpus_per_epoch": corpus_info,
        "parameters": parameters,
        # The last optimizer step's loss (metrics.jsonl's train/loss is a mean over each logging window).
        "final_loss": result.losses[-1] if result.losses else None,
        "final_loss_is": "the last optimizer step's loss (metrics.jsonl logs train/loss as a mean over logging windows)",
        # Annotation tokens replace content tokens at an equal budget: the share of this arm's tokens they
        # take, and the content tokens this arm saw fewer than the plain arm (0 in the plain arm).
        "annotation_share": counters["annotation_tokens"] / max(1, counters["tokens"]),
        "content_tokens_lost_to_annotations": counters["annotation_tokens"],
    }
