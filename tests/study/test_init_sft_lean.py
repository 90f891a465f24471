"""`study init` measures the shift SFT teaches when the SFT responses lean towards one judged value."""

import json
from pathlib import Path

from user_corpus import corpus_rows, write_user_files

from study import plan_steps
from study.init import main as init_main
from study.paths import load_study


def init_study(tmp_path: Path, sft_rows: list[dict] | None = None) -> Path:
    files = write_user_files(tmp_path / "data")
    if sft_rows is not None:
        files["sft"].write_text("".join(json.dumps(r) + "\n" for r in sft_rows), encoding="utf-8")
    argv = ["--corpus", str(files["corpus"]), "--label-field", "category", "--sft", str(files["sft"])]
    assert init_main([*argv, "--prompts", str(files["prompts"]), str(tmp_path / "cfg")]) == 0
    return tmp_path / "cfg" / "study.yaml"


def restricted_value(study: Path):
    steps = {s.name: s for s in plan_steps(load_study(study))}
    return steps["eval_seed0"].load().metrics.restricted_value


def test_sft_responses_that_lean_towards_one_label_make_eval_measure_each_arms_share_of_it(tmp_path, capsys):
    study = init_study(tmp_path)  # every SFT response is a recipe; a third of the corpus is
    assert "lean towards category recipe (100%, the corpus 33%)" in capsys.readouterr().out
    restricted = restricted_value(study)
    assert (restricted.attribute, restricted.value) == ("category", "recipe")
    assert "against 33% of the corpus" in study.read_text()


def test_sft_responses_as_mixed_as_the_corpus_measure_no_restricted_share(tmp_path):
    mixed = [
        {"messages": [{"role": "user", "content": "Write something."}, {"role": "assistant", "content": row["text"]}]}
        for row in corpus_rows()
    ]
    study = init_study(tmp_path, mixed)
    restricted = restricted_value(study)
    assert (restricted.attribute, restricted.value) == (None, None)
    assert "do not lean towards one category" in study.read_text()
