"""Faults and concurrency of real sweeps, with real processes (issue 3 and 7):

- workers SIGKILLed at random moments, several times, then resumed: every grid point ends COMPLETE exactly
  once, and every trial finished before a kill is unchanged;
- 4 workers on one SQLite file, 4 and 3 on one PostgreSQL server (a real one, started on loopback), from
  several launchers at once as on several machines: no duplicated or lost trial, no "database is locked".

Tiny trials (random BERT-Tiny, 32 WNLI rows, 1 epoch); still a minute or more each on 2 cores: slow.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from sweep_processes import (
    all_trials,
    assert_each_point_complete_exactly_once,
    fresh_database,
    launch,
    running_postgres,
    snapshot,
    wait_for,
    workers_of,
    write_sweep,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def postgres_server():
    yield from running_postgres()


# --- killed workers -----------------------------------------------------------------------------------------


def test_workers_killed_at_random_moments_then_resumed(tmp_path, glue_data):
    seed = int(os.environ.get("GLUE_BENCH_KILL_SEED", time.time_ns() % 1_000_000))
    print(f"kill schedule seed {seed}: rerun it with GLUE_BENCH_KILL_SEED={seed}")
    rng = random.Random(seed)
    grid = {"batch_size": [16, 32], "lr": [1e-4, 5e-5], "seed": [0, 1]}  # 8 grid points
    path, url = write_sweep(tmp_path, glue_data, grid), f"sqlite:///{tmp_path / 'runs.db'}"
    logs = [tmp_path / f"round-{i}.log" for i in range(4)]
    recorded: dict[int, tuple] = {}  # every trial finished before a kill, as it was then
    kills = 0
    for round_, log in enumerate(logs[:3]):
        before = {t.number for t in all_trials(url) if t.state == TrialState.RUNNING}  # maybe a dead worker's
        launcher = launch(path, url, 2, tmp_path, log)
        if round_ == 0:  # anywhere: planning, imports, a trial
            time.sleep(rng.uniform(1.0, 8.0))
        else:  # mid-trial: once one of this launcher's workers has taken one
            assert wait_for(
                lambda before=before: any(
                    t.state == TrialState.RUNNING and t.number not in before for t in all_trials(url)
                ),
                300,
            ), log.read_text()
            time.sleep(rng.uniform(0.0, 3.0))
            if round_ == 1 and (pids := workers_of(log)):  # one worker alone; the other goes on, then all
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills += 1
                time.sleep(rng.uniform(0.5, 3.0))
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            kills += 1
        launcher.wait()
        time.sleep(0.5)  # let the killed processes go
        for trial in all_trials(url):
            if trial.state == TrialState.COMPLETE:
                recorded.setdefault(trial.number, snapshot(trial))
    assert kills >= 3, f"seed {seed}: the sweep finished before it could be killed"

    final = launch(path, url, 2, tmp_path, logs[3])
    text = "\n".join(log.read_text() for log in logs)
    assert final.wait(timeout=900) == 0, f"seed {seed}:\n{logs[3].read_text()[-3000:]}"
    done = assert_each_point_complete_exactly_once(url, grid)
    after = {t.number: snapshot(t) for t in done}
    assert all(after[number] == before for number, before in recorded.items()), f"seed {seed}"
    # The kills hit running trials: Optuna failed them on their stale heartbeat and ran them again.
    retried = [t for t in all_trials(url) if t.state == TrialState.FAIL]
    assert retried and all("fail_reason" not in t.user_attrs for t in retried), f"seed {seed}"
    assert "database is locked" not in text + logs[3].read_text()


# --- concurrent workers --------------------------------------------------------------------------------------


def run_concurrently(path: Path, url: str, launchers: list[int], tmp_path: Path) -> str:
    """Start one launcher per entry (its worker count) at once, as on as many machines; wait for all."""
    logs = [tmp_path / f"launcher-{i}.log" for i in range(len(launchers))]
    procs = [launch(path, url, n, tmp_path, log) for n, log in zip(launchers, logs)]
    codes = [p.wait(timeout=900) for p in procs]
    text = "\n".join(log.read_text() for log in logs)
    assert codes == [0] * len(procs), text[-3000:]
    return text


def test_four_workers_on_one_sqlite_file(tmp_path, glue_data):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    text = run_concurrently(write_sweep(tmp_path, glue_data), url, [2, 2], tmp_path)
    assert_each_point_complete_exactly_once(url)
    assert len(all_trials(url)) == 12  # nothing enqueued twice, nothing run twice
    assert "database is locked" not in text and "Traceback" not in text
    assert len({t.user_attrs["worker"] for t in all_trials(url)}) >= 2  # the work was shared


@pytest.mark.parametrize("launchers", [[1, 1, 1], [4]], ids=["3 machines x 1 worker", "1 machine x 4 workers"])
def test_workers_sharing_one_postgresql_server(tmp_path, glue_data, postgres_server, launchers):
    url = fresh_database(postgres_server.url, f"sweep_{len(launchers)}_{sum(launchers)}")
    text = run_concurrently(write_sweep(tmp_path, glue_data), url, launchers, tmp_path)
    done = assert_each_point_complete_exactly_once(url)
    assert len(all_trials(url)) == 12
    assert "Traceback" not in text
    assert len({t.user_attrs["worker"] for t in done}) >= 2  # the work was shared


def test_a_postgresql_restart_mid_sweep_is_ridden_out(tmp_path, glue_data, postgres_server):
    """The server stopped (pg_ctl stop -m fast) while a worker trains and started again 20 s later: the
    worker and the launcher wait for it, say so, and the sweep ends with every point COMPLETE once."""
    url = fresh_database(postgres_server.url, "restart")
    log = tmp_path / "launcher.log"
    sweep = launch(write_sweep(tmp_path, glue_data), url, 1, tmp_path, log)
    try:
        assert wait_for(lambda: sum(t.state == TrialState.COMPLETE for t in all_trials(url)) >= 3, 600), log.read_text()
        postgres_server.stop()
        time.sleep(20)
    finally:
        postgres_server.start()
    assert sweep.wait(timeout=900) == 0, log.read_text()[-3000:]
    assert_each_point_complete_exactly_once(url)
    assert len(all_trials(url)) == 12
    text = log.read_text()
    assert "the storage did not answer while" in text
    assert "Traceback" not in text


# --- a killed worker's pack -------------------------------------------------------------------------------------


def test_a_worker_killed_mid_pack_gives_its_whole_pack_back(tmp_path, glue_data):
    """pack = 2 (two learning rates of a batch size and seed trained at once): a worker SIGKILLed while its pack
    trains leaves both trials RUNNING; their heartbeats go stale, both are failed and queued again, and the same
    command then completes every grid point exactly once, each trial recorded with the pack it ran in."""
    grid = {"batch_size": [16, 32], "lr": [1e-4, 5e-5], "seed": [0]}  # 2 packs of 2
    path, url = write_sweep(tmp_path, glue_data, grid, top="pack = 2"), f"sqlite:///{tmp_path / 'runs.db'}"
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    launcher = launch(path, url, 1, tmp_path, first)
    running = lambda: [t for t in all_trials(url) if t.state == TrialState.RUNNING]  # noqa: E731
    assert wait_for(lambda: len(running()) == 2, 300), first.read_text()  # a pack of two taken at once
    packed = {t.number for t in running()}
    os.kill(workers_of(first)[0], signal.SIGKILL)
    launcher.wait(timeout=120)
    assert launch(path, url, 1, tmp_path, second).wait(timeout=900) == 0, second.read_text()[-3000:]
    done = assert_each_point_complete_exactly_once(url, grid)
    stale = {t.number for t in all_trials(url) if t.state == TrialState.FAIL}
    assert packed <= stale  # the killed pack's trials, failed on their stale heartbeats and run again
    packs = [t.user_attrs["pack"] for t in done]
    assert [p["size"] for p in packs] == [2, 2, 2, 2]
    assert all({t.number for t in done if t.user_attrs["pack"] == p} == set(p["trials"]) for p in packs)
