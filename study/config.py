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
class EntropySweep:
    # Topic subsets of the SFT set, one sweep point each (e.g. [[sports], [sports, business]]); each is
    # named k<number of topics> (plus its topics when two subsets have as many).
    subsets: list[list[str]] = field(default_factory=list)
    # Articles in every subset's SFT set, split equally over its topics (balance_topics): equal sizes.
    documents: int = 360

    def __post_init__(self) -> None:
        if not self.subsets:
            raise ValueError("entropy_sweep.subsets must list at least one topic subset (or set entropy_sweep: null)")
        for i, subset in enumerate(self.subsets):
            if not subset or len(set(subset)) != len(subset):
                raise ValueError(f"entropy_sweep.subsets[{i}]={subset}: a subset needs distinct topics")
        if self.documents < max(len(s) for s in self.subsets):
            raise ValueError(f"entropy_sweep.documents={self.documents} is below one article per topic")

    def names(self) -> list[str]:
        """Each subset's name: k<number of topics>, plus its topics where two subsets have as many."""
        sizes = [len(s) for s in self.subsets]
        names = [f"k{len(s)}" if sizes.count(len(s)) == 1 else f"k{len(s)}-" + "-".join(s) for s in self.subsets]
        if len(set(names)) != len(names):
            raise ValueError(f"entropy_sweep.subsets repeats a subset: {self.subsets}")
        return names


@dataclass
class FitPoint:
    # The point's name, used in arm names (plain_sft@NAME) and directories (frontier/NAME/ARM/seedS).
    name: str = ""
    # posttrain key=value overrides of this point, applied to every arm it trains (e.g. training.learning_rate=1e-4,
    # lora.enabled=true): the knob that moves the arm along its fit frontier.
    overrides: list[str] = field(default_factory=list)


FRONTIER_ARMS = ("plain_sft", "anchored", "anchored_sft_on_plain")


@dataclass
class FitFrontier:
    # The fit points; every arm is trained at each, per seed (>= 4 spanning under- to over-fitting for a frontier).
    points: list[FitPoint] = field(default_factory=list)
    # SFT arms trained at every point (of plain_sft, anchored, anchored_sft_on_plain).
    arms: list[str] = field(default_factory=lambda: list(FRONTIER_ARMS))
    # Also sample the anchored arm of every point with no annotation (anchored_no_annotation@POINT), against the
    # anchored base sampled the same way (anchored_base_no_annotation): ablation (b) along the frontier.
    no_annotation: bool = True

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("fit_frontier.points must list at least one point (or set fit_frontier: null)")
        names = [p.name for p in self.points]
        for i, name in enumerate(names):
            # The name becomes a directory and an eval arm's suffix: no separators.
            if not name or any(c in name for c in "/@ \\"):
                raise ValueError(
                    f"fit_frontier.points[{i}].name={name!r}: a point needs a name without '/', '@' or spaces"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"fit_frontier.points repeats a name: {names}")
        unknown = [a for a in self.arms if a not in FRONTIER_ARMS]
        if unknown or not self.arms or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"fit_frontier.arms={self.arms}: distinct arms of {list(FRONTIER_ARMS)}")


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
    # The main comparison: the SFT set, its annotation, every SFT arm and ablation per seed, and their
    # evaluation; false runs annotation, pretraining and the entropy sweep only.
    main_comparison: bool = True
    # The controlled entropy sweep (the paper's ablation d), sharing this study's pretrained models:
    # per topic subset, a balanced SFT set of equal size, plain and anchored SFT per seed, and an eval of
    # base, anchored_base, plain_sft and anchored (null: no sweep). Needs sft_set.
    entropy_sweep: EntropySweep | None = None
    # The fit frontier: every SFT arm trained at several fits (fit_frontier.points) per seed below
    # OUTPUT_DIR/frontier, each point placed by its held-out SFT validation loss, and the arms compared at equal
    # validation loss (study.frontier_report); it trains on the main comparison's SFT set.
    # null: no frontier.
    fit_frontier: FitFrontier | None = None
    # Diversity reference of each arm's collapse: "own" measures every arm against the pretrained model
    # it was fine-tuned from (plain_sft against base, anchored arms against anchored_base), isolating what
    # SFT did; "common" measures every arm against base, the plain-pretrained model.
    collapse_reference: Literal["own", "common"] = "own"
    # Command prefix for training steps (e.g. [accelerate, launch, --config_file, configs/accelerate/ddp.yaml]);
    # empty runs them as plain `python -m STAGE`.
    train_launcher: list[str] = field(default_factory=list)
    # Print the plan (which steps run, which are complete) and stop.
    plan_only: bool = False
    # What relative paths of this study (output_dir, stage configs, input-file overrides) are relative to:
    # cwd, the current directory; study_file, the folder holding the study YAML, so the folder can be
    # moved or shared (python -m study init writes this; study/paths.py).
    relative_to: Literal["cwd", "study_file"] = "cwd"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        if self.entropy_sweep is not None:
            if self.sft_set is None:
                raise ValueError(
                    "entropy_sweep needs sft_set (the sweep builds its SFT sets with posttrain.embedded_sft)"
                )
            self.entropy_sweep.names()
        if not self.main_comparison and self.entropy_sweep is None and self.fit_frontier is None:
            raise ValueError(
                "main_comparison=false with no entropy_sweep and no fit_frontier leaves nothing to train or evaluate"
            )
