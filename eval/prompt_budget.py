"""Which prompts fit the sampling engine's context: the rest are skipped and counted.

vLLM rejects a whole ``generate`` call when one prompt plus its ``max_tokens`` exceeds
``max_model_len``, and WildChat's first turns have a long tail. So before sampling an arm,
each rendered prompt is measured with the ids the backend will be fed
(``encode_prompt``) against ``max_model_len - max_new_tokens`` minus what the arm's mode
adds before the response (an anchored arm: the two delimiters and up to
``max_annotation_tokens``; ``empty_annotation``: the two delimiters). Prompts over it are
left out of that arm and counted per arm in the manifest (``prompts_too_long``); the
judge applies the same rule to its inputs (``eval.judge``).
"""

from __future__ import annotations

from typing import Any, Sequence

from eval.config import ArmConfig, SamplingConfig
from eval.prompts import Prompt
from posttrain.prompt_format import encode_prompt

# <|ann|> before the annotation, <|/ann|> after it.
DELIMITER_TOKENS = 2


def prompt_token_budget(max_model_len: int | None, sampling: SamplingConfig, mode: str) -> int | None:
    """Most prompt tokens an arm in ``mode`` can take (None: the backend has no limit)."""
    if max_model_len is None:
        return None
    before_response = 0
    if mode == "anchored":
        before_response = DELIMITER_TOKENS + sampling.max_annotation_tokens
    elif mode == "no_annotation" and sampling.no_annotation == "empty_annotation":
        before_response = DELIMITER_TOKENS
    return max_model_len - sampling.max_new_tokens - before_response


def prompts_that_fit(
    prompts: Sequence[Prompt], arm: ArmConfig, tokenizer: Any, budget: int | None
) -> tuple[list[Prompt], list[str]]:
    """The prompts whose rendered ids fit ``budget``, and the ids of those that do not."""
    if budget is None:
        return list(prompts), []
    kept, too_long = [], []
    for prompt in prompts:
        ids = encode_prompt(tokenizer, arm.prompt_format.render_prompt(prompt.text, tokenizer))
        if len(ids) <= budget:
            kept.append(prompt)
        else:
            too_long.append(prompt.id)
    return kept, too_long
