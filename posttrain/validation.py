"""Held-out SFT validation loss: where a trained model sits on the fit axis.

The held-out examples (``data.validation_fraction``, ``posttrain.examples.is_held_out``)
are scored after training, and the result is written to ``OUT/validation.json``::

    {"loss": ..., "loss_no_annotation": ..., "n_examples": ..., "n_response_tokens": ...,
     "ids_sha256": ..., "format": "anchored" | "plain"}

- ``loss``: mean per-token negative log-likelihood (nats) of the response tokens (the
  response and the end-of-turn tokens after it: what both arms train) in the arm's
  training format: anchored ``prompt || annotation || response`` with the example's own
  annotation (an example whose annotation failed and is trained as plain, under
  ``invalid_annotation_policy=plain``, is scored as trained: without one);
- ``loss_no_annotation``: the same response tokens after the prompt alone (for the plain
  arm this is ``loss``). It does not credit the anchored model with the information in
  the true annotation, so it is the conservative fit measure for comparing arms;
- a mean over tokens pooled across examples (sum of NLL / number of tokens).

With no held-out example, ``n_examples`` is 0 and both losses are null. Every process
computes the same numbers (under ZeRO-3 or FSDP each forward needs every rank); the
main process writes the file.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import torch

from posttrain.examples import SFTExample, trained_ids_fingerprint

VALIDATION_FILE = "validation.json"


def without_annotation(example: SFTExample) -> tuple[list[int], int]:
    """The example's ids with its annotation cut out, and where its response starts."""
    if example.annotation_start is None:
        return example.input_ids, example.response_start
    ids = example.input_ids[: example.annotation_start] + example.input_ids[example.response_start:]
    return ids, example.annotation_start


def response_nll(model: Any, sequences: Sequence[tuple[list[int], int]], pad_id: int, device: Any,
                 batch_size: int, bf16: bool = False) -> tuple[float, int]:
    """Sum of the NLL (nats) of every token from each sequence's response start on, and their count."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if bf16 else nullcontext()
    try:
        for start in range(0, len(order), batch_size):
            batch = [sequences[i] for i in order[start: start + batch_size]]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            targets = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, (ids, response_start) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
                targets[row, max(response_start, 1): len(ids)] = True  # the first token is never predicted
            with torch.no_grad(), autocast:
                logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            picked = logprobs.gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            mask = targets[:, 1:].to(device)
            total -= picked[mask].sum().item()
            count += int(mask.sum().item())
    finally:
        model.train(was_training)
    return total, count


def validation_report(model: Any, examples: Sequence[SFTExample], arm: str, pad_id: int, device: Any,
                      batch_size: int, bf16: bool = False) -> dict[str, Any]:
    """``validation.json``'s content for ``examples`` (the held-out split) scored by ``model``."""
    report: dict[str, Any] = {"loss": None, "loss_no_annotation": None, "n_examples": len(examples),
                              "n_response_tokens": 0, "ids_sha256": trained_ids_fingerprint(e.id for e in examples),
                              "format": arm}
    if not examples:
        return report
    as_trained = [(e.input_ids, e.response_start) for e in examples]
    total, count = response_nll(model, as_trained, pad_id, device, batch_size, bf16)
    report.update(loss=total / count, loss_no_annotation=total / count, n_response_tokens=count)
    if arm == "anchored":
        bare = [without_annotation(e) for e in examples]
        total_bare, count_bare = response_nll(model, bare, pad_id, device, batch_size, bf16)
        assert count_bare == count, "the same response tokens are scored with and without the annotation"
        report["loss_no_annotation"] = total_bare / count_bare
    return report


def write_validation(out: Path, report: dict[str, Any]) -> None:
    (out / VALIDATION_FILE).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
