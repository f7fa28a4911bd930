"""Where a trial ran under SLURM: the job, and the array job and task, from the variables SLURM sets in every
process of a job. Recorded in each trial (its `slurm` attribute when it starts, its environment when it ends),
so that `glue-bench status` can say which array task ran what."""

from __future__ import annotations

import os

VARIABLES = {
    "slurm_job": "SLURM_JOB_ID",
    "slurm_array_job": "SLURM_ARRAY_JOB_ID",
    "slurm_array_task": "SLURM_ARRAY_TASK_ID",
}


def ids() -> dict:
    """The SLURM ids of this process ("" where not set: not under SLURM, or not an array job)."""
    return {key: os.environ.get(name, "") for key, name in VARIABLES.items()}


def task() -> str:
    """This process's SLURM task as SLURM names it: "ARRAYJOB_TASK" in an array job, else the job id; "" outside
    SLURM."""
    found = ids()
    if found["slurm_array_job"] and found["slurm_array_task"]:
        return f"{found['slurm_array_job']}_{found['slurm_array_task']}"
    return found["slurm_job"]
