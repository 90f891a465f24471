"""The independent attribute judge and the preservation/fidelity figures, on the real BBC corpus."""

import json
import random
import shutil

import pytest

from eval.attribute_classifier import INFO_FILE, load_or_fit
from eval.config import ClassifierJudgeConfig
from eval.metrics.fidelity import annotation_values, fidelity, js_divergence_bits, preservation, value_label_map
from stage_io.records import RecordSource, load_records


@pytest.fixture(scope="module")
def judge(attribute_judge):
    return attribute_judge[1]


@pytest.fixture(scope="module")
def bbc():
    return load_records(RecordSource(source="embedded:bbc_news"))


def test_section_classifier_reaches_0_9_heldout_accuracy_and_records_it(attribute_judge, tmp_path):
    fitted, judge = attribute_judge
    info = judge.info
    assert info["heldout_accuracy"] >= 0.9
    assert info["n_test"] >= 400 and info["labels"] == ["business", "entertainment", "politics", "sports", "tech"]
    assert judge.predict(["The striker scored twice as United beat Chelsea in the league."]) == ["sports"]
    assert json.loads((fitted / INFO_FILE).read_text()) == info  # saved where it was asked to be
    # Saved once and reused: a later load reads the same files instead of refitting.
    folder = tmp_path / "j"
    shutil.copytree(fitted, folder)
    written = (folder / INFO_FILE).stat().st_mtime_ns
    again = load_or_fit(ClassifierJudgeConfig(), folder)
    assert (folder / INFO_FILE).stat().st_mtime_ns == written and again.info == info
    refit = load_or_fit(ClassifierJudgeConfig(max_chars=300), folder)  # other settings: fitted anew
    assert json.loads((folder / INFO_FILE).read_text())["max_chars"] == 300 == refit.info["max_chars"]


def test_classifier_needs_two_labels_and_names_the_key(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"text {i}", "label": "a"}) + "\n" for i in range(10)))
    cfg = ClassifierJudgeConfig(source=RecordSource(source=str(path)), label_field="label")
    with pytest.raises(ValueError, match="label_field 'label' has 1 distinct"):
        load_or_fit(cfg, tmp_path / "out")


def test_fidelity_is_one_for_responses_that_are_the_annotated_text_and_chance_when_shuffled(judge, bbc):
    # A fake anchored arm: its "annotation" names each article's own section, its "response"
    # is the article's head. The judge reads the response: fidelity ~ the judge's accuracy.
    rows = [bbc[i] for i in range(0, len(bbc), 7)]
    tags = [[{"key": "topic", "value": r["topic"]}] for r in rows]
    mapping, info = value_label_map(zip(tags, [r["topic"] for r in rows]), "topic")
    assert info["purity"] == 1.0 and mapping == {s: s for s in mapping}
    asked = [mapping[v] for v in annotation_values(tags, "topic")]
    judged = judge.predict([r["text"] for r in rows])
    matched = fidelity(asked, judged)
    assert matched["fidelity"] >= 0.9 and matched["n"] == len(rows)
    shuffled = judged[:]
    random.Random(0).shuffle(shuffled)
    chance = fidelity(asked, shuffled)
    assert abs(chance["fidelity"] - chance["chance"]) < 0.08  # about chance (~0.2 with five sections)
    assert chance["chance"] == pytest.approx(matched["chance"], abs=0.02)


def test_preservation_against_a_reference_arm():
    mapping = {"football": "sports", "tennis": "sports", "bank": "business"}
    same = ["football", "bank", None, "tennis"]
    p = preservation(same, same, known=set(mapping), mapping=mapping)
    assert p["js_divergence"] == 0.0 and p["share_value_in_pretraining"] == 0.75
    assert p["value_entropy"] == pytest.approx(1.585, abs=1e-3) and p["mapped_entropy"] == pytest.approx(
        0.918, abs=1e-3
    )
    narrowed = preservation(["football"] * 4, same, known=set(mapping), mapping=mapping)
    assert narrowed["mapped_entropy"] == 0.0 and narrowed["js_divergence"] > 0.3
    invented = preservation(["footbank", "football"], None, known=set(mapping), mapping=mapping)
    assert invented["share_value_in_pretraining"] == 0.5 and "js_divergence" not in invented
    from collections import Counter

    assert js_divergence_bits(Counter(a=1), Counter(b=1)) == pytest.approx(1.0)


def test_the_stored_judge_predicts_as_the_fitted_pipeline_and_holds_no_pickle(tmp_path):
    from sklearn.pipeline import Pipeline

    from eval.attribute_classifier import MODEL_FILE, LinearTextJudge, fit

    path = tmp_path / "three.jsonl"
    words = {"a": "goal match striker league", "b": "shares profit bank market", "c": "film actor award stage"}
    rows = [
        {"id": f"{k}{i}", "text": f"{words[k]} {words[k].split()[i % 4]} day {i}", "label": k}
        for i in range(30)
        for k in words
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = ClassifierJudgeConfig(source=RecordSource(source=str(path)), label_field="label", min_accuracy=0.0)
    pipeline, _ = fit(cfg)
    assert isinstance(pipeline, Pipeline)
    texts = ["the striker and the league", "bank shares fell", "an actor won an award", "nothing known here"]
    stored = load_or_fit(cfg, tmp_path / "judge")
    assert stored.predict(texts) == [str(p) for p in pipeline.predict(texts)]
    assert LinearTextJudge.load(tmp_path / "judge" / MODEL_FILE).predict(texts) == stored.predict(texts)
    assert b"\x80" not in (tmp_path / "judge" / MODEL_FILE).read_bytes()[:2]  # not a pickle stream


class Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_replaced_judge_file_runs_no_code_and_is_refitted(tmp_path, capsys):
    import pickle

    import numpy as np

    from eval.attribute_classifier import MODEL_FILE

    path = tmp_path / "two.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": i, "text": f"{'cat dog' if i % 2 else 'sun moon'} {i}", "label": str(i % 2)}) + "\n"
            for i in range(20)
        )
    )
    cfg = ClassifierJudgeConfig(source=RecordSource(source=str(path)), label_field="label", min_accuracy=0.0)
    folder = tmp_path / "judge"
    first = load_or_fit(cfg, folder)
    marker = tmp_path / "pwned"
    Payload.marker = str(marker)
    for crafted in (pickle.dumps(Payload()), None):
        if crafted is None:  # an npz whose array is a pickled object
            np.savez(
                folder / MODEL_FILE,
                vocabulary=np.array([Payload()], dtype=object),
                idf=np.ones(1),
                coef=np.ones((1, 1)),
                intercept=np.zeros(1),
                classes=np.array(["0", "1"]),
            )
        else:
            (folder / MODEL_FILE).write_bytes(crafted)
        again = load_or_fit(cfg, folder)
        assert not marker.exists()
        assert "not a stored attribute classifier" in capsys.readouterr().out
        assert again.predict(["cat dog 3", "sun moon 4"]) == first.predict(["cat dog 3", "sun moon 4"])
