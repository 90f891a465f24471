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
from typing import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.annotation_syntax import AnnotationSyntaxTable
from eval.backends.base import Completion, GenerationRequest, cut_at_stop, split_stops
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

    def single_token_id(self, text: str) -> int | None:
        """The id of ``text`` if the tokenizer writes it as one token (special tokens do)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out: list[Completion] = []
        for start in range(0, len(requests), self.batch_size):
            out.extend(self._generate_batch(list(requests[start : start + self.batch_size])))
        return out

    @torch.no_grad()
    def _generate_batch(self, requests: list[GenerationRequest]) -> list[Completion]:
        tok = self.tokenizer
        rows = len(requests)
        prompts = [encode_prompt(self.tokenizer, r.text) for r in requests]
        width = max(len(p) for p in prompts)
        pad_id = tok.pad_token_id
        input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
        attention = torch.zeros((rows, width), dtype=torch.long)
        for i, ids in enumerate(prompts):  # left padding: every row's next token is at the end
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[i, width - len(ids) :] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)

        stop_ids: list[dict[int, str]] = []
        text_stops: list[tuple[str, ...]] = []
        banned: list[list[int]] = []
        for request in requests:
            ids, strings = split_stops(tok, request.stop)
            stop_ids.append({**{eos: "<eos>" for eos in self.eos_ids}, **ids})
            text_stops.append(strings)
            row_banned = []
            for text in request.banned:
                tid = self.single_token_id(text)
                if tid is None:
                    raise ValueError(f"banned string {text!r} is not a single token of {self.model_name}'s tokenizer")
                row_banned.append(tid)
            banned.append(row_banned)
        generators = []
        for request in requests:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(request.seed)
            generators.append(gen)
        temperature = torch.tensor([r.temperature for r in requests], dtype=torch.float32, device=self.device)
        top_p = torch.tensor([r.top_p for r in requests], dtype=torch.float32, device=self.device)
        max_new = [r.max_new_tokens for r in requests]
        syntax_rows = [i for i, r in enumerate(requests) if r.annotation_syntax]
        syntax_state = {i: AnnotationSyntaxTable.start_state() for i in syntax_rows}
        mass_outside = {i: 0.0 for i in syntax_rows}  # the most probability the syntax removed at one step

        generated: list[list[int]] = [[] for _ in range(rows)]
        finish: list[tuple[str, str | None] | None] = [None] * rows
        cache = None
        step_ids, step_attention, step_positions = input_ids, attention, positions
        for _ in range(max(max_new)):
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
            for i, ids in enumerate(banned):
                if ids:
                    logits[i, ids] = float("-inf")
            if syntax_rows:
                table = self.syntax_table(logits.shape[-1])
                for i in syntax_rows:
                    if finish[i] is None:
                        allowed = table.allowed[syntax_state[i]]
                        t = float(temperature[i]) if float(temperature[i]) > 0 else 1.0
                        outside = float(torch.softmax(logits[i] / t, dim=-1)[~allowed].sum())
                        mass_outside[i] = max(mass_outside[i], outside)
                        logits[i, ~allowed] = float("-inf")
            next_tokens = sample_next(logits, temperature, top_p, generators, active=[f is None for f in finish])
            for i in range(rows):
                if finish[i] is not None:
                    continue
                token = next_tokens[i]
                generated[i].append(token)
                if i in syntax_state:
                    syntax_state[i] = table.advance(syntax_state[i], token)
                if token in stop_ids[i]:
                    finish[i] = ("stop", stop_ids[i][token])
                elif text_stops[i] and (hit := cut_at_stop(self._decode(generated[i]), text_stops[i])[1]):
                    finish[i] = ("stop", hit)
                elif len(generated[i]) >= max_new[i]:
                    finish[i] = ("length", None)
            if all(f is not None for f in finish):
                break
            # Finished rows step on their last token; their outputs are ignored from here on.
            fed = [ids[-1] for ids in generated]
            step_ids = torch.tensor(fed, dtype=torch.long, device=self.device)[:, None]
            step_attention = torch.cat(
                [step_attention, torch.ones((rows, 1), dtype=torch.long, device=self.device)], dim=1
            )
            step_positions = step_positions[:, -1:] + 1

        completions = []
        for i in range(len(requests)):
            kind, reason = finish[i] or ("length", None)
            ids = generated[i]
            if kind == "stop" and ids and ids[-1] in stop_ids[i]:
                ids = ids[:-1]  # the stop token is not part of the text
            text = self._decode(ids)
            if kind == "stop" and reason in text_stops[i]:
                text = cut_at_stop(text, text_stops[i])[0]
            extra = {"mass_outside_syntax": mass_outside[i]} if i in mass_outside else {}
            completions.append(
                Completion(text=text, finish_reason=kind, stop_reason=reason, num_tokens=len(generated[i]), extra=extra)
            )
        return completions

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
