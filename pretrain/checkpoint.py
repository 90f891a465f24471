"""Resumable states under ``OUT/checkpoints/`` and the final HF checkpoint in ``OUT/``.

A resumable state is ``accelerator.save_state`` (model, optimizer, scheduler, the RNG
of every process; DeepSpeed and FSDP shard it their own way) plus ``training_state.json``:
the optimizer step, the data stream's position and counters, and what the run must not
change on resume. ``training_state.json`` is written last, so a folder without it (a job
killed while saving) is incomplete and never resumed from.

A folder with it can still be damaged (a file cut short by a full disk, or by hand). With
``train.resume: auto`` every file of the newest checkpoint is checked first
(``stage_io.file_integrity``); a damaged one is set aside (renamed ``broken-step_N``,
reported with what is wrong) and the previous checkpoint is used. A checkpoint named by
path is checked the same way and refused if damaged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from transformers import GenerationConfig

from pretrain.tokenizer import save_tokenizer
from stage_io.file_integrity import tree_problems
from stage_io.run_lock import is_main_rank

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
TRAINING_STATE = "training_state.json"
# Prefix of a checkpoint folder set aside as damaged (never resumed from, kept for inspection).
BROKEN_PREFIX = "broken-"


class CheckpointError(ValueError):
    """A checkpoint named by path that cannot be resumed from."""


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / CHECKPOINTS / f"step_{step:08d}"


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Complete resumable states, oldest first."""
    root = output_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / TRAINING_STATE).is_file())


def checkpoint_to_resume(resume: str, output_dir: Path) -> Path | None:
    """The checkpoint ``train.resume`` asks for: auto (the latest, if any), never, or a path."""
    if resume == "never":
        return None
    if resume == "auto":
        for candidate in reversed(complete_checkpoints(output_dir)):
            problems = tree_problems(candidate)
            if not problems:
                return candidate
            set_aside(candidate, problems)
        return None
    path = Path(resume)
    if not (path / TRAINING_STATE).is_file():
        raise CheckpointError(f"train.resume={resume}: not a complete checkpoint (no {TRAINING_STATE} in it)")
    problems = tree_problems(path)
    if problems:
        raise CheckpointError(f"train.resume={resume}: damaged checkpoint ({'; '.join(problems)})")
    return path


def set_aside(checkpoint: Path, problems: list[str]) -> None:
    """Rename a damaged checkpoint ``broken-NAME`` and say why (the main rank renames; the
    other ranks skip it the same way)."""
    target = checkpoint.with_name(BROKEN_PREFIX + checkpoint.name)
    if is_main_rank():
        if target.exists():
            shutil.rmtree(target)
        os.replace(checkpoint, target)
    logger.info(
        f"pretrain: checkpoint {checkpoint} is damaged ({'; '.join(problems)}); set aside as {target.name}, "
        "resuming from the one before it"
    )


def save_checkpoint(accelerator, output_dir: Path, step: int, training_state: dict, keep: int) -> Path:
    """Save a resumable state after optimizer step ``step``; keep the ``keep`` newest."""
    target = checkpoint_dir(output_dir, step)
    accelerator.save_state(str(target))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = target / (TRAINING_STATE + ".tmp")
        tmp.write_text(json.dumps(training_state, indent=2) + "\n", encoding="utf-8")
        tmp.rename(target / TRAINING_STATE)
        for old in complete_checkpoints(output_dir)[: -max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return target


def read_training_state(path: Path) -> dict:
    """The training state saved beside a checkpoint (step, stream position, run identity)."""
    return json.loads((path / TRAINING_STATE).read_text(encoding="utf-8"))


def load_checkpoint(accelerator, path: Path) -> dict:
    """Restore model, optimizer, scheduler and RNG; return the training state saved beside them."""
    accelerator.load_state(str(path))
    return read_training_state(path)


def export_hf_checkpoint(accelerator, model, tokenizer, output_dir: Path) -> None:
    """``OUT/``: config.json, model.safetensors, generation_config.json and the tokenizer files,
    loadable with ``AutoModelForCausalLM.from_pretrained(OUT)`` and servable by vLLM."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)  # gathers ZeRO-3 / FSDP shards onto the main process
    unwrapped.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    unwrapped.save_pretrained(
        str(output_dir),
        state_dict=state_dict,
        is_main_process=accelerator.is_main_process,
        save_function=accelerator.save,
        safe_serialization=True,
    )
    if accelerator.is_main_process:
        add_transformers4_keys(output_dir / "config.json")
        tokenizer.model_max_length = unwrapped.config.max_position_embeddings
        save_tokenizer(tokenizer, output_dir)
    accelerator.wait_for_everyone()


def add_transformers4_keys(config_file: Path) -> None:
    """Also write the config keys transformers 4 reads (``rope_theta``, ``torch_dtype``): vLLM
    builds pinned to transformers 4 would otherwise fall back to a default RoPE base.
    transformers 5 keeps reading ``rope_parameters``, which holds the same value."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in rope:
        config.setdefault("rope_theta", rope["rope_theta"])
    if "dtype" in config:
        config.setdefault("torch_dtype", config["dtype"])
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
