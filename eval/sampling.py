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
from eval.backends.base import Backend, GenerationRequest
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


def sample_batch(backend: Backend, arm: ArmConfig, sampling: SamplingConfig, specs: Sequence[SampleSpec]) -> list[dict]:
    """Generate one row of generations.jsonl per spec (same order)."""
    tokenizer = backend.tokenizer
    prompts = [arm.prompt_format.render_prompt(spec.prompt, tokenizer) for spec in specs]
    stops = response_stops(arm, sampling, tokenizer)

    def response_request(spec: SampleSpec, text: str, banned: tuple[str, ...] = ()) -> GenerationRequest:
        return GenerationRequest(
            text=text,
            seed=phase_seed(spec.seed, "response"),
            temperature=spec.temperature,
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
            stop=stops,
            banned=banned,
        )

    annotations: list[str] = [""] * len(specs)
    annotation_notes: list[str | None] = [None] * len(specs)
    annotation_finish: list[str | None] = [None] * len(specs)
    mass_outside_syntax: list[float | None] = [None] * len(specs)
    banned: tuple[str, ...] = ()
    if arm.mode == "anchored":
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
        for i, done in enumerate(backend.generate(requests)):
            body = done.text
            annotation_finish[i] = done.finish_reason if done.stop_reason != ANNOTATION_CLOSE else "close"
            mass_outside_syntax[i] = done.extra.get("mass_outside_syntax")
            if done.finish_reason == "length":
                annotation_notes[i] = (
                    f"annotation truncated at max_annotation_tokens={sampling.max_annotation_tokens} (close forced)"
                )
            elif done.stop_reason != ANNOTATION_CLOSE:
                annotation_notes[i] = (
                    f"the model ended its turn inside the annotation ({done.stop_reason!r}; close forced)"
                )
            annotations[i] = ANNOTATION_OPEN + body + ANNOTATION_CLOSE
    elif arm.mode == "no_annotation":
        if sampling.no_annotation == "empty_annotation":
            annotations = [ANNOTATION_OPEN + ANNOTATION_CLOSE] * len(specs)
        else:
            banned = (ANNOTATION_OPEN, ANNOTATION_CLOSE)

    completions = backend.generate(
        [
            response_request(spec, prompt + annotation, banned)
            for spec, prompt, annotation in zip(specs, prompts, annotations)
        ]
    )
    rows = []
    for i, (spec, prompt, done) in enumerate(zip(specs, prompts, completions)):
        raw = annotations[i] + done.text
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
        row.update(parse_sample(raw, arm.mode, annotation_notes[i]))
        row["annotation_finish"] = annotation_finish[i]
        if mass_outside_syntax[i] is not None:
            # Constrained annotation: the most probability the syntax removed at one of its steps.
            row["annotation_mass_outside_syntax"] = mass_outside_syntax[i]
        rows.append(row)
    return rows


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
