"""Stage messages are log lines: info on stdout, warnings on stderr, --quiet / --verbose choose the level."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import pytest

from annotate.config import AnnotateConfig, LLMConfig
from eval.config import EvalConfig, JudgeConfig, SamplingConfig
from stage_io.cli import stage_main
from stage_io.config import ConfigError, load_config
from stage_io.log import set_verbosity
from stage_io.vllm_engine import VLLMEngineConfig

logger = logging.getLogger("eval.stub_stage")


@dataclass
class Tiny:
    # A value the stub run ignores.
    value: int = 0


def talk(config: Tiny) -> None:
    logger.debug("stub: debug detail")
    logger.info("stub: info line")
    logger.warning("stub: warning line")


@pytest.fixture(autouse=True)
def normal_verbosity():
    yield
    set_verbosity("normal")


def test_info_goes_to_stdout_and_warnings_to_stderr_as_plain_lines(capsys):
    assert stage_main("stub", Tiny, talk, ["value=1"]) == 0
    out, err = capsys.readouterr()
    assert out == "stub: info line\n" and err == "stub: warning line\n"


def test_quiet_keeps_only_warnings_and_verbose_adds_debug_lines(capsys):
    assert stage_main("stub", Tiny, talk, ["value=1", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "stub: warning line\n")
    assert stage_main("stub", Tiny, talk, ["--verbose", "value=1"]) == 0
    assert capsys.readouterr() == ("stub: debug detail\nstub: info line\n", "stub: warning line\n")


def test_the_error_line_shows_even_when_quiet(capsys):
    def fail(config: Tiny) -> None:
        raise ConfigError("value: broken")  # an error class of the project: the one error path

    assert stage_main("stub", Tiny, fail, ["value=1", "--quiet"]) == 2
    assert capsys.readouterr().err == "stub: error: value: broken\n"


def test_annotate_and_eval_share_one_vllm_engine_config_under_their_own_keys():
    for section in (LLMConfig, SamplingConfig, JudgeConfig):
        assert issubclass(section, VLLMEngineConfig)
        names = {f.name for f in dataclasses.fields(section)}
        assert {f.name for f in dataclasses.fields(VLLMEngineConfig)} <= names
    # A section's own default stays: the judge batches 64 rows.
    assert JudgeConfig().batch_size == 64
    config = load_config(AnnotateConfig, None, ["llm.tensor_parallel_size=2", "llm.dtype=bfloat16"])
    assert (config.llm.tensor_parallel_size, config.llm.dtype) == (2, "bfloat16")
    with pytest.raises(ConfigError, match=r"key 'sampling.gpu_memory_utilization' must be > 0 and <= 1"):
        load_config(EvalConfig, None, ["sampling.gpu_memory_utilization=1.5"])
    with pytest.raises(ConfigError, match=r"key 'metrics.quality.judge.max_model_len' must be >= 1"):
        load_config(EvalConfig, None, ["metrics.quality.judge.max_model_len=0"])


def test_a_range_declared_in_the_type_is_the_one_check_and_names_the_key():
    with pytest.raises(
        ConfigError, match=r"key 'metrics.semantic_entropy.classifier.test_fraction' must be > 0 and < 1"
    ):
        load_config(EvalConfig, None, ["metrics.semantic_entropy.classifier.test_fraction=1.0"])
    with pytest.raises(ConfigError, match=r"key 'capabilities.limit' must be >= 1"):
        load_config(EvalConfig, None, ["capabilities.limit=0"])
    with pytest.raises(ConfigError, match=r"key 'annotator.offline.topic_name_words' must be >= 1"):
        load_config(AnnotateConfig, None, ["annotator.offline.topic_name_words=0"])
    # A rule across keys stays in the dataclass.
    with pytest.raises(ConfigError, match="min_chars <= max_chars"):
        load_config(AnnotateConfig, None, ["chunking.min_chars=500", "chunking.max_chars=400"])
