"""The wall time of a whole grid: glue-bench's sweep against running the Trainer once per configuration.

glue-bench runs the sweep file (benchmarks/grid-wnli.toml: 20 configurations, 4 epochs) with `glue-bench
sweep`: one worker process takes every trial, tokenizes once and records each trial (dev scores every
epoch, test predictions) in a fresh SQLite storage. The Trainer arms start one process per configuration,
as one runs run_glue.py per configuration: load, tokenize, train, evaluate on dev
(benchmarks/run_glue_style.py). Every process gets the same threads; the tokenization cache starts empty.
Besides the wall time, each arm's CPU time (all its processes) is shown: other jobs' load disturbs it less.

    python benchmarks/grid.py --data ../shared/glue_data --threads 1
    python benchmarks/grid.py --sweep benchmarks/grid-sst2.toml --data ../shared/glue_data \
        --arms glue-bench,glue-bench:4,glue-bench:8,glue-bench+pack4,glue-bench:4+pack4,trainer-dynamic  # one GPU

Arms: glue-bench (one worker), glue-bench:N (N workers sharing the machine or its one GPU), glue-bench+packK (each
worker trains K learning rates at once as one pack; without +pack, solo: --pack 1), trainer-128 and
trainer-dynamic (one run_glue.py-style process per configuration, one after another).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def glue_bench_sweep(sweep_file: Path, data: str, env: dict, options: list[str]) -> dict:
    from glue_bench.sweeping.runs import runs_table

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/grid.db"
        started = time.perf_counter()
        subprocess.run(
            ["glue-bench", "sweep", str(sweep_file), "--storage", url, "--data", data, "--no-progress", *options],
            env={**env, "GLUE_BENCH_CACHE": f"{tmp}/cache"},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - started
        table = runs_table(url)
    done = table[table["state"] == "COMPLETE"]
    return {
        "wall_seconds": wall,
        "trials": len(done),
        "train_seconds": done["train_seconds"].sum(),
        "best_score": done["score"].max(),
    }


def trainer_per_configuration(sweep, data: str, env: dict, dynamic: bool) -> dict:
    started, train, scores = time.perf_counter(), 0.0, []
    for point in sweep.grid():
        command = [
            sys.executable,
            str(HERE / "run_glue_style.py"),
            "--model",
            sweep.models[0],
            "--task",
            sweep.tasks[0],
            "--data",
            data,
            "--batch-size",
            str(point["batch_size"]),
            "--lr",
            str(point["lr"]),
            "--epochs",
            str(sweep.epochs),
            "--seed",
            str(point["seed"]),
            "--max-train-samples",
            str(sweep.recipe.get("max_train_samples", 0)),
        ]
        command += ["--bf16"] if sweep.recipe.get("bf16") else []  # the sweep's precision (bf16: a GPU)
        out = subprocess.run(
            command + (["--dynamic"] if dynamic else []), env=env, check=True, capture_output=True, text=True
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        train += result["train_seconds"]
        scores.append(result["score"])
    return {
        "wall_seconds": time.perf_counter() - started,
        "trials": len(scores),
        "train_seconds": train,
        "best_score": max(scores),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default=str(HERE / "grid-wnli.toml"))
    parser.add_argument("--data", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", default="glue-bench,trainer-128,trainer-dynamic")
    parser.add_argument("--out", help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    import pandas as pd

    from glue_bench.sweeping import sweep_file as sweeps

    sweep = sweeps.load(args.sweep)
    data = str(Path(args.data).resolve())
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    arms = {
        "glue-bench": lambda workers, pack: glue_bench_sweep(
            Path(args.sweep), data, env, ["--workers", str(workers), "--pack", str(pack)]
        ),
        "trainer-128": lambda *_: trainer_per_configuration(sweep, data, env, dynamic=False),
        "trainer-dynamic": lambda *_: trainer_per_configuration(sweep, data, env, dynamic=True),
    }
    rows = []
    for arm in args.arms.split(","):
        base, _, pack = arm.partition("+pack")
        name, _, workers = base.partition(":")
        if name not in arms or not (workers or "1").isdigit() or not (pack or "1").isdigit():
            parser.error(f"unknown arm {arm!r}: choose from glue-bench[:WORKERS][+packN], trainer-128, trainer-dynamic")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = arms[name](int(workers or 1), int(pack or 1))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        rows.append({"arm": arm, **result, "cpu_seconds": cpu})
        print(f"{arm}: {result['wall_seconds']:.0f} s wall, {cpu:.0f} s CPU", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows).set_index("arm")
    table["wall / first arm"] = table["wall_seconds"] / table["wall_seconds"].iloc[0]
    table["cpu / first arm"] = table["cpu_seconds"] / table["cpu_seconds"].iloc[0]
    table["best_score"] = 100 * table["best_score"]
    print(
        f"{sweep.name}: {len(sweep.grid())} configurations of {sweep.models[0]} on {sweep.tasks[0]}, "
        f"{sweep.epochs} epochs, {args.threads} thread(s) per process"
    )
    print(table.round(2).to_string())
    if args.out:
        table.round(3).to_csv(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
