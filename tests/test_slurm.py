"""The cluster kit on a real SLURM (issue 30): a one-node cluster on localhost (tests/slurm_cluster.py) runs the
shipped deploy/slurm/*.sbatch against a real PostgreSQL server, as a user would submit them:

- prefetch.sbatch checks what sweeps/cpu-smoke.toml reads;
- sweep.sbatch as an array of 2 tasks, 1 worker each, runs sweeps/cpu-smoke.toml: every grid point COMPLETE
  exactly once, each task COMPLETED with exit code 0;
- the same, with one array task cancelled (`scancel`: SIGTERM, then SIGKILL after KillWait) while it runs a
  trial: that trial is recorded as interrupted and queued again at once, and the other task finishes it;
- a task with a 2-minute time limit on a trial longer than that: SIGUSR1 before the limit stops glue-bench,
  which checkpoints the trial and queues it again, and the script requeues the task; each run resumes the trial
  from its checkpoint (resumed_from_step > 0) until it ends with the uninterrupted run's result.

Run with -s to see the sbatch / squeue / scontrol lines. Real sweeps of 20 tiny trials: minutes, slow.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import optuna
import pytest
from optuna.trial import TrialState
from slurm_cluster import running_cluster
from sweep_processes import (
    fresh_database,
    running_postgres,
    sweep_env,
    wait_for,
)

from glue_bench.sweeping.status import WORKER_STATES
from glue_bench.sweeping.storage import open_storage, storage_exists

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "sweeps" / "cpu-smoke.toml"  # 5 tasks x batch size [16, 32] x lr [1e-4, 3e-5] x seed [0]
TASKS = ["cola", "mrpc", "stsb", "rte", "wnli"]
POINTS = sorted(itertools.product([16, 32], [1e-4, 3e-5], [0]))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from running_cluster(tmp_path_factory.mktemp("slurm"))


@pytest.fixture(scope="module")
def postgres_server():
    yield from running_postgres()


def job_env(tmp_path: Path, glue_data: Path, url: str) -> dict:
    """What a user exports before sbatch (deploy/slurm/sweep.sbatch's header), plus the tests' fast heartbeats."""
    return {
        **sweep_env(tmp_path),
        "GLUE_BENCH_SWEEP": str(SWEEP),
        "GLUE_BENCH_STORAGE": url,
        "GLUE_BENCH_WORKERS": "1",
        "GLUE_BENCH_DATA": str(glue_data),
        "HF_HOME": str(tmp_path / "hf-home"),
    }


def trials_by_study(url: str) -> dict[str, list]:
    if not storage_exists(url):
        return {}  # no task has made the Optuna tables yet
    storage = open_storage(url, create=False)
    return {
        name.rsplit("/", 1)[1]: optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        for name in optuna.get_all_study_names(storage)
    }


def assert_every_point_complete_once(url: str) -> list:
    """Every grid point of every study COMPLETE exactly once; printed per study. Returns all trials."""
    by_study = trials_by_study(url)
    assert sorted(by_study) == sorted(TASKS)
    for task, trials in sorted(by_study.items()):
        done = sorted(
            (t.params["batch_size"], t.params["lr"], t.params["seed"]) for t in trials if t.state == TrialState.COMPLETE
        )
        print(f"{task}: {len(done)} COMPLETE of {len(POINTS)} grid points, each once: {done == POINTS}")
        assert done == POINTS, task
        assert not [t for t in trials if t.user_attrs.get("fail_reason")], task
    return [t for trials in by_study.values() for t in trials]


def test_prefetch_sbatch_checks_what_the_sweep_reads(cluster, tmp_path, glue_data):
    env = {"GLUE_BENCH_SWEEP": str(SWEEP), "HF_HOME": str(tmp_path / "hf-home"), "GLUE_BENCH_DATA": str(glue_data)}
    job = cluster.sbatch(f"--chdir={tmp_path}", str(ROOT / "deploy/slurm/prefetch.sbatch"), env=env)
    cluster.wait_ended(job, 300)
    state = cluster.tasks(job)[job]
    log = (tmp_path / f"glue-bench-prefetch-{job}.out").read_text()
    print(log)
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), log
    assert all(f"{task}" in log.lower() for task in TASKS), log


def created_database(server: str, tmp_path: Path) -> tuple[str, Path]:
    """deploy/postgres/create-database.sh on the test's server, as its README says: (the URL it printed, a
    ~/.pgpass file with the line it printed)."""
    address = urlparse(server)
    env = {**os.environ, "PGHOST": address.hostname, "PGPORT": str(address.port), "PGUSER": "postgres"}
    env["DB_HOST"] = address.hostname
    done = subprocess.run(
        [ROOT / "deploy/postgres/create-database.sh", "slurm_array", "glue"], env=env, capture_output=True, text=True
    )
    print(done.stdout.replace(done.stdout.splitlines()[-1], "<the .pgpass line, password hidden>"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(lines[-1] + "\n")
    pgpass.chmod(0o600)
    return lines[1].rsplit(" ", 1)[1], pgpass


def test_an_array_of_two_tasks_runs_the_sweep_once(cluster, postgres_server, tmp_path, glue_data):
    url, pgpass = created_database(postgres_server.url, tmp_path)
    assert url == f"postgresql://glue@127.0.0.1:{urlparse(postgres_server.url).port}/slurm_array"
    env = {**job_env(tmp_path, glue_data, url), "PGPASSFILE": str(pgpass)}
    job = cluster.sbatch(
        "--array=0-1", "--cpus-per-task=1", f"--chdir={tmp_path}", str(ROOT / "deploy/slurm/sweep.sbatch"), env=env
    )
    assert wait_for(lambda: len([t for t in cluster.queued(job) if t.endswith("RUNNING")]) == 2, 120)
    cluster.command("squeue", "-j", job)
    cluster.wait_ended(job, 900)
    tasks = cluster.tasks(job)
    logs = {name: (tmp_path / f"glue-bench-{name}.out").read_text() for name in tasks}
    assert sorted(tasks) == [f"{job}_0", f"{job}_1"]
    assert all((t["JobState"], t["ExitCode"]) == ("COMPLETED", "0:0") for t in tasks.values()), logs
    trials = assert_every_point_complete_once(url)
    # Each trial records the array task that ran it (status shows it), and both tasks took a share.
    ran = {t.user_attrs["slurm"] for t in trials if t.state == TrialState.COMPLETE}
    assert ran == set(tasks), ran
    assert {t.user_attrs["env"]["slurm_array_job"] for t in trials} == {job}
    print(f"trials per array task: { {name: sum(t.user_attrs['slurm'] == name for t in trials) for name in ran} }")
    # status, from any machine: per worker, its host and array task, and what became of its trials.
    status = subprocess.run(
        ["glue-bench", "status", str(SWEEP), "--storage", url], env=env, capture_output=True, text=True
    )
    print(status.stdout)
    workers = status.stdout.split("trials per worker:\n", 1)[1].splitlines()
    assert workers[0].split() == ["worker", "host", "SLURM", "task", *WORKER_STATES]
    assert sorted(line.split()[2] for line in workers[1:]) == sorted(tasks)
    assert sum(int(line.split()[3]) for line in workers[1:]) == 20  # complete


def test_a_cancelled_array_task_gives_its_trial_back(cluster, postgres_server, tmp_path, glue_data):
    url = fresh_database(postgres_server.url, "slurm_cancel")
    env = job_env(tmp_path, glue_data, url)
    job = cluster.sbatch(
        "--array=0-1", "--cpus-per-task=1", f"--chdir={tmp_path}", str(ROOT / "deploy/slurm/sweep.sbatch"), env=env
    )
    victim = f"{job}_1"

    def running_on_victim() -> list:
        by_study = trials_by_study(url) if cluster.queued(job) else {}
        return [
            t
            for trials in by_study.values()
            for t in trials
            if t.state == TrialState.RUNNING and t.user_attrs.get("slurm") == victim
        ]

    assert wait_for(lambda: bool(running_on_victim()), 300), "task 1 never ran a trial"
    taken = running_on_victim()[0]
    cluster.command("squeue", "-j", job)
    cluster.command("scancel", victim)
    cluster.wait_ended(job, 900)
    tasks = cluster.tasks(job)
    logs = {name: (tmp_path / f"glue-bench-{name}.out").read_text() for name in tasks}
    print(f"--- the cancelled task's log\n{logs[victim]}")
    assert tasks[victim]["JobState"] == "CANCELLED", logs[victim]
    assert (tasks[f"{job}_0"]["JobState"], tasks[f"{job}_0"]["ExitCode"]) == ("COMPLETED", "0:0"), logs
    assert_every_point_complete_once(url)
    # The cancelled trial was recorded as interrupted (not left to go stale), and task 0 ran its point again.
    study = next(ts for ts in trials_by_study(url).values() if taken._trial_id in {t._trial_id for t in ts})
    stopped = next(t for t in study if t._trial_id == taken._trial_id)
    assert stopped.state == TrialState.FAIL and stopped.user_attrs.get("interrupted"), stopped.user_attrs
    again = [t for t in study if t.params == stopped.params and t.state == TrialState.COMPLETE]
    assert [t.user_attrs["slurm"] for t in again] == [f"{job}_0"]
    print(
        f"trial {stopped.number} {stopped.params} on {victim}: {stopped.state.name}, interrupted; run again as trial {again[0].number} on {job}_0: COMPLETE"
    )
    assert "interrupted; queued again" in logs[victim], logs[victim]


ONE_LONG_TRIAL = """name = "requeue"
models = ["random:L-2_H-128"]
tasks = ["sst2"]
epochs = 1
data = "{data}"
checkpoint_minutes = 0.25

[grid]
batch_size = [32]
lr = [1e-3]
"""  # one trial on all 67,349 SST-2 rows: some 2 minutes of training, longer than a run of the task (60 s)


def test_a_trial_longer_than_the_time_limit_resumes_from_its_checkpoint(cluster, postgres_server, tmp_path, glue_data):
    """A task with a 2-minute time limit: 60 s in, SIGUSR1 stops glue-bench, which writes the trial's checkpoint,
    and the script requeues the task; each run goes on from the last checkpoint until the trial is done. Its result
    is an uninterrupted run's, made beside it outside SLURM."""
    url, whole = fresh_database(postgres_server.url, "slurm_requeue"), fresh_database(postgres_server.url, "whole")
    path = tmp_path / "requeue.toml"
    path.write_text(ONE_LONG_TRIAL.format(data=glue_data))
    env = {**job_env(tmp_path, glue_data, url), "GLUE_BENCH_SWEEP": str(path)}
    command = ["glue-bench", "sweep", str(path), "--storage", whole, "--no-progress"]
    with (tmp_path / "whole.log").open("w") as out:  # beside the job: the same trial, never stopped
        uninterrupted = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    job = cluster.sbatch(
        "--array=0",
        "--time=2",
        "--cpus-per-task=1",
        f"--chdir={tmp_path}",
        str(ROOT / "deploy/slurm/sweep.sbatch"),
        env=env,
    )
    cluster.wait_ended(job, 1500)
    assert uninterrupted.wait(timeout=600) == 0, (tmp_path / "whole.log").read_text()[-3000:]
    task = cluster.tasks(job)[f"{job}_0"]
    log = (tmp_path / f"glue-bench-{job}_0.out").read_text()
    print(f"--- its log\n{log}")
    assert (task["JobState"], task["ExitCode"]) == ("COMPLETED", "0:0"), log
    assert int(task["Restarts"]) >= 1 and log.count("requeueing task") == int(task["Restarts"]), log
    (trials,) = trials_by_study(url).values()
    ((done,), (reference,)) = [
        [t for t in ts if t.state == TrialState.COMPLETE] for ts in (trials, *trials_by_study(whole).values())
    ]
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert interrupted and done.user_attrs["resumed_from_step"] > 0, done.user_attrs
    assert re.search(r"stopped at step \d+: checkpoint written|the checkpoint written \d+ s ago is kept", log), log
    curve = [
        [{k: v for k, v in e.items() if k != "train_seconds"} for e in t.user_attrs["curve"]] for t in (done, reference)
    ]
    assert (done.value, curve[0]) == (reference.value, curve[1]) and reference.user_attrs["resumed_from_step"] == 0
    assert done.value > 0.6  # it learned (the majority class is 50.9)
    print(
        f"{task['Restarts']} restart(s); interrupted: trials {[t.number for t in interrupted]} at checkpoint steps "
        f"{[t.user_attrs.get('checkpoint', {}).get('step') for t in interrupted]}; trial {done.number} resumed from "
        f"step {done.user_attrs['resumed_from_step']}: dev accuracy {done.value:.4f}, the uninterrupted run's "
        f"{reference.value:.4f}"
    )
