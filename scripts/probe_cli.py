"""Probe every stage CLI with bad input, kills, concurrent writers and damaged files.

    python scripts/probe_cli.py [--work DIR] [--only NAME_PREFIX ...] [--list]

Each case runs the real CLIs as processes on tiny configs (and builds what it needs once:
stand-in annotations, a tiny pretrained model, SFT data) and is judged by what the user
would see:

- silent failure: exit 0 where the input was bad, or wrong/duplicated data behind an exit 0;
- library traceback: a traceback whose exception comes from a library;
- own-message traceback: one of this project's messages printed under a traceback;
- rows lost or duplicated: a resumed or concurrent run whose rows are not each there once;
- unclear message: a refusal without a traceback that does not name what the case expects.

It prints one line per case and the counts; the goal is 0 in every column. It exits 1 when
any count is not 0. Kills and lock holders are synchronised on output lines, never on time.
Takes several minutes on two CPU cores (every case starts Python, torch and transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
ENV.pop("ANCHORED_DEBUG", None)
PROJECT = ("stage_io", "annotate", "pretrain", "posttrain", "eval", "publish", "study")
OUTCOMES = (
    "ok",
    "silent_failure",
    "library_traceback",
    "own_message_traceback",
    "rows_lost_or_duplicated",
    "unclear_message",
)


@dataclass
class Case:
    name: str
    # Returns the command (argv after `python -m`) once its setup is done; gets the fixtures.
    command: Callable[["Fixtures"], list[str]]
    # Text the refusal must contain (None: the command must succeed).
    expect_error: str | None = None
    # For a case that must succeed: returns a problem with its data, or None.
    check: Callable[["Fixtures", str], str | None] | None = None
    # What the case needs built first.
    needs: tuple[str, ...] = ()
    extra_env: dict = field(default_factory=dict)
    # Runs the command itself (kills, lock holders); returns (returncode, output).
    runner: Callable[["Fixtures", list[str]], tuple[int, str]] | None = None


class Fixtures:
    """Inputs the cases share, built on first use under ``work``."""

    def __init__(self, work: Path):
        self.work = work
        self.counter = 0

    def fresh(self, name: str) -> Path:
        self.counter += 1
        return self.work / "out" / f"{self.counter:02d}-{name}"

    @property
    def annotations(self) -> Path:
        path = self.work / "ann"
        if not path.exists():
            from pretrain.standin_annotations import write_standin_annotations

            write_standin_annotations(path, n_docs=30)
        return path

    def pretrain_args(self, out: Path, *extra: str) -> list[str]:
        return [
            "pretrain",
            "configs/pretrain/tiny.yaml",
            f"data.annotations={self.annotations}",
            f"output_dir={out}",
            f"tokenizer.path={self.work / 'tok'}",
            "train.cpu_threads=1",
            "train.train_tokens=null",
            *extra,
        ]

    @property
    def model(self) -> Path:
        path = self.work / "model"
        if not (path / "manifest.json").exists():
            must(self.pretrain_args(path, "train.max_steps=4"))
        return path

    @property
    def other_model(self) -> Path:
        path = self.work / "model2"
        if not (path / "manifest.json").exists():
            must(self.pretrain_args(path, "train.max_steps=4", "train.seed=1"))
        return path

    @property
    def sft(self) -> Path:
        """24 SFT rows: half with ShareGPT roles (human/gpt), three with a user turn after the reply."""
        path = self.work / "sft.jsonl"
        if not path.exists():
            rows = []
            for i in range(24):
                user, bot = ("human", "gpt") if i % 2 else ("user", "assistant")
                turns = [
                    {"role": user, "content": f"Write about match {i}."},
                    {"role": bot, "content": f"The team won match {i} 2-1 in London on Friday."},
                ]
                if i % 8 == 0:
                    turns.append({"role": user, "content": "And the next one?"})
                rows.append({"id": f"s{i}", "messages": turns})
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    @property
    def fitted(self) -> Path:
        """An annotate corpus run on 12 articles (its fitted offline annotator is reused)."""
        path = self.work / "fitted"
        if not (path / "manifest.json").exists():
            must(["annotate", "configs/annotate/tiny.yaml", f"output_dir={path}", "source.limit=12"])
        return path

    def posttrain_args(self, out: Path, *extra: str) -> list[str]:
        return [
            "posttrain",
            "configs/posttrain/tiny_plain.yaml",
            f"model_path={self.model}",
            "data.annotations=null",
            f"data.source.source={self.sft}",
            f"output_dir={out}",
            "training.max_steps=4",
            "training.save_steps=2",
            "report_to=[]",
            *extra,
        ]

    def annotate_args(self, out: Path | str, *extra: str) -> list[str]:
        return ["annotate", "configs/annotate/tiny.yaml", f"output_dir={out}", "source.limit=4", *extra]

    def publish_args(self, source: Path, staging: Path | str, *extra: str) -> list[str]:
        folders = [f"source_dir={source}", f"staging_dir={staging}"]
        return ["publish", "configs/publish/model.yaml", *folders, "repo_id=me/probe", *extra]

    def eval_args(self, out: Path, model: Path | str, *extra: str) -> list[str]:
        return [
            "eval",
            "configs/eval/tiny.yaml",
            f"output_dir={out}",
            "stages=[generate]",
            f"arms=[{{name: a, model: '{model}', mode: plain}}]",
            "sampling.max_new_tokens=8",
            "sampling.temperatures=[1.0]",
            *extra,
        ]


def run_module(argv: list[str], env: dict | None = None) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", *argv], cwd=REPO, env={**ENV, **(env or {})}, capture_output=True, text=True
    )
    return proc.returncode, proc.stdout + proc.stderr


def must(argv: list[str]) -> str:
    code, output = run_module(argv)
    if code != 0:
        raise SystemExit(f"probe setup failed: python -m {' '.join(argv)}\n{output[-3000:]}")
    return output


def classify(case: Case, code: int, output: str, fx: Fixtures) -> tuple[str, str]:
    if "Traceback (most recent call last)" in output:
        last = [line for line in output.strip().splitlines() if re.match(r"^[\w.]+(Error|Exception)\b", line)]
        exc = last[-1].split(":")[0] if last else "?"
        own = exc.split(".")[0] in PROJECT or (case.expect_error and case.expect_error in output)
        return ("own_message_traceback" if own else "library_traceback"), exc
    if case.expect_error is not None:
        if code == 0:
            return "silent_failure", "exit 0"
        if case.expect_error not in output:
            return "unclear_message", output.strip().splitlines()[-1][:160] if output.strip() else "(no output)"
        return "ok", f"exit {code}"
    if code != 0:
        return "unclear_message", f"exit {code}: " + (output.strip().splitlines()[-1][:160] if output.strip() else "")
    problem = case.check(fx, output) if case.check else None
    if problem:
        kind = "rows_lost_or_duplicated" if problem.startswith("rows") else "silent_failure"
        return kind, problem
    return "ok", "exit 0"


# ---- runners for kills and concurrent writers ---------------------------------------------

HOLDER = (
    "import sys; from stage_io.run_lock import hold_lock\n"
    "with hold_lock(sys.argv[1], 'probe'):\n    print('locked', flush=True); sys.stdin.readline()\n"
)


def while_locked(fx: Fixtures, argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` while another process holds its output directory (``output_dir=`` in argv)."""
    out = next(a.split("=", 1)[1] for a in argv if a.startswith(("output_dir=", "staging_dir=")))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, out], cwd=REPO, env=ENV, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout.readline().strip() == "locked"
    try:
        return run_module(argv)
    finally:
        holder.communicate("\n")


def kill_at_step_then_resume(fx: Fixtures, argv: list[str]) -> tuple[int, str]:
    """SIGKILL pretrain once it has printed step 5, keep only checkpoints up to step 3, resume."""
    out = Path(next(a.split("=", 1)[1] for a in argv if a.startswith("output_dir=")))
    proc = subprocess.Popen(
        [sys.executable, "-m", *argv], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in proc.stdout:
        if line.startswith("step 5/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    for checkpoint in (out / "checkpoints").glob("step_*"):
        if int(checkpoint.name.split("_")[1]) > 3:
            shutil.rmtree(checkpoint)
    return run_module(argv)


def metrics_once(fx: Fixtures, output: str, out: Path, steps: int) -> str | None:
    found = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    if sorted(found) != list(range(1, steps + 1)):
        return (
            f"rows: metrics.jsonl steps {len(found)} rows for {steps} steps ({len(found) - len(set(found))} repeated)"
        )
    return None


def damage(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: keep if keep is not None else len(data) // 2])


def then_rerun(setup: Callable[[Fixtures, list[str]], None]):
    """Run argv once, apply ``setup`` (damage something), run it again; the second run is judged."""

    def runner(fx: Fixtures, argv: list[str]) -> tuple[int, str]:
        code, output = run_module(argv)
        if code != 0:
            return code, output
        setup(fx, argv)
        return run_module(argv)

    return runner


def out_of(argv: list[str]) -> Path:
    return Path(next(a.split("=", 1)[1] for a in argv if a.startswith("output_dir=")))


# ---- the cases -----------------------------------------------------------------------------


def bad_model_cases(stage: str) -> list[Case]:
    def args(fx: Fixtures, model: str | Path) -> list[str]:
        out = fx.fresh(f"{stage}-model")
        if stage == "posttrain":
            return [
                "posttrain",
                "configs/posttrain/tiny_plain.yaml",
                f"model_path={model}",
                "data.annotations=null",
                f"data.source.source={fx.sft}",
                f"output_dir={out}",
            ]
        return fx.eval_args(out, model)

    def jsonl(fx):
        return fx.sft

    def annotate_output(fx):
        return fx.annotations

    def tokenizer_only(fx):
        _ = fx.model  # builds the shared tokenizer
        return fx.work / "tok"

    def empty_dir(fx):
        (fx.work / "empty").mkdir(exist_ok=True)
        return fx.work / "empty"

    found = {
        "missing local path": (lambda fx: fx.work / "runs" / "nothing" / "here", "does not exist"),
        "JSONL file": (jsonl, "is a file (.jsonl)"),
        "annotate output": (annotate_output, "no config.json"),
        "tokenizer-only dir": (tokenizer_only, "tokenizer-only directory"),
        "empty dir": (empty_dir, "an empty directory"),
        "offline hub id": (lambda fx: "no-such-org/no-such-model", "not in the local cache while offline"),
    }
    return [
        Case(f"{stage}: model is a {what}", (lambda fx, make=make: args(fx, make(fx))), expect_error=message)
        for what, (make, message) in found.items()
    ]


def cases() -> list[Case]:
    return [
        *bad_key_cases(),
        *bad_model_cases("posttrain"),
        *bad_model_cases("eval"),
        *output_folder_cases(),
        *[
            Case(
                f"{stage}: second writer while one holds the directory",
                (lambda fx, stage=stage: stage_args(fx, stage, fx.fresh("lock"), model=fx.model)),
                expect_error="holds its lock",
                runner=while_locked,
            )
            for stage in ("pretrain", "posttrain", "eval", "annotate", "publish")
        ],
        *kill_and_damage_cases(),
        *input_file_cases(),
        *odd_data_cases(),
    ]


def stage_args(fx: Fixtures, stage: str, out: Path | str, *extra: str, model: Path | str = "x") -> list[str]:
    """A stage's quick command on its tiny config, writing to ``out`` (pretrain runs 2 steps; eval samples
    ``model``; publish stages the tiny model)."""
    if stage == "eval":
        return fx.eval_args(out, model, *extra)
    if stage == "publish":
        return fx.publish_args(fx.model, out, *extra)
    if stage == "pretrain":
        return fx.pretrain_args(out, "train.max_steps=2", *extra)
    return {"posttrain": fx.posttrain_args, "annotate": fx.annotate_args}[stage](out, *extra)


# Messages of the refusals the cases expect.
NOT_FINITE = "expects a finite number"
UNWRITABLE = "/sys/probe_cli_out"  # mkdir there fails even for root (Operation not permitted)

# One bad key each, refused before any work: (stage, override, text the refusal must contain). A table
# rather than one Case(...) each: the cases differ only in these three values.
BAD_KEYS = (
    ("eval", "sampling.temperatures=[-1.0]", "key 'sampling.temperatures[0]' must be >= 0"),
    ("eval", "sampling.temperatures=[.inf]", f"'sampling.temperatures[0]' {NOT_FINITE}"),
    ("annotate", "source.limit=-5", "key 'source.limit' must be >= 1"),
    ("annotate", "source.limit=0", "key 'source.limit' must be >= 1"),
    ("annotate", "executor.tasks=0", "key 'executor.tasks' must be >= 1"),
    ("pretrain", "train.max_steps=0", "key 'train.max_steps' must be >= 1"),
    ("pretrain", "optim.lr=.inf", f"'optim.lr' {NOT_FINITE}"),
    ("pretrain", "optim.lr=.nan", f"'optim.lr' {NOT_FINITE}"),
    ("pretrain", "optim.weight_decay=.inf", f"'optim.weight_decay' {NOT_FINITE}"),
    ("pretrain", "optim.lr=1e30", "key 'optim.lr' must be > 0 and <= 1"),
    ("pretrain", "model.attn_implementation=bogus", "key 'model.attn_implementation' expects one of"),
    ("posttrain", "training.learning_rate=-1", "key 'training.learning_rate' must be > 0"),
    ("posttrain", "training.learning_rate=.inf", f"'training.learning_rate' {NOT_FINITE}"),
    ("posttrain", "training.max_steps=0", "key 'training.max_steps' must be >= -1 and != 0"),
)


def bad_key_cases() -> list[Case]:
    return [
        Case(
            f"{stage}: {override}",
            (lambda fx, stage=stage, override=override: stage_args(fx, stage, fx.fresh(stage), override)),
            expect_error=error,
        )
        for stage, override, error in BAD_KEYS
    ]


def output_folder_cases() -> list[Case]:
    """Empty output folders, existing files where a folder should be, and folders that cannot be made."""
    key = {"publish": "staging_dir"}
    stages = ("pretrain", "posttrain", "eval", "annotate", "publish")
    # (stage, what the folder is, the folder, the refusal's text): every stage, each kind of bad folder.
    table = [
        *[
            (stage, "= (empty)", "", f"key '{key.get(stage, 'output_dir')}' expects a non-empty path")
            for stage in stages
        ],
        ("pretrain", " is an existing file", a_file, "is an existing file"),
        ("eval", " is an existing file", a_file, "output_dir '"),
        ("publish", " is an existing file", a_file, "staging_dir '"),
        *[
            (stage, " in an unwritable directory", f"{UNWRITABLE}/{stage}", "cannot create or write it")
            for stage in stages
            if stage != "posttrain"
        ],
    ]
    return [
        Case(
            f"{stage}: {key.get(stage, 'output_dir')}{what}",
            (lambda fx, stage=stage, folder=folder: stage_args(fx, stage, folder(fx) if callable(folder) else folder)),
            expect_error=error,
        )
        for stage, what, folder, error in table
    ]


def kill_and_damage_cases() -> list[Case]:
    """A kill mid-run, then a resume; damaged checkpoints and weights found by a rerun."""
    return [
        Case(
            "pretrain: SIGKILL after step 5, resume",
            lambda fx: fx.pretrain_args(
                fx.fresh("kill"), "train.max_steps=40", "train.checkpoint_every=3", "logging.log_every=1"
            ),
            check=lambda fx, output: metrics_once(fx, output, fx.work / "out" / last_out(fx, "kill"), 40),
            runner=kill_at_step_then_resume,
        ),
        Case(
            "pretrain: truncated random_states of the newest checkpoint",
            lambda fx: fx.pretrain_args(
                fx.fresh("rng"), "train.max_steps=6", "train.checkpoint_every=2", "train.stop_after_steps=4"
            ),
            check=lambda fx, output: None if "set aside" in output else "a damaged checkpoint was resumed silently",
            runner=then_rerun(
                lambda fx, argv: damage(out_of(argv) / "checkpoints" / "step_00000004" / "random_states_0.pkl", 100)
            ),
        ),
        Case(
            "pretrain: truncated final model.safetensors, manifest intact",
            lambda fx: fx.pretrain_args(fx.fresh("final"), "train.max_steps=4", "train.checkpoint_every=2"),
            check=lambda fx, output: (
                "rerun said 'already complete' over damaged weights" if "already complete" in output else None
            ),
            runner=then_rerun(lambda fx, argv: damage(out_of(argv) / "model.safetensors")),
        ),
        Case(
            "posttrain: empty checkpoint-N left by a kill mid-save",
            lambda fx: fx.posttrain_args(fx.fresh("emptyckpt"), "train_past_positions=true", "max_seq_len=128"),
            check=lambda fx, output: None if "set aside" in output else "the empty checkpoint was not reported",
            runner=then_rerun(lambda fx, argv: (out_of(argv) / "checkpoints" / "checkpoint-999").mkdir()),
        ),
        Case(
            "eval: weights replaced at the same path, resume",
            lambda fx: fx.eval_args(fx.fresh("weights"), copy_model(fx), "sampling.limit=4"),
            expect_error="model_weights",
            runner=then_rerun(
                lambda fx, argv: shutil.copy(
                    fx.other_model / "model.safetensors", fx.work / "swapped" / "model.safetensors"
                )
            ),
        ),
    ]


def input_file_cases() -> list[Case]:
    """Odd YAML files and tokenizers; a missing publish source; a sequence length past the model's positions."""
    return [
        Case(
            "posttrain: max_seq_len above the model's positions",
            lambda fx: fx.posttrain_args(fx.fresh("positions"), "train_past_positions=false"),
            expect_error="exceeds the 128 positions",
        ),
        Case(
            "publish: source_dir missing",
            lambda fx: ["publish", "configs/publish/model.yaml", f"source_dir={fx.work / 'none'}", "repo_id=me/probe"],
            expect_error="config key 'source_dir'",
        ),
        Case(
            "pretrain: tokenizer.pretrained is an offline hub id",
            lambda fx: fx.pretrain_args(
                fx.fresh("tokhub"),
                f"tokenizer.path={fx.fresh('tok2')}",
                "tokenizer.pretrained=no-org/no-tok",
                "train.max_steps=2",
            ),
            expect_error="tokenizer.pretrained: 'no-org/no-tok' is not a local path",
        ),
        Case(
            "pretrain: tokenizer.pretrained is a JSONL file",
            lambda fx: fx.pretrain_args(
                fx.fresh("tokfile"),
                f"tokenizer.path={fx.fresh('tok3')}",
                f"tokenizer.pretrained={fx.sft}",
                "train.max_steps=2",
            ),
            expect_error="is a file (.jsonl), not a tokenizer directory",
        ),
        Case(
            "pretrain: an override breaks a rule across keys",
            lambda fx: [
                "pretrain",
                "configs/pretrain/tiny.yaml",
                f"data.annotations={fx.annotations}",
                f"output_dir={fx.fresh('both')}",
                "train.max_steps=3",
            ],
            expect_error="'train.max_steps=3' (on configs/pretrain/tiny.yaml): set exactly one of",
        ),
        Case(
            "pretrain: a YAML file with neither budget, completed by an override",
            lambda fx: [
                "pretrain",
                str(no_budget_yaml(fx)),
                *fx.pretrain_args(fx.fresh("nobudget"), "train.max_steps=2")[2:],
            ],
        ),
        Case(
            "pretrain: a YAML file setting a key twice",
            lambda fx: ["pretrain", str(duplicate_key_yaml(fx)), f"output_dir={fx.fresh('dup')}"],
            expect_error="key 'max_steps' is set twice",
        ),
    ]


def odd_data_cases() -> list[Case]:
    """SFT sets of odd shapes; publish's token, extra files or links in its source; a damaged model;
    over-long prompts."""
    sft_source = ("mode=sft", "source.limit=null", "source.id_field=id", "keep_columns=[]")
    return [
        Case(
            "annotate: SFT rows with human/gpt roles and a user turn after the reply",
            lambda fx: fx.annotate_args(
                fx.fresh("sftann"),
                *sft_source,
                f"source.source={fx.sft}",
                f"annotator.offline.fitted_state_from={fx.fitted}",
            ),
            check=lambda fx, output: sft_annotated(fx),
        ),
        Case(
            "annotate: SFT file with no assistant turn anywhere",
            lambda fx: fx.annotate_args(fx.fresh("noreply"), *sft_source, f"source.source={no_reply_sft(fx)}"),
            expect_error="none of its 3 SFT examples has a response",
        ),
        Case(
            "publish: token_env=UNSET with HF_TOKEN set",
            lambda fx: stage_args(fx, "publish", fx.fresh("pub"), "dry_run=false", "token_env=UNSET"),
            expect_error="environment variable UNSET",
            extra_env={"HF_TOKEN": "hf_probe_not_real"},
        ),
        Case(
            "publish: notes.txt beside the weights is not staged",
            lambda fx: fx.publish_args(model_with_extras(fx, "notes"), fx.fresh("pubnotes")),
            check=lambda fx, output: (
                "notes.txt was staged"
                if (fx.work / "out" / last_out(fx, "pubnotes") / "repo" / "notes.txt").exists()
                else None
            ),
        ),
        Case(
            "publish: a file linked out of the source",
            lambda fx: fx.publish_args(model_with_extras(fx, "link"), fx.fresh("publink")),
            expect_error="is a symbolic link to",
        ),
        Case(
            "eval: arm with a damaged config.json",
            lambda fx: fx.eval_args(fx.fresh("badcfg"), model_with_extras(fx, "badconfig")),
            expect_error="damaged config.json",
        ),
        Case(
            "eval: a prompt longer than the model's positions (transformers backend)",
            lambda fx: fx.eval_args(
                fx.fresh("longprompt"),
                fx.model,
                f"prompts.source.source={long_prompts(fx)}",
                "sampling.samples_per_prompt=1",
            ),
            check=lambda fx, output: long_prompt_skipped(fx),
        ),
    ]


def a_file(fx: Fixtures) -> Path:
    path = fx.fresh("file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a file where a directory should be\n")
    return path


def no_budget_yaml(fx: Fixtures) -> Path:
    path = fx.work / "no_budget.yaml"
    text = (REPO / "configs/pretrain/tiny.yaml").read_text()
    path.write_text(re.sub(r"(?m)^(\s*)train_tokens: .*$", r"\1train_tokens: null", text))
    return path


def duplicate_key_yaml(fx: Fixtures) -> Path:
    path = fx.work / "duplicate.yaml"
    path.write_text("train:\n  max_steps: 2\n  seq_len: 64\n  max_steps: 4\n")
    return path


def no_reply_sft(fx: Fixtures) -> Path:
    path = fx.work / "no_reply.jsonl"
    rows = [
        {"id": "a", "messages": [{"role": "user", "content": "Anyone?"}]},
        {"id": "b", "messages": [{"role": "system", "content": "Be brief."}]},
        {"id": "c", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " "}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def model_with_extras(fx: Fixtures, kind: str) -> Path:
    """A copy of the tiny model with a notes.txt, a link out of it, or a cut config.json."""
    target = fx.work / f"model-{kind}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(fx.model, target, ignore=shutil.ignore_patterns("checkpoints", ".lock"))
    if kind == "notes":
        (target / "notes.txt").write_text("hf_not_a_real_secret\n")
    elif kind == "link":
        (fx.work / "outside.json").write_text('{"secret": true}\n')
        (target / "tokenizer_config.json").unlink()
        (target / "tokenizer_config.json").symlink_to(fx.work / "outside.json")
    else:
        damage(target / "config.json")
    return target


def long_prompts(fx: Fixtures) -> Path:
    path = fx.work / "long_prompts.jsonl"
    rows = [
        {"id": "short", "prompt": "Write about the match."},
        {"id": "long", "prompt": "Write about " + "the election and the vote " * 200},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def long_prompt_skipped(fx: Fixtures) -> str | None:
    run_dir = max((fx.work / "out" / last_out(fx, "longprompt")).rglob("manifest.json"), key=lambda p: len(p.parts))
    counts = json.loads(run_dir.read_text())["counts"]["generate"]
    return None if counts.get("prompts_too_long") == {"a": 1} else f"the long prompt was not skipped: {counts}"


def sft_annotated(fx: Fixtures) -> str | None:
    """Every row annotated, and each response the last assistant turn (the one posttrain trains)."""
    import datasets

    out = fx.work / "out" / last_out(fx, "sftann")
    rows = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train").to_list()
    expected = {json.loads(line)["id"]: json.loads(line)["messages"] for line in fx.sft.read_text().splitlines()}
    bad = [r["id"] for r in rows if r["status"] == "skipped"]
    if bad:
        return f"{len(bad)} of {len(rows)} rows skipped ({bad[:3]})"
    wrong = [
        r["id"]
        for r in rows
        if r["response"] != [m for m in expected[r["id"]] if m["role"] in ("assistant", "gpt")][-1]["content"]
    ]
    if len(rows) != len(expected):
        return f"rows: {len(rows)} annotated rows for {len(expected)} records"
    return f"{len(wrong)} responses are not the last assistant turn" if wrong else None


def copy_model(fx: Fixtures) -> Path:
    target = fx.work / "swapped"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(fx.model, target)
    return target


def last_out(fx: Fixtures, name: str) -> str:
    return sorted(p.name for p in (fx.work / "out").iterdir() if p.name.endswith(f"-{name}"))[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for fixtures and outputs (default: a temporary one)")
    parser.add_argument("--only", nargs="*", default=[], help="run only cases whose name starts with one of these")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    args = parser.parse_args(argv)
    selected = [c for c in cases() if not args.only or any(c.name.startswith(p) for p in args.only)]
    if args.list:
        print("\n".join(c.name for c in selected))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="probe_cli-"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    fx = Fixtures(work)
    counts = {outcome: 0 for outcome in OUTCOMES}
    for case in selected:
        argv_ = case.command(fx)
        if case.runner is not None:
            code, output = case.runner(fx, argv_)
        else:
            code, output = run_module(argv_, case.extra_env)
        outcome, detail = classify(case, code, output, fx)
        counts[outcome] += 1
        print(f"{outcome:<24} {case.name}  [{detail}]", flush=True)
    print("\n" + " | ".join(f"{k} {v}" for k, v in counts.items()) + f" | cases {len(selected)}")
    print(f"outputs under {work}")
    return 0 if all(v == 0 for k, v in counts.items() if k != "ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
