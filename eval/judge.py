"""An LLM judge: a generation backend, a prompt template, and a parser for its answer.

Used for quality scores and for story attribute labels. Real runs use vLLM (the paper's
judge is Qwen3-30B-A3B-Instruct); the transformers backend runs the same code on a tiny
model, which is how the tests exercise it. Every answer that does not parse is a
counted failure with value None: it is never replaced by a default score or label.

One engine (``load_engine``, shared by ``engine_key``) can serve several requesters
(quality and attribute labels name the same 30B judge); each requester asks through its
own ``Judge`` with its own settings (template, max_new_tokens, temperature, seed), so sharing the engine never
changes what a requester asked for. Inputs longer than the engine's ``max_model_len``
minus ``max_new_tokens`` are not sent (vLLM would fail the whole batch): their answer is
empty, so they count as unparsed, and ``too_long`` counts them.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Sequence

from eval.backends import GenerationRequest, load_backend
from eval.config import JudgeConfig
from eval.seeds import stable_seed
from posttrain.prompt_format import encode_prompt

logger = logging.getLogger(__name__)


def engine_key(config: JudgeConfig) -> tuple:
    """What decides the judge engine itself (not how it is asked): requesters with the same key share one."""
    return (config.model, config.backend, *sorted(config.engine_kwargs().items()))


def load_engine(config: JudgeConfig):
    """The generation backend that runs the judge model of ``config``."""
    if not config.model:
        raise ValueError("the judge has no model (set metrics.*.judge.model)")
    return load_backend(
        config.backend, config.model, batch_size=config.batch_size, seed=config.seed, **config.engine_kwargs()
    )


class Judge:
    def __init__(self, config: JudgeConfig, backend=None) -> None:
        """A requester's judge: ``config``'s settings on ``backend`` (shared, owned by the
        caller) or on an engine of its own (closed by ``close``)."""
        self.config = config
        self.owns_backend = backend is None
        self.backend = backend if backend is not None else load_engine(config)
        # Inputs not sent because they exceed the engine's context (answered "", counted as unparsed).
        self.too_long = 0

    def close(self) -> None:
        if self.owns_backend:
            self.backend.close()

    def render(self, content: str) -> str:
        tokenizer = self.backend.tokenizer
        if self.config.use_chat_template and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        return content

    def ask(self, contents: Sequence[str], keys: Sequence[str]) -> list[str]:
        """The judge's raw answer to each filled template (``keys`` seed each request)."""
        requests = [
            GenerationRequest(
                text=self.render(content),
                seed=stable_seed("judge", self.config.seed, key),
                temperature=self.config.temperature,
                max_new_tokens=self.config.max_new_tokens,
            )
            for content, key in zip(contents, keys)
        ]
        limit = getattr(self.backend, "max_model_len", None)
        budget = None if limit is None else limit - self.config.max_new_tokens
        fits = [budget is None or len(encode_prompt(self.backend.tokenizer, r.text)) <= budget for r in requests]
        sent = [r for r, ok in zip(requests, fits) if ok]
        texts = []
        for start in range(0, len(sent), self.config.batch_size):
            texts.extend(c.text for c in self.backend.generate(sent[start : start + self.config.batch_size]))
        skipped = fits.count(False)
        if skipped:
            self.too_long += skipped
            logger.warning(
                f"eval: judge {self.config.model}: {skipped} inputs longer than {budget} tokens were not judged "
                "(counted as unparsed)"
            )
        answers = iter(texts)
        return [next(answers) if ok else "" for ok in fits]


def fill_template(template: str, key: str, **values: str) -> str:
    """``template.format(**values)`` with an error naming the config key on a bad placeholder."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"{key}: cannot fill the template ({type(err).__name__}: {err}); it may use "
            + ", ".join("{" + k + "}" for k in values)
            + " (write literal braces as {{ }})"
        ) from err


def parse_score(answer: str, pattern: str) -> float | None:
    """The LAST match of ``pattern`` (the final verdict, after any reasoning), or None."""
    matches = list(re.finditer(pattern, answer))
    if not matches:
        return None
    try:
        return float(matches[-1].group(1))
    except (IndexError, ValueError):
        return None


def normalise_label(value) -> str | None:
    """Lower case, single spaces, no surrounding punctuation; None for empty/non-text."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = re.sub(r"\s+", " ", str(value)).strip().strip(".,;:!\"'").lower()
    return text or None


def parse_attribute_labels(answer: str, attributes: Sequence[str]) -> dict[str, str | None] | None:
    """The first JSON object in the answer, as attribute -> normalised label.
    None when no JSON object parses; a missing attribute maps to None."""
    for match in re.finditer(r"\{", answer):
        depth = 0
        for end in range(match.start(), len(answer)):
            if answer[end] == "{":
                depth += 1
            elif answer[end] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        obj = json.loads(answer[match.start() : end + 1])
                    except json.JSONDecodeError:
                        break
                    if isinstance(obj, dict):
                        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
                        return {a: normalise_label(lowered.get(a.lower())) for a in attributes}
                    break
    return None
