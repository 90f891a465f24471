"""The study's typed config: which stage YAMLs to start from, seeds, and how to launch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class StageRef:
    # The stage YAML this step starts from.
    config: str = ""
    # key=value overrides applied on top of it (the study then sets the paths that chain the stages).
    overrides: list[str] = field(default_factory=list)


@dataclass
class StudyConfig:
    # Root of the study: every stage writes below it, plus study_state.json and report.md.
    output_dir: str = "runs/study/embedded"
    # SFT training seeds: each seed trains every SFT arm and evaluates them (>= 3 for the comparison).
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # Annotate the pretraining corpus (annotate stage, mode=corpus).
    annotate_corpus: StageRef = field(default_factory=StageRef)
    # Build the embedded default's controlled SFT set (posttrain.embedded_sft); null: the SFT data and
    # eval prompts come from the annotate_sft and eval YAMLs themselves.
    sft_set: StageRef | None = None
    # Write the embedded capabilities task (eval.next_passage_task) once; every eval step's
    # capabilities.include_path then points at it. null: the eval YAML's include_path as it is.
    capability_task: StageRef | None = None
    # Arms the eval's capabilities stage runs on in every seed; the pretrained bases (base,
    # anchored_base: the same checkpoints in every seed) are added in the first seed only.
    capability_arms: list[str] = field(default_factory=lambda: ["plain_sft", "anchored"])
    # Annotate the SFT responses (annotate stage, mode=sft).
    annotate_sft: StageRef = field(default_factory=StageRef)
    # Pretraining, run once per arm (plain, anchored) with the same tokenizer and token budget.
    pretrain: StageRef = field(default_factory=StageRef)
    # SFT of the plain arm (plain pretrain + plain SFT).
    posttrain_plain: StageRef = field(default_factory=StageRef)
    # SFT of the anchored arm (annotated pretrain + anchored SFT); also used for ablation (a).
    posttrain_anchored: StageRef = field(default_factory=StageRef)
    # Evaluation of every arm; the study fills in arms, prompts, seeds and annotation paths.
    eval: StageRef = field(default_factory=StageRef)
    # Ablation (a): anchored SFT on the plain-pretrained model.
    ablation_anchored_sft_on_plain: bool = True
    # Ablation (b): the anchored model generating without an annotation.
    ablation_no_annotation: bool = True
    # Diversity reference of each arm's collapse: "own" measures every arm against the pretrained model
    # it was fine-tuned from (plain_sft against base, anchored arms against anchored_base), isolating what
    # SFT did; "common" measures every arm against base, the plain-pretrained model.
    collapse_reference: Literal["own", "common"] = "own"
    # Command prefix for training steps (e.g. [accelerate, launch, --config_file, configs/accelerate/ddp.yaml]);
    # empty runs them as plain `python -m STAGE`.
    train_launcher: list[str] = field(default_factory=list)
    # Print the plan (which steps run, which are complete) and stop.
    plan_only: bool = False

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
