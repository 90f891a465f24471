"""The posttrain stage's typed config (``python -m posttrain --help`` lists every key).

The YAMLs under ``configs/posttrain/`` are instances of ``PosttrainConfig``; the embedded
SFT set builder has its own config, ``posttrain.embedded_sft.EmbeddedSFTConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from posttrain.prompt_format import PromptFormat
from stage_io.config import (
    Domain,
    LearningRate,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SequenceLength,
    UnitInterval,
)
from stage_io.conversation import DEFAULT_ROLE_MAP
from stage_io.records import RecordSource


@dataclass
class DataConfig:
    # SFT records when `annotations` is unset (plain arm): hub id, local JSONL/JSON/parquet or saved dataset.
    # When `annotations` is set only `limit` (and `id_field`) of this section apply.
    source: RecordSource = field(default_factory=lambda: RecordSource(source=""))
    # The annotate stage's SFT-mode output directory; its data/ is read (required for the anchored arm).
    annotations: str | None = None
    # Column holding the conversation as a list of {role, content}; used when the records have it.
    messages_field: str = "messages"
    # Column holding the prompt (a string or a list of messages), for prompt/completion records.
    prompt_field: str = "prompt"
    # Column holding the completion (a string or a one-message list), for prompt/completion records.
    completion_field: str = "completion"
    # Column holding the assistant text the annotator annotated; it is the response when present.
    response_field: str = "response"
    # With `annotations` set, the plain arm drops exactly the records the anchored arm drops (an
    # annotation that failed under invalid_annotation_policy=skip, a record too long once its
    # annotation is added), so both arms train on the same example ids (manifest: trained_ids_sha256).
    pair_with_anchored: bool = True
    # Role names renamed before the last assistant turn is taken as the reply (ShareGPT's human/gpt by default).
    role_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLE_MAP))
    # Share of the SFT examples held out for validation, chosen by a hash of the example id alone
    # (both arms hold out the same ids); OUT/validation.json holds their response loss.
    validation_fraction: Annotated[float, Domain(ge=0, lt=0.5)] = 0.0
    # Anchored arm: annotations sampled per held-out example for validation.json's loss_marginal, the
    # Monte-Carlo upper bound on -log p(response | prompt) that tightens as this grows.
    validation_annotation_samples: PositiveInt = 8
    # Anchored arm: annotation tokens sampled at most for loss_marginal before the close is forced (eval's default).
    validation_annotation_max_tokens: PositiveInt = 64
    # Pretraining chunks replayed inside SFT (0: none), the same chunk ids in both arms: anchored
    # `<z> x` with loss on every token, plain `x`; a deviation from the paper, off by default.
    replay_chunks: NonNegativeInt = 0
    # The annotate output directory (pretraining corpus) the replayed chunks come from.
    replay_annotations: str | None = None
    # Train the annotation's closing delimiter token in anchored examples (the paper masks the whole annotation).
    train_closing_delimiter: bool = False


@dataclass
class TrainingConfig:
    # Peak learning rate.
    learning_rate: LearningRate = 2e-5
    # Passes over the SFT set (the paper: 1).
    epochs: PositiveFloat = 1.0
    # Stop after this many optimizer steps (-1: run all epochs).
    max_steps: Annotated[int, Domain(ge=-1, ne=0, note="-1: train for `epochs`")] = -1
    # Sequences per device per micro-batch.
    per_device_batch_size: PositiveInt = 8
    # Micro-batches accumulated per optimizer step.
    grad_accum: PositiveInt = 1
    # Warmup: a float in [0, 1) is a fraction of all steps, an integer >= 1 a number of steps.
    warmup: NonNegativeFloat = 0.03
    # Learning-rate schedule after warmup (a transformers SchedulerType: linear, cosine, constant, ...).
    scheduler: str = "linear"
    # AdamW weight decay.
    weight_decay: NonNegativeFloat = 0.0
    # Gradient clipping norm.
    max_grad_norm: NonNegativeFloat = 1.0
    # Seed of model init (LoRA), data order and dropout.
    seed: int = 0
    # Save a resumable checkpoint (model, optimizer, scheduler, RNG) every this many steps.
    save_steps: PositiveInt = 500
    # Keep at most this many checkpoints (None: all).
    save_total_limit: PositiveInt | None = 2
    # Log loss, learning rate and token accuracy every this many steps.
    logging_steps: PositiveInt = 10
    # Resume from a checkpoint: "latest" (the newest under OUT/checkpoints), a checkpoint path, or None.
    resume_from_checkpoint: str | None = None
    # Mixed precision in bfloat16 (GPUs that support it; DeepSpeed configs read it as "auto").
    bf16: bool = False
    # Recompute activations in the backward pass to save memory.
    gradient_checkpointing: bool = False
    # Pack several examples into one row of max_seq_len (TRL BFD packing, padding-free with per-example
    # position ids, so examples never attend to each other and each keeps its own label mask).
    packing: bool = False
    # enforce: refuse to start when the printed memory plan exceeds the GPU's memory; warn: start anyway.
    memory_plan: Literal["enforce", "warn"] = "enforce"
    # Worker processes for the data loader.
    dataloader_num_workers: NonNegativeInt = 0
    # CPU threads for torch in this process (None: leave torch's default); tests and the CPU demo use 2.
    torch_threads: PositiveInt | None = None
    # Evaluate the held-out set (data.validation_fraction) every this many steps (None: at the end only).
    eval_steps: PositiveInt | None = None
    # Further TRL SFTConfig fields the config does not name, passed through as given.
    sft_extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoraSettings:
    # Train LoRA adapters through PEFT instead of every weight.
    enabled: bool = False
    # Rank of the adapters.
    r: PositiveInt = 16
    # LoRA alpha (the update is scaled by alpha / r).
    alpha: PositiveInt = 32
    # Dropout on the adapters' input.
    dropout: Annotated[float, Domain(ge=0, lt=1)] = 0.05
    # Module names to adapt ("all-linear": every linear layer but the LM head).
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class PosttrainConfig:
    # Pretrained checkpoint to fine-tune: a local HF directory (model + tokenizer) or a hub id.
    model_path: str = ""
    # Tokenizer path or hub id (None: the model's own).
    tokenizer_path: str | None = None
    # Where the SFT records come from and which columns hold what.
    data: DataConfig = field(default_factory=DataConfig)
    # plain: train prompt -> response; anchored: prompt -> annotation -> response, annotation masked.
    arm: Literal["plain", "anchored"] = "plain"
    # How a conversation becomes the text before the response (shared with eval).
    prompt_format: PromptFormat = field(default_factory=PromptFormat)
    # Fraction of anchored examples whose annotation keys, separators and delimiters are trained
    # (values stay masked); exactly round-half-up(fraction * n_anchored) examples, chosen by hash.
    keys_only_fraction: UnitInterval = 0.003
    # Seed of the keys-only choice (a hash of seed and example id ranks the examples).
    keys_only_seed: int = 0
    # Anchored arm, a response whose annotation failed (status != ok or unparseable):
    # skip it, or train it as plain SFT. Counted either way.
    invalid_annotation_policy: Literal["skip", "plain"] = "skip"
    # Longest training sequence in tokens; a longer example is skipped and counted (never truncated).
    max_seq_len: SequenceLength = 1024
    # Allow max_seq_len above the model's max_position_embeddings (rotary models run past their
    # pretraining length on positions they never saw); false: that is an error naming both.
    train_past_positions: bool = False
    # Fail when more than this fraction of the records is skipped (a whole-dataset problem).
    max_skip_fraction: UnitInterval = 0.5
    # Optimisation, checkpointing and logging.
    training: TrainingConfig = field(default_factory=TrainingConfig)
    # LoRA instead of full fine-tuning.
    lora: LoraSettings = field(default_factory=LoraSettings)
    # Output directory: final HF checkpoint + tokenizer, manifest.json, checkpoints/, adapter/ (LoRA).
    output_dir: str = "runs/posttrain"
    # Trainer integrations to log to (tensorboard writes under OUT/checkpoints/runs/; [] for none).
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])

    def __post_init__(self) -> None:
        if self.data.replay_chunks and not self.data.replay_annotations:
            raise ValueError(
                f"data.replay_chunks={self.data.replay_chunks} needs data.replay_annotations "
                "(the annotate output directory of the pretraining corpus)"
            )
