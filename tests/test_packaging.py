"""The extras agree with what CI installs; that the [vllm] extra resolves against the registry
is checked by .ci/run itself (a pip dry run), not by a copy of vLLM's requirements here."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
CI = (REPO / ".ci" / "run").read_text()


def requirements(entries: list[str]) -> dict[str, Requirement]:
    return {Requirement(e).name: Requirement(e) for e in entries}


def test_ci_tests_the_torch_the_one_environment_pins():
    ci_torch = Version(re.search(r"torch==([\d.]+)", CI).group(1))
    extra = requirements(PROJECT["optional-dependencies"]["vllm"])
    assert ci_torch in extra["torch"].specifier and ci_torch in requirements(PROJECT["dependencies"])["torch"].specifier


def test_ci_resolves_the_vllm_extra_against_the_registry_without_installing_it():
    resolve = CI.replace("\\\n", " ")  # shell continuation lines joined
    command = next(line for line in resolve.splitlines() if "--dry-run" in line)
    assert "--ignore-installed" in command and "--report" in command and command.endswith('".[vllm,deepspeed]"')


def test_every_package_a_module_imports_is_declared():
    declared = set(requirements(PROJECT["dependencies"]))
    assert {"scipy", "tensorboard", "trl", "lm-eval"} <= declared
    assert set(requirements(PROJECT["optional-dependencies"]["trackers"])) == {"wandb", "trackio"}
