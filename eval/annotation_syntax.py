"""Annotation sampling constrained to the annotation syntax (``sampling.annotation_syntax``).

Why: a small anchored model after SFT often leaves the annotation for the article itself
(``<|ann|>topic:\\n\\nThe ...``) and the sample is a parse failure, so its response is
conditioned on no annotation at all. With the constraint, every token that would make the
annotation body unparseable (``annotate.format``'s syntax automaton) is removed before
sampling and the rest renormalised: the model still chooses every key and every value
(values are not restricted to any vocabulary, so "do the values exist in the corpus" stays a
measurement), and closes the annotation itself; only the shape is enforced, as structured
generation does. The probability mass removed is recorded per annotation
(``annotation_mass_outside_syntax``: its largest value over the annotation's steps), so the
report says how often the model itself wanted to leave the syntax.

A token's effect on the syntax state is precomputed for every state once per tokenizer; a
step costs one table lookup per row.
"""

from __future__ import annotations

import torch

from annotate.format import ANNOTATION_CLOSE, SYNTAX_ACCEPTING, SYNTAX_KEY_START, SYNTAX_STATES, syntax_advance


class AnnotationSyntaxTable:
    """For each syntax state, which token ids keep the body parseable and where they lead."""

    def __init__(self, tokenizer, vocab_size: int, device: torch.device | str = "cpu") -> None:
        close_ids = tokenizer.encode(ANNOTATION_CLOSE, add_special_tokens=False)
        if len(close_ids) != 1:
            raise ValueError(f"{ANNOTATION_CLOSE} is not one token of this tokenizer: it has no annotation tokens")
        self.close_id = close_ids[0]
        special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        # next_state[s, t]: the state after token t from state s; -1 where t breaks the syntax.
        self.next_state = torch.full((SYNTAX_STATES, vocab_size), -1, dtype=torch.long)
        for token_id in range(min(vocab_size, len(tokenizer))):
            if token_id in special:
                continue  # delimiters, eos, pad: only the close is allowed, below
            text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            if not text or "\ufffd" in text:
                continue  # a partial UTF-8 byte: cannot be checked alone, and values are plain text
            for state in range(SYNTAX_STATES):
                end = syntax_advance(state, text)
                if end is not None:
                    self.next_state[state, token_id] = end
        allowed = self.next_state >= 0
        for state in SYNTAX_ACCEPTING:
            allowed[state, self.close_id] = True
        self.allowed = allowed.to(device)  # masks the logits where they are, every step

    @staticmethod
    def start_state() -> int:
        return SYNTAX_KEY_START

    def advance(self, state: int, token_id: int) -> int:
        """The state after a sampled, allowed token (the close token ends the annotation)."""
        return state if token_id == self.close_id else int(self.next_state[state, token_id])
