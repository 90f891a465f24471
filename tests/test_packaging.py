"""The optional extras pin combinations that can install together (vLLM cannot be installed in CI)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
# What vllm 0.33.0 declares for the packages this project also depends on (its requires_dist).
VLLM_0_33_REQUIRES = {"torch": "==2.13.0", "transformers": ">=5.16.1,<5.20"}


def requirements(entries: list[str]) -> dict[str, Requirement]:
    return {Requirement(e).name: Requirement(e) for e in entries}


def test_the_vllm_extra_pins_a_combination_that_installs_with_the_base_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = requirements(project["dependencies"])
    extra = requirements(project["optional-dependencies"]["vllm"])
    assert str(extra["vllm"].specifier) == "==0.33.0"
    for name, needed in VLLM_0_33_REQUIRES.items():
        # The extra states vLLM's own constraint, so pip never picks another transformers/torch than vLLM's.
        assert extra[name].specifier == Requirement(f"{name}{needed}").specifier, name
    # Some version satisfies both the base dependency and the extra's pin.
    for name, candidate in (("torch", "2.13.0"), ("transformers", "5.19.0")):
        assert Version(candidate) in base[name].specifier and Version(candidate) in extra[name].specifier


def test_ci_installs_the_torch_the_vllm_environment_uses():
    ci_torch = re.search(r"torch==([\d.]+)", (REPO / ".ci" / "run").read_text()).group(1)
    assert Version(ci_torch) in Requirement("torch" + VLLM_0_33_REQUIRES["torch"]).specifier
