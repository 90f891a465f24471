"""Every YAML under configs/publish loads into PublishConfig, and the CLI runs a dry run."""

from __future__ import annotations

from pathlib import Path

import pytest

from publish import PublishConfig, run
from stage_io.cli import stage_main
from stage_io.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "configs" / "publish").glob("*.yaml"))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_publish_yaml_loads(path):
    config = load_config(PublishConfig, path)
    assert config.dry_run is True  # shipped configs never upload by accident
    assert config.kind == path.stem


def test_yamls_exist():
    assert {p.name for p in YAMLS} == {"model.yaml", "dataset.yaml"}


def test_bad_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="kind"):
        load_config(PublishConfig, YAMLS[0], ["kind=space"])


def test_cli_dry_run(checkpoint_dir, tmp_path, capsys):
    """The CLI's entry in this process (a real `python -m publish` runs in tests/stage_io/test_cli.py)."""
    staging = tmp_path / "stage"
    code = stage_main(
        "publish",
        PublishConfig,
        run,
        [
            str(ROOT / "configs" / "publish" / "model.yaml"),
            f"source_dir={checkpoint_dir}",
            f"staging_dir={staging}",
            "repo_id=lab/tiny",
        ],
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "dry run" in out and "nothing was uploaded" in out
    assert (staging / "repo" / "README.md").is_file()
