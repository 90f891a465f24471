"""Every paper-scale evaluation arm reads a model that an earlier step writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.config import EvalConfig
from posttrain.config import PosttrainConfig
from pretrain.config import PretrainConfig
from stage_io.config import load_config
from study.config import StudyConfig
from study.runner import plan_steps

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


@pytest.mark.parametrize("size", ["0.6b", "1b", "2.5b"])
def test_paper_study_evaluates_only_models_written_by_steps_it_waits_for(size, tmp_path):
    cfg = load_config(StudyConfig, CONFIGS / "study" / f"paper_olmo2_{size}.yaml", [f"output_dir={tmp_path}"])
    steps = plan_steps(cfg)
    written_before: dict[str, str] = {}
    for step in steps:
        if step.module == "eval":
            config = step.load()
            for arm in config.arms:
                assert arm.model in written_before, (
                    f"{step.name}: arm {arm.name} reads {arm.model}, which no step writes"
                )
                assert written_before[arm.model] in step.needs, (
                    f"{step.name} does not wait for {written_before[arm.model]}"
                )
        written_before[str(step.output_dir)] = step.name


def test_standalone_paper_eval_configs_read_what_the_paper_train_configs_write():
    """The 1B chain run stage by stage: olmo2_1b pretraining (both arms), the three Tulu 3 SFT
    configs, then each paper eval config."""
    written = set()
    for arm in ("plain", "anchored"):
        written.add(
            load_config(PretrainConfig, CONFIGS / "pretrain" / "olmo2_1b.yaml", [f"data.arm={arm}"]).resolved_output_dir
        )
    for name in ("tulu3_plain", "tulu3_anchored", "tulu3_anchored_on_plain"):
        post = load_config(PosttrainConfig, CONFIGS / "posttrain" / f"{name}.yaml")
        assert post.model_path in written, f"{name}.yaml trains {post.model_path}, which no pretrain config writes"
        written.add(post.output_dir)
    for name in ("stories", "noveltybench", "wildchat"):
        config = load_config(EvalConfig, CONFIGS / "eval" / f"{name}.yaml")
        missing = {arm.name: arm.model for arm in config.arms if arm.model not in written}
        assert not missing, f"configs/eval/{name}.yaml reads models nothing writes: {json.dumps(missing)}"
