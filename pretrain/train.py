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

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM
from transformers.utils import is_flash_attn_2_available

from pretrain import checkpoint as ckpt
from pretrain.config import PretrainConfig
from pretrain.memory_plan import MemoryInputs, MemoryPlan, check_plan, estimate, launcher_sharding
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
    done = read_manifest(out)
    if done is not None and done.get("config_fingerprint") == config_fingerprint(config):
        problems = verify_outputs(out, done)
        if not problems:
            logger.info(f"pretrain: {out} is already complete for this config (delete its manifest.json to retrain)")
            c = done["counts"]
            return TrainResult(out, True, c["steps"], c["tokens_per_step"], c["steps"], c["steps"], counters=c)
        if is_main_rank():
            set_aside_manifest(out)
        logger.info(
            f"pretrain: {out} has a manifest but its outputs do not match it ({'; '.join(problems)}); "
            "its manifest is set aside and the run resumes from its latest checkpoint"
        )

    accelerator = make_accelerator(config, out)
    world = accelerator.num_processes
    identity = resume_identity(config, world)
    resume_from = ckpt.checkpoint_to_resume(config.train.resume, out)
    if resume_from is not None:  # before any work: a refused resume should not cost a corpus build
        check_resume_identity(resume_from, identity)
    set_seed(config.train.seed)
    if accelerator.device.type == "cpu":
        torch.set_num_threads(config.train.cpu_threads)
    main = accelerator.is_main_process

    with accelerator.main_process_first():  # the main process builds, the others load what it saved
        tokenizer = prepare_tokenizer(config.tokenizer, lambda: chunk_texts(config))
        cache_dir = Path(config.data.cache_dir) if config.data.cache_dir else out / "data"
        corpus = build_corpus(
            config.data, tokenizer, config.tokenizer.add_bos, cache_dir, corpus_key(config.data, config.tokenizer.path)
        )

    t = config.train
    rows_per_process = t.micro_batch * t.grad_accum
    tokens_per_step = rows_per_process * world * t.seq_len
    total_steps = t.max_steps if t.max_steps is not None else t.train_tokens // tokens_per_step
    if total_steps < 1:
        raise ValueError(f"train.train_tokens={t.train_tokens} is less than one step of {tokens_per_step} tokens")

    set_seed(config.train.seed)  # the initial weights depend on the seed only
    model = build_model(config, tokenizer, accelerator.device)
    # Every rank checks (the same estimate), so a refusal stops them all; the main one prints.
    check_plan(
        memory_plan(config, model, accelerator),
        t.memory_plan,
        "train.memory_plan",
        "lower train.micro_batch (raise train.grad_accum to keep the batch) or set model.gradient_checkpointing=true",
        print_fn=accelerator.print,
    )
    n_params = parameter_count(model)
    fpt = flops_per_token(matmul_parameters(model), model.config.num_hidden_layers, model.config.hidden_size, t.seq_len)
    flatten = uses_varlen_flash(model.config)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config.schedule, total_steps)
    configure_deepspeed(accelerator, config)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    stream = PackedStream(
        corpus,
        t.seq_len,
        seed=t.seed,
        shuffle=config.data.shuffle,
        pad_id=tokenizer.pad_token_id,
        rows_start_at_chunks=config.data.rows_start_at_chunks,
    )
    start_step = 0
    if resume_from is not None:
        state = ckpt.load_checkpoint(accelerator, resume_from)
        stream.load_state_dict(state["stream"])
        start_step = state["step"]
        if main:
            logger.info(f"pretrain: resumed from {resume_from} at step {start_step}")
    if main:  # rows a killed run logged after its last checkpoint are logged again below
        dropped = truncate_metrics(out, start_step)
        if dropped:
            logger.info(
                f"pretrain: removed {dropped} rows of metrics.jsonl logged after step {start_step} "
                "(they are logged again as the steps are redone)"
            )
    end_step = total_steps if t.stop_after_steps is None else min(total_steps, t.stop_after_steps)

    if config.logging.report_to:
        accelerator.init_trackers(config.logging.project, config=flat_config(config))
    peak = peak_flops(config.logging.peak_flops, accelerator.device)
    if main:
        logger.info(
            f"pretrain: arm={config.data.arm} params={n_params / 1e6:.2f}M processes={world} "
            f"steps={total_steps} tokens/step={tokens_per_step:,} budget={total_steps * tokens_per_step:,} tokens "
            f"corpus={corpus.n_tokens:,} tokens/epoch ({corpus.info.get('annotation_tokens', 0):,} annotation)"
        )

    result = TrainResult(out, False, total_steps, tokens_per_step, start_step, end_step)
    rank = accelerator.process_index
    window = {"tokens": stream.counters.tokens, "seconds": 0.0, "losses": []}
    bar = tqdm(range(start_step, end_step), desc=f"pretrain ({config.data.arm})", disable=not main, unit="step")
    model.train()
    for step in bar:
        started = time.perf_counter()
        rows = stream.next_rows(rows_per_process * world).select(
            slice(rank * rows_per_process, (rank + 1) * rows_per_process)
        )
        step_loss, grad_norm = train_step(
            accelerator, model, optimizer, scheduler, rows, t.micro_batch, t.grad_accum, config.optim.grad_clip, flatten
        )
        check_finite(step + 1, step_loss, grad_norm, out)  # before anything of this step is saved
        seconds = time.perf_counter() - started
        result.losses.append(step_loss)
        result.step_seconds.append(seconds)
        window["seconds"] += seconds
        window["losses"].append(step_loss)

        done_steps = step + 1
        if done_steps % config.logging.log_every == 0 or done_steps == end_step:
            tokens = stream.counters.tokens - window["tokens"]
            tok_s = tokens / window["seconds"]
            metrics = {
                "train/loss": sum(window["losses"]) / len(window["losses"]),
                "train/lr": scheduler.get_last_lr()[0],
                "train/tokens_per_second": tok_s,
                "train/tokens": stream.counters.tokens,
                "train/annotation_token_share": stream.counters.annotation_tokens / max(1, stream.counters.tokens),
                "train/epochs": stream.counters.tokens / corpus.n_tokens,
                "train/packing_efficiency": stream.counters.packing_efficiency,
                "train/chunk_start_in_view_share": stream.counters.chunk_start_in_view_share or 0.0,
            }
            if stream.counters.annotation_in_view_share is not None:  # the anchored arm
                metrics["train/annotation_in_view_share"] = stream.counters.annotation_in_view_share
            if grad_norm is not None:
                metrics["train/grad_norm"] = grad_norm
            utilisation = mfu(tok_s / world, fpt, peak)
            if utilisation is not None:
                metrics["train/mfu"] = utilisation
            accelerator.log(metrics, step=done_steps)
            if main:
                append_metrics(out, done_steps, metrics)
                bar.write(format_metrics(done_steps, total_steps, metrics))
            window = {"tokens": stream.counters.tokens, "seconds": 0.0, "losses": []}

        save_now = t.checkpoint_every and done_steps % t.checkpoint_every == 0 and done_steps < total_steps
        if save_now or (done_steps == end_step < total_steps):
            ckpt.save_checkpoint(
                accelerator,
                out,
                done_steps,
                {"step": done_steps, "identity": identity, "stream": stream.state_dict()},
                t.keep_checkpoints,
            )
    bar.close()
    result.counters = stream.counters.as_dict()

    if end_step == total_steps:
        ckpt.export_hf_checkpoint(accelerator, model, tokenizer, out)
        if main:
            write_run_manifest(config, out, corpus, result, n_params, fpt, peak, world)
        result.finished = True
    accelerator.end_training()
    return result


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
            yield from (t or "" for t in batch["text"])
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
    n_params = parameter_count(model)
    return estimate(
        MemoryInputs(
            parameters=n_params,
            trainable_parameters=n_params,
            num_layers=model.config.num_hidden_layers,
            hidden_size=model.config.hidden_size,
            intermediate_size=model.config.intermediate_size,
            vocab_size=model.config.vocab_size,
            tokens_per_micro_batch=config.train.micro_batch * config.train.seq_len,
            world_size=world,
            sharding=sharding,
            bf16=accelerator.mixed_precision == "bf16",
            gradient_checkpointing=config.model.gradient_checkpointing,
            cuda=accelerator.device.type == "cuda",
        )
    )


def make_optimizer(model, config: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on weight matrices only (and on embeddings if optim.decay_embeddings)."""
    o = config.optim
    embedding = model.get_input_embeddings().weight
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        is_matrix = len(full_shape(param)) >= 2 and (param is not embedding or o.decay_embeddings)
        (decay if is_matrix else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)


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


def write_run_manifest(
    config: PretrainConfig,
    out: Path,
    corpus: TokenizedCorpus,
    result: TrainResult,
    n_params: int,
    fpt: float,
    peak: float | None,
    world: int,
) -> None:
    c = result.counters
    timed = result.step_seconds[1:] or result.step_seconds  # the first step includes warm-up work
    tok_s = result.tokens_per_step * len(timed) / sum(timed) if timed else None
    corpus_info = {k: v for k, v in corpus.info.items() if k != "key"}
    counts = {
        "steps": result.total_steps,
        "tokens_per_step": result.tokens_per_step,
        "processes": world,
        # What the run trained on, exactly (identical totals in both arms).
        "trained_tokens": c["tokens"],
        "annotation_tokens": c["annotation_tokens"],
        "content_tokens": c["content_tokens"],
        "loss_tokens": c["loss_tokens"],
        "sequence_slots": c["slots"],
        "packing_efficiency": c["packing_efficiency"],
        "documents_started": c["documents_started"],
        "documents_completed": c["documents_completed"],
        "document_pieces": c["pieces"],
        "pieces_cut_at_row_end": c["split_at_row_end"],
        # data.rows_start_at_chunks: slots left empty so that a chunk starts the next row whole.
        "padding_slots": c["padding_slots"],
        "chunks_moved_to_next_row": c["chunks_moved_to_next_row"],
        # Content tokens trained with their own chunk's start (annotation, in the anchored arm) earlier in
        # their piece; the annotation share is None in the plain arm.
        "content_tokens_chunk_start_in_view": c["content_tokens_chunk_start_in_view"],
        "chunk_start_in_view_share": c["chunk_start_in_view_share"],
        "content_tokens_annotation_in_view": c["content_tokens_annotation_in_view"],
        "annotation_in_view_share": c["annotation_in_view_share"],
        "epochs": c["tokens"] / corpus.n_tokens,
        "epochs_completed": c["epochs_completed"],
        "corpus_per_epoch": corpus_info,
        "parameters": n_params,
        # The last optimizer step's loss (metrics.jsonl's train/loss is a mean over each logging window).
        "final_loss": result.losses[-1] if result.losses else None,
        "final_loss_is": "the last optimizer step's loss (metrics.jsonl logs train/loss as a mean over logging windows)",
        # Annotation tokens replace content tokens at an equal budget: the share of this arm's tokens they
        # take, and the content tokens this arm saw fewer than the plain arm (0 in the plain arm).
        "annotation_share": c["annotation_tokens"] / max(1, c["tokens"]),
        "content_tokens_lost_to_annotations": c["annotation_tokens"],
    }
    logger.info(
        f"pretrain: arm={config.data.arm}: annotations are {100 * counts['annotation_share']:.1f}% of the "
        f"{c['tokens']:,} trained tokens; {c['annotation_tokens']:,} content tokens fewer than a plain arm "
        f"at the same budget ({c['content_tokens']:,} content tokens)"
    )
    throughput = {
        "tokens_per_second": tok_s,
        "flops_per_token": fpt,
        "peak_flops_per_device": peak,
        "mfu": mfu(tok_s / world, fpt, peak) if tok_s else None,
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
