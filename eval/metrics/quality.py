"""Quality of each sample: an LLM judge's score, or on CPU a documented PROXY (a reference
model's likelihood, or a neutral n-gram model's).

The proxy is not a judgement of quality. It is

    quality_proxy = mean_t log p_ref(y_t | prompt, y_<t)  -  w * repeated_ngram_fraction(y, n)

the mean per-token log-likelihood (nats) of the response under a reference model
(metrics.quality.reference_model, prompt rendered with reference_prompt_format), minus a
degeneration penalty: w times the share of the response's word n-grams that repeat an
earlier one. Fluent, non-looping text scores high; it says nothing about helpfulness,
and it rewards text the reference model finds likely (so it favours low temperature).
An empty response has no tokens to score: its quality is None and it fails the bar.

The neutral variant (kind ngram) replaces the reference model by a word trigram model
fitted on the corpus text (eval/metrics/ngram.py):

    quality_ngram = mean_w log p_3gram(w | two words before)  -  w * repeated_ngram_fraction(y, n)

in nats per word. Both arms were pretrained on that text, so it favours neither; it
still rewards text close to the corpus, not helpfulness (eval/README.md).
"""

from __future__ import annotations

from typing import Sequence

import torch

from eval.config import QUALITY_JUDGE_TEMPLATE, QualityConfig
from eval.judge import Judge, fill_template, parse_score
from eval.metrics.lexical import repeated_ngram_fraction
from eval.metrics.ngram import fit_corpus_model
from posttrain.prompt_format import encode_prompt


class ProxyQuality:
    def __init__(
        self, model: str, config: QualityConfig, device: str = "auto", dtype: str = "auto", max_tokens: int = 1024
    ) -> None:
        from transformers import AutoModelForCausalLM

        from eval.backends.transformers_backend import load_tokenizer, resolve_device, resolve_dtype

        self.config = config
        self.model_name = model
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(model)
        self.model = (
            AutoModelForCausalLM.from_pretrained(model, dtype=resolve_dtype(dtype, self.device)).to(self.device).eval()
        )
        self.max_tokens = max_tokens

    def close(self) -> None:
        del self.model

    @torch.no_grad()
    def mean_logprobs(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        """Mean log-prob (nats/token) of each response given its rendered prompt."""
        tok = self.tokenizer
        out: list[float | None] = []
        for start in range(0, len(prompts), self.config.batch_size):
            pairs = []
            for prompt, response in zip(
                prompts[start : start + self.config.batch_size], responses[start : start + self.config.batch_size]
            ):
                text = self.config.reference_prompt_format.render_prompt(prompt, tok)
                p_ids = encode_prompt(tok, text)
                r_ids = tok.encode(response, add_special_tokens=False)[: self.max_tokens]
                pairs.append((p_ids[-self.max_tokens :], r_ids))
            width = max(len(p) + len(r) for p, r in pairs)
            ids = torch.full((len(pairs), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, (p, r) in enumerate(pairs):
                ids[i, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
                mask[i, : len(p) + len(r)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            target = ids[:, 1:].to(self.device)
            token_logp = logp.gather(-1, target[..., None])[..., 0]
            for i, (p, r) in enumerate(pairs):
                if not r:
                    out.append(None)
                    continue
                # Position t predicts token t+1: response tokens sit at len(p)..len(p)+len(r)-1.
                out.append(float(token_logp[i, len(p) - 1 : len(p) + len(r) - 1].mean()))
        return out

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        logps = self.mean_logprobs(prompts, responses)
        return [
            None
            if lp is None
            else lp - self.config.degeneration_weight * repeated_ngram_fraction(resp, self.config.degeneration_ngram)
            for lp, resp in zip(logps, responses)
        ]


class NgramQuality:
    """Mean per-word log-prob under a trigram model of the corpus text, minus the repetition penalty."""

    def __init__(self, config: QualityConfig) -> None:
        self.config = config
        self.model, self.details = fit_corpus_model(config.ngram.corpus, config.ngram.max_rows)
        self.model_name = f"trigram-kn:{config.ngram.corpus}"

    def close(self) -> None:
        pass

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        out: list[float | None] = []
        for response in responses:
            lp = self.model.mean_logprob(response)
            out.append(
                None
                if lp is None
                else lp
                - self.config.degeneration_weight * repeated_ngram_fraction(response, self.config.degeneration_ngram)
            )
        return out


class JudgeQuality:
    """Scores from an LLM judge (template with {prompt} and {response}); unparsed = None."""

    def __init__(self, config: QualityConfig, judge: Judge | None = None) -> None:
        self.config = config
        self.judge = judge or Judge(config.judge)
        self.model_name = config.judge.model

    def close(self) -> None:
        pass  # the judge is owned by whoever made it (it may be shared with the labeller)

    def score(self, prompts: Sequence[str], responses: Sequence[str], keys: Sequence[str]) -> list[float | None]:
        template = self.config.judge.template or QUALITY_JUDGE_TEMPLATE
        contents = [
            fill_template(template, "metrics.quality.judge.template", prompt=p, response=r)
            for p, r in zip(prompts, responses)
        ]
        answers = self.judge.ask(contents, keys)
        return [parse_score(a, self.config.score_pattern) for a in answers]
