"""The LLM annotator: a prompt per chunk, batched generation, parse, retry, record.

Each request carries its own seed, derived from (base seed, chunk id, attempt): reruns
and other shards reproduce it, and no two requests share an engine-wide seed (a known
source of identical samples). An output that does not parse is retried with the next
attempt's seed, up to ``max_retries`` times; what still fails is returned as
``status="failed"`` with the last raw output and the error, for the stage to record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Protocol, Sequence

from annotate.annotators import ANNOTATOR_FILE, AnnotationResult, code_digest
from annotate.config import LLMConfig
from annotate.format import AnnotationSchema, Tags, annotation_body_regex
from annotate.llm_output import MalformedOutput, parse_llm_tags

VERSION = "llm-1"
# Tags the vLLM grammar lets the model separate with: a space or a newline (the prompt asks for
# one tag per line; both parse the same).
GRAMMAR_SEPARATORS = " \n"


class GenerationBackend(Protocol):
    """Anything that turns prompts into completions, one seed per prompt."""

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], temperature: float) -> list[str]: ...


def request_seed(base_seed: int, chunk_id: str, attempt: int) -> int:
    """A 31-bit seed per (chunk, attempt): stable across runs, machines and shards."""
    digest = hashlib.sha256(f"{base_seed}:{chunk_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class LLMAnnotator:
    def __init__(
        self,
        config: LLMConfig,
        schema: AnnotationSchema,
        engine: GenerationBackend | None = None,
        progress: bool = True,
    ):
        self.config = config = config.resolved()
        self.schema = schema
        # The engine that generates; None builds the configured backend (vllm | transformers).
        self.engine = engine if engine is not None else make_backend(config, self.grammar())
        self.progress = progress
        self.name = f"llm:{config.model}"
        prompt_digest = hashlib.sha256(config.prompt_template.encode()).hexdigest()[:8]
        grammar = "+grammar" if self.grammar() else ""
        self.version = (
            f"{VERSION}+{config.backend}{grammar}+prompt:{prompt_digest}+code:{code_digest('llm', 'llm_output')}"
        )

    def grammar(self) -> str | None:
        """The regex vLLM constrains each output to (None: unconstrained)."""
        if self.config.backend != "vllm" or not self.config.structured_output:
            return None
        return annotation_body_regex(self.schema, GRAMMAR_SEPARATORS)

    def prompt(self, text: str) -> str:
        return self.config.prompt_template.format(
            text=text[: self.config.max_input_chars],
            keys=", ".join(self.schema.keys),
            min_tags=self.schema.min_tags,
            max_tags=self.schema.max_tags,
        )

    def annotate(self, texts: Sequence[str]) -> list[Tags]:
        ids = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]  # seeds follow the text
        return [r.tags for r in self.annotate_batch(ids, texts)]

    def annotate_batch(self, ids: Sequence[str], texts: Sequence[str]) -> list[AnnotationResult]:
        prompts = [self.prompt(t) for t in texts]
        results: list[AnnotationResult | None] = [None] * len(texts)
        last: dict[int, tuple[str, str]] = {}  # index -> (raw output, error) of its latest attempt
        pending = list(range(len(texts)))
        for attempt in range(self.config.max_retries + 1):
            if not pending:
                break
            # Greedy decoding would repeat a malformed output: retries always sample.
            temperature = self.config.temperature if attempt == 0 else max(self.config.temperature, 0.7)
            outputs = self._generate(
                [prompts[i] for i in pending],
                [request_seed(self.config.seed, ids[i], attempt) for i in pending],
                temperature,
            )
            still = []
            for i, raw in zip(pending, outputs):
                try:
                    results[i] = AnnotationResult(parse_llm_tags(raw, self.schema), "ok", "", raw)
                except MalformedOutput as err:
                    last[i] = (raw, str(err))
                    still.append(i)
            pending = still
        attempts = self.config.max_retries + 1
        for i in pending:
            raw, error = last[i]
            results[i] = AnnotationResult((), "failed", f"malformed after {attempts} attempts: {error}", raw)
        return results  # type: ignore[return-value]

    def _generate(self, prompts: list[str], seeds: list[int], temperature: float) -> list[str]:
        size = self.config.batch_size
        outputs: list[str] = []
        for start in range(0, len(prompts), size):
            outputs.extend(
                self.engine.generate(prompts[start : start + size], seeds[start : start + size], temperature)
            )
        if len(outputs) != len(prompts):
            raise RuntimeError(f"backend returned {len(outputs)} outputs for {len(prompts)} prompts")
        return outputs

    def save(self, directory: str | Path) -> None:
        """What it takes to rebuild this annotator (the model is referenced, not copied)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        info = {
            "kind": "llm",
            "version": self.version,
            "config": dataclasses.asdict(self.config),
            "schema": dataclasses.asdict(self.schema),
        }
        (directory / ANNOTATOR_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(
        cls, directory: str | Path, progress: bool = True, engine: GenerationBackend | None = None, **config_overrides
    ) -> "LLMAnnotator":
        """The saved annotator; ``config_overrides`` replace LLMConfig fields (e.g. backend="vllm")."""
        info = json.loads((Path(directory) / ANNOTATOR_FILE).read_text(encoding="utf-8"))
        config = LLMConfig(**{**info["config"], **config_overrides})
        return cls(config, AnnotationSchema(**info["schema"]), engine=engine, progress=progress)


def make_backend(config: LLMConfig, grammar: str | None = None) -> GenerationBackend:
    if config.backend == "vllm":
        from annotate.llm_backends import VLLMBackend

        return VLLMBackend(config, regex=grammar)
    from annotate.llm_backends import TransformersBackend

    return TransformersBackend(config)
