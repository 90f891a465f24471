"""The pretrain stage's config: one dataclass per section, loaded from configs/pretrain/*.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stage_io.config import (
    Beta,
    LearningRate,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SequenceLength,
    UnitInterval,
)

ARMS = ("plain", "anchored")


@dataclass
class DataSection:
    # Output directory of the annotate stage; its data/ subfolder holds one row per chunk.
    annotations: str = "runs/annotate/embedded"
    # plain: chunk text only; anchored: each chunk preceded by its annotation (<z1> x1 <z2> x2 ...).
    arm: Literal["plain", "anchored"] = "anchored"
    # Text put between consecutive chunks of one document (the chunker split documents at blank lines).
    chunk_separator: str = "\n\n"
    # Shuffle the document order each epoch (seeded by train.seed and the epoch: same order in both arms).
    shuffle: bool = True
    # Use at most this many documents, in annotate's order (None: all).
    max_documents: NonNegativeInt | None = None
    # Where the tokenized corpus is cached (None: OUTPUT_DIR/data).
    cache_dir: str | None = None
    # Documents per call to the tokenizer while tokenizing the corpus.
    tokenize_batch_size: PositiveInt = 512
    # Never cut a chunk (annotation + text) that fits a row: pad the row's rest and start the chunk on the next
    # row instead (same rule in both arms; padding counted). False: rows packed full, cut anywhere (the paper's).
    rows_start_at_chunks: bool = False


@dataclass
class TokenizerSection:
    # Hub id or local path of an existing tokenizer (real runs); None trains a byte-level BPE on the corpus.
    pretrained: str | None = None
    # Hub revision of `pretrained` (pin it for reproducible runs).
    revision: str | None = None
    # Directory where the tokenizer is saved once and reused by both arms (and by posttrain/eval).
    path: str = "runs/pretrain/embedded/tokenizer"
    # Vocabulary size of the trained BPE tokenizer, special tokens included.
    vocab_size: PositiveInt = 8192
    # A pair must occur this often to become a BPE merge.
    min_frequency: PositiveInt = 2
    # Train the BPE on at most this many chunks (None: all), in annotate's order.
    max_train_chunks: NonNegativeInt | None = None
    # Also train the BPE on each chunk's rendered annotation (delimiters removed), so keys and frequent values
    # become whole tokens; the vocabulary is still one for both arms (False: chunk text only, the paper's way).
    train_on_annotations: bool = False
    # Start every document with the tokenizer's bos token when it has one (must stay true: prompts do, see with_bos).
    add_bos: bool = True


@dataclass
class ModelSection:
    # Architecture family: olmo2 (Olmo2ForCausalLM, the paper's) or llama (LlamaForCausalLM).
    architecture: Literal["olmo2", "llama"] = "olmo2"
    # Named size from pretrain/model_configs.PRESETS (tiny, embedded, 150m, 0.6b, 1b, 2.5b).
    preset: str = "tiny"
    # Width of the residual stream (None: the preset's).
    hidden_size: PositiveInt | None = None
    # Number of transformer blocks (None: the preset's).
    num_layers: PositiveInt | None = None
    # Attention heads (None: the preset's).
    num_heads: PositiveInt | None = None
    # Key/value heads, fewer than num_heads for grouped-query attention (None: the preset's).
    num_kv_heads: PositiveInt | None = None
    # Width of the SwiGLU feed-forward layer (None: the preset's).
    intermediate_size: PositiveInt | None = None
    # Share the input embedding and the output projection (None: the preset's).
    tie_word_embeddings: bool | None = None
    # RoPE base frequency (None: the preset's).
    rope_theta: PositiveFloat | None = None
    # Standard deviation of the initial weights.
    init_std: PositiveFloat = 0.02
    # Round the embedding rows up to a multiple of this (faster matmuls; extra rows are never used).
    pad_vocab_to_multiple: PositiveInt = 64
    # auto: flash_attention_2 on CUDA when flash-attn is installed, else sdpa; or sdpa, eager, flash_attention_2.
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    # Recompute activations in the backward pass (less memory, about 30% more compute).
    gradient_checkpointing: bool = False


@dataclass
class OptimSection:
    # Peak learning rate of AdamW.
    lr: LearningRate = 1e-3
    # AdamW beta1 and beta2.
    betas: list[Beta] = field(default_factory=lambda: [0.9, 0.95])
    # AdamW epsilon.
    eps: PositiveFloat = 1e-8
    # Decoupled weight decay on weight matrices (never on norms and biases).
    weight_decay: NonNegativeFloat = 0.1
    # Also decay the embedding matrix (OLMo-2 does not).
    decay_embeddings: bool = False
    # Clip the global gradient norm to this (0: no clipping).
    grad_clip: NonNegativeFloat = 1.0


@dataclass
class ScheduleSection:
    # cosine: warmup then cosine decay; wsd: warmup, stable, then linear decay; constant: warmup then flat.
    kind: Literal["cosine", "wsd", "constant"] = "cosine"
    # Linear warmup length in optimizer steps (None: warmup_fraction of the run).
    warmup_steps: NonNegativeInt | None = None
    # Warmup as a fraction of all steps, used when warmup_steps is None.
    warmup_fraction: UnitInterval = 0.05
    # Final learning rate as a fraction of the peak (cosine and wsd).
    min_lr_ratio: UnitInterval = 0.1
    # wsd only: the last fraction of the run that decays linearly to min_lr_ratio.
    decay_fraction: UnitInterval = 0.2


@dataclass
class TrainSection:
    # Tokens per sequence slot (documents are packed into rows of this length).
    seq_len: SequenceLength = 256
    # Rows per process per forward pass.
    micro_batch: PositiveInt = 8
    # Forward passes per optimizer step (tokens per step = seq_len * micro_batch * grad_accum * processes).
    grad_accum: PositiveInt = 1
    # Token budget of the run, the same for both arms; steps = train_tokens // tokens per step.
    train_tokens: PositiveInt | None = None
    # Optimizer steps of the run (instead of train_tokens; set exactly one of the two).
    max_steps: PositiveInt | None = None
    # Seed of the weights, the data order and every random number.
    seed: int = 0
    # auto: bf16 on CUDA, none on CPU; or no, bf16, fp16.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    # Save a resumable state every this many optimizer steps (0: only at the end).
    checkpoint_every: NonNegativeInt = 0
    # Keep this many most recent resumable states under OUTPUT_DIR/checkpoints.
    keep_checkpoints: PositiveInt = 2
    # auto: continue from the latest complete checkpoint if there is one; never; or a checkpoint path.
    resume: str = "auto"
    # Stop this invocation after this optimizer step (e.g. a job time limit); a resume continues the same run.
    stop_after_steps: PositiveInt | None = None
    # torch threads per process on CPU.
    cpu_threads: PositiveInt = 2
    # enforce: refuse to start when the printed memory plan exceeds the GPU's memory; warn: start anyway.
    memory_plan: Literal["enforce", "warn"] = "enforce"


@dataclass
class LoggingSection:
    # Log to the console and the trackers every this many optimizer steps.
    log_every: PositiveInt = 10
    # accelerate trackers (log_with): tensorboard, wandb, ...; [] logs to the console only.
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    # Project name given to the trackers.
    project: str = "annotation-anchored-pretrain"
    # Peak FLOP/s of one device for the MFU estimate (None: looked up for known GPUs; unknown on CPU).
    peak_flops: PositiveFloat | None = None


@dataclass
class PretrainConfig:
    # Output directory: HF checkpoint, manifest.json, checkpoints/, logs/; {arm} is replaced by data.arm.
    output_dir: str = "runs/pretrain/embedded/{arm}"
    # The annotated corpus and the arm.
    data: DataSection = field(default_factory=DataSection)
    # The tokenizer shared by both arms.
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    # The model architecture and size.
    model: ModelSection = field(default_factory=ModelSection)
    # The optimizer.
    optim: OptimSection = field(default_factory=OptimSection)
    # The learning-rate schedule.
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    # Batch, budget, precision, checkpoints.
    train: TrainSection = field(default_factory=TrainSection)
    # Console and tracker logging.
    logging: LoggingSection = field(default_factory=LoggingSection)

    def __post_init__(self) -> None:
        train = self.train
        if (train.train_tokens is None) == (train.max_steps is None):
            raise ValueError("set exactly one of train.train_tokens and train.max_steps")
        if len(self.optim.betas) != 2:
            raise ValueError("optim.betas must hold two numbers")

    @property
    def resolved_output_dir(self) -> str:
        return self.output_dir.replace("{arm}", self.data.arm)
