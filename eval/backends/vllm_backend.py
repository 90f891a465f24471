"""The offline vLLM engine as a backend (GPU runs; ``pip install .[vllm]``).

Written against vLLM's documented offline API: ``LLM(model, tensor_parallel_size, seed,
...)`` and ``llm.generate(prompts, [SamplingParams(...), ...])`` with one SamplingParams
per prompt, each with ``n=1`` and its own ``seed``. A per-request seed matters: relying on
the engine-wide seed has produced identical samples across jobs (a known vLLM report).

Prompts go in as token ids (``{"prompt_token_ids": ids}``, vLLM's ``TokensPrompt``), built
by ``posttrain.prompt_format.encode_prompt``: the very ids SFT trained on and the
transformers backend feeds, BOS included by the one rule, never vLLM's own re-tokenisation
of the text. Stops that are special or added tokens stop by id, other stop strings by
text (``split_stops``). The engine is shut down explicitly in ``close``: freeing it by
garbage collection alone is known to leave its GPU memory held (vLLM #1908, #21073), and
the next engine (the judge at 0.9 of the GPU) would then refuse to start.

``skip_special_tokens=False`` keeps the annotation delimiters in the text, so anchored
sampling can parse them and a stray annotation in a response can be stripped rather
than leaking its tag text into scoring. Banned strings become a -100 logit bias on their
(single) token ids. vLLM is imported here only, so the rest of eval runs without it.
"""

from __future__ import annotations

import gc
from typing import Sequence

from eval.backends.base import Completion, GenerationRequest, banned_token_ids, cut_at_stop, split_stops
from posttrain.prompt_format import encode_prompt

# vLLM's documented structured outputs (``SamplingParams(structured_outputs=
# StructuredOutputsParams(regex=... | grammar=...))``) constrain the decoded text, and the text only:
# no documented form names a special token, so no regex or grammar can say "the body may end here,
# with the close delimiter token". The close delimiter is a special token, and the body must be
# allowed to end after any complete tag and only there (eval.annotation_syntax), so the grammar cannot
# end the annotation. (xgrammar masks a request's stop token ids until its grammar can terminate,
# which would do it, but that is a backend fix, not the documented API.) The annotator's
# grammar (annotate.format.annotation_body_regex) has no such problem: its outputs end with EOS.
ANNOTATION_SYNTAX_REFUSAL = (
    "sampling.annotation_syntax is implemented for the transformers backend only: vLLM's structured "
    "outputs constrain text and cannot end the annotation on its close delimiter, a special token; set "
    "sampling.annotation_syntax=false with the vllm backend, or use sampling.backend=transformers"
)


class VLLMBackend:
    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
        trust_remote_code: bool = False,
        **_ignored,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as err:  # the optional extra is missing
            raise ImportError(
                "sampling.backend=vllm needs vLLM: pip install '.[vllm]' on a GPU machine (or use backend=transformers)"
            ) from err
        self.model_name = model
        kwargs = dict(
            model=model,
            tokenizer=tokenizer or model,
            revision=revision,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=seed,
            trust_remote_code=trust_remote_code,
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        # The engine's context length (prompt + generation): prompts longer than the budget are skipped upstream.
        engine = self.llm.llm_engine
        model_config = getattr(engine, "model_config", None) or engine.vllm_config.model_config
        self.max_model_len = int(model_config.max_model_len)

    def close(self) -> None:
        # Free the engine's GPU memory before the next arm's model loads.
        release_engine(self.llm)
        del self.llm

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        from vllm import SamplingParams

        params = []
        for request in requests:
            if request.annotation_syntax:
                raise ValueError(ANNOTATION_SYNTAX_REFUSAL)
            stop_ids, stop_strings = split_stops(self.tokenizer, request.stop)
            bias = {token_id: -100.0 for token_id in banned_token_ids(self, request.banned)}
            params.append(
                SamplingParams(
                    n=1,
                    seed=request.seed,
                    temperature=request.temperature,
                    top_p=request.top_p,
                    max_tokens=request.max_new_tokens,
                    stop=list(stop_strings) or None,
                    stop_token_ids=list(stop_ids) or None,
                    logit_bias=bias or None,
                    skip_special_tokens=False,
                    include_stop_str_in_output=False,
                )
            )
        outputs = self.llm.generate(token_prompts(self.tokenizer, requests), params, use_tqdm=False)
        completions = []
        for request, output in zip(requests, outputs):
            sample = output.outputs[0]
            # With skip_special_tokens=False a special stop token can be echoed: cut it.
            text, hit = cut_at_stop(sample.text, request.stop)
            eos = self.tokenizer.eos_token
            if eos and text.endswith(eos):
                text = text[: -len(eos)]
            finish = "length" if sample.finish_reason == "length" else "stop"
            reason = None
            if finish == "stop":
                stop_reason = sample.stop_reason
                if isinstance(stop_reason, str):
                    reason = stop_reason
                elif isinstance(stop_reason, int):
                    reason = self.tokenizer.decode([stop_reason], skip_special_tokens=False)
                else:
                    reason = hit or "<eos>"
            completions.append(
                Completion(text=text, finish_reason=finish, stop_reason=reason, num_tokens=len(sample.token_ids))
            )
        return completions


def token_prompts(tokenizer, requests: Sequence[GenerationRequest]) -> list[dict]:
    """vLLM ``TokensPrompt`` inputs: each request's ids exactly as ``encode_prompt`` builds them."""
    return [{"prompt_token_ids": encode_prompt(tokenizer, r.text)} for r in requests]


def release_engine(llm) -> None:
    """Shut an ``LLM`` down and free what it held: its engine, vLLM's parallel groups (the next
    engine needs them gone) and the cached GPU memory. The sampling backend and lm-eval's vLLM
    model (eval.capabilities) both end this way."""
    shutdown_engine(llm)
    try:  # vLLM keeps its parallel groups alive unless told
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        destroy_model_parallel()
        destroy_distributed_environment()
    except Exception:  # older/newer vLLM without these: best effort
        pass
    gc.collect()
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # no torch.cuda: nothing to free
        pass


def shutdown_engine(llm) -> None:
    """Stop an ``LLM``'s engine now: ``LLM.shutdown()`` where this vLLM has it, else the v1
    engine core's ``shutdown()`` (its worker processes and their GPU memory)."""
    if callable(getattr(llm, "shutdown", None)):
        llm.shutdown()
        return
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if callable(getattr(core, "shutdown", None)):
        core.shutdown()
