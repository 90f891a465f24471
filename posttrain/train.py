"""The posttrain stage: SFT of a pretrained checkpoint with TRL's ``SFTTrainer``.

``run(config)``: read the SFT records, build per-arm examples (``posttrain.examples``:
token ids + label mask), hand them to ``SFTTrainer`` as a pre-tokenized dataset
(``input_ids`` + ``completion_mask`` with ``completion_only_loss=True``: TRL turns the
mask into labels, -100 where the mask is 0, and trains exactly those tokens; a test
checks the collated labels token by token), train, and write to ``output_dir``:

- the final HF checkpoint (config + safetensors + generation config) and the tokenizer;
  with LoRA the adapter is merged into the base weights there, and the adapter itself
  is kept in ``adapter/``;
- ``checkpoints/``: resumable Trainer checkpoints every ``training.save_steps`` steps,
  TensorBoard logs under ``checkpoints/runs/``, and ``run.json``, the run identity of the
  config that trained them (``check_run_identity`` below: a changed config is refused
  before any work instead of resuming them);
- ``validation.json``: the held-out split's response loss (``posttrain.validation``;
  ``data.validation_fraction`` of the examples, by a hash of their id, never trained), also
  in the manifest's counts; TRL evaluates that split every ``training.eval_steps`` steps and
  at the end (``eval_loss`` in ``log_history.json``);
- ``log_history.json`` (the Trainer's logged losses), ``example_issues.jsonl`` (every
  skipped record and every invalid annotation, with its reason), ``manifest.json``
  (counts: records in, trained by kind, skipped by reason, keys-only, trained tokens).

Runs under ``accelerate launch -m posttrain CONFIG`` with the same accelerate/DeepSpeed
configs as pretraining (``configs/accelerate/``): the Trainer reads the launcher's
environment. Every process builds the examples (deterministically); only the main
process writes files. The LoRA merge reloads the base model and the saved adapter on
the main process, so it also works when training sharded the weights (ZeRO-3); it runs
with transformers' ZeRO-3 switch off (``zero3_loading_disabled``), else rank 0's
``from_pretrained`` would enter ZeRO-3 collectives that the other ranks, waiting at the
barrier, never join (a hang). Under FSDP the state dict is switched to FULL before the
final save (``full_state_dict_for_save``): with SHARDED_STATE_DICT ``Trainer.save_model``
writes no weights at all, and a run must never write its manifest without them
(``check_weights_written``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from posttrain.annotation_match import check_annotation_match
from posttrain.config import PosttrainConfig
from posttrain.examples import BuiltExamples, SFTExample, build_examples
from posttrain.replay import add_replay, load_replay
from posttrain.sft_records import load_sft_rows
from posttrain.validation import AnnotationSampling, annotation_sampling, validation_report, write_validation
from pretrain.memory_plan import MemoryInputs, MemoryPlan, check_plan, estimate, launcher_sharding
from stage_io.file_integrity import tree_problems
from stage_io.hf_files import make_tokenizer_config_portable
from stage_io.manifest import weight_files, write_manifest
from stage_io.model_paths import check_model, check_tokenizer
from stage_io.run_identity import (
    RUN_FILE,
    RunIdentityError,
    check_run_identity,
    config_identity,
    read_identity,
    write_identity,
)
from stage_io.run_lock import hold_lock, is_main_rank

logger = logging.getLogger(__name__)

ISSUES_FILE = "example_issues.jsonl"
LOG_HISTORY_FILE = "log_history.json"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
# Written last into a Trainer checkpoint.
TRAINER_STATE = "trainer_state.json"
# Prefix of a checkpoint folder set aside as damaged.
BROKEN_PREFIX = "broken-"
# Keys that may change between an interrupted run and its resume, because what is trained does
# not depend on them: where and how often things are written (output_dir, save and logging
# cadence, report_to), whether to resume, CPU threads and loader workers, and activation
# checkpointing (memory traded for compute, same gradients), whether the memory plan is enforced,
# and how the held-out loss_marginal is estimated (scored after training, never trained on).
# Everything else (model, data, arm, masking, every optimisation and schedule setting, max_steps
# and epochs, which set the schedule's length) is the run identity; to train longer, fine-tune
# the finished model anew.
RESUMABLE_KEYS = (
    "output_dir",
    "report_to",
    "training.resume_from_checkpoint",
    "training.save_steps",
    "training.save_total_limit",
    "training.logging_steps",
    "training.dataloader_num_workers",
    "training.torch_threads",
    "training.gradient_checkpointing",
    "training.memory_plan",
    "data.validation_annotation_samples",
    "data.validation_annotation_max_tokens",
)


def run(config: PosttrainConfig) -> Path:
    with hold_lock(config.output_dir, "posttrain"):  # one writer per output directory
        return _run(config)


def _run(config: PosttrainConfig) -> Path:
    check_inputs(config)
    if config.training.torch_threads is not None:
        torch.set_num_threads(config.training.torch_threads)
    resume = resume_checkpoint(config)  # checked before any work
    check_run_identity_of_checkpoints(config)
    annotation_match = None
    if config.arm == "anchored" and config.data.annotations:
        annotation_match = check_annotation_match(config.model_path, config.data.annotations)
        logger.info(f"posttrain: annotations vs pretraining: {annotation_match}")
    tokenizer = load_tokenizer(config)
    rows = load_sft_rows(config.data, need_annotations=config.arm == "anchored")
    built = build_examples(rows, tokenizer, config, total=len(rows))
    if config.data.replay_chunks:
        add_replay(built, *load_replay(config, tokenizer))
    check_memory(config)
    trainer = make_trainer(config, tokenizer, built.examples, built.validation)
    result = trainer.train(resume_from_checkpoint=resume)
    validation = evaluate_held_out(trainer, config, tokenizer, built)
    save_final(trainer, config, tokenizer)
    if trainer.is_world_process_zero():
        write_run_files(trainer, config, built, validation)
        write_run_manifest(trainer, config, built, validation, result, annotation_match)
    return Path(config.output_dir)


def check_memory(config: PosttrainConfig) -> None:
    """Refuse (or warn about) a run whose memory plan exceeds the device. Every rank checks (the same
    estimate), so a refusal stops them all; rank 0 prints."""
    check_plan(
        memory_plan(config, AutoConfig.from_pretrained(config.model_path)),
        config.training.memory_plan,
        "training.memory_plan",
        "lower training.per_device_batch_size (raise training.grad_accum to keep the batch) or set "
        "training.gradient_checkpointing=true",
        print_fn=print if int(os.environ.get("RANK", "0")) == 0 else (lambda _line: None),
    )


def write_run_files(trainer: SFTTrainer, config: PosttrainConfig, built: BuiltExamples, validation: dict) -> None:
    """The skipped examples' issues, the trainer's log history and validation.json."""
    out = Path(config.output_dir)
    with open(out / ISSUES_FILE, "w", encoding="utf-8") as handle:
        for issue in built.issues:
            handle.write(json.dumps(issue, ensure_ascii=False) + "\n")
    (out / LOG_HISTORY_FILE).write_text(json.dumps(trainer.state.log_history, indent=1) + "\n", encoding="utf-8")
    write_validation(out, validation)


def write_run_manifest(
    trainer: SFTTrainer,
    config: PosttrainConfig,
    built: BuiltExamples,
    validation: dict,
    result: Any,
    annotation_match: dict | None,
) -> None:
    """manifest.json: the inputs, the example counts, the losses and the trained weights' fingerprints."""
    out = Path(config.output_dir)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    inputs: dict[str, Any] = {
        "model": config.model_path,
        "data": config.data.annotations or config.data.source.source,
    }
    if config.tokenizer_path:
        inputs["tokenizer"] = config.tokenizer_path
    if config.data.replay_annotations and config.data.replay_chunks:
        inputs["replay"] = config.data.replay_annotations
    write_manifest(
        out,
        stage="posttrain",
        config=config,
        inputs=inputs,
        counts={
            **built.counts,
            "optimizer_steps": trainer.state.global_step,
            "epochs": config.training.epochs,
            "validation_loss": validation["loss"],
            "validation_loss_no_annotation": validation["loss_no_annotation"],
            "validation_loss_marginal": validation["loss_marginal"],
        },
        extra={
            "train": {
                "first_loss": losses[0] if losses else None,
                "final_loss": losses[-1] if losses else None,
                "train_loss": result.training_loss,
                "runtime_s": result.metrics.get("train_runtime"),
                "loss_definitions": {
                    "first_loss": "the first logged loss (step 1)",
                    "final_loss": "the last logged loss (a mean over the last "
                    "logging_steps steps, as in log_history.json)",
                    "train_loss": "the mean loss over the whole run (TRL's)",
                },
            },
            "lora_adapter": str(out / ADAPTER_DIR) if config.lora.enabled else None,
            "annotation_match": annotation_match,
        },
        outputs=weight_files(out),
    )


def evaluate_held_out(
    trainer: SFTTrainer, config: PosttrainConfig, tokenizer: Any, built: BuiltExamples
) -> dict[str, Any]:
    """The held-out split after training: TRL's eval loss logged once more at the last step (unless
    training.eval_steps just logged it), and ``validation.json``'s two response losses."""
    if built.validation:
        history = trainer.state.log_history
        if not any("eval_loss" in e and e.get("step") == trainer.state.global_step for e in history):
            trainer.evaluate()
    return validation_report(
        trainer.model,
        built.validation,
        config.arm,
        tokenizer.pad_token_id,
        trainer.args.device,
        config.training.per_device_batch_size,
        config.training.bf16,
        marginal_rules(config, tokenizer),
    )


def marginal_rules(config: PosttrainConfig, tokenizer: Any) -> AnnotationSampling | None:
    """How validation's loss_marginal samples annotations (None for the plain arm)."""
    if config.arm != "anchored":
        return None
    return annotation_sampling(
        tokenizer,
        config.prompt_format.end_of_turn_text(tokenizer),
        config.data.validation_annotation_samples,
        config.data.validation_annotation_max_tokens,
    )


def check_inputs(config: PosttrainConfig) -> None:
    """The model and tokenizer exist and are what they claim, the model's positions cover
    ``max_seq_len`` (longer examples would train on positions it has no embedding for), and
    ``training.sft_extra`` names only SFTConfig fields the config does not set."""
    check_sft_extra(config)
    check_model(config.model_path, "model_path")
    if config.tokenizer_path:
        check_tokenizer(config.tokenizer_path, "tokenizer_path")
    else:
        check_tokenizer(config.model_path, "model_path (its tokenizer; set tokenizer_path if it has none)")
    model_config = AutoConfig.from_pretrained(config.model_path)
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions is not None and config.max_seq_len > positions and not config.train_past_positions:
        raise ValueError(
            f"max_seq_len={config.max_seq_len} exceeds the {positions} positions of {config.model_path} "
            f"(max_position_embeddings); set max_seq_len <= {positions}, or train_past_positions=true "
            "to train on positions the model never saw"
        )


def memory_plan(config: PosttrainConfig, model_config: Any) -> MemoryPlan:
    """Estimated peak memory per device of one SFT step (pretrain.memory_plan, shared with pretraining):
    rows padded to max_seq_len; with LoRA the adapter's gradients and optimizer states are left out (<1%)."""
    from pretrain.model_configs import count_parameters_meta

    sharding, world = launcher_sharding()
    n_params = count_parameters_meta(model_config)
    training = config.training
    return estimate(
        MemoryInputs(
            parameters=n_params,
            trainable_parameters=0 if config.lora.enabled else n_params,
            num_layers=model_config.num_hidden_layers,
            hidden_size=model_config.hidden_size,
            intermediate_size=model_config.intermediate_size,
            vocab_size=model_config.vocab_size,
            tokens_per_micro_batch=training.per_device_batch_size * config.max_seq_len,
            world_size=world,
            sharding=sharding,
            bf16=training.bf16,
            gradient_checkpointing=training.gradient_checkpointing,
            extra_logit_bytes=4,
            cuda=torch.cuda.is_available(),
        )
    )


def load_tokenizer(config: PosttrainConfig) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_path or config.model_path)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{config.tokenizer_path or config.model_path}: a fast tokenizer is needed (offsets mapping)")
    if tokenizer.pad_token is None:  # padding is never trained on; eos is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.model_max_length < config.max_seq_len:
        # The tokenizer carries the pretraining context length; SFT examples up to max_seq_len are cut at
        # max_seq_len by build_examples, not by the tokenizer, so its "sequence length is longer than the
        # specified maximum" warning on every run would be noise. Said once, here, with what it means.
        logger.info(
            f"posttrain: max_seq_len={config.max_seq_len} is longer than the model's pretraining context "
            f"({tokenizer.model_max_length} tokens): positions beyond it were never trained (RoPE extrapolates); "
            "set max_seq_len to at most that to stay within it"
        )
        tokenizer.model_max_length = config.max_seq_len
    return tokenizer


def examples_dataset(examples: list[SFTExample]) -> datasets.Dataset:
    """The pre-tokenized dataset TRL trains on: ids and the mask it turns into labels."""
    return datasets.Dataset.from_dict(
        {
            "input_ids": [e.input_ids for e in examples],
            "completion_mask": [e.label_mask for e in examples],
        }
    )


# SFTConfig fields this stage sets, and the key that sets them (training.sft_extra may not set them
# again: one place per setting). "the stage" marks fields fixed by how the stage works.
SFT_FIELDS_SET = {
    "output_dir": "output_dir",
    "num_train_epochs": "training.epochs",
    "max_steps": "training.max_steps",
    "per_device_train_batch_size": "training.per_device_batch_size",
    "gradient_accumulation_steps": "training.grad_accum",
    "learning_rate": "training.learning_rate",
    "lr_scheduler_type": "training.scheduler",
    "warmup_steps": "training.warmup",
    "warmup_ratio": "training.warmup",
    "weight_decay": "training.weight_decay",
    "max_grad_norm": "training.max_grad_norm",
    "seed": "training.seed",
    "data_seed": "training.seed",
    "save_strategy": "training.save_steps",
    "save_steps": "training.save_steps",
    "save_total_limit": "training.save_total_limit",
    "logging_steps": "training.logging_steps",
    "logging_first_step": "training.logging_steps",
    "report_to": "report_to",
    "bf16": "training.bf16",
    "dataloader_num_workers": "training.dataloader_num_workers",
    "gradient_checkpointing": "training.gradient_checkpointing",
    "activation_checkpointing": "training.gradient_checkpointing",
    "max_length": "max_seq_len",
    "packing": "training.packing",
    "packing_strategy": "training.packing",
    "padding_free": "training.packing",
    "eval_strategy": "training.eval_steps",
    "eval_steps": "training.eval_steps",
    "per_device_eval_batch_size": "training.per_device_batch_size",
    "completion_only_loss": "the stage (the label mask is the loss mask)",
    "model_init_kwargs": "the stage (fp32 master weights)",
    "dataloader_pin_memory": "the stage (on when CUDA is available)",
    "prediction_loss_only": "the stage (evaluation reports the loss)",
    "logging_nan_inf_filter": "the stage (a diverged run must be seen and stopped)",
}


def check_sft_extra(config: PosttrainConfig) -> None:
    """``training.sft_extra`` names only SFTConfig fields that the config does not already set."""
    fields = SFTConfig.__dataclass_fields__
    for key in config.training.sft_extra:
        if key in SFT_FIELDS_SET:
            raise ValueError(f"training.sft_extra.{key}: set by {SFT_FIELDS_SET[key]}, not through sft_extra")
        if key not in fields or not fields[key].init:
            raise ValueError(f"training.sft_extra.{key}: not a field of TRL's SFTConfig")


def sft_args(config: PosttrainConfig, evaluate: bool = False) -> SFTConfig:
    """TRL's SFTConfig; ``evaluate``: the held-out set is evaluated every ``training.eval_steps``."""
    check_sft_extra(config)
    training = config.training
    model_init_kwargs: dict[str, Any] = {"dtype": "float32"}  # fp32 master weights; bf16 is autocast
    # transformers >= 5.2x renamed gradient_checkpointing to activation_checkpointing (the old name warns).
    renamed = "activation_checkpointing" in SFTConfig.__dataclass_fields__
    checkpointing = {
        "activation_checkpointing" if renamed else "gradient_checkpointing": training.gradient_checkpointing
    }
    periodic_eval = evaluate and training.eval_steps is not None
    kwargs = dict(
        **checkpointing,
        output_dir=str(Path(config.output_dir) / CHECKPOINTS_DIR),
        num_train_epochs=training.epochs,
        max_steps=training.max_steps,
        per_device_train_batch_size=training.per_device_batch_size,
        per_device_eval_batch_size=training.per_device_batch_size,
        gradient_accumulation_steps=training.grad_accum,
        learning_rate=training.learning_rate,
        lr_scheduler_type=training.scheduler,
        warmup_steps=int(training.warmup) if training.warmup >= 1 else training.warmup,
        weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm,
        seed=training.seed,
        data_seed=training.seed,
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=training.save_total_limit,
        logging_steps=training.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if periodic_eval else "no",
        eval_steps=training.eval_steps if periodic_eval else None,
        prediction_loss_only=True,
        # Log a NaN/inf loss as it is (the default filter replaces it by the running mean), so
        # StopOnNonFinite sees a diverged run.
        logging_nan_inf_filter=False,
        report_to=list(config.report_to) or "none",
        bf16=training.bf16,
        dataloader_num_workers=training.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        model_init_kwargs=model_init_kwargs,
        # Our label mask is the loss mask: TRL builds labels from `completion_mask` only with this on.
        completion_only_loss=True,
        # Examples are built to fit; TRL's truncation never cuts one (it would be counted as too_long first).
        max_length=config.max_seq_len,
        packing=training.packing,
        packing_strategy="bfd",
        padding_free=training.packing,
    )
    unlisted = set(kwargs) - set(SFT_FIELDS_SET)
    if unlisted:  # a field set here must be listed, so sft_extra cannot set it a second time
        raise AssertionError(f"SFT_FIELDS_SET lacks {sorted(unlisted)}")
    return SFTConfig(**kwargs, **training.sft_extra)


class NonFiniteTrainingError(RuntimeError):
    """The logged loss or gradient norm became NaN or infinite: the run diverged."""


class StopOnNonFinite(TrainerCallback):
    """Stop training at the first logged NaN/inf loss or gradient norm, before the final model and
    manifest are written (every rank sees the same gathered values, so every rank stops)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise NonFiniteTrainingError(
                    f"step {state.global_step}: the {key.replace('_', ' ')} is {value}: training diverged and was "
                    "stopped; no final model or manifest was written; lower training.learning_rate or set "
                    "training.max_grad_norm, then run again in a new output_dir"
                )


def make_trainer(
    config: PosttrainConfig, tokenizer: Any, examples: list[SFTExample], validation: list[SFTExample] | None = None
) -> SFTTrainer:
    args = sft_args(config, evaluate=bool(validation))
    peft_config = None
    if config.lora.enabled:
        from peft import LoraConfig

        targets = config.lora.target_modules
        peft_config = LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=targets[0] if targets == ["all-linear"] else targets,
            task_type="CAUSAL_LM",
        )
    trainer = SFTTrainer(
        model=config.model_path,
        args=args,
        train_dataset=examples_dataset(examples),
        eval_dataset=examples_dataset(validation) if validation else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[StopOnNonFinite()],
    )
    embeddings = trainer.model.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but {config.model_path} has {embeddings} embeddings; "
            "use the tokenizer the model was pretrained with (tokenizer_path)"
        )
    return trainer


def resume_checkpoint(config: PosttrainConfig) -> str | None:
    """``latest``: the newest checkpoint under OUT/checkpoints, or a fresh start if there is none."""
    resume = config.training.resume_from_checkpoint
    if resume is None:
        return None
    if resume == "latest":
        return latest_whole_checkpoint(Path(config.output_dir) / CHECKPOINTS_DIR)
    if not Path(resume).is_dir():
        raise ValueError(f"training.resume_from_checkpoint={resume}: no such checkpoint directory")
    problems = checkpoint_problems(Path(resume))
    if problems:
        raise ValueError(f"training.resume_from_checkpoint={resume}: damaged checkpoint ({'; '.join(problems)})")
    return resume


def checkpoint_problems(checkpoint: Path) -> list[str]:
    """Why a Trainer checkpoint cannot be resumed from (empty: it can). The Trainer writes
    trainer_state.json after the weights and optimizer, so a folder without it (a kill
    while saving) is incomplete."""
    if not (checkpoint / TRAINER_STATE).is_file():
        return [f"no {TRAINER_STATE} (a save that did not finish)"]
    return tree_problems(checkpoint)


def latest_whole_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint-N under ``folder`` that is whole; newer damaged ones are set aside
    (renamed broken-checkpoint-N, which the Trainer neither resumes nor rotates) and reported."""
    if not folder.is_dir():
        return None
    while (latest := get_last_checkpoint(str(folder))) is not None:
        problems = checkpoint_problems(Path(latest))
        if not problems:
            return latest
        target = Path(latest).with_name(BROKEN_PREFIX + Path(latest).name)
        if is_main_rank():
            if target.exists():
                shutil.rmtree(target)
            os.replace(latest, target)
        else:  # the main rank renames it; this rank only needs the answer
            return _latest_whole_unrenamed(folder)
        logger.info(
            f"posttrain: checkpoint {latest} is damaged ({'; '.join(problems)}); set aside as {target.name}, "
            "resuming from the one before it"
        )
    return None


def _latest_whole_unrenamed(folder: Path) -> str | None:
    names = sorted(
        (p for p in folder.glob("checkpoint-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[-1]), reverse=True
    )
    return next((str(p) for p in names if not checkpoint_problems(p)), None)


def check_run_identity_of_checkpoints(config: PosttrainConfig) -> None:
    """Tie ``OUT/checkpoints`` to one config (``checkpoints/run.json``), before any work.

    Checkpoints there must come from this config: resuming would continue them (a
    finished run "resumes" with no step left), and a fresh start would mix its
    checkpoints with theirs. So when the folder holds a checkpoint, its run.json must
    match (a checkpoint without one, from code older than this check, is refused too);
    when it holds none, this config's identity is recorded. A checkpoint named by path in
    ``training.resume_from_checkpoint`` outside OUT is taken as given.
    """
    folder = Path(config.output_dir) / CHECKPOINTS_DIR
    path = folder / RUN_FILE
    identity = config_identity(config, RESUMABLE_KEYS)
    start_over = f"use a new output_dir, or delete {folder} to start over in this one"
    if not folder.is_dir() or latest_whole_checkpoint(folder) is None:
        write_identity(path, identity)
    elif read_identity(path) is None:
        raise RunIdentityError(
            f"{folder}: holds checkpoints but no {RUN_FILE} saying which config trained them "
            f"(written by older code?); {start_over}"
        )
    else:
        check_run_identity(path, identity, start_over=start_over)


def save_final(trainer: SFTTrainer, config: PosttrainConfig, tokenizer: Any) -> None:
    out = Path(config.output_dir)
    full_state_dict_for_save(trainer)
    if not config.lora.enabled:
        trainer.save_model(str(out))  # gathers sharded weights; writes model + tokenizer on the main process
        if trainer.is_world_process_zero():
            check_weights_written(out)
            make_tokenizer_config_portable(out)
        return
    adapter = out / ADAPTER_DIR
    trainer.save_model(str(adapter))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        check_weights_written(adapter)
        merge_adapter(config.model_path, adapter, out, trainer.model.generation_config)
        tokenizer.save_pretrained(str(out))
        make_tokenizer_config_portable(out)
    trainer.accelerator.wait_for_everyone()


def full_state_dict_for_save(trainer: Any) -> None:
    """Under FSDP, gather a FULL state dict for the final save (SHARDED_STATE_DICT, right
    for resumable checkpoints, makes ``Trainer.save_model`` write no weights)."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        return
    plugin = trainer.accelerator.state.fsdp_plugin
    if "FULL_STATE_DICT" in str(plugin.state_dict_type):
        return
    plugin.state_dict_config = plugin.optim_state_dict_config = None  # rebuilt for FULL by set_state_dict_type
    plugin.set_state_dict_type("FULL_STATE_DICT")


def check_weights_written(folder: Path) -> None:
    """Refuse to call a run complete when the save wrote no weights."""
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise RuntimeError(
            f"{folder}: the final save wrote no weights (no *.safetensors); under FSDP the state "
            "dict must be FULL_STATE_DICT for the save (configs/accelerate/fsdp.yaml)"
        )


@contextmanager
def zero3_loading_disabled():
    """transformers' global ZeRO-3 switch off for the duration (restored after): models load whole,
    without entering ``deepspeed.zero.Init`` collectives that only one rank would join."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def merge_adapter(model_path: str, adapter: Path, out: Path, generation_config=None) -> None:
    """Base weights + LoRA adapter, merged and saved to ``out`` by one process alone."""
    from peft import PeftModel

    with zero3_loading_disabled():
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    if generation_config is not None:
        merged.generation_config = generation_config
    merged.save_pretrained(str(out))
