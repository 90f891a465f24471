"""Write ``validation_marginal.json`` for already-trained anchored posttrain output directories.

    python scripts/score_marginal_validation.py RUN_DIR [RUN_DIR ...] [--k 8] [--device cpu]

For each RUN_DIR (HF checkpoint + ``validation.json`` + ``manifest.json``) the held-out
examples are rebuilt exactly as posttrain built them (the manifest's resolved config,
posttrain's own example building and validation split), their ids checked against
``validation.json``, and the anchored model's marginal response NLL estimated
(``posttrain.validation.marginal_nll``: K annotations sampled by the model per example,
-log mean_k p(y|x,z_k); an upper bound on -log p(y|x) that tightens with K). The result
goes to ``RUN_DIR/validation_marginal.json``::

    {"loss_marginal", "k", "max_annotation_tokens", "n_examples", "n_response_tokens", "ids_sha256"}

a separate file, because validation.json is fingerprinted in the manifest and must not change.
Relative paths in the config (model, annotations) are read from the directory the run was
started in: found from the config's output_dir, which RUN_DIR ends with, or given by --root.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from posttrain.config import PosttrainConfig
from posttrain.examples import build_examples, trained_ids_fingerprint
from posttrain.sft_records import load_sft_rows
from posttrain.train import load_tokenizer, marginal_rules
from posttrain.validation import VALIDATION_FILE, marginal_nll
from stage_io.config import config_from_dict
from stage_io.model_paths import check_model

MARGINAL_FILE = "validation_marginal.json"


def run_root(run_dir: Path, output_dir: str) -> Path:
    """The directory the run was started in: RUN_DIR with the config's output_dir cut off its end."""
    if Path(output_dir).is_absolute():
        return Path.cwd()
    parts = Path(os.path.normpath(output_dir)).parts
    if run_dir.parts[-len(parts) :] != parts:
        raise ValueError(f"{run_dir}: does not end with the config's output_dir {output_dir}; pass --root")
    return Path(*run_dir.parts[: -len(parts)]) if len(parts) < len(run_dir.parts) else Path("/")


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"{path}: not found (a finished posttrain output directory has it)")
    return json.loads(path.read_text(encoding="utf-8"))


def score_run(run_dir: Path, k: int | None, device: str, root: Path | None = None) -> dict[str, Any]:
    """Estimate ``loss_marginal`` for one run directory, write ``validation_marginal.json``, return it."""
    run_dir = run_dir.resolve()
    manifest, validation = read_json(run_dir / "manifest.json"), read_json(run_dir / VALIDATION_FILE)
    raw = dict(manifest["config"])
    if k is not None:
        raw["data"] = {**raw["data"], "validation_annotation_samples": k}
    config = config_from_dict(PosttrainConfig, raw, origin=f"{run_dir / 'manifest.json'} (config)")
    if config.arm != "anchored":
        raise ValueError(
            f"{run_dir}: arm={config.arm}; loss_marginal is defined for the anchored arm "
            "(for the plain arm it is validation.json's loss)"
        )
    start = time.perf_counter()
    cwd = Path.cwd()
    os.chdir(root or run_root(run_dir, config.output_dir))
    try:
        tokenizer = load_tokenizer(config)
        rows = load_sft_rows(config.data, need_annotations=True)
        held_out = build_examples(rows, tokenizer, config, total=len(rows)).validation
    finally:
        os.chdir(cwd)
    ids = trained_ids_fingerprint(e.id for e in held_out)
    if ids != validation["ids_sha256"] or len(held_out) != validation["n_examples"]:
        raise ValueError(
            f"{run_dir}: the rebuilt held-out split ({len(held_out)} examples, {ids}) is not the one "
            f"{VALIDATION_FILE} scored ({validation['n_examples']}, {validation['ids_sha256']})"
        )
    if not held_out:
        raise ValueError(f"{run_dir}: no held-out example (data.validation_fraction={config.data.validation_fraction})")
    check_model(str(run_dir), str(run_dir))
    model = AutoModelForCausalLM.from_pretrained(run_dir, dtype=torch.float32).to(device)
    rules = marginal_rules(config, tokenizer)
    total, count = marginal_nll(
        model, held_out, rules, tokenizer.pad_token_id, device, config.training.per_device_batch_size
    )
    if count != validation["n_response_tokens"]:
        raise ValueError(
            f"{run_dir}: {count} response tokens scored, {VALIDATION_FILE} scored {validation['n_response_tokens']}"
        )
    result = {
        "loss_marginal": total / count,
        "k": rules.samples,
        "max_annotation_tokens": rules.max_tokens,
        "n_examples": len(held_out),
        "n_response_tokens": count,
        "ids_sha256": ids,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (run_dir / MARGINAL_FILE).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="posttrain output directories (anchored arm)")
    parser.add_argument(
        "--k",
        type=int,
        default=None,
        help="annotations per example (default: the run's data.validation_annotation_samples)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--root", type=Path, default=None, help="directory the runs were started in")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for run_dir in args.run_dirs:
        try:
            result = score_run(run_dir, args.k, args.device, args.root)
        except (ValueError, OSError) as err:
            print(f"score_marginal_validation: error: {err}", file=sys.stderr)
            return 2
        print(f"{run_dir}: {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
