"""A batched sampling loop over a transformers causal LM, one torch.Generator per row.

Why not ``model.generate``: it draws every row's tokens from one global RNG, so a sample
depends on whatever else shares its batch and cannot be replayed from its own seed. Here
each row owns a ``torch.Generator`` seeded from the request, and draws exactly one token
per step from it. The same requests in the same batches therefore reproduce bit for bit
(the run's batches are fixed by the config, see eval.generate); the same request in a
different batch draws the same random stream, but padding can change the logits in the
last bits, so batch invariance is not promised.

The loop: left-pad the prompts, one forward over them filling a KV cache, then one token
per step for the whole batch; finished rows keep stepping on a pad token (their output is
ignored) until every row is done.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.annotation_syntax import AnnotationSyntaxTable
from eval.backends.base import Completion, GenerationRequest, banned_token_ids, cut_at_stop, split_stops
from posttrain.prompt_format import encode_prompt

_DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype '{dtype}' is not one of {', '.join(_DTYPES)}")
    if _DTYPES[dtype] is not None:
        return _DTYPES[dtype]
    # auto: float32 on CPU (bf16 matmuls are slow there), bf16 on GPUs that have it.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(name: str, revision: str | None = None):
    tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass
class _RowControls:
    """Per request of a batch: what ends it, what it may not sample, and how it samples."""

    # Token ids that end the row (eos and special-token stops) -> the stop reason they report.
    stop_ids: list[dict[int, str]]
    # Stop strings matched on the decoded text.
    text_stops: list[tuple[str, ...]]
    # Token ids the row may never sample.
    banned_ids: list[list[int]]
    # The row's own random stream, seeded from its request.
    generators: list[torch.Generator]
    # Per row sampling temperature (0: greedy) and nucleus mass.
    temperature: torch.Tensor
    top_p: torch.Tensor
    max_new_tokens: list[int]


class _SyntaxConstraint:
    """The annotation syntax (eval.annotation_syntax) on the rows that ask for it: each step
    masks what would leave the syntax and remembers the most probability it removed."""

    def __init__(self, backend: TransformersBackend, requests: list[GenerationRequest]) -> None:
        self.backend = backend
        self.rows = [i for i, r in enumerate(requests) if r.annotation_syntax]
        self.state = {i: AnnotationSyntaxTable.start_state() for i in self.rows}
        self.mass_outside = {i: 0.0 for i in self.rows}
        self.table: AnnotationSyntaxTable | None = None

    def mask(self, logits: torch.Tensor, temperature: torch.Tensor, finish: list) -> None:
        if not self.rows:
            return
        self.table = self.backend.syntax_table(logits.shape[-1])
        for i in self.rows:
            if finish[i] is None:
                allowed = self.table.allowed[self.state[i]]
                row_temperature = float(temperature[i]) if float(temperature[i]) > 0 else 1.0
                outside = float(torch.softmax(logits[i] / row_temperature, dim=-1)[~allowed].sum())
                self.mass_outside[i] = max(self.mass_outside[i], outside)
                logits[i, ~allowed] = float("-inf")

    def advance(self, row: int, token: int) -> None:
        if row in self.state:
            self.state[row] = self.table.advance(self.state[row], token)

    def report(self, row: int) -> dict:
        """The completion's extra: the most probability the syntax removed at one step."""
        return {"mass_outside_syntax": self.mass_outside[row]} if row in self.mass_outside else {}


class TransformersBackend:
    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 16,
        max_model_len: int | None = None,
        **_ignored,
    ) -> None:
        self.model_name = model
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(tokenizer or model, revision=None if tokenizer else revision)
        self.model = AutoModelForCausalLM.from_pretrained(
            model, revision=revision, dtype=resolve_dtype(dtype, self.device)
        ).to(self.device)
        self.model.eval()
        self.batch_size = batch_size
        # Longest prompt + generation: the model's positions, or max_model_len when that is smaller (None:
        # neither is known); prompts over the budget are skipped and counted upstream, as with vLLM.
        self.max_model_len = context_length(self.model.config, max_model_len)
        self._cache_kwarg = (
            "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        )
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self._syntax: AnnotationSyntaxTable | None = None  # built on the first constrained request

    def syntax_table(self, vocab_size: int) -> AnnotationSyntaxTable:
        if self._syntax is None:
            self._syntax = AnnotationSyntaxTable(self.tokenizer, vocab_size, self.device)
        return self._syntax

    def close(self) -> None:
        del self.model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out: list[Completion] = []
        for start in range(0, len(requests), self.batch_size):
            out.extend(self._generate_batch(list(requests[start : start + self.batch_size])))
        return out

    @torch.no_grad()
    def _generate_batch(self, requests: list[GenerationRequest]) -> list[Completion]:
        controls = self._row_controls(requests)
        syntax = _SyntaxConstraint(self, requests)
        generated, finish = self._sample_tokens(requests, controls, syntax)
        return [
            self._completion(generated[i], finish[i], controls.stop_ids[i], controls.text_stops[i], syntax.report(i))
            for i in range(len(requests))
        ]

    def _row_controls(self, requests: list[GenerationRequest]) -> _RowControls:
        stop_ids, text_stops = [], []
        for request in requests:
            ids, strings = split_stops(self.tokenizer, request.stop)
            stop_ids.append({**{eos: "<eos>" for eos in self.eos_ids}, **ids})
            text_stops.append(strings)
        generators = []
        for request in requests:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(request.seed)
            generators.append(generator)
        return _RowControls(
            stop_ids=stop_ids,
            text_stops=text_stops,
            banned_ids=[banned_token_ids(self, request.banned) for request in requests],
            generators=generators,
            temperature=torch.tensor([r.temperature for r in requests], dtype=torch.float32, device=self.device),
            top_p=torch.tensor([r.top_p for r in requests], dtype=torch.float32, device=self.device),
            max_new_tokens=[r.max_new_tokens for r in requests],
        )

    def _sample_tokens(
        self, requests: list[GenerationRequest], controls: _RowControls, syntax: _SyntaxConstraint
    ) -> tuple[list[list[int]], list[tuple[str, str | None] | None]]:
        """The token loop: one forward over the left-padded prompts, then one token per step for
        every row until each has finished; per row its tokens and (finish kind, stop reason)."""
        rows = len(requests)
        step_ids, step_attention = self._left_padded([encode_prompt(self.tokenizer, r.text) for r in requests])
        step_positions = (step_attention.cumsum(-1) - 1).clamp(min=0)
        generated: list[list[int]] = [[] for _ in range(rows)]
        finish: list[tuple[str, str | None] | None] = [None] * rows
        cache = None
        for _ in range(max(controls.max_new_tokens)):
            out = self.model(
                input_ids=step_ids,
                attention_mask=step_attention,
                position_ids=step_positions,
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_kwarg: cache},
            )
            cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            logits = out.logits[:, -1, :].float()
            for i, ids in enumerate(controls.banned_ids):
                if ids:
                    logits[i, ids] = float("-inf")
            syntax.mask(logits, controls.temperature, finish)
            active = [f is None for f in finish]
            next_tokens = sample_next(logits, controls.temperature, controls.top_p, controls.generators, active)
            for i, token in enumerate(next_tokens):
                if finish[i] is None:
                    generated[i].append(token)
                    syntax.advance(i, token)
                    finish[i] = self._finish(generated[i], i, controls)
            if all(f is not None for f in finish):
                break
            # Finished rows step on their last token; their outputs are ignored from here on.
            step_ids = torch.tensor([ids[-1] for ids in generated], dtype=torch.long, device=self.device)[:, None]
            step_attention = torch.cat(
                [step_attention, torch.ones((rows, 1), dtype=torch.long, device=self.device)], dim=1
            )
            step_positions = step_positions[:, -1:] + 1
        return generated, finish

    def _left_padded(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, left padded so every row's next token is at the end."""
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(prompts), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, ids in enumerate(prompts):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[i, width - len(ids) :] = 1
        return input_ids.to(self.device), attention.to(self.device)

    def _finish(self, ids: list[int], row: int, controls: _RowControls) -> tuple[str, str | None] | None:
        """Why row ``row`` ends after its last token ``ids[-1]`` (a stop token or string, or its
        length), or None while it goes on."""
        stop_ids, text_stops = controls.stop_ids[row], controls.text_stops[row]
        if ids[-1] in stop_ids:
            return ("stop", stop_ids[ids[-1]])
        if text_stops and (hit := cut_at_stop(self._decode(ids), text_stops)[1]):
            return ("stop", hit)
        if len(ids) >= controls.max_new_tokens[row]:
            return ("length", None)
        return None

    def _completion(
        self,
        generated: list[int],
        finish: tuple[str, str | None] | None,
        stop_ids: dict[int, str],
        text_stops: tuple[str, ...],
        extra: dict,
    ) -> Completion:
        kind, reason = finish or ("length", None)
        ids = generated
        if kind == "stop" and ids and ids[-1] in stop_ids:
            ids = ids[:-1]  # the stop token is not part of the text
        text = self._decode(ids)
        if kind == "stop" and reason in text_stops:
            text = cut_at_stop(text, text_stops)[0]
        return Completion(text=text, finish_reason=kind, stop_reason=reason, num_tokens=len(generated), extra=extra)

    def _decode(self, ids: list[int]) -> str:
        # Special tokens are kept: annotation delimiters must stay visible to be parsed/stripped.
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def context_length(model_config, max_model_len: int | None) -> int | None:
    """The tokens one sequence may hold: the model's position limit, capped by ``max_model_len``.

    A prompt past the positions is not refused by transformers (only a warning) and samples
    from position embeddings the model never learned, so the limit is the model's own.
    """
    positions = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
    known = [int(n) for n in (positions, max_model_len) if n]
    return min(known) if known else None


def sample_next(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    generators: list[torch.Generator],
    active: list[bool],
) -> list[int]:
    """One token per row: greedy where temperature is 0, else nucleus sampling from the
    row's own generator. Inactive rows draw nothing (their generator is not advanced)."""
    greedy = logits.argmax(dim=-1)
    safe_t = torch.where(temperature > 0, temperature, torch.ones_like(temperature))
    probs = torch.softmax(logits / safe_t[:, None], dim=-1)
    probs = nucleus_filter(probs, top_p)
    tokens = []
    for i, gen in enumerate(generators):
        if not active[i] or temperature[i] <= 0:
            tokens.append(int(greedy[i]))
            continue
        tokens.append(int(torch.multinomial(probs[i], 1, generator=gen)))
    return tokens


def nucleus_filter(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero every token outside the smallest set whose mass reaches top_p (per row).
    The most likely token is always kept; rows with top_p >= 1 are untouched."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop = (mass_before >= top_p[:, None]) & (top_p[:, None] < 1.0)
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def _eos_ids(model, tokenizer) -> list[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, (list, tuple)):
        ids.update(int(i) for i in gen_eos)
    return sorted(ids)
