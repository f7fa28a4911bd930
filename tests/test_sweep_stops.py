"""Stops and outages of real sweeps, with real processes (issues 20 and 22):

- SIGTERM to a launcher mid-trial: it and its workers exit 143 within SLURM's 30 s, their trials queued again;
  the same command then completes every point once, no trial waiting for a grace period;
- a worker cut off from PostgreSQL for longer than the grace period just as its fine-tune finishes, declared
  dead by another worker: its result is still recorded, once, and the retry queued for it never runs.

Tiny trials (random BERT-Tiny, 32 WNLI rows, 1 epoch); a minute or two each on 2 cores: slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState
from sweep_processes import (
    STUDY,
    admin,
    all_trials,
    assert_each_point_complete_exactly_once,
    fresh_database,
    grid_points,
    launch,
    point,
    running_postgres,
    sweep_env,
    wait_for,
    workers_of,
    write_sweep,
)

from glue_bench.sweeping import schema, studies
from glue_bench.sweeping.storage import open_storage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def postgres_server():
    yield from running_postgres()


# --- SIGTERM (issue 22) -------------------------------------------------------------------------------------


def alive(pids: list[int]) -> list[str]:
    """`ps` lines of those processes that still run (a zombie has ended)."""
    shown = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-p", ",".join(map(str, pids))], capture_output=True)
    return [line for line in shown.stdout.decode().splitlines() if line.split()[1][0] != "Z"]


def test_sigterm_stops_a_launcher_and_its_workers_and_the_same_command_resumes(tmp_path, glue_data):
    """SIGTERM to a launcher with 2 workers mid-trial (as SLURM's time limit or scancel sends it): all exit 143
    within 30 s, no process left, the running trials recorded interrupted and queued again at once. The
    default grace period (120 s): a trial left RUNNING would wait for it, and be failed as a dead worker's."""
    grid = {"batch_size": [16, 32], "lr": [1e-4, 5e-5], "seed": [0]}  # 4 grid points
    path, url = write_sweep(tmp_path, glue_data, grid), f"sqlite:///{tmp_path / 'runs.db'}"
    env = {k: v for k, v in sweep_env(tmp_path).items() if "HEARTBEAT" not in k and "GRACE" not in k}
    first, again = tmp_path / "first.log", tmp_path / "again.log"
    sweep = launch(path, url, 2, tmp_path, first, env)
    try:
        assert wait_for(lambda: sum(t.state == TrialState.RUNNING for t in all_trials(url)) == 2, 300), (
            first.read_text()
        )
        time.sleep(1.0)  # into the trials
        workers = workers_of(first)
        sent = time.monotonic()
        os.kill(sweep.pid, signal.SIGTERM)
        assert sweep.wait(timeout=30) == 143, first.read_text()[-3000:]
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    stopped = time.monotonic() - sent
    print(f"launcher and workers stopped {stopped:.1f} s after SIGTERM")
    text = first.read_text()
    assert "workers exited 143 143" in text and "Traceback" not in text, text[-3000:]
    left = alive([sweep.pid, *workers])
    print(f"ps -p {','.join(map(str, [sweep.pid, *workers]))}: {left or 'no process left'}")
    assert len(workers) == 2 and left == [], left

    trials = all_trials(url)
    assert [t for t in trials if t.state == TrialState.RUNNING] == []  # none waits for a grace period
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert len(interrupted) == 2 and {t.state for t in interrupted} == {TrialState.FAIL}
    waiting = {schema.grid_point(t) for t in trials if t.state == TrialState.WAITING}
    assert {schema.grid_point(t) for t in interrupted} <= waiting  # queued again at once

    resumed = launch(path, url, 2, tmp_path, again, env)
    assert resumed.wait(timeout=600) == 0, again.read_text()[-3000:]
    assert_each_point_complete_exactly_once(url, grid)
    # every failed trial is one of the two interrupted: none was failed as a dead worker's on a stale heartbeat
    assert sorted(t.number for t in all_trials(url) if t.state == TrialState.FAIL) == [t.number for t in interrupted]


# --- a finished trial whose results meet an outage longer than the grace period (issue 20) ------------------

HOLD = """# the test's hook in every glue-bench process: the first fine-tune to finish waits for the test's go
import os
import time
from pathlib import Path

folder = os.environ.get("GLUE_BENCH_TEST_HOLD")
if folder:
    from glue_bench.sweeping import trial as _trial

    _fine_tune = _trial.fine_tune_pack

    def _held(*args, **kwargs):
        result = _fine_tune(*args, **kwargs)
        try:
            os.close(os.open(Path(folder, "finished"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return result
        while not Path(folder, "go").exists():
            time.sleep(0.1)
        return result

    _trial.fine_tune_pack = _held
"""


def test_a_finished_trial_cut_off_for_longer_than_the_grace_period_is_recorded_once(
    tmp_path, glue_data, postgres_server, monkeypatch
):
    """The worker's fine-tune finishes; the server then refuses the worker (its role may not log in, its
    sessions ended: an outage as the worker sees it) for 8 s, twice the grace period, while another worker,
    which still reaches the server, fails the trial as a dead worker's and queues a retry. When the worker gets
    through, its result is recorded as a completed trial of that grid point, with the lineage, the retry is
    cancelled, and the sweep ends with every point COMPLETE once; the kept model names a COMPLETE trial."""
    grid = {"batch_size": [16, 32], "lr": [1e-4, 5e-5], "seed": [0]}  # 4 grid points
    admin(postgres_server.url, "DO $$ BEGIN CREATE ROLE glue LOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
    url_admin = fresh_database(postgres_server.url, "outage", owner="glue")
    url = url_admin.replace("postgresql://postgres@", "postgresql://glue@")
    site, hold = tmp_path / "site", tmp_path / "hold"
    site.mkdir(), hold.mkdir()
    (site / "sitecustomize.py").write_text(HOLD)
    env = sweep_env(tmp_path)
    env |= {"GLUE_BENCH_TEST_HOLD": str(hold), "PYTHONPATH": os.pathsep.join([str(site), env.get("PYTHONPATH", "")])}
    log = tmp_path / "launcher.log"
    sweep = launch(write_sweep(tmp_path, glue_data, grid, top='save = "best"'), url, 1, tmp_path, log, env)
    try:
        assert wait_for(lambda: (hold / "finished").exists(), 600), log.read_text()
        admin(
            postgres_server.url,
            "ALTER ROLE glue NOLOGIN",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'glue'",
        )
        (hold / "go").touch()  # the worker now writes its results, and cannot
        try:
            time.sleep(7)  # its last heartbeat is older than the grace period (4 s)
            monkeypatch.setenv("GLUE_BENCH_HEARTBEAT_SECONDS", "1")
            monkeypatch.setenv("GLUE_BENCH_GRACE_SECONDS", "4")
            other = optuna.load_study(study_name=STUDY, storage=open_storage(url_admin, heartbeat=True))
            studies.fail_stale([other], url_admin)  # another worker, which reaches the server
            dead = [t for t in other.get_trials() if t.state == TrialState.FAIL]
            retry = [
                t for t in other.get_trials() if t.state == TrialState.WAITING and "failed_trial" in t.system_attrs
            ]
            assert len(dead) == 1 and [t.system_attrs["failed_trial"] for t in retry] == [dead[0].number]
        finally:
            admin(postgres_server.url, "ALTER ROLE glue LOGIN")
        assert sweep.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    done = assert_each_point_complete_exactly_once(url_admin, grid)
    trials = {t.number: t for t in all_trials(url_admin)}
    ran, retried = trials[dead[0].number], trials[retry[0].number]
    recorded = next(t for t in done if point(t) == point(ran))
    assert recorded.user_attrs.get("results_of") == ran.number, "the finished fine-tune's result was lost"
    assert len(trials) == len(grid_points(grid)) + 2  # the trial declared dead and its retry
    assert recorded.user_attrs["worker"] == ran.user_attrs["worker"]
    assert recorded.system_attrs["retry_history"] == [ran.number]
    assert retried.state == TrialState.FAIL and retried.user_attrs["superseded_by"] == recorded.number
    assert retried.datetime_start is None and "worker" not in retried.user_attrs  # never run
    kept_trial = optuna.load_study(study_name=STUDY, storage=open_storage(url_admin)).user_attrs["kept_model"]["trial"]
    assert trials[kept_trial].state == TrialState.COMPLETE
    text = log.read_text()
    assert f"its result is recorded as trial {recorded.number}" in text and "Traceback" not in text
