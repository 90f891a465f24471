"""Turning (arm, prompt, seed) into one sample: plain, anchored and no-annotation modes.

Anchored sampling runs in two phases, each a backend request with its own seed derived
from the sample's seed:

1. Annotation. The sampler appends the open delimiter ``<|ann|>`` to the rendered prompt
   (it does not wait for the model to emit it: SFT masks the whole annotation, so whether
   the model would open one by itself is not something training asked of it). The model
   writes tags at the annotation temperature until it emits ``<|/ann|>``, or until
   ``max_annotation_tokens``: then ``<|/ann|>`` is forced so the response can follow, and
   the sample is a parse failure ("annotation truncated"). If the model ends its turn
   inside the annotation, the close is forced the same way and that is a failure too.
2. Response. ``prompt + <|ann|>tags<|/ann|>`` is continued at the response temperature
   until the end of turn. (The annotation is re-tokenised from its text; a sampled
   annotation whose tokens were not the tokenizer's canonical split is read back
   canonically: harmless for the model, noted for exactness.)

The generation is parsed with ``annotate.format.split_generation``; the annotation is
stripped before scoring and kept (text and parsed tags) in generations.jsonl. A parse
failure is recorded with its reason and counted; the sample is never dropped or
replaced. Annotations the model writes later inside its response (pretraining taught
it one per chunk) are stripped as well, and counted in ``inner_annotations``.

``no_annotation`` (ablation b) comes in two documented flavours (sampling.no_annotation):
``ban_open`` forbids both delimiter tokens at every step, so the anchored model answers
straight from the prompt; ``empty_annotation`` writes an empty ``<|ann|><|/ann|>`` after
the prompt and samples the response from there.

With ``sampling.annotation_syntax`` the annotation phase is constrained to the annotation
syntax (eval.annotation_syntax): the parse rate then no longer measures the model, and
``annotation_mass_outside_syntax`` (per row) says how much the constraint removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, split_generation, tags_to_records
from eval.backends.base import Backend, Completion, GenerationRequest
from eval.config import ArmConfig, SamplingConfig
from eval.seeds import phase_seed

_ANNOTATION_SPAN = re.compile(re.escape(ANNOTATION_OPEN) + r".*?" + re.escape(ANNOTATION_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class SampleSpec:
    id: str
    prompt_id: str
    prompt: str
    sample_index: int
    seed: int
    temperature: float


def strip_annotations(text: str) -> tuple[str, int]:
    """Remove every complete annotation span and any stray delimiter; how many spans went."""
    stripped, spans = _ANNOTATION_SPAN.subn("", text)
    stripped = stripped.replace(ANNOTATION_OPEN, "").replace(ANNOTATION_CLOSE, "")
    return stripped, spans


def response_stops(arm: ArmConfig, sampling: SamplingConfig, tokenizer) -> tuple[str, ...]:
    """What ends a response: the prompt format's end of turn plus the configured stops."""
    stops = [arm.prompt_format.end_of_turn_text(tokenizer)] + list(sampling.stop)
    return tuple(dict.fromkeys(s for s in stops if s))


@dataclass(frozen=True)
class ResponsePrefix:
    """What comes between the rendered prompt and the response of one sample."""

    # The annotation text, delimiters included ("" when the mode writes none).
    annotation: str = ""
    # A failure the sampler already knows of (a forced close), else None.
    note: str | None = None
    # How the annotation phase ended: "close", "stop" (end of turn) or "length"; None without one.
    finish: str | None = None
    # Constrained annotation: the most probability the syntax removed at one of its steps.
    mass_outside_syntax: float | None = None


def sample_batch(backend: Backend, arm: ArmConfig, sampling: SamplingConfig, specs: Sequence[SampleSpec]) -> list[dict]:
    """Generate one row of generations.jsonl per spec (same order)."""
    tokenizer = backend.tokenizer
    prompts = [arm.prompt_format.render_prompt(spec.prompt, tokenizer) for spec in specs]
    stops = response_stops(arm, sampling, tokenizer)
    banned: tuple[str, ...] = ()
    if arm.mode == "anchored":
        prefixes = sample_annotations(backend, sampling, specs, prompts, stops)
    elif arm.mode == "no_annotation" and sampling.no_annotation == "empty_annotation":
        prefixes = [ResponsePrefix(annotation=ANNOTATION_OPEN + ANNOTATION_CLOSE)] * len(specs)
    else:
        prefixes = [ResponsePrefix()] * len(specs)
        if arm.mode == "no_annotation":  # ban_open
            banned = (ANNOTATION_OPEN, ANNOTATION_CLOSE)
    requests = [
        GenerationRequest(
            text=prompt + prefix.annotation,
            seed=phase_seed(spec.seed, "response"),
            temperature=spec.temperature,
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
            stop=stops,
            banned=banned,
        )
        for spec, prompt, prefix in zip(specs, prompts, prefixes)
    ]
    completions = backend.generate(requests)
    return [sample_row(arm, *parts) for parts in zip(specs, prompts, prefixes, completions)]


def sample_annotations(
    backend: Backend,
    sampling: SamplingConfig,
    specs: Sequence[SampleSpec],
    prompts: list[str],
    stops: tuple[str, ...],
) -> list[ResponsePrefix]:
    """The annotation phase of anchored sampling: one annotation per spec, closed by the model
    or forced closed (then noted as a parse failure)."""
    requests = [
        GenerationRequest(
            text=prompt + ANNOTATION_OPEN,
            seed=phase_seed(spec.seed, "annotation"),
            temperature=spec.temperature
            if sampling.annotation_temperature is None
            else sampling.annotation_temperature,
            top_p=sampling.top_p if sampling.annotation_top_p is None else sampling.annotation_top_p,
            max_new_tokens=sampling.max_annotation_tokens,
            stop=(ANNOTATION_CLOSE,) + stops,
            annotation_syntax=sampling.annotation_syntax,
        )
        for spec, prompt in zip(specs, prompts)
    ]
    prefixes = []
    for done in backend.generate(requests):
        note = None
        if done.finish_reason == "length":
            note = f"annotation truncated at max_annotation_tokens={sampling.max_annotation_tokens} (close forced)"
        elif done.stop_reason != ANNOTATION_CLOSE:
            note = f"the model ended its turn inside the annotation ({done.stop_reason!r}; close forced)"
        prefixes.append(
            ResponsePrefix(
                annotation=ANNOTATION_OPEN + done.text + ANNOTATION_CLOSE,
                note=note,
                finish=done.finish_reason if done.stop_reason != ANNOTATION_CLOSE else "close",
                mass_outside_syntax=done.extra.get("mass_outside_syntax"),
            )
        )
    return prefixes


def sample_row(arm: ArmConfig, spec: SampleSpec, prompt: str, prefix: ResponsePrefix, done: Completion) -> dict:
    """The generations.jsonl row of one sample: its identity, the raw text and its parse."""
    raw = prefix.annotation + done.text
    row = {
        "id": spec.id,
        "arm": arm.name,
        "mode": arm.mode,
        "temperature": spec.temperature,
        "prompt_id": spec.prompt_id,
        "sample_index": spec.sample_index,
        "seed": spec.seed,
        "prompt": spec.prompt,
        "input_text": prompt,
        "raw": raw,
        "finish_reason": done.finish_reason,
        "num_tokens": done.num_tokens,
    }
    row.update(parse_sample(raw, arm.mode, prefix.note))
    row["annotation_finish"] = prefix.finish
    if prefix.mass_outside_syntax is not None:
        row["annotation_mass_outside_syntax"] = prefix.mass_outside_syntax
    return row


def parse_sample(raw: str, mode: str, note: str | None = None) -> dict:
    """Split a raw generation into annotation and scored response.

    Only anchored arms are expected to annotate; their ``parse_ok`` is True/False, other
    arms get None (not applicable). ``note`` is a failure the sampler already knows of
    (a forced close), which overrides a lucky parse of the truncated tags.
    """
    if mode != "anchored":
        empty = ANNOTATION_OPEN + ANNOTATION_CLOSE
        annotation = empty if raw.startswith(empty) else ""
        response, inner = strip_annotations(raw[len(annotation) :])
        return {
            "annotation": annotation,
            "tags": None,
            "parse_ok": None,
            "parse_error": None,
            "response": response.strip(),
            "inner_annotations": inner,
        }
    split = split_generation(raw)
    # Strip from the raw text (split.response has lost the delimiters of later
    # annotations, not their tag text, which must not reach scoring).
    stripped = raw.lstrip()
    rest = (
        stripped[len(split.annotation_text) :]
        if split.annotation_text and stripped.startswith(split.annotation_text)
        else raw
    )
    response, inner = strip_annotations(rest)
    error = note or split.error
    return {
        "annotation": split.annotation_text,
        "tags": tags_to_records(split.tags) if split.tags is not None and note is None else None,
        "parse_ok": error is None,
        "parse_error": error,
        "response": response.strip(),
        "inner_annotations": inner,
    }
