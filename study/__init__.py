"""The whole study from one experiment config: annotate, pretrain, posttrain, eval, report."""

from study.config import StageRef, StudyConfig
from study.plan import plan_steps
from study.runner import run

__all__ = ["StageRef", "StudyConfig", "plan_steps", "run"]
