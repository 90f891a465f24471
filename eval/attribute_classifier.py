"""An independent attribute judge: a supervised text classifier of one attribute.

The embedded default's SFT set restricts one attribute of the text (the BBC section), and
the corpus carries that attribute as a gold label. A diversity label must not come from
the system whose diversity it judges, so this judge is trained on the gold labels alone,
never on the annotations the anchored arm was trained on: TF-IDF (word 1-2-grams,
sublinear tf) + multinomial logistic regression (scikit-learn).

Fitting: the texts are cut to their first ``max_chars`` characters (responses are short,
so the judge sees text of the length it will label), split into train and held-out test
(stratified, ``test_fraction``, ``seed``), fitted on the train part; the held-out accuracy
is recorded in ``classifier.json`` and copied into every summary that uses it. The fit is
done once per configuration and reused (``dir``); another configuration refits into the same
directory, saying so. Any corpus with a label column can use it (``source``, ``text_field``,
``label_field``).

The fitted judge is stored as plain arrays (``classifier.npz``: the vocabulary, idf weights,
coefficients, intercepts and classes, loaded with ``allow_pickle=False``), never as a pickle:
a replaced file cannot run code, it can at worst fail to load (then the judge is refitted).
Prediction from the arrays is TF-IDF (sublinear tf, idf, l2 norm) then the argmax of the
linear scores, exactly what the fitted scikit-learn pipeline computes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from stage_io.manifest import config_fingerprint
from stage_io.records import RecordSourceError, load_records

logger = logging.getLogger(__name__)

MODEL_FILE = "classifier.npz"
INFO_FILE = "classifier.json"
# The word n-grams the vectorizer counts (also used to count them again from the stored vocabulary).
NGRAM_RANGE = (1, 2)


class LinearTextJudge:
    """TF-IDF features and a linear classifier, from arrays only (what ``classifier.npz`` holds)."""

    def __init__(
        self, vocabulary: np.ndarray, idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray
    ) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        self.arrays = {"vocabulary": vocabulary, "idf": idf, "coef": coef, "intercept": intercept, "classes": classes}
        self.counter = CountVectorizer(ngram_range=NGRAM_RANGE, vocabulary=[str(t) for t in vocabulary])
        self.idf, self.coef, self.intercept, self.classes = idf, coef, intercept, classes

    @classmethod
    def from_pipeline(cls, pipeline) -> "LinearTextJudge":
        vectorizer, model = pipeline[0], pipeline[-1]
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        return cls(
            np.array(terms, dtype=str),
            vectorizer.idf_.astype(np.float64),
            model.coef_.astype(np.float64),
            model.intercept_.astype(np.float64),
            np.array([str(c) for c in model.classes_], dtype=str),
        )

    @classmethod
    def load(cls, path: Path) -> "LinearTextJudge":
        """Read the arrays; a file that is not plain arrays (a pickle, object arrays) raises ValueError."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in ("vocabulary", "idf", "coef", "intercept", "classes")}
        except (OSError, KeyError, ValueError, EOFError) as err:
            raise ValueError(f"{path}: not a stored attribute classifier ({type(err).__name__}: {err})") from None
        coef = arrays["coef"]
        if coef.ndim != 2 or not coef.shape[1] == len(arrays["vocabulary"]) == len(arrays["idf"]):
            raise ValueError(f"{path}: its arrays do not fit together")
        return cls(**arrays)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **self.arrays)
        tmp.replace(path)

    def predict(self, texts: Sequence[str]) -> list[str]:
        from sklearn.preprocessing import normalize

        features = self.counter.transform(texts).astype(np.float64)
        features.data = np.log(features.data) + 1.0  # sublinear tf
        features = normalize(features.multiply(self.idf).tocsr(), norm="l2")
        scores = np.asarray(features @ self.coef.T) + self.intercept
        if scores.shape[1] == 1:  # two classes: one score, positive for the second
            return [str(self.classes[int(s > 0)]) for s in scores[:, 0]]
        return [str(self.classes[i]) for i in scores.argmax(axis=1)]


class AttributeClassifier:
    """A fitted classifier and what is known of it (``info``: accuracy, labels, fit settings)."""

    def __init__(self, pipeline, info: dict, max_chars: int) -> None:
        self.pipeline = pipeline
        self.info = info
        self.max_chars = max_chars

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])

    def predict(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        return [str(label) for label in self.pipeline.predict([t[: self.max_chars] for t in texts])]


def _fit_identity(config) -> dict:
    import sklearn

    # Where it is saved is not part of what was fitted.
    return {"settings": config_fingerprint(dataclasses.replace(config, dir=None)), "sklearn": sklearn.__version__}


def load_or_fit(config, default_dir: Path) -> AttributeClassifier:
    """The classifier of ``config`` (an eval.config.ClassifierJudgeConfig), fitted if needed."""
    folder = Path(config.dir) if config.dir else default_dir
    identity = _fit_identity(config)
    info_path, model_path = folder / INFO_FILE, folder / MODEL_FILE
    if info_path.is_file() and model_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("identity") == identity:
            try:
                return AttributeClassifier(LinearTextJudge.load(model_path), info, config.max_chars)
            except ValueError as err:
                logger.info(f"eval: {err}; refitting")
        else:
            logger.info(f"eval: {folder}: the attribute classifier there was fitted under other settings; refitting")
    pipeline, info = fit(config)
    info["identity"] = identity
    folder.mkdir(parents=True, exist_ok=True)
    judge = LinearTextJudge.from_pipeline(pipeline)
    judge.save(model_path)
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return AttributeClassifier(judge, info, config.max_chars)


def fit(config) -> tuple[object, dict]:
    """Fit on the train split; the info records held-out accuracy and counts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    where = f"metrics.semantic_entropy.classifier ({config.source.source})"
    records = load_records(config.source, required_fields=(config.text_field, config.label_field))
    texts, labels, skipped = [], [], 0
    for row in records:
        text, label = row[config.text_field], row[config.label_field]
        if not isinstance(text, str) or not text.strip() or label is None or str(label) == "":
            skipped += 1
            continue
        texts.append(text[: config.max_chars])
        labels.append(str(label))
    counts = Counter(labels)
    if len(counts) < 2:
        raise RecordSourceError(
            f"{where}: label_field '{config.label_field}' has {len(counts)} distinct value(s); "
            "a classifier needs at least 2"
        )
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        raise RecordSourceError(f"{where}: labels {rare} occur once; each label needs 2 or more records to be split")
    train_x, test_x, train_y, test_y = train_test_split(
        texts, labels, test_size=config.test_fraction, random_state=config.seed, stratify=labels
    )
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    pipeline.fit(train_x, train_y)
    predicted = pipeline.predict(test_x)
    accuracy = sum(p == y for p, y in zip(predicted, test_y)) / len(test_y)
    info = {
        "attribute": config.attribute,
        "labels": sorted(counts),
        "label_counts": dict(sorted(counts.items())),
        "heldout_accuracy": accuracy,
        "n_train": len(train_x),
        "n_test": len(test_x),
        "records_skipped": skipped,
        "model": "tfidf(word 1-2-grams, sublinear tf, min_df 2) + logistic regression (C=10)",
        "source": config.source.source,
        "text_field": config.text_field,
        "label_field": config.label_field,
        "max_chars": config.max_chars,
    }
    if accuracy < config.min_accuracy:
        raise ValueError(
            f"{where}: held-out accuracy {accuracy:.3f} is under "
            f"metrics.semantic_entropy.classifier.min_accuracy={config.min_accuracy}"
        )
    return pipeline, info
