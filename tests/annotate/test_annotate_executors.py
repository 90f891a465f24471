"""The paper config's Slurm submission, built and checked without submitting."""

from pathlib import Path

import dill
import pyarrow as pa
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor

from annotate import AnnotateConfig
from annotate.executors import build_executors
from annotate.pipeline import AnnotateUnits, ChunkRecords, ReadRecords
from stage_io.config import load_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = pa.schema([pa.field("id", pa.string())])  # the writer's schema; its columns do not matter here


def test_the_paper_config_builds_a_slurm_job_array_and_a_dependent_finalize_job(tmp_path):
    out = tmp_path / "paper"
    config = load_config(
        AnnotateConfig,
        REPO / "configs" / "annotate" / "llm_vllm.yaml",
        [f"output_dir={out}", "executor.slurm.partition=h100"],
    )
    annotate, finalize = build_executors(config, SCHEMA, {"source": config.source.source})
    assert isinstance(annotate, SlurmPipelineExecutor) and annotate.world_size == config.executor.tasks == 256
    steps = annotate.pipeline
    assert [type(s) for s in steps[:3]] == [ReadRecords, ChunkRecords, AnnotateUnits]
    writer = steps[3]
    assert Path(writer.output_folder.path) == out / "work" / "data"
    assert writer.output_filename.template == "data-${rank}-of-00256.parquet"
    assert Path(annotate.logging_dir.path) == out / "work" / "logs"
    args = annotate.get_sbatch_args(max_array=256)
    assert args["partition"] == "h100" and args["time"] == "24:00:00" and args["gpus"] == 8
    assert args["array"] == "0-255%8" and args["job-name"] == "annotate-paper"
    script = annotate.get_launch_file_contents(args, "python -c RUN")
    assert "#SBATCH --partition=h100" in script and "#SBATCH --gpus=8" in script
    assert finalize.depends is annotate and finalize.world_size == 1 and finalize.gpus_per_task == 0
    assert Path(finalize.logging_dir.path) == out / "work" / "logs-finalize"
    assert dill.loads(dill.dumps(steps))  # what sbatch ships to the nodes: the steps pickle


def test_the_embedded_config_runs_on_the_local_executor(tmp_path):
    config = load_config(AnnotateConfig, REPO / "configs" / "annotate" / "embedded.yaml", [f"output_dir={tmp_path}"])
    annotate, finalize = build_executors(config, SCHEMA, {})
    assert isinstance(annotate, LocalPipelineExecutor) and finalize is None
    assert annotate.world_size == 1 and annotate.workers == 1
