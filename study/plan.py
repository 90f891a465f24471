"""The study's plan: every step it runs, where each writes, and the overrides that chain them.

The runner (study.runner) executes these steps and keeps their state; the reports (study.report,
study.sweep_report, study.frontier_report) read the same plan to find what the steps wrote. Nothing
here runs a stage.

Layout below OUTPUT_DIR: annotate/corpus, pretrain/{plain,anchored}, sft_set, annotate/sft,
posttrain/ARM/seedS and eval/seedS (the main comparison), sweep/NAME/... (the entropy sweep),
frontier/POINT/ARM/seedS and frontier/eval/seedS (the fit frontier).
"""

from __future__ import annotations

import importlib
import json
import typing
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

from stage_io.config import load_config
from study.config import StageRef, StudyConfig

# Where each stage module keeps its config class (public names of each stage package).
STAGE_CONFIG_CLASSES = {
    "annotate": ("annotate.config", "AnnotateConfig"),
    "posttrain.embedded_sft": ("posttrain.embedded_sft", "EmbeddedSFTConfig"),
    "pretrain": ("pretrain.config", "PretrainConfig"),
    "posttrain": ("posttrain.config", "PosttrainConfig"),
    "eval": ("eval.config", "EvalConfig"),
    "eval.next_passage_task": ("eval.next_passage_task", "NextPassageTaskConfig"),
}
STATE_FILE = "study_state.json"


@dataclass
class Step:
    name: str
    module: str
    ref: StageRef
    output_dir: Path
    # Overrides the study adds after the YAML's and the user's: the paths chaining the stages.
    chain_overrides: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    trains: bool = False
    # "" for the main comparison, "sweep_NAME_" for a subset of the entropy sweep, "frontier_POINT_" for a fit
    # point: the SFT arms of one group and seed must pair.
    group: str = ""
    # The SFT seed the step belongs to (None: shared by every seed, e.g. annotation and pretraining).
    seed: int | None = None
    # Eval steps: the groups whose SFT arms of this seed must pair before it samples them.
    pair_groups: list[str] = field(default_factory=list)

    @property
    def overrides(self) -> list[str]:
        return [*self.ref.overrides, *self.chain_overrides]

    def load(self):
        module_name, class_name = STAGE_CONFIG_CLASSES[self.module]
        cls = getattr(importlib.import_module(module_name), class_name)
        return load_config(cls, self.ref.config, self.overrides)


def arm_dirs(out: Path, seed: int) -> dict[str, Path]:
    """Where each SFT arm of one seed is written."""
    return {
        "plain_sft": out / "posttrain" / "plain_sft" / f"seed{seed}",
        "anchored": out / "posttrain" / "anchored" / f"seed{seed}",
        "anchored_sft_on_plain": out / "posttrain" / "anchored_sft_on_plain" / f"seed{seed}",
    }


def sweep_dir(out: Path, name: str) -> Path:
    """Where one subset of the entropy sweep writes (its SFT set, annotation, SFT arms, evaluations)."""
    return out / "sweep" / name


def frontier_arm_dir(out: Path, point: str, arm: str, seed: int) -> Path:
    """Where one SFT arm of one fit point and seed is written."""
    return out / "frontier" / point / arm / f"seed{seed}"


def frontier_eval_dir(out: Path, seed: int) -> Path:
    """Where the fit frontier's evaluation of one seed is written (every point and arm of that seed)."""
    return out / "frontier" / "eval" / f"seed{seed}"


def frontier_arm_name(arm: str, point: str) -> str:
    """The eval arm of one SFT arm at one fit point, e.g. plain_sft@lr1e-4."""
    return f"{arm}@{point}"


def plan_steps(cfg: StudyConfig) -> list[Step]:
    """Every step of the study, in an order that respects what each one reads."""
    out = Path(cfg.output_dir)
    corpus = out / "annotate" / "corpus"
    pretrained = {arm: out / "pretrain" / arm for arm in ("plain", "anchored")}
    steps = [Step("annotate_corpus", "annotate", cfg.annotate_corpus, corpus, [f"output_dir={corpus}"])]
    identity = corpus_annotation_identity(steps[0].load(), corpus)
    main_sft: list[Step] = []
    if cfg.main_comparison or cfg.fit_frontier is not None:  # the frontier trains on the main comparison's SFT set
        main_sft = sft_data_steps(cfg, out, "", cfg.sft_set, identity)
        steps += main_sft
    steps += pretrain_steps(cfg, corpus, out / "pretrain" / "tokenizer", pretrained)
    capabilities = CapabilityWiring()
    if cfg.capability_task is not None and cfg.main_comparison:  # capabilities are the main comparison's
        task_dir = out / "capability_task"
        steps.append(
            Step("capability_task", "eval.next_passage_task", cfg.capability_task, task_dir, [f"output_dir={task_dir}"])
        )
        capabilities = CapabilityWiring(
            ["capabilities.include_path=" + json.dumps([str(task_dir)])], ["capability_task"]
        )
    # Capabilities are the main comparison's measurement: none in the sweep or the frontier.
    unmeasured = CapabilityWiring(capabilities.overrides, [], False)
    if cfg.main_comparison:
        sft_arms = [("plain_sft", cfg.posttrain_plain, "plain"), ("anchored", cfg.posttrain_anchored, "anchored")]
        if cfg.ablation_anchored_sft_on_plain:
            sft_arms.append(("anchored_sft_on_plain", cfg.posttrain_anchored, "plain"))
        steps += sft_and_eval_steps(
            cfg, out, "", main_sft, sft_arms, pretrained, ablations=True, capabilities=capabilities
        )
    if cfg.fit_frontier is not None:
        steps += frontier_steps(cfg, out, main_sft, pretrained, unmeasured)
    if cfg.entropy_sweep is not None:
        steps += sweep_steps(cfg, out, pretrained, identity, unmeasured)
    return steps


def pretrain_steps(cfg: StudyConfig, corpus: Path, tokenizer: Path, pretrained: dict[str, Path]) -> list[Step]:
    """Pretraining once per arm on the annotated corpus."""
    return [
        Step(
            f"pretrain_{arm}",
            "pretrain",
            cfg.pretrain,
            path,
            [f"output_dir={path}", f"data.arm={arm}", f"data.annotations={corpus}", f"tokenizer.path={tokenizer}"],
            # The anchored arm reuses the tokenizer the plain arm trained: identical vocabularies.
            needs=["annotate_corpus"] + (["pretrain_plain"] if arm == "anchored" else []),
            trains=True,
        )
        for arm, path in pretrained.items()
    ]


def sweep_steps(
    cfg: StudyConfig, out: Path, pretrained: dict[str, Path], identity: list[str], capabilities: CapabilityWiring
) -> list[Step]:
    """Per subset of the entropy sweep: its SFT set, then plain and anchored SFT on it and their evaluation."""
    sweep = cfg.entropy_sweep
    steps = []
    for name, topics in zip(sweep.names(), sweep.subsets):
        overrides = [f"topics={json.dumps(topics)}", f"max_documents={sweep.documents}", "balance_topics=true"]
        ref = StageRef(cfg.sft_set.config, [*cfg.sft_set.overrides, *overrides])
        data = sft_data_steps(cfg, sweep_dir(out, name), f"sweep_{name}_", ref, identity)
        steps += data
        sft_arms = [("plain_sft", cfg.posttrain_plain, "plain"), ("anchored", cfg.posttrain_anchored, "anchored")]
        steps += sft_and_eval_steps(
            cfg,
            sweep_dir(out, name),
            f"sweep_{name}_",
            data,
            sft_arms,
            pretrained,
            ablations=False,
            capabilities=capabilities,
        )
    return steps


def posttrain_step(
    name: str, ref: StageRef, target: Path, pretrained: Path, pretrain_arm: str, data: Step, seed: int, group: str
) -> Step:
    """One SFT run: the pretrained model of ``pretrain_arm`` fine-tuned on ``data``'s annotated SFT set."""
    return Step(
        name,
        "posttrain",
        ref,
        target,
        [
            f"model_path={pretrained}",
            f"data.annotations={data.output_dir}",
            f"training.seed={seed}",
            f"output_dir={target}",
        ],
        needs=[data.name, f"pretrain_{pretrain_arm}"],
        trains=True,
        group=group,
        seed=seed,
    )


# Each SFT arm: the posttrain StageRef it starts from (a study config field) and the pretrained model it fine-tunes.
SFT_ARMS = {
    "plain_sft": ("posttrain_plain", "plain"),
    "anchored": ("posttrain_anchored", "anchored"),
    "anchored_sft_on_plain": ("posttrain_anchored", "plain"),
}


def frontier_steps(
    cfg: StudyConfig, out: Path, data: list[Step], pretrained: dict[str, Path], capabilities: CapabilityWiring
) -> list[Step]:
    """Per seed: every frontier arm at every fit point (paired within the point), then one evaluation of them all.

    A point's overrides come after the arm's own study overrides and before the study's chaining, so a
    point sets training keys (learning rate, LoRA) and never the paths.
    """
    frontier = cfg.fit_frontier
    steps = []
    for seed in cfg.seeds:
        trained = []
        for point in frontier.points:
            for arm in frontier.arms:
                ref_field, pretrain_arm = SFT_ARMS[arm]
                base_ref = getattr(cfg, ref_field)
                steps.append(
                    posttrain_step(
                        f"frontier_{point.name}_posttrain_{arm}_seed{seed}",
                        StageRef(base_ref.config, [*base_ref.overrides, *point.overrides]),
                        frontier_arm_dir(out, point.name, arm, seed),
                        pretrained[pretrain_arm],
                        pretrain_arm,
                        data[-1],
                        seed,
                        group=f"frontier_{point.name}_",
                    )
                )
                trained.append(steps[-1].name)
        eval_dir = frontier_eval_dir(out, seed)
        arms = frontier_eval_arms(cfg, pretrained, out, seed, _prompt_format(cfg.posttrain_plain))
        steps.append(
            Step(
                f"frontier_eval_seed{seed}",
                "eval",
                cfg.eval,
                eval_dir,
                [
                    *eval_chain_overrides(cfg, out, eval_dir, arms, data, seed),
                    *frontier_collapse_overrides(cfg),
                    *capabilities.eval_overrides(cfg, seed),
                ],
                needs=[*trained, "pretrain_plain", "pretrain_anchored"],
                group="frontier_",
                seed=seed,
                pair_groups=[f"frontier_{p.name}_" for p in frontier.points],
            )
        )
    return steps


def frontier_collapse_overrides(cfg: StudyConfig) -> list[str]:
    """The (plain, anchored) pairs the frontier's evaluation computes collapse ratios for: one per point and
    anchored family, the first as the eval's main pair."""
    frontier = cfg.fit_frontier
    pairs = [
        [frontier_arm_name("plain_sft", p.name), frontier_arm_name(a, p.name)]
        for p in frontier.points
        for a in ("anchored", "anchored_sft_on_plain")
        if "plain_sft" in frontier.arms and a in frontier.arms
    ]
    if not pairs:
        return []
    return [
        f"collapse.plain_arm={pairs[0][0]}",
        f"collapse.anchored_arm={pairs[0][1]}",
        "collapse.extra_pairs=" + json.dumps(pairs[1:]),
    ]


def frontier_eval_arms(
    cfg: StudyConfig, pretrained: dict[str, Path], out: Path, seed: int, prompt_format: dict
) -> list[dict]:
    """The arms of one seed's frontier evaluation.

    The two bases, ``anchored_base_no_annotation`` (the anchored base made to answer without an
    annotation: the reference of ablation b), ``ARM@POINT`` for every frontier arm and point, and
    ``anchored_no_annotation@POINT`` for the anchored arm's points. Collapse references follow
    ``cfg.collapse_reference`` as in the main comparison; the no-annotation arms are measured against
    the base sampled the same way.
    """
    frontier = cfg.fit_frontier
    own = cfg.collapse_reference == "own"

    def arm(name: str, model: Path, mode: str, base: str | None) -> dict:
        return {
            "name": name,
            "model": str(model),
            "mode": mode,
            "base_arm": None if base is None else (base if own else "base"),
            "prompt_format": prompt_format,
        }

    arms = [
        arm("base", pretrained["plain"], "plain", None),
        arm("anchored_base", pretrained["anchored"], "anchored", None),
    ]
    if "anchored" in frontier.arms and frontier.no_annotation:
        arms.append(arm("anchored_base_no_annotation", pretrained["anchored"], "no_annotation", None))
    for point in frontier.points:
        for name in frontier.arms:
            pretrain_arm = SFT_ARMS[name][1]
            arms.append(
                arm(
                    frontier_arm_name(name, point.name),
                    frontier_arm_dir(out, point.name, name, seed),
                    "plain" if name == "plain_sft" else "anchored",
                    "base" if pretrain_arm == "plain" else "anchored_base",
                )
            )
        if "anchored" in frontier.arms and frontier.no_annotation:
            arms.append(
                arm(
                    frontier_arm_name("anchored_no_annotation", point.name),
                    frontier_arm_dir(out, point.name, "anchored", seed),
                    "no_annotation",
                    "anchored_base_no_annotation",
                )
            )
    return arms


def eval_chain_overrides(
    cfg: StudyConfig, out: Path, eval_dir: Path, arms: list[dict], data: list[Step], seed: int
) -> list[str]:
    """The eval keys the study sets in every evaluation: paths, arms, prompts, seed, and the shared scorers."""
    corpus = out / "annotate" / "corpus"
    sft_set = next((s for s in data if s.module == "posttrain.embedded_sft"), None)
    eval_prompts = [] if sft_set is None else [f"prompts.source.source={sft_set.output_dir / 'eval_prompts.jsonl'}"]
    topics = None if sft_set is None else sft_set.load().topics
    return [
        f"output_dir={eval_dir}",
        "arms=" + json.dumps(arms),
        *eval_prompts,
        f"sampling.seed={seed}",
        f"metrics.semantic_entropy.annotator_dir={corpus}",
        # One attribute classifier for every seed and sweep subset (fitted by the first evaluation, reused after).
        f"metrics.semantic_entropy.classifier.dir={out / 'attribute_classifier'}",
        f"metrics.drift.pretraining_annotations={corpus}",
        # The quality proxy's reference is this study's plain-pretrained model (used only by kind=proxy).
        f"metrics.quality.reference_model={out / 'pretrain' / 'plain'}",
        *neutral_scoring_overrides(cfg, corpus, topics),
    ]


def neutral_scoring_overrides(cfg: StudyConfig, corpus: Path, topics: list[str] | None) -> list[str]:
    """Quality from the n-gram model of the corpus text (favours neither arm) and the restricted value's share.

    The restricted value is the SFT set's one topic as the attribute judge names it (an SFT set of several
    topics restricts to no single value: none is set). An eval stage without these keys keeps its own
    quality; ``scoring_gaps`` says so.
    """
    overrides = []
    if config_has_key("eval", "metrics.quality.ngram"):
        overrides += ["metrics.quality.kind=ngram", f"metrics.quality.ngram.corpus={corpus}"]
    if config_has_key("eval", "metrics.restricted_value") and topics and len(topics) == 1:
        se = Step("eval", "eval", cfg.eval, Path(".")).load().metrics.semantic_entropy
        attribute = se.primary_key()
        if se.labels != "none" and attribute:  # the judge's attribute; without labels there is nothing to restrict
            overrides.append("metrics.restricted_value=" + json.dumps({"attribute": attribute, "value": topics[0]}))
    return overrides


def scoring_gaps() -> list[str]:
    """The neutral scorers this eval stage cannot run (their keys are missing from its config)."""
    return [
        f"the eval stage has no `{key}`: {what} not measured"
        for key, what in (
            ("metrics.quality.ngram", "neutral n-gram quality"),
            ("metrics.restricted_value", "restricted share"),
        )
        if not config_has_key("eval", key)
    ]


def config_has_key(module: str, dotted: str) -> bool:
    """Whether a stage's config class has the (nested) key ``dotted``."""
    module_name, class_name = STAGE_CONFIG_CLASSES[module]
    cls = getattr(importlib.import_module(module_name), class_name)
    for part in dotted.split("."):
        if not is_dataclass(cls):
            return False
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return False
        cls = next((t for t in (hints[part], *typing.get_args(hints[part])) if is_dataclass(t)), hints[part])
    return True


def sft_data_steps(
    cfg: StudyConfig, root: Path, prefix: str, sft_set_ref: StageRef | None, identity: list[str]
) -> list[Step]:
    """The SFT set (when the study builds one) and its annotation, below ``root``; step names start with ``prefix``.

    The main comparison writes ROOT/sft_set and ROOT/annotate/sft; a sweep subset the same below its own root.
    """
    steps = []
    sft_needs = ["annotate_corpus"]
    sft_source: list[str] = []
    if sft_set_ref is not None:
        sft_set = root / "sft_set"
        steps.append(
            Step(
                f"{prefix}sft_set",
                "posttrain.embedded_sft",
                sft_set_ref,
                sft_set,
                [f"output_dir={sft_set}"],
                group=prefix,
            )
        )
        sft_needs.append(f"{prefix}sft_set")
        sft_source = [f"source.source={sft_set / 'sft.jsonl'}"]
    annotations = root / "annotate" / "sft"
    steps.append(
        Step(
            f"{prefix}annotate_sft",
            "annotate",
            cfg.annotate_sft,
            annotations,
            [f"output_dir={annotations}", *sft_source, *identity],
            needs=sft_needs,
            group=prefix,
        )
    )
    return steps


@dataclass
class CapabilityWiring:
    """How evaluations reach the capability task: overrides, the step they need, and whether any arm is measured."""

    overrides: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    measure: bool = True

    def eval_overrides(self, cfg: StudyConfig, seed: int) -> list[str]:
        """The bases are the same checkpoints in every seed: their capabilities are measured once. Where
        nothing is measured (a sweep subset), the capabilities stage is left out of the eval's stages."""
        if not self.measure:
            stages = Step("eval", "eval", cfg.eval, Path(".")).load().stages
            return ["stages=" + json.dumps([s for s in stages if s != "capabilities"])]
        arms = (["base", "anchored_base"] if seed == cfg.seeds[0] else []) + list(cfg.capability_arms)
        return [*self.overrides, "capabilities.arms=" + json.dumps(arms)]


def sft_and_eval_steps(
    cfg: StudyConfig,
    root: Path,
    prefix: str,
    data: list[Step],
    sft_arms: list[tuple],
    pretrained: dict[str, Path],
    ablations: bool,
    capabilities: CapabilityWiring,
) -> list[Step]:
    """Per seed: every SFT arm on ``data``'s annotated SFT set, then one evaluation of them and the bases."""
    out = Path(cfg.output_dir)
    prompt_format = _prompt_format(cfg.posttrain_plain)
    steps = []
    for seed in cfg.seeds:
        dirs = arm_dirs(root, seed)
        steps += [
            posttrain_step(
                f"{prefix}posttrain_{arm}_seed{seed}",
                ref,
                dirs[arm],
                pretrained[pretrain_arm],
                pretrain_arm,
                data[-1],
                seed,
                group=prefix,
            )
            for arm, ref, pretrain_arm in sft_arms
        ]
        eval_dir = root / "eval" / f"seed{seed}"
        arms = eval_arms(cfg, pretrained, dirs, prompt_format, ablations)
        steps.append(
            Step(
                f"{prefix}eval_seed{seed}",
                "eval",
                cfg.eval,
                eval_dir,
                [*eval_chain_overrides(cfg, out, eval_dir, arms, data, seed), *capabilities.eval_overrides(cfg, seed)],
                needs=[f"{prefix}posttrain_{arm}_seed{seed}" for arm, _, _ in sft_arms]
                + ["pretrain_plain", "pretrain_anchored", *capabilities.needs],
                group=prefix,
                seed=seed,
                pair_groups=[prefix],
            )
        )
    return steps


def corpus_annotation_identity(corpus_config, corpus: Path) -> list[str]:
    """Overrides that make the SFT annotation use the corpus annotation's schema and annotator.

    One schema and one annotator per study: the SFT responses are tagged with the keys the
    model saw in pretraining, by the annotator that tagged the corpus (the offline one
    loaded from the corpus run's fitted state; an LLM one with the same engine and prompt).
    """
    overrides = [f"schema={json.dumps(asdict(corpus_config.schema))}", f"annotator.kind={corpus_config.annotator.kind}"]
    if corpus_config.annotator.kind == "offline":
        overrides.append(f"annotator.offline.fitted_state_from={corpus}")
    else:
        overrides.append(f"llm={json.dumps(asdict(corpus_config.llm))}")
    return overrides


def _prompt_format(ref: StageRef) -> dict:
    """The prompt format posttrain trains with, so eval samples with the very same one."""
    posttrain = Step("posttrain", "posttrain", ref, Path("."))
    return asdict(posttrain.load().prompt_format)


def eval_arms(
    cfg: StudyConfig, pretrained: dict[str, Path], dirs: dict[str, Path], prompt_format: dict, ablations: bool = True
) -> list[dict]:
    """The arms compared in one seed's evaluation.

    ``base`` is the plain-pretrained model, ``anchored_base`` the annotated-pretrained one
    sampling an annotation first. ``cfg.collapse_reference`` picks each arm's reference:
    the model it was fine-tuned from ("own") or ``base`` for all ("common"). ``ablations=False``
    (the entropy sweep) keeps the four arms of the comparison only.
    """

    def arm(name: str, model: Path, mode: str, own_base: str | None) -> dict:
        base = own_base if cfg.collapse_reference == "own" or own_base is None else "base"
        return {"name": name, "model": str(model), "mode": mode, "base_arm": base, "prompt_format": prompt_format}

    arms = [
        arm("base", pretrained["plain"], "plain", None),
        arm("anchored_base", pretrained["anchored"], "anchored", None),
        arm("plain_sft", dirs["plain_sft"], "plain", "base"),
        arm("anchored", dirs["anchored"], "anchored", "anchored_base"),
    ]
    if ablations and cfg.ablation_no_annotation:
        arms.append(arm("anchored_no_annotation", dirs["anchored"], "no_annotation", "anchored_base"))
    if ablations and cfg.ablation_anchored_sft_on_plain:
        arms.append(arm("anchored_sft_on_plain", dirs["anchored_sft_on_plain"], "anchored", "base"))
    return arms


def stage_overrides(step: Step) -> dict[str, str]:
    """The keys of the step's stage YAML that the study sets, with the value it sets (and the YAML's, if other).

    A key the YAML (or the user's overrides) sets to another value is marked "(YAML: ...)", so a
    user sees what of their stage config the study replaced.
    """
    module_name, class_name = STAGE_CONFIG_CLASSES[step.module]
    cls = getattr(importlib.import_module(module_name), class_name)
    own = asdict(load_config(cls, step.ref.config, step.ref.overrides))
    result = {}
    for override in step.chain_overrides:
        key, value = override.split("=", 1)
        node = own
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        shown = value if len(value) <= 80 else value[:77] + "..."
        yaml_value = json.dumps(node) if isinstance(node, (dict, list)) else str(node)
        result[key] = (
            shown
            if yaml_value == value
            else f"{shown} (YAML: {yaml_value if len(yaml_value) <= 60 else yaml_value[:57] + '...'})"
        )
    return result
