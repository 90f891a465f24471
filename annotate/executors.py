"""The datatrove executors that run the annotate pipeline: local, or a Slurm job array.

Local (``executor.kind: local``): ``LocalPipelineExecutor`` runs the tasks on this machine,
``executor.workers`` at a time; the stage finalizes when they are all done. Slurm
(``executor.kind: slurm``): ``SlurmPipelineExecutor`` submits the tasks as a job array
(``executor.slurm.*``: time limit, partition, GPUs, ...) and a one-task job that depends on
it and finalizes. Both skip the tasks whose completion marker exists, so running the same
command again resumes.
"""

from __future__ import annotations

import pyarrow as pa
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor

from annotate.config import AnnotateConfig
from annotate.finalize import FinalizeStep
from annotate.pipeline import build_pipeline, logging_dir

# SlurmConfig fields both Slurm executors (annotate and finalize) take as they are, under the same names.
SHARED_SLURM_ARGS = ("time", "partition", "cpus_per_task", "mem_per_cpu_gb", "qos", "env_command")


def build_executors(config: AnnotateConfig, schema: pa.Schema, inputs: dict[str, str]):
    """``(annotate executor, finalize executor or None)``: run the first locally; for Slurm run the
    second, which submits the first as its dependency."""
    executor = config.executor
    pipeline = build_pipeline(config, schema)
    logs = str(logging_dir(config))
    workers = executor.workers if executor.workers is not None else -1
    if executor.kind == "local":
        return LocalPipelineExecutor(pipeline, tasks=executor.tasks, workers=workers, logging_dir=logs), None
    slurm = executor.slurm
    common = {name: getattr(slurm, name) for name in SHARED_SLURM_ARGS}
    common["sbatch_args"] = dict(slurm.sbatch_args)
    annotate = SlurmPipelineExecutor(
        pipeline,
        tasks=executor.tasks,
        workers=workers,
        gpus_per_task=slurm.gpus_per_task,
        job_name=slurm.job_name,
        logging_dir=logs,
        **common,
    )
    finalize = SlurmPipelineExecutor(
        [FinalizeStep(config, inputs)],
        tasks=1,
        gpus_per_task=0,
        job_name=f"{slurm.job_name}-finalize",
        logging_dir=f"{logs}-finalize",
        depends=annotate,
        **common,
    )
    return annotate, finalize
