"""Faults and concurrency of real sweeps, with real processes (issues 3, 7, 20 and 22):

- workers SIGKILLed at random moments, several times, then resumed: every grid point ends COMPLETE exactly
  once, and every trial finished before a kill is unchanged;
- 4 workers on one SQLite file, 4 and 3 on one PostgreSQL server (a real one, started on loopback), from
  several launchers at once as on several machines: no duplicated or lost trial, no "database is locked";
- SIGTERM to a launcher mid-trial: it and its workers exit 143 within SLURM's 30 s, their trials queued again;
  the same command then completes every point once, no trial waiting for a grace period;
- a worker cut off from PostgreSQL for longer than the grace period just as its fine-tune finishes, declared
  dead by another worker: its result is still recorded, once, and the retry queued for it never runs.

Tiny trials (random BERT-Tiny, 32 WNLI rows, 1 epoch); still a minute or more each on 2 cores: slow.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from glue_bench.sweeping import studies
from glue_bench.sweeping.storage import open_storage, storage_exists

pytestmark = pytest.mark.slow

GRID = {"batch_size": [8, 16, 32], "lr": [1e-4, 5e-5], "seed": [0, 1]}  # 12 grid points
SWEEP = """# glue-bench sweep faults.toml
name = "faults"
models = ["random:L-2_H-128"]
tasks = ["wnli"]
epochs = 1
seeds = {seeds}
data = "{data}"
{top}

[grid]
batch_size = {batch_size}
lr = {lr}

[recipe]
max_train_samples = 32
"""
STUDY = "faults/random:L-2_H-128/wnli"


def write_sweep(tmp_path: Path, glue_data: Path, grid: dict = GRID, top: str = "") -> Path:
    path = tmp_path / "faults.toml"
    text = SWEEP.format(data=glue_data, seeds=grid["seed"], batch_size=grid["batch_size"], lr=grid["lr"], top=top)
    path.write_text(text)
    return path


def sweep_env(tmp_path: Path) -> dict:
    # Heartbeats every second, stale after 4: a killed worker's trial is retried within seconds.
    return {
        **os.environ,
        "GLUE_BENCH_HEARTBEAT_SECONDS": "1",
        "GLUE_BENCH_GRACE_SECONDS": "4",
        "GLUE_BENCH_ARTIFACTS": str(tmp_path / "artifacts"),
        "OMP_NUM_THREADS": "1",
    }


def launch(path: Path, url: str, workers: int, tmp_path: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    """`glue-bench sweep` in its own session (so the test can kill it and its workers together)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "glue_bench.cli",
            "sweep",
            str(path),
            "--storage",
            url,
            "--workers",
            str(workers),
            "--no-progress",
        ],
        env=env or sweep_env(tmp_path),
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def all_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    if not storage_exists(url):
        return []  # not made yet, or killed before it made the storage
    storage = open_storage(url, create=False)
    if STUDY not in optuna.get_all_study_names(storage):
        return []
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)


def grid_points(grid: dict = GRID) -> list[tuple]:
    return sorted(itertools.product(grid["batch_size"], grid["lr"], grid["seed"]))


def point(trial) -> tuple:
    return trial.params["batch_size"], trial.params["lr"], trial.params["seed"]


def assert_each_point_complete_exactly_once(url: str, grid: dict = GRID) -> list:
    done = [t for t in all_trials(url) if t.state == TrialState.COMPLETE]
    assert sorted(point(t) for t in done) == grid_points(grid)
    assert not [t for t in all_trials(url) if t.user_attrs.get("fail_reason")]
    return done


def snapshot(trial) -> tuple:
    return trial.number, trial.params, trial.value, trial.user_attrs, trial.datetime_start, trial.datetime_complete


# --- killed workers -----------------------------------------------------------------------------------------


def _workers_of(log: Path) -> list[int]:
    """The worker pids the launcher printed ("… pids 123 456")."""
    for line in log.read_text().splitlines():
        if "worker(s) on" in line and "pids" in line:
            return [int(p) for p in line.rsplit("pids", 1)[1].split()]
    return []


def _wait_for(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return False


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
            assert _wait_for(
                lambda before=before: any(
                    t.state == TrialState.RUNNING and t.number not in before for t in all_trials(url)
                ),
                300,
            ), log.read_text()
            time.sleep(rng.uniform(0.0, 3.0))
            if round_ == 1 and (pids := _workers_of(log)):  # one worker alone; the other goes on, then all
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


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb") or shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@dataclass
class PostgresServer:
    url: str  # postgresql://postgres@127.0.0.1:PORT, without a database
    start: Callable
    stop: Callable


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql package). Root cannot run it: as root
    it runs as the postgres user, in a temporary folder that user owns."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install 'glue-bench[postgres]')")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="glue-bench-pg-"))
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run(
        as_postgres + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off"
    )
    pg_ctl = as_postgres + [str(bindir / "pg_ctl"), "-D", str(data)]
    server = PostgresServer(
        url=f"postgresql://postgres@127.0.0.1:{port}",
        start=lambda: subprocess.run(
            pg_ctl + ["-l", str(folder / "log"), "-o", options, "-w", "start"], check=True, capture_output=True
        ),
        stop=lambda: subprocess.run(pg_ctl + ["-m", "fast", "-w", "stop"], check=True, capture_output=True),
    )
    server.start()
    try:
        yield server
    finally:
        subprocess.run(pg_ctl + ["-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def admin(server: str, *statements: str) -> None:
    """Run statements on the server as its superuser."""
    import psycopg2

    connection = psycopg2.connect(server + "/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


def fresh_database(server: str, name: str, owner: str = "postgres") -> str:
    admin(server, f"CREATE DATABASE {name} OWNER {owner}")
    return f"{server}/{name}"


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
        assert _wait_for(lambda: sum(t.state == TrialState.COMPLETE for t in all_trials(url)) >= 3, 600), (
            log.read_text()
        )
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
        assert _wait_for(lambda: sum(t.state == TrialState.RUNNING for t in all_trials(url)) == 2, 300), (
            first.read_text()
        )
        time.sleep(1.0)  # into the trials
        workers = _workers_of(first)
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
    assert len(workers) == 2 and alive(workers) == [], alive(workers)

    trials = all_trials(url)
    assert [t for t in trials if t.state == TrialState.RUNNING] == []  # none waits for a grace period
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert len(interrupted) == 2 and {t.state for t in interrupted} == {TrialState.FAIL}
    waiting = {studies.grid_point(t) for t in trials if t.state == TrialState.WAITING}
    assert {studies.grid_point(t) for t in interrupted} <= waiting  # queued again at once

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

    _fine_tune = _trial.fine_tune

    def _held(*args, **kwargs):
        result = _fine_tune(*args, **kwargs)
        try:
            os.close(os.open(Path(folder, "finished"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return result
        while not Path(folder, "go").exists():
            time.sleep(0.1)
        return result

    _trial.fine_tune = _held
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
        assert _wait_for(lambda: (hold / "finished").exists(), 600), log.read_text()
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
