"""Run the whole study: annotate, pretrain both arms, SFT every arm per seed, evaluate, report.

With ``entropy_sweep`` set, the study also runs the controlled entropy sweep on the same
pretrained models: per topic subset, its own SFT set (``sweep_NAME_sft_set``), annotation,
plain and anchored SFT per seed and one evaluation per seed, all below OUTPUT_DIR/sweep/NAME
(study.sweep_report reports it). ``main_comparison: false`` leaves the sweep only.

Each step is one stage run as its own process (``python -m STAGE CONFIG key=value ...``,
training steps optionally under ``accelerate launch``), so a step gets a clean process,
its memory is freed, and the exact command is in its manifest. Steps talk only through
their output directories.

A step is skipped when it is complete and still current: its ``manifest.json`` exists
(stages write it last), the config fingerprint in it equals the fingerprint of the
config the study would run now, and the steps it reads from are the same runs as when
it ran (``study_state.json`` records their manifests' identities). A changed config
reruns that step and everything downstream of it; nothing else. A rerun for a changed
config or changed inputs starts from an empty output directory; a rerun after an
interruption (same config, same inputs) lets the stage resume where it stopped.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stage_io.config import load_config
from stage_io.manifest import config_fingerprint, read_manifest, verify_outputs
from study.config import StageRef, StudyConfig
from study.validate import validate_plan

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
    # "" for the main comparison, "sweep_NAME_" for a subset of the entropy sweep: the SFT arms that must pair.
    group: str = ""

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


def plan_steps(cfg: StudyConfig) -> list[Step]:
    """Every step of the study, in an order that respects what each one reads."""
    out = Path(cfg.output_dir)
    corpus = out / "annotate" / "corpus"
    tokenizer = out / "pretrain" / "tokenizer"
    pretrained = {arm: out / "pretrain" / arm for arm in ("plain", "anchored")}
    steps = [Step("annotate_corpus", "annotate", cfg.annotate_corpus, corpus, [f"output_dir={corpus}"])]
    identity = corpus_annotation_identity(steps[0].load(), corpus)
    main_sft: list[Step] = []
    if cfg.main_comparison:
        main_sft = sft_data_steps(cfg, out, "", cfg.sft_set, identity)
        steps += main_sft
    for arm, path in pretrained.items():
        steps.append(Step(
            f"pretrain_{arm}", "pretrain", cfg.pretrain, path,
            [f"output_dir={path}", f"data.arm={arm}", f"data.annotations={corpus}", f"tokenizer.path={tokenizer}"],
            # The anchored arm reuses the tokenizer the plain arm trained: identical vocabularies.
            needs=["annotate_corpus"] + (["pretrain_plain"] if arm == "anchored" else []),
            trains=True,
        ))
    capabilities = CapabilityWiring()
    if cfg.capability_task is not None and cfg.main_comparison:  # capabilities are the main comparison's
        task_dir = out / "capability_task"
        steps.append(Step("capability_task", "eval.next_passage_task", cfg.capability_task, task_dir,
                          [f"output_dir={task_dir}"]))
        capabilities = CapabilityWiring(["capabilities.include_path=" + json.dumps([str(task_dir)])], ["capability_task"])
    if cfg.main_comparison:
        sft_arms = [("plain_sft", cfg.posttrain_plain, "plain"), ("anchored", cfg.posttrain_anchored, "anchored")]
        if cfg.ablation_anchored_sft_on_plain:
            sft_arms.append(("anchored_sft_on_plain", cfg.posttrain_anchored, "plain"))
        steps += sft_and_eval_steps(cfg, out, "", main_sft, sft_arms, pretrained, ablations=True,
                                    capabilities=capabilities)
    if cfg.entropy_sweep is not None:
        sweep = cfg.entropy_sweep
        for name, topics in zip(sweep.names(), sweep.subsets):
            ref = StageRef(cfg.sft_set.config, [*cfg.sft_set.overrides, f"topics={json.dumps(topics)}",
                                                f"max_documents={sweep.documents}", "balance_topics=true"])
            data = sft_data_steps(cfg, sweep_dir(out, name), f"sweep_{name}_", ref, identity)
            steps += data
            sft_arms = [("plain_sft", cfg.posttrain_plain, "plain"), ("anchored", cfg.posttrain_anchored, "anchored")]
            # Capabilities are the main comparison's measurement: none in the sweep.
            steps += sft_and_eval_steps(cfg, sweep_dir(out, name), f"sweep_{name}_", data, sft_arms, pretrained,
                                        ablations=False, capabilities=CapabilityWiring(capabilities.overrides, [], False))
    return steps


def sft_data_steps(cfg: StudyConfig, root: Path, prefix: str, sft_set_ref: StageRef | None,
                   identity: list[str]) -> list[Step]:
    """The SFT set (when the study builds one) and its annotation, below ``root``; step names start with ``prefix``.

    The main comparison writes ROOT/sft_set and ROOT/annotate/sft; a sweep subset the same below its own root.
    """
    steps = []
    sft_needs = ["annotate_corpus"]
    sft_source: list[str] = []
    if sft_set_ref is not None:
        sft_set = root / "sft_set"
        steps.append(Step(f"{prefix}sft_set", "posttrain.embedded_sft", sft_set_ref, sft_set, [f"output_dir={sft_set}"],
                          group=prefix))
        sft_needs.append(f"{prefix}sft_set")
        sft_source = [f"source.source={sft_set / 'sft.jsonl'}"]
    annotations = root / "annotate" / "sft"
    steps.append(Step(
        f"{prefix}annotate_sft", "annotate", cfg.annotate_sft, annotations,
        [f"output_dir={annotations}", *sft_source, *identity], needs=sft_needs, group=prefix,
    ))
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


def sft_and_eval_steps(cfg: StudyConfig, root: Path, prefix: str, data: list[Step], sft_arms: list[tuple],
                       pretrained: dict[str, Path], ablations: bool, capabilities: CapabilityWiring) -> list[Step]:
    """Per seed: every SFT arm on ``data``'s annotated SFT set, then one evaluation of them and the bases."""
    out = Path(cfg.output_dir)
    corpus = out / "annotate" / "corpus"
    sft_annotations = data[-1].output_dir
    sft_set = next((s.output_dir for s in data if s.module == "posttrain.embedded_sft"), None)
    eval_prompts = [] if sft_set is None else [f"prompts.source.source={sft_set / 'eval_prompts.jsonl'}"]
    prompt_format = _prompt_format(cfg.posttrain_plain)
    steps = []
    for seed in cfg.seeds:
        dirs = arm_dirs(root, seed)
        for arm, ref, pretrain_arm in sft_arms:
            steps.append(Step(
                f"{prefix}posttrain_{arm}_seed{seed}", "posttrain", ref, dirs[arm],
                [f"model_path={pretrained[pretrain_arm]}", f"data.annotations={sft_annotations}",
                 f"training.seed={seed}", f"output_dir={dirs[arm]}"],
                needs=[data[-1].name, f"pretrain_{pretrain_arm}"], trains=True, group=prefix,
            ))
        eval_dir = root / "eval" / f"seed{seed}"
        arms = eval_arms(cfg, pretrained, dirs, prompt_format, ablations)
        steps.append(Step(
            f"{prefix}eval_seed{seed}", "eval", cfg.eval, eval_dir,
            [f"output_dir={eval_dir}", "arms=" + json.dumps(arms), *eval_prompts,
             f"sampling.seed={seed}", f"metrics.semantic_entropy.annotator_dir={corpus}",
             # One attribute classifier for every seed and sweep subset (fitted by the first evaluation, reused after).
             f"metrics.semantic_entropy.classifier.dir={out / 'attribute_classifier'}",
             f"metrics.drift.pretraining_annotations={corpus}",
             # The quality proxy's reference is this study's plain-pretrained model (used only by kind=proxy).
             f"metrics.quality.reference_model={pretrained['plain']}", *capabilities.eval_overrides(cfg, seed)],
            needs=[f"{prefix}posttrain_{arm}_seed{seed}" for arm, _, _ in sft_arms]
            + ["pretrain_plain", "pretrain_anchored", *capabilities.needs],
            group=prefix,
        ))
    return steps


def corpus_annotation_identity(corpus_config, corpus: Path) -> list[str]:
    """Overrides that make the SFT annotation use the corpus annotation's schema and annotator.

    One schema and one annotator per study: the SFT responses are tagged with the keys the
    model saw in pretraining, by the annotator that tagged the corpus (the offline one
    loaded from the corpus run's fitted state; an LLM one with the same engine and prompt).
    """
    overrides = [f"schema={json.dumps(asdict(corpus_config.schema))}",
                 f"annotator.kind={corpus_config.annotator.kind}"]
    if corpus_config.annotator.kind == "offline":
        overrides.append(f"annotator.offline.fitted_state_from={corpus}")
    else:
        overrides.append(f"llm={json.dumps(asdict(corpus_config.llm))}")
    return overrides


def _prompt_format(ref: StageRef) -> dict:
    """The prompt format posttrain trains with, so eval samples with the very same one."""
    posttrain = Step("posttrain", "posttrain", ref, Path("."))
    return asdict(posttrain.load().prompt_format)


def eval_arms(cfg: StudyConfig, pretrained: dict[str, Path], dirs: dict[str, Path], prompt_format: dict,
              ablations: bool = True) -> list[dict]:
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


def check_paired_sft(steps: list[Step], seed: int, group: str = "") -> None:
    """The SFT arms of one seed (of the main comparison, or of one sweep subset: ``group``) must train on
    the same example ids for the same number of steps
    (posttrain's manifest: counts.trained_ids_sha256, counts.optimizer_steps); else the
    comparison of their collapses is not a comparison of the methods."""
    arms = {}
    for step in steps:
        if step.module == "posttrain" and step.group == group and step.name.endswith(f"_seed{seed}"):
            counts = (read_manifest(step.output_dir) or {}).get("counts", {})
            arms[step.name] = (counts.get("trained_ids_sha256"), counts.get("optimizer_steps"), counts.get("trained"))
    if len(set(arms.values())) > 1:
        listing = "; ".join(f"{name}: {n} examples (ids {str(ids)[:19]}), {steps_} steps" for name, (ids, steps_, n) in arms.items())
        raise RuntimeError(f"the SFT arms of {group or ''}seed {seed} trained on different examples or for different step counts "
                           f"({listing}); set data.pair_with_anchored=true and the same training settings in both arms")


def stage_overrides(step: Step) -> dict[str, str]:
    """The keys of the step's stage YAML that the study sets, with the value it sets (and the YAML's, if other).

    A key the YAML (or the user's overrides) sets to another value is marked "(YAML: ...)", so a
    user sees what of their stage config the study replaced.
    """
    from stage_io.config import load_config as load

    module_name, class_name = STAGE_CONFIG_CLASSES[step.module]
    cls = getattr(importlib.import_module(module_name), class_name)
    own = asdict(load(cls, step.ref.config, step.ref.overrides))
    result = {}
    for override in step.chain_overrides:
        key, value = override.split("=", 1)
        node = own
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        shown = value if len(value) <= 80 else value[:77] + "..."
        yaml_value = json.dumps(node) if isinstance(node, (dict, list)) else str(node)
        result[key] = shown if yaml_value == value else f"{shown} (YAML: {yaml_value if len(yaml_value) <= 60 else yaml_value[:57] + '...'})"
    return result


def _identity(step: Step) -> str | None:
    manifest = read_manifest(step.output_dir)
    if manifest is None:
        return None
    return f"{manifest.get('config_fingerprint')}@{manifest.get('created')}"


def start_marker(step: Step, by_name: dict[str, Step]) -> dict:
    """What a step runs from: its config's fingerprint and its inputs' runs."""
    return {
        "config_fingerprint": config_fingerprint(step.load()),
        "upstream": {name: _identity(by_name[name]) for name in step.needs},
    }


def is_current(step: Step, state: dict, marker: dict) -> tuple[bool, str]:
    """Whether ``step``'s output is complete and still matches ``marker`` (its config and inputs)."""
    manifest = read_manifest(step.output_dir)
    if manifest is None:
        return False, "no manifest"
    if manifest.get("config_fingerprint") != marker["config_fingerprint"]:
        return False, "config changed"
    problems = verify_outputs(step.output_dir, manifest)
    if problems:
        return False, "outputs differ from the manifest (" + "; ".join(problems) + ")"
    recorded = state.get(step.name, {}).get("upstream")
    if recorded is None and not step.needs:
        return True, "complete (made outside the study)"  # e.g. annotation sharded over nodes first
    if recorded != marker["upstream"]:
        return False, "an input was rerun"
    return True, "complete"


def clear_stale_output(step: Step, state: dict, marker: dict) -> None:
    """Remove a step's output that was started from another config or other inputs.

    Stages resume what they find in their output directory (checkpoints, generations by
    id). That is right after an interruption, and wrong after a config change: a trainer
    would resume the old run's last checkpoint, eval would keep the old models' samples.
    """
    if step.output_dir.exists() and state.get(step.name, {}).get("started") != marker:
        print(f"[study] {step.name}: clearing {step.output_dir} (started from another config or inputs)", flush=True)
        shutil.rmtree(step.output_dir)


def step_command(step: Step, cfg: StudyConfig) -> list[str]:
    """The exact command the study runs for ``step``."""
    launcher = cfg.train_launcher if step.trains and cfg.train_launcher else [sys.executable]
    return [*launcher, "-m", step.module, step.ref.config, *step.overrides]


def _shell(command: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(part) for part in command)


def print_overrides(step: Step) -> None:
    """Say which keys of the step's stage YAML the study replaces (and their YAML values when they differ)."""
    for key, value in stage_overrides(step).items():
        print(f"[study] {step.name}: study sets {key}={value}", flush=True)


def run_step(step: Step, cfg: StudyConfig, log_dir: Path) -> None:
    """Run one stage in its own process, its output shown and kept in logs/STEP.log."""
    command = step_command(step, cfg)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{step.name}.log"
    print(f"[study] {step.name}: {' '.join(command)}", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"study step '{step.name}' failed with exit code {code}; its log: {log_path}")


def print_arms(steps: list[Step]) -> None:
    """The evaluated arms as the study resolves them: name, model, sampling mode, collapse reference."""
    for step in steps:
        if step.module != "eval":
            continue
        for arm in step.load().arms:
            print(f"[study] {step.name}: arm {arm.name}: model={arm.model} mode={arm.mode} base_arm={arm.base_arm}",
                  flush=True)


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def run(cfg: StudyConfig) -> dict:
    """Run every step that is not complete and current; then write the study report."""
    from study.report import write_study_report

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    steps = plan_steps(cfg)
    validate_plan(steps)  # what would fail late, refused before any step runs
    by_name = {s.name: s for s in steps}
    rerun: set[str] = set()
    ran, skipped = [], []
    for step in steps:
        marker = start_marker(step, by_name)
        current, why = is_current(step, state, marker)
        if current and not rerun.intersection(step.needs):
            print(f"[study] {step.name}: {why}, skipped", flush=True)
            skipped.append(step.name)
            continue
        print_overrides(step)
        if cfg.plan_only:
            print(f"[study] {step.name}: would run ({why}): {_shell(step_command(step, cfg))}", flush=True)
            rerun.add(step.name)
            continue
        if step.module == "eval":
            check_paired_sft(steps, int(step.name.rsplit("seed", 1)[1]), step.group)
        clear_stale_output(step, state, marker)
        state[step.name] = {"started": marker}
        _write_state(state_path, state)
        run_step(step, cfg, out / "logs")
        rerun.add(step.name)
        ran.append(step.name)
        state[step.name]["upstream"] = marker["upstream"]
        _write_state(state_path, state)
    if cfg.plan_only:
        print_arms(steps)
        return {"ran": [], "skipped": skipped, "planned": sorted(rerun)}
    report = write_study_report(cfg, out)
    return {"ran": ran, "skipped": skipped, "report": str(report)}
