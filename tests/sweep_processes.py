"""What the tests of real sweeps in real processes share (test_sweep_faults.py, test_sweep_stops.py): a tiny
sweep file (random BERT-Tiny, 32 WNLI rows, 1 epoch), a launcher in its own session, reading its trials, and a
throwaway PostgreSQL server on loopback."""

from __future__ import annotations

import itertools
import os
import shutil
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

from glue_bench.sweeping.storage import open_storage, storage_exists

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


def workers_of(log: Path) -> list[int]:
    """The worker pids the launcher printed ("… pids 123 456")."""
    for line in log.read_text().splitlines():
        if ": pids " in line:
            return [int(p) for p in line.rsplit("pids", 1)[1].split()]
    return []


def wait_for(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return False


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


def running_postgres():
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
