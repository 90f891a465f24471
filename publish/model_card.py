"""The model card (README.md): metadata, method, arm, how to sample, results, provenance.

Everything in it is read from the checkpoint, its manifest.json, the staged files and
(when given) the eval run's summary.json; what those do not record is written as
"unknown" or left out, never guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from huggingface_hub import ModelCardData

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN
from publish.source_manifest import (
    CITATION,
    PAPER,
    UNKNOWN,
    arm_label,
    as_hub_id,
    base_model_from_manifest,
    config_yaml,
    find_arms,
    hub_ids_in_inputs,
    is_anchored,
    provenance_section,
    versions_section,
)
from publish.staging import files_section

EXAMPLE_REQUEST = "Write a story that begins 'Once upon a time'."


def card_metadata(
    manifest: Mapping[str, Any], info: Mapping[str, Any], license: str, base_model: str | None, datasets: list[str]
) -> ModelCardData:
    arms = find_arms(manifest)
    tags = ["annotation-anchored", "mode-collapse", "semantic-diversity"]
    tags += [f"arm-{value}" for value in dict.fromkeys(arms.values())]
    if manifest.get("stage"):
        tags.append(f"stage-{manifest['stage']}")
    base = base_model or as_hub_id(info.get("adapter_base")) or base_model_from_manifest(manifest)
    all_datasets = list(dict.fromkeys([*datasets, *hub_ids_in_inputs(manifest, models=False)]))
    return ModelCardData(
        license=license,
        library_name="peft" if info.get("is_adapter") else "transformers",
        pipeline_tag="text-generation",
        tags=tags,
        datasets=all_datasets or None,
        base_model=base,
    )


def build_model_card(
    *,
    repo_id: str,
    manifest: Mapping[str, Any],
    info: Mapping[str, Any],
    metadata: ModelCardData,
    eval_section: str,
    files: list[dict[str, Any]],
    source_dir: Path,
    source_fingerprint: str,
    publish_commit: str | None,
) -> str:
    arms = find_arms(manifest)
    arm = arm_label(arms)
    stage = str(manifest.get("stage", UNKNOWN))
    parts = [
        f"---\n{metadata.to_yaml()}\n---\n",
        f"# {repo_id.split('/')[-1]}\n",
        _summary(stage, arm, info),
        _method_section(),
        _arm_section(arms, arm, info),
        _sampling_section(repo_id, stage, arms, manifest, info),
        eval_section,
        "## Training config\n\nThe resolved config of the run, as recorded in its `manifest.json` "
        f"(uploaded with the model):\n\n```yaml\n{config_yaml(manifest)}```\n",
        provenance_section(manifest, source_dir, source_fingerprint),
        files_section(files),
        versions_section(manifest, publish_commit),
        CITATION,
    ]
    return "\n".join(parts)


def _summary(stage: str, arm: str, info: Mapping[str, Any]) -> str:
    what = {"pretrain": "pretrained (base)", "posttrain": "post-trained (SFT)"}.get(stage, f"`{stage}` stage")
    kind = "LoRA adapter" if info.get("is_adapter") else "checkpoint"
    lines = [f"A {what} {kind} from the annotation-anchored training project; training arm: **{arm}**.", ""]
    facts = []
    if info.get("architectures"):
        facts.append(f"architecture `{', '.join(info['architectures'])}`")
    if info.get("model_type"):
        facts.append(f"model type `{info['model_type']}`")
    if info.get("parameters"):
        facts.append(f"{info['parameters']:,} parameters stored in safetensors")
    if info.get("vocab_size"):
        facts.append(f"vocabulary of {info['vocab_size']:,} tokens (`{info.get('tokenizer_class', UNKNOWN)}`)")
    if facts:
        lines.append("Model: " + "; ".join(facts) + ".")
    return "\n".join(lines) + "\n"


def _method_section() -> str:
    return f"""## Method

Annotation-anchored training ({PAPER}). Supervised fine-tuning narrows the *semantic*
diversity of what a model writes (topics, characters, settings, genres) to that of the
fine-tuning data. Annotation-anchored training keeps the pretrained model's semantic
choices while learning the fine-tuning behaviour:

1. An instruction model writes a short set of `key:value` tags for each chunk of the
   pretraining documents and for each fine-tuning response, e.g.
   `{ANNOTATION_OPEN}topic:family domain:literature location:Baghdad{ANNOTATION_CLOSE}`.
2. Pretraining sees each chunk after its annotation, so the model learns which semantics
   come next, then the text.
3. Fine-tuning trains on `prompt, annotation, response` with the loss masked on the prompt
   and the annotation: only the response given the annotation is learned, and the
   distribution of annotations stays as pretrained.
4. At inference the model samples an annotation first, then the response; the
   annotation is stripped before the response is shown or scored.
"""


def _arm_section(arms: Mapping[str, str], arm: str, info: Mapping[str, Any]) -> str:
    lines = ["## Arm", ""]
    if not arms:
        lines.append(
            "The run's manifest records no arm (`arm` is unknown), so this card does not say whether the "
            "model was trained with annotations."
        )
    else:
        lines += ["Recorded in the manifest: " + ", ".join(f"`{k}` = `{v}`" for k, v in arms.items()) + "."]
        anchored = is_anchored(arms)
        if anchored is True:
            lines.append(
                "\nThis is an annotation-trained arm: its text is preceded by annotations, which the model "
                "generates itself."
            )
        elif anchored is False:
            lines.append("\nThis arm was trained without annotations (the baseline the method is compared with).")
    tokens = info.get("annotation_tokens") or {}
    if tokens:
        present = [t for t, ok in tokens.items() if ok]
        absent = [t for t, ok in tokens.items() if not ok]
        if present:
            lines.append(
                f"\nThe tokenizer has the annotation delimiters as tokens: {', '.join(f'`{t}`' for t in present)}."
            )
        if absent:
            lines.append(f"\nThe tokenizer has no token for {', '.join(f'`{t}`' for t in absent)}.")
    return "\n".join(lines) + "\n"


def _prompt_lines(manifest: Mapping[str, Any]) -> tuple[list[str], str]:
    """Code that builds the prompt text, and a sentence saying where the format came from."""
    from posttrain.prompt_format import PromptFormat

    config = manifest.get("config")
    section = config.get("prompt_format") if isinstance(config, Mapping) else None
    source = "the `prompt_format` recorded in the manifest"
    try:
        fmt = PromptFormat(**section) if isinstance(section, Mapping) else None
    except (TypeError, ValueError):
        fmt = None
    if fmt is None:
        fmt = PromptFormat()
        source = "the project's default prompt format (the manifest records no usable `prompt_format`)"
    if fmt.kind == "chat":
        messages = ([{"role": "system", "content": fmt.system}] if fmt.system else []) + [
            {"role": "user", "content": EXAMPLE_REQUEST}
        ]
        return [
            f"messages = {messages!r}",
            "prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
        ], source
    return [f"prompt = {fmt.template!r}.format(prompt={EXAMPLE_REQUEST!r})"], source


LOAD_MODEL = (
    "from transformers import AutoModelForCausalLM, AutoTokenizer",
    "",
    "repo = {repo!r}",
    "tokenizer = AutoTokenizer.from_pretrained(repo)",
    "model = AutoModelForCausalLM.from_pretrained(repo)",
)
LOAD_ADAPTER = (
    "from peft import AutoPeftModelForCausalLM",
    "from transformers import AutoTokenizer",
    "",
    "repo = {repo!r}",
    "tokenizer = AutoTokenizer.from_pretrained(repo)",
    "model = AutoPeftModelForCausalLM.from_pretrained(repo)",
)
GENERATE = [
    'inputs = tokenizer(prompt, return_tensors="pt")',
    "output = model.generate(**inputs, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=256)",
    "# keep special tokens: the annotation delimiters are tokens of their own",
    'text = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=False)',
    "if tokenizer.eos_token:",
    "    text = text.split(tokenizer.eos_token)[0]",
]
STRIP_PRETRAINED = [
    "",
    "import re",
    "from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN",
    "# an annotation-pretrained model writes an annotation before each chunk: drop them all",
    "plain = re.sub(re.escape(ANNOTATION_OPEN) + '.*?' + re.escape(ANNOTATION_CLOSE), '', text, flags=re.S)",
]
SPLIT_GENERATION = [
    "",
    "from annotate.format import split_generation  # the project's annotation format",
    "",
    "split = split_generation(text)",
    "print(split.tags)      # the sampled annotation; None when it did not parse (reason: split.error)",
    "print(split.response)  # the response with the annotation stripped: what to show or score",
]
PRETRAINED_TEXT = (
    "A pretrained model continues text. {who} `{open}...{close}` before each chunk; remove those spans "
    "before reading or scoring the text."
)
PLAIN_TEXT = "Sample as from any causal language model; this arm writes no annotation."
ANCHORED_TEXT = (
    "The model writes an annotation first, `{open}key:value ...{close}`, "
    "then the response conditioned on it. Sample plainly (the paper uses temperature 1), keep "
    "the special tokens when decoding, and strip the annotation with "
    "`annotate.format.split_generation` before showing or scoring the response. Count the "
    "generations whose annotation does not parse (`split.error`) rather than dropping them."
)
UNKNOWN_ARM_TEXT = (
    "The arm is unknown: if a generation starts with `{open}`, it carries an "
    "annotation; strip it with `annotate.format.split_generation` before showing or scoring "
    "the response."
)


def _sampling_section(
    repo_id: str, stage: str, arms: Mapping[str, str], manifest: Mapping[str, Any], info: Mapping[str, Any]
) -> str:
    load = [line.format(repo=repo_id) for line in (LOAD_ADAPTER if info.get("is_adapter") else LOAD_MODEL)]
    if stage == "pretrain":
        prompt, source = ["prompt = 'Once upon a time'"], "a plain text prefix (a pretrained model continues text)"
    else:
        prompt, source = _prompt_lines(manifest)
    text, strip = _annotation_handling(stage, is_anchored(arms))
    lines = ["## How to sample", "", text]
    lines += ["", f"The prompt below uses {source}.", "", "```python", *load, "", *prompt, *GENERATE, *strip, "```"]
    return "\n".join(lines) + "\n"


def _annotation_handling(stage: str, anchored: bool | None) -> tuple[str, list[str]]:
    """What the reader is told about annotations in the output, and the code that strips them."""
    delimiters = {"open": ANNOTATION_OPEN, "close": ANNOTATION_CLOSE}
    if stage == "pretrain" and anchored is not False:
        who = (
            "It was pretrained on annotated text, so it writes"
            if anchored
            else "If it was pretrained on annotated text (the arm is unknown), it writes"
        )
        return PRETRAINED_TEXT.format(who=who, **delimiters), STRIP_PRETRAINED
    if anchored is False:
        return PLAIN_TEXT, ["print(text)"]
    return (ANCHORED_TEXT if anchored else UNKNOWN_ARM_TEXT).format(**delimiters), SPLIT_GENERATION
