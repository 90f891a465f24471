"""Generation engines for the LLM annotator: vLLM (GPU throughput) and transformers (anywhere).

Both take prompts plus one seed per prompt and return the completions. Both wrap a
prompt in the tokenizer's chat template when it has one (instruction models expect it).
"""

from __future__ import annotations

from typing import Any, Sequence

from annotate.config import LLMConfig


def render_prompt(tokenizer: Any, prompt: str, use_chat_template: bool) -> tuple[str, bool]:
    """The text fed to the model, and whether a chat template produced it."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    return prompt, False


class VLLMBackend:
    """Offline vLLM: one ``LLM.generate`` call per batch, a ``SamplingParams`` per request.

    Each request's ``SamplingParams.seed`` makes its sample independent of the batch it
    lands in and of the engine's default seed. With ``regex``, every request carries it as
    vLLM's structured output (``SamplingParams(structured_outputs=StructuredOutputsParams(
    regex=...))``, the API since vLLM 0.12, which replaced ``guided_decoding``): the engine
    masks every token that would leave the annotation grammar.
    """

    def __init__(self, config: LLMConfig, regex: str | None = None):
        try:
            from vllm import LLM
        except ImportError as err:  # only this backend needs it
            raise ImportError("llm.backend=vllm needs vLLM: pip install 'annotation-anchored[vllm]'") from err
        self.config = config
        self.regex = regex
        self.llm = LLM(model=config.model, seed=config.seed, **config.engine_kwargs())
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], temperature: float) -> list[str]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        texts = [render_prompt(self.tokenizer, p, self.config.use_chat_template)[0] for p in prompts]
        structured = {"structured_outputs": StructuredOutputsParams(regex=self.regex)} if self.regex else {}
        params = [
            SamplingParams(
                temperature=temperature,
                top_p=self.config.top_p if temperature > 0 else 1.0,
                max_tokens=self.config.max_new_tokens,
                seed=seed,
                **structured,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(texts, params, use_tqdm=False)
        return [out.outputs[0].text for out in outputs]


class TransformersBackend:
    """``AutoModelForCausalLM.generate`` on left-padded batches.

    Sampling is done per row by ``PerRequestSampler`` with the row's own generator, so
    a request's sample depends on its seed, not on the batch it was put in.
    """

    def __init__(self, config: LLMConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(config.model, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype).to(self.device).eval()

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], temperature: float) -> list[str]:
        import torch
        from transformers import LogitsProcessorList

        rendered = [render_prompt(self.tokenizer, p, self.config.use_chat_template) for p in prompts]
        texts = [text for text, _ in rendered]
        # A chat template already writes the special tokens it wants.
        encoded = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=not any(chat for _, chat in rendered)
        ).to(self.device)
        processors = LogitsProcessorList()
        if temperature > 0:
            processors.append(PerRequestSampler(seeds, temperature, self.config.top_p, self.device))
        with torch.no_grad():
            output = self.model.generate(
                **encoded,
                max_new_tokens=self.config.max_new_tokens,
                do_sample=False,
                logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


class PerRequestSampler:
    """A logits processor that samples each row with its own seeded generator.

    It returns logits where only the sampled token is finite, so ``generate`` run
    greedily keeps exactly that token: temperature and top-p sampling, seeded per row.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: str):
        import torch

        self.temperature = temperature
        self.top_p = top_p
        self.generators = []
        for seed in seeds:
            generator = torch.Generator(device=device)
            generator.manual_seed(int(seed))
            self.generators.append(generator)

    def __call__(self, input_ids, scores):
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs > self.top_p  # keep the smallest nucleus
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        chosen = torch.stack(
            [torch.multinomial(probs[row], 1, generator=gen) for row, gen in enumerate(self.generators)]
        ).squeeze(-1)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(chosen)), chosen] = 0.0
        return out
