"""What a sweep's PostgreSQL storage grows to per 1,000 trials (deploy/postgres/README.md), and how many
connections its workers hold.

    python benchmarks/db_size.py postgresql://postgres@HOST:PORT [--workers 2] [--sweep sweeps/cpu-smoke.toml]

On that server (a superuser URL, no database): creates a database, runs the real sweep into it (GLUE_BENCH_DATA
or the Hub as for any sweep) while counting its connections, and measures pg_database_size (after a VACUUM)
before and after: what a real sweep's trials cost, their updates and heartbeats included. Then copies those
trials into another study of the same database until there are 1,000 (Optuna's add_trials: the rows of finished
trials, without the churn of their updates) and measures again.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sql(url: str, statement: str):
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(statement)
        rows = cursor.fetchall() if cursor.description else None
    connection.close()
    return rows


def size(url: str) -> int:
    sql(url, "VACUUM")  # dead row versions (a trial's updates) counted as what a vacuumed database keeps
    return sql(url, "SELECT pg_database_size(current_database())")[0][0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", help="a PostgreSQL superuser URL without a database: postgresql://user@host:port")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sweep", default="sweeps/cpu-smoke.toml", help="the sweep file to run (default: %(default)s)")
    args = parser.parse_args()
    name = f"glue_size_{int(time.time())}"
    sql(f"{args.server}/postgres", f"CREATE DATABASE {name}")
    url = f"{args.server}/{name}"
    empty = size(url)
    connections, done = [], threading.Event()

    def count() -> None:  # the sweep's connections to its database, every second
        while not done.wait(1.0):
            connections.append(sql(url, f"SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = '{name}'")[0][0])

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    started = time.monotonic()
    command = ["glue-bench", "sweep", args.sweep, "--storage", url, "--workers", str(args.workers), "--no-progress"]
    code = subprocess.run(command, cwd=ROOT).returncode
    done.set()
    counter.join()
    if code != 0:
        return code
    swept = size(url)

    import optuna

    from glue_bench.sweeping.storage import open_storage

    storage = open_storage(url)
    trials = [
        t
        for study in optuna.get_all_study_names(storage)
        for t in optuna.load_study(study_name=study, storage=storage).trials
    ]
    copies = optuna.create_study(study_name="copies", storage=storage, direction="maximize")
    before = size(url)
    for _ in range(1000 // len(trials)):
        copies.add_trials(trials)
    added = len(copies.trials)
    after = size(url)
    mb = 1024 * 1024
    print(f"PostgreSQL {sql(url, 'SHOW server_version')[0][0]}, database {name}, sweep {args.sweep}")
    print(f"empty (Optuna's tables): {empty / mb:.1f} MiB")
    print(
        f"after the real sweep ({len(trials)} trials, {args.workers} workers, {time.monotonic() - started:.0f}s): "
        f"{swept / mb:.1f} MiB, {(swept - empty) / len(trials) / 1024:.1f} KiB per trial"
    )
    print(
        f"{added} copies of those trials added: +{(after - before) / mb:.1f} MiB, {(after - before) / added * 1000 / mb:.1f} MiB per 1,000 trials"
    )
    print(
        f"connections of the sweep (launcher and {args.workers} workers): at most {max(connections)}, median {sorted(connections)[len(connections) // 2]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
