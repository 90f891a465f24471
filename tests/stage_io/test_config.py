from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from stage_io.config import ConfigError, load_config


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])


@dataclass
class Example:
    name: str = "x"
    steps: int = 10
    arm: Literal["plain", "anchored"] = "plain"
    limit: int | None = None
    optim: Optim = field(default_factory=Optim)


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_and_dotted_overrides(tmp_path):
    path = write(tmp_path, "steps: 5\noptim:\n  lr: 0.01\n")
    cfg = load_config(Example, path, ["optim.lr=3e-4", "arm=anchored", "limit=7", "optim.betas=[0.8,0.9]"])
    assert cfg.steps == 5
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.arm == "anchored"
    assert cfg.limit == 7
    assert cfg.optim.betas == [0.8, 0.9]
    assert isinstance(cfg.optim, Optim)


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    path = write(tmp_path, "optim:\n  lrr: 0.01\n")
    with pytest.raises(ConfigError) as err:
        load_config(Example, path)
    assert "optim.lrr" in str(err.value) and str(path) in str(err.value)


def test_mistyped_value_names_key(tmp_path):
    path = write(tmp_path, "steps: ten\n")
    with pytest.raises(ConfigError, match="'steps' expects an integer"):
        load_config(Example, path)
    with pytest.raises(ConfigError, match="arm"):
        load_config(Example, None, ["arm=both"])


def test_unknown_override_names_the_override():
    with pytest.raises(ConfigError) as err:
        load_config(Example, None, ["optim.momentum=0.9"])
    assert "command-line override 'optim.momentum=0.9'" in str(err.value)
    assert "known: betas, lr" in str(err.value)


def test_missing_file_and_bad_override_form(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Example, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Example, None, ["steps"])


def test_help_shows_every_key_with_its_comment():
    import dataclasses
    import typing

    from annotate.config import AnnotateConfig
    from eval.config import EvalConfig
    from posttrain.config import PosttrainConfig
    from pretrain.config import PretrainConfig
    from stage_io.cli import describe_config
    from stage_io.config import field_comments
    from study.config import StudyConfig

    lines = describe_config(AnnotateConfig)
    at = next(i for i, line in enumerate(lines) if line.split()[0] == "annotator.offline.topic_name_words")
    assert lines[at + 1].strip().startswith("Content words in a topic cluster's name")
    # Every field of every stage config has a comment to show (the house rule, checked).
    missing = []
    todo = [AnnotateConfig, PretrainConfig, PosttrainConfig, EvalConfig, StudyConfig]
    while todo:
        cls = todo.pop()
        comments, hints = field_comments(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not comments.get(f.name):
                missing.append(f"{cls.__name__}.{f.name}")
            todo += [t for t in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(t)]
    assert missing == []
