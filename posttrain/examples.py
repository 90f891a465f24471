"""SFT examples per arm: token ids and a per-token label mask (1 = trained, 0 = masked).

The mask is what OLMo-core calls ``label_mask``; the trainer turns it into labels with
-100 on every masked token (TRL's ``completion_mask``). Sequences, built piece by piece:

- plain:     prompt || response || end_of_turn            trains response + end_of_turn
- anchored:  prompt || annotation || response || end_of_turn
             trains response + end_of_turn; the prompt and the WHOLE annotation
             (delimiters included) are masked, so p(annotation | prompt) stays as
             pretrained and only p(response | prompt, annotation) is trained;
- keys-only: an anchored example whose annotation keys, separators and delimiters are
             trained and only its values masked (``keys_only_fraction`` of the anchored
             examples), which keeps the tag syntax stable.

Token boundaries. Each piece is tokenized on its own and the ids are concatenated, so
every boundary is exact and the mask never splits a token:

- the prompt is tokenized alone, exactly as eval tokenizes it before sampling
  (``encode_prompt``: no special tokens but exactly one leading BOS when the tokenizer has
  one, the rule pretraining documents follow), so training conditions on the ids the
  model sees at inference;
- the annotation begins with ``<|ann|>`` and ends with ``<|/ann|>``, special tokens
  that never merge with their neighbours, so the prompt/annotation and
  annotation/response boundaries are clean by construction;
- the response is tokenized alone, starting a fresh pre-token. In the plain arm a BPE
  could have merged the prompt's last characters with the response's first ones had the
  text been tokenized whole; the piecewise ids are still a valid encoding of the same
  text, and they are the ids the model produces when it generates after the prompt. How
  many examples differ from whole-text tokenization is counted
  (``pieces_differ_from_joint_tokenization``) so a template that ends mid-word shows up;
- end_of_turn (the eos token by default) is tokenized alone and trained, so the model
  learns to stop.

Keys-only choice: the anchored examples are ranked by sha256(seed, example id) and the
first ``floor(fraction * n + 0.5)`` are keys-only (n = anchored examples trained): the
count is exact over a dataset, and the choice of an example depends only on the seed,
its id and the set it is in. A token is masked when it overlaps a value's characters
(``annotate.format.annotation_char_spans`` and the fast tokenizer's offsets).

Validation split (``data.validation_fraction``): an example is held out when sha256 of its
id alone, read as a number in [0, 1), is below the fraction (``is_held_out``), so every
arm, seed and fit point holds out the same ids and trains on the same ids. Held-out
examples keep the arm's format and mask (``BuiltExamples.validation``); the keys-only
choice is made among the trained ones.

Closing delimiter (``data.train_closing_delimiter``, off by default): in an anchored
example the annotation's last token, ``<|/ann|>``, is trained (the rest of the annotation
stays masked), so the model learns to close an annotation it has opened.

Nothing is dropped silently: every skipped record (and every invalid annotation trained
as plain) is counted by reason and listed with its id in ``issues``.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence

from tqdm.auto import tqdm

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, annotation_char_spans, parse_annotation
from posttrain.config import PosttrainConfig
from posttrain.prompt_format import encode_prompt
from posttrain.sft_records import MalformedRecord, SFTDataError, SFTRecord, record_from_row

ExampleKind = Literal["plain", "anchored", "keys_only", "plain_fallback", "replay"]

# Records tokenized per batch call (the fast tokenizer batches in Rust).
CHUNK = 256


@dataclass
class SFTExample:
    id: str
    input_ids: list[int]
    # 1 where the token is a training target, 0 where it is masked.
    label_mask: list[int]
    # plain | anchored | keys_only | plain_fallback (an invalid annotation trained as plain).
    kind: ExampleKind
    # Anchored examples: where the annotation's tokens start, and the annotation text.
    annotation_start: int | None = None
    annotation: str | None = None
    # Where the response's tokens start (after the prompt and, anchored, the annotation).
    response_start: int | None = None


@dataclass
class BuiltExamples:
    # The examples trained on.
    examples: list[SFTExample]
    # Counts for the manifest (records in, trained by kind, skipped by reason, tokens).
    counts: dict[str, Any]
    # One row per skipped record or invalid annotation: id, reason, detail, action.
    issues: list[dict[str, str]] = field(default_factory=list)
    # Held-out examples (data.validation_fraction), in the arm's training format; never trained.
    validation: list[SFTExample] = field(default_factory=list)


def check_annotation_tokens(tokenizer: Any) -> tuple[int, int]:
    """Ids of the annotation delimiters; an error if the tokenizer does not have them as single tokens."""
    ids = []
    for token in (ANNOTATION_OPEN, ANNOTATION_CLOSE):
        encoded = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise SFTDataError(
                f"the tokenizer encodes the annotation delimiter {token!r} as {encoded}, not one special token; "
                "anchored SFT needs the tokenizer of the pretraining run (it adds annotate.format.SPECIAL_TOKENS)"
            )
        ids.append(encoded[0])
    return ids[0], ids[1]


def keys_only_mask(tokenizer: Any, annotation: str) -> tuple[list[int], list[int]]:
    """Ids of ``annotation`` and a mask training every token but those overlapping a value."""
    encoded = tokenizer(annotation, add_special_tokens=False, return_offsets_mapping=True)
    values = [(s, e) for s, e, role in annotation_char_spans(parse_annotation(annotation)) if role == "value"]
    mask = [
        0 if any(start < v_end and end > v_start for v_start, v_end in values) else 1
        for start, end in encoded["offset_mapping"]
    ]
    return encoded["input_ids"], mask


def choose_keys_only(ids: Sequence[str], fraction: float, seed: int) -> set[str]:
    """Exactly floor(fraction * len(ids) + 0.5) ids, the lowest by sha256(seed, id)."""
    count = math.floor(fraction * len(ids) + 0.5)
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}\0{i}".encode("utf-8")).digest())
    return set(ranked[:count])


def is_held_out(example_id: str, fraction: float) -> bool:
    """Whether an example is in the validation split: sha256 of its id alone, read as a number in
    [0, 1), below ``fraction``. It depends on nothing but the id, so every arm, seed and learning
    rate holds out the same ids, and an id's membership never changes when other records do."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(b"validation\0" + example_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def trained_ids_fingerprint(ids: Iterable[str]) -> str:
    """sha256 of the sorted example ids: two arms with equal fingerprints trained on the same records."""
    digest = hashlib.sha256()
    for example_id in sorted(ids):
        digest.update(example_id.encode("utf-8") + b"\0")
    return "sha256:" + digest.hexdigest()


def build_examples(
    rows: Iterable[dict], tokenizer: Any, config: PosttrainConfig, total: int | None = None
) -> BuiltExamples:
    """Token ids and label masks for every trainable row; counts and issues for the rest."""
    anchored_arm = config.arm == "anchored"
    if anchored_arm:
        check_annotation_tokens(tokenizer)
    eot_ids = tokenizer(config.prompt_format.end_of_turn_text(tokenizer), add_special_tokens=False)["input_ids"]
    builder = _Builder(tokenizer, config, eot_ids)
    chunk: list[dict] = []
    for row in tqdm(rows, total=total, desc=f"building {config.arm} SFT examples", unit="ex"):
        chunk.append(row)
        if len(chunk) == CHUNK:
            builder.add_chunk(chunk)
            chunk = []
    if chunk:
        builder.add_chunk(chunk)
    return builder.finish()


class _Builder:
    def __init__(self, tokenizer: Any, config: PosttrainConfig, eot_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.eot_ids = eot_ids
        self.examples: list[SFTExample] = []
        self.issues: list[dict[str, str]] = []
        self.skipped: Counter[str] = Counter()
        self.records_in = 0
        self.joint_differs = 0
        # The plain arm applies the anchored arm's drop rules, so both train on the same ids.
        self.paired = config.arm == "plain" and bool(config.data.annotations) and config.data.pair_with_anchored
        # Records whose conversation went on after the last assistant turn (those turns are cut).
        self.turns_cut = 0

    def add_chunk(self, rows: list[dict]) -> None:
        planned: list[tuple[SFTRecord, ExampleKind]] = []
        for row in rows:
            self.records_in += 1
            record_id = str(row.get("id"))
            try:
                record = record_from_row(
                    row, self.config.data, with_annotation=self.config.arm == "anchored" or self.paired
                )
            except MalformedRecord as err:
                self._skip(record_id, err.reason, err.detail)
                continue
            if record.turns_cut:
                self.turns_cut += 1
                self.issues.append(
                    {
                        "id": record.id,
                        "reason": "turns_after_last_reply",
                        "detail": f"{record.turns_cut} turns after the last assistant turn cut",
                        "action": "cut",
                    }
                )
            kind = self._kind(record)
            if kind is not None:
                planned.append((record, kind))
        if planned:
            self._tokenize(planned)

    def _kind(self, record: SFTRecord) -> ExampleKind | None:
        if self.config.arm == "plain":
            if self.paired and record.annotation is None and self.config.invalid_annotation_policy == "skip":
                self._skip(
                    record.id,
                    "invalid_annotation",
                    f"{record.annotation_problem or ''} (dropped as the anchored arm drops it: data.pair_with_anchored)",
                )
                return None
            return "plain"
        if record.annotation is not None:
            return "anchored"
        if self.config.invalid_annotation_policy == "plain":
            self.issues.append(
                {
                    "id": record.id,
                    "reason": "invalid_annotation",
                    "detail": record.annotation_problem or "",
                    "action": "trained_plain",
                }
            )
            return "plain_fallback"
        self._skip(record.id, "invalid_annotation", record.annotation_problem or "")
        return None

    def _tokenize(self, planned: list[tuple[SFTRecord, ExampleKind]]) -> None:
        tok, fmt = self.tokenizer, self.config.prompt_format
        prompts = [fmt.render_prompt(record.conversation, tok) for record, _ in planned]
        prompt_ids = [encode_prompt(tok, text) for text in prompts]
        response_ids = tok([r.response for r, _ in planned], add_special_tokens=False)["input_ids"]
        annotations = [r.annotation if kind == "anchored" else "" for r, kind in planned]
        annotation_ids = tok(annotations, add_special_tokens=False)["input_ids"]
        # Paired plain arm: the length the anchored arm's example has decides whether it fits.
        paired_lengths = (
            [len(ids) for ids in tok([r.annotation or "" for r, _ in planned], add_special_tokens=False)["input_ids"]]
            if self.paired
            else [0] * len(planned)
        )
        eot_text = fmt.end_of_turn_text(tok)
        for i, (record, kind) in enumerate(planned):
            ids = prompt_ids[i] + annotation_ids[i] + response_ids[i] + self.eot_ids
            if len(ids) + paired_lengths[i] > self.config.max_seq_len:
                paired = " with its annotation (data.pair_with_anchored)" if paired_lengths[i] else ""
                self._skip(
                    record.id,
                    "too_long",
                    f"{len(ids) + paired_lengths[i]} tokens{paired} > max_seq_len={self.config.max_seq_len}",
                )
                continue
            n_prompt, n_ann = len(prompt_ids[i]), len(annotation_ids[i])
            mask = [0] * (n_prompt + n_ann) + [1] * (len(response_ids[i]) + len(self.eot_ids))
            if kind == "anchored" and self.config.data.train_closing_delimiter:
                mask[n_prompt + n_ann - 1] = 1  # the annotation's last token is its closing delimiter
            joint = encode_prompt(tok, prompts[i] + annotations[i] + record.response + eot_text)
            self.joint_differs += joint != ids
            self.examples.append(
                SFTExample(
                    record.id,
                    ids,
                    mask,
                    kind,
                    annotation_start=n_prompt if kind == "anchored" else None,
                    annotation=annotations[i] if kind == "anchored" else None,
                    response_start=n_prompt + n_ann,
                )
            )

    def _skip(self, record_id: str, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        self.issues.append({"id": record_id, "reason": reason, "detail": detail, "action": "skipped"})

    def finish(self) -> BuiltExamples:
        fraction = self.config.data.validation_fraction
        validation = [e for e in self.examples if is_held_out(e.id, fraction)]
        self.examples = [e for e in self.examples if not is_held_out(e.id, fraction)]
        anchored = [e for e in self.examples if e.kind == "anchored"]
        chosen = choose_keys_only([e.id for e in anchored], self.config.keys_only_fraction, self.config.keys_only_seed)
        for example in anchored:
            if example.id in chosen:
                self._make_keys_only(example)
        kinds = Counter(e.kind for e in self.examples)
        skipped_total = sum(self.skipped.values())
        counts = {
            "records_in": self.records_in,
            "trained": len(self.examples),
            "validation_examples": len(validation),
            "validation_ids_sha256": trained_ids_fingerprint(e.id for e in validation),
            "trained_by_kind": {
                k: kinds.get(k, 0) for k in ("plain", "anchored", "keys_only", "plain_fallback", "replay")
            },
            "keys_only": kinds.get("keys_only", 0),
            "skipped": skipped_total,
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "invalid_annotation_trained_plain": kinds.get("plain_fallback", 0),
            "trained_tokens": sum(sum(e.label_mask) for e in self.examples),
            "total_tokens": sum(len(e.input_ids) for e in self.examples),
            "pieces_differ_from_joint_tokenization": self.joint_differs,
            "paired_with_anchored": self.paired,
            "trained_ids_sha256": trained_ids_fingerprint(e.id for e in self.examples),
            "records_with_turns_cut_after_last_reply": self.turns_cut,
        }
        self._check_whole_dataset(counts)
        return BuiltExamples(self.examples, counts, self.issues, validation)

    def _make_keys_only(self, example: SFTExample) -> None:
        ids, mask = keys_only_mask(self.tokenizer, example.annotation)
        start = example.annotation_start
        if example.input_ids[start : start + len(ids)] != ids:  # the same tokenizer, the same text: cannot differ
            raise AssertionError(f"{example.id}: annotation ids changed between tokenizations")
        example.label_mask[start : start + len(ids)] = mask
        example.kind = "keys_only"

    def _check_whole_dataset(self, counts: dict[str, Any]) -> None:
        if counts["trained"] == 0:
            raise SFTDataError(
                f"no trainable example among {self.records_in} records (skipped by reason: "
                f"{counts['skipped_by_reason']}, held out: {counts['validation_examples']}); check data.* column "
                "keys, arm, max_seq_len and data.validation_fraction"
            )
        fraction = counts["skipped"] / max(self.records_in, 1)
        if fraction > self.config.max_skip_fraction:
            raise SFTDataError(
                f"{counts['skipped']} of {self.records_in} records skipped ({fraction:.1%} > max_skip_fraction="
                f"{self.config.max_skip_fraction}); by reason: {counts['skipped_by_reason']}"
            )
