"""Held-out SFT validation loss: where a trained model sits on the fit axis.

The held-out examples (``data.validation_fraction``, ``posttrain.examples.is_held_out``)
are scored after training, and the result is written to ``OUT/validation.json``::

    {"loss": ..., "loss_no_annotation": ..., "loss_marginal": ..., "k": ..., "n_examples": ...,
     "n_response_tokens": ..., "ids_sha256": ..., "format": "anchored" | "plain"}

- ``loss``: mean per-token negative log-likelihood (nats) of the response tokens (the
  response and the end-of-turn tokens after it: what both arms train) in the arm's
  training format: anchored ``prompt || annotation || response`` with the example's own
  annotation (an example whose annotation failed and is trained as plain, under
  ``invalid_annotation_policy=plain``, is scored as trained: without one);
- ``loss_no_annotation``: the same response tokens after the prompt alone (for the plain
  arm this is ``loss``). It does not credit the anchored model with the information in
  the true annotation, so it is the conservative fit measure for comparing arms;
- ``loss_marginal`` (anchored format; for the plain arm it equals ``loss``): a Monte-Carlo
  estimate of the anchored model's marginal NLL of the response, -log p(y|x) =
  -log E_{z~p(z|x)} p(y|x,z), the quantity comparable with the plain arm's ``loss``. For
  each example, ``k`` = ``data.validation_annotation_samples`` annotations z_1..z_K are
  sampled from the model itself after the prompt (``sample_annotations``: the rules of
  eval's anchored sampler), each scored as log p(y|x,z_k) on the response tokens, and the
  example contributes -log(mean_k p(y|x,z_k)). By Jensen's inequality the expectation of
  this estimate is an UPPER bound on the true marginal NLL that tightens as K grows (it
  is exact as K goes to infinity); it is no importance-sampling estimate, so it needs no
  posterior. ``loss`` (true z given) and ``loss_no_annotation`` (a context the anchored
  model never trained on) are not comparable with the plain arm; this is;
- a mean over tokens pooled across examples (sum of NLL / number of tokens).

With no held-out example, ``n_examples`` is 0 and the losses are null. Every process
computes the same numbers (under ZeRO-3 or FSDP each forward needs every rank); the
main process writes the file.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN
from posttrain.examples import SFTExample, trained_ids_fingerprint

VALIDATION_FILE = "validation.json"


def without_annotation(example: SFTExample) -> tuple[list[int], int]:
    """The example's ids with its annotation cut out, and where its response starts."""
    if example.annotation_start is None:
        return example.input_ids, example.response_start
    ids = example.input_ids[: example.annotation_start] + example.input_ids[example.response_start :]
    return ids, example.annotation_start


@dataclass(frozen=True)
class AnnotationSampling:
    """How ``loss_marginal`` samples annotations: eval's anchored rules at temperature 1, top_p 1
    (the model's own p(z|x), which the bound needs)."""

    # Annotations sampled per held-out example (data.validation_annotation_samples).
    samples: int
    # Tokens sampled at most before the close is forced (eval's sampling.max_annotation_tokens).
    max_tokens: int
    # Ids of the open and close delimiters.
    open_id: int
    close_id: int
    # Tokens that end the model's turn (eos, a one-token end of turn): inside an annotation they force the close.
    stop_ids: tuple[int, ...]


def annotation_sampling(tokenizer: Any, end_of_turn: str, samples: int, max_tokens: int) -> AnnotationSampling:
    """The sampling rules for ``tokenizer``; the delimiters must be single tokens (anchored SFT checks it)."""
    open_ids = tokenizer(ANNOTATION_OPEN, add_special_tokens=False)["input_ids"]
    close_ids = tokenizer(ANNOTATION_CLOSE, add_special_tokens=False)["input_ids"]
    eot = tokenizer(end_of_turn, add_special_tokens=False)["input_ids"]
    stops = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    if len(eot) == 1:
        stops.add(eot[0])
    return AnnotationSampling(samples, max_tokens, open_ids[0], close_ids[0], tuple(sorted(stops)))


def annotation_seed(example_id: str, k: int) -> int:
    """The seed of the k-th annotation sampled for an example: it depends on nothing else."""
    digest = hashlib.sha256(f"marginal\0{example_id}\0{k}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


@torch.no_grad()
def sample_annotations(
    model: Any, prompt_ids: list[int], example_id: str, rules: AnnotationSampling, device: Any
) -> list[list[int]]:
    """``rules.samples`` annotations (ids, both delimiters included) sampled by ``model`` after the prompt.

    As eval's anchored sampler does: the open delimiter is appended, tokens are drawn until the
    close, and a turn ended inside the annotation (the stop token dropped) or ``max_tokens``
    drawn without a close get the close forced. A forced close is still a sample of z: it is
    what the model does. The K rows share the prompt (no padding); each row draws from its
    own generator seeded by (example id, k), so a sample never depends on its batch-mates.
    The sampled ids are kept as they are (eval re-tokenises the text) so each z is scored
    with the very ids it was drawn as.
    """
    k = rules.samples
    context = torch.tensor([prompt_ids + [rules.open_id]] * k, dtype=torch.long, device=device)
    generators = [torch.Generator(device=device).manual_seed(annotation_seed(example_id, i)) for i in range(k)]
    drawn: list[list[int]] = [[] for _ in range(k)]
    done = [False] * k
    cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=context, use_cache=True)
    for _ in range(rules.max_tokens):
        probs = torch.softmax(out.logits[:, -1, :].float(), dim=-1)
        step = []
        for i in range(k):
            token = rules.close_id if done[i] else int(torch.multinomial(probs[i], 1, generator=generators[i]))
            step.append(token)
            if not done[i]:
                drawn[i].append(token)
                done[i] = token == rules.close_id or token in rules.stop_ids
        if all(done):
            break
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        out = model(input_ids=torch.tensor(step, device=device)[:, None], use_cache=True, **{cache_kwarg: cache})
    bodies = [ids[:-1] if ids and (ids[-1] == rules.close_id or ids[-1] in rules.stop_ids) else ids for ids in drawn]
    return [[rules.open_id] + body + [rules.close_id] for body in bodies]


def marginal_nll(
    model: Any,
    examples: Sequence[SFTExample],
    rules: AnnotationSampling,
    pad_id: int,
    device: Any,
    batch_size: int,
    bf16: bool = False,
) -> tuple[float, int]:
    """Sum over examples of -log(mean_k p(y|x,z_k)) with z_k sampled by the model, and the response tokens."""
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for example in examples:
            ids, start = without_annotation(example)
            prompt, response = ids[:start], ids[start:]
            annotations = sample_annotations(model, prompt, example.id, rules, device)
            sequences = [(prompt + z + response, start + len(z)) for z in annotations]
            nlls = response_nlls(model, sequences, pad_id, device, batch_size, bf16)
            logps = torch.tensor([-nll for nll, _ in nlls], dtype=torch.float64)
            total -= float(torch.logsumexp(logps, dim=0)) - math.log(len(nlls))
            count += nlls[0][1]
    finally:
        model.train(was_training)
    return total, count


def total_nll(nlls: Sequence[tuple[float, int]]) -> tuple[float, int]:
    """The sum of per-sequence NLLs (``response_nlls``) and of their token counts."""
    return sum(nll for nll, _ in nlls), sum(n for _, n in nlls)


def response_nlls(
    model: Any,
    sequences: Sequence[tuple[list[int], int]],
    pad_id: int,
    device: Any,
    batch_size: int,
    bf16: bool = False,
) -> list[tuple[float, int]]:
    """Per sequence (same order): the NLL (nats) of its tokens from its response start on, and their count."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    result: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if bf16 else nullcontext()
    try:
        for start in range(0, len(order), batch_size):
            batch = [sequences[i] for i in order[start : start + batch_size]]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            targets = torch.zeros((len(batch), width), dtype=torch.bool)
            rows = order[start : start + batch_size]
            for row, (ids, response_start) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
                targets[row, max(response_start, 1) : len(ids)] = True  # the first token is never predicted
            with torch.no_grad(), autocast:
                logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            picked = logprobs.gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            mask = targets[:, 1:].to(device)
            nll = -(picked * mask).sum(dim=-1)
            for row, index in enumerate(rows):
                result[index] = (float(nll[row]), int(mask[row].sum()))
    finally:
        model.train(was_training)
    return result


def validation_report(
    model: Any,
    examples: Sequence[SFTExample],
    arm: str,
    pad_id: int,
    device: Any,
    batch_size: int,
    bf16: bool = False,
    rules: AnnotationSampling | None = None,
) -> dict[str, Any]:
    """``validation.json``'s content for ``examples`` (the held-out split) scored by ``model``;
    ``rules``: how ``loss_marginal`` samples annotations (anchored arm; None: not computed)."""
    report: dict[str, Any] = {
        "loss": None,
        "loss_no_annotation": None,
        "loss_marginal": None,
        "k": rules.samples if rules is not None and arm == "anchored" else None,
        "n_examples": len(examples),
        "n_response_tokens": 0,
        "ids_sha256": trained_ids_fingerprint(e.id for e in examples),
        "format": arm,
    }
    if not examples:
        return report
    as_trained = [(e.input_ids, e.response_start) for e in examples]
    total, count = total_nll(response_nlls(model, as_trained, pad_id, device, batch_size, bf16))
    report.update(
        loss=total / count, loss_no_annotation=total / count, loss_marginal=total / count, n_response_tokens=count
    )
    if arm == "anchored":
        bare = [without_annotation(e) for e in examples]
        total_bare, count_bare = total_nll(response_nlls(model, bare, pad_id, device, batch_size, bf16))
        assert count_bare == count, "the same response tokens are scored with and without the annotation"
        report["loss_no_annotation"] = total_bare / count_bare
        report["loss_marginal"] = None
        if rules is not None:
            total_marginal, count_marginal = marginal_nll(model, examples, rules, pad_id, device, batch_size, bf16)
            assert count_marginal == count, "the same response tokens are scored under sampled annotations"
            report["loss_marginal"] = total_marginal / count_marginal
    return report


def write_validation(out: Path, report: dict[str, Any]) -> None:
    (out / VALIDATION_FILE).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
