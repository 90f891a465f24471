from pathlib import Path

import pytest

from annotate import AnnotateConfig
from stage_io.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "annotate").glob("*.yaml"))


def test_the_expected_configs_exist():
    assert {p.name for p in CONFIGS} >= {
        "embedded.yaml",
        "tiny.yaml",
        "llm_vllm.yaml",
        "sft_tulu3.yaml",
        "sft_embedded.yaml",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads(path):
    config = load_config(AnnotateConfig, path)
    assert config.output_dir and config.executor.tasks >= 1


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="key 'executor.tasks' must be >= 1"):
        load_config(AnnotateConfig, None, ["executor.tasks=0"])
    with pytest.raises(ConfigError, match="'executor.kind' expects one of"):
        load_config(AnnotateConfig, None, ["executor.kind=ray"])
    with pytest.raises(ConfigError, match="'annotator.kind' expects one of"):
        load_config(AnnotateConfig, None, ["annotator.kind=magic"])
    with pytest.raises(ConfigError, match="prompt_template must contain"):
        load_config(AnnotateConfig, None, ["llm.prompt_template=no placeholder"])
