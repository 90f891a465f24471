"""An independent attribute judge: a supervised text classifier of one attribute.

The embedded default's SFT set restricts one attribute of the text (the BBC section), and
the corpus carries that attribute as a gold label. A diversity label must not come from
the system whose diversity it judges, so this judge is trained on the gold labels alone,
never on the annotations the anchored arm was trained on: TF-IDF (word 1-2-grams,
sublinear tf) + multinomial logistic regression (scikit-learn).

Fitting: the texts are cut to their first ``max_chars`` characters (responses are short,
so the judge sees text of the length it will label), split into train and held-out test
(stratified, ``test_fraction``, ``seed``), fitted on the train part; the held-out accuracy
is recorded in ``classifier.json`` beside the pickled model and copied into every summary
that uses it. The fit is done once per configuration and reused (``dir``); another
configuration refits into the same directory, saying so. Any corpus with a label column
can use it (``source``, ``text_field``, ``label_field``).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections import Counter
from pathlib import Path
from typing import Sequence

from stage_io.manifest import config_fingerprint
from stage_io.records import RecordSourceError, load_records

MODEL_FILE = "classifier.pkl"
INFO_FILE = "classifier.json"


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
            with open(model_path, "rb") as handle:
                return AttributeClassifier(pickle.load(handle), info, config.max_chars)
        print(f"eval: {folder}: the attribute classifier there was fitted under other settings; refitting", flush=True)
    pipeline, info = fit(config)
    info["identity"] = identity
    folder.mkdir(parents=True, exist_ok=True)
    tmp = model_path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        pickle.dump(pipeline, handle)
    tmp.replace(model_path)
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return AttributeClassifier(pipeline, info, config.max_chars)


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
        raise RecordSourceError(f"{where}: label_field '{config.label_field}' has {len(counts)} distinct value(s); "
                                "a classifier needs at least 2")
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        raise RecordSourceError(f"{where}: labels {rare} occur once; each label needs 2 or more records to be split")
    train_x, test_x, train_y, test_y = train_test_split(
        texts, labels, test_size=config.test_fraction, random_state=config.seed, stratify=labels)
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    pipeline.fit(train_x, train_y)
    predicted = pipeline.predict(test_x)
    accuracy = sum(p == y for p, y in zip(predicted, test_y)) / len(test_y)
    info = {
        "attribute": config.attribute, "labels": sorted(counts), "label_counts": dict(sorted(counts.items())),
        "heldout_accuracy": accuracy, "n_train": len(train_x), "n_test": len(test_x), "records_skipped": skipped,
        "model": "tfidf(word 1-2-grams, sublinear tf, min_df 2) + logistic regression (C=10)",
        "source": config.source.source, "text_field": config.text_field, "label_field": config.label_field,
        "max_chars": config.max_chars,
    }
    if accuracy < config.min_accuracy:
        raise ValueError(f"{where}: held-out accuracy {accuracy:.3f} is under "
                         f"metrics.semantic_entropy.classifier.min_accuracy={config.min_accuracy}")
    return pipeline, info
