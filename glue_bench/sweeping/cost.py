"""The dry run's estimate: how many examples a sweep processes and how long that takes.

Small on purpose, so speed work can refine it. A trial trains on epochs × train rows examples, evaluates
every dev split after every epoch, and predicts the test splits (and the splits of the tasks its model
covers: AX for MNLI) once at the end. Throughput, in training examples per second, is measured where the
storage holds completed trials of the same model (the median of their examples_per_second, same task
first: sequence lengths differ by task), else comes from the speed benchmark's table of the architecture on
this kind of device (`benchmark_throughput`), else `default_throughput` guesses it from the architecture.
Tokens are padded tokens: a batch is as long as its longest row (results/padded-lengths.csv).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from glue_bench.errors import counted
from glue_bench.inputs import models
from glue_bench.inputs.tasks import Task, get_task
from glue_bench.sweeping.storage import masked
from glue_bench.sweeping.studies import point_key
from glue_bench.training.recipe import Recipe, lr_text

TOKENS_PER_EXAMPLE = 64  # GLUE rows average about 30-60 WordPiece tokens; a batch pads to its longest row
EFFECTIVE_FLOPS = {"cpu": 2e10, "cuda": 2e13}  # training FLOP/s small BERTs reach (rough: 2 CPU cores, one GPU)
MAX_STEPS_PER_SECOND = {"cpu": math.inf, "cuda": 100.0}  # a small model on a GPU is bound by kernel launches
EVAL_SPEEDUP = 3.0  # a forward pass costs about a third of a training step


def default_throughput(layers: int, hidden: int, batch_size: int, device: str) -> float:
    """Training examples per second: 6 FLOPs per encoder parameter (12·L·H²) per token, at EFFECTIVE_FLOPS."""
    flops_per_example = 6 * 12 * layers * hidden**2 * TOKENS_PER_EXAMPLE
    return min(EFFECTIVE_FLOPS[device] / flops_per_example, MAX_STEPS_PER_SECOND[device] * batch_size)


@cache
def _reference_table(name: str) -> pd.DataFrame:
    from glue_bench.inputs.shipped import reference_dir

    path = reference_dir() / name
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else pd.DataFrame()


def padded_length(task: str, batch_size: int) -> float:
    """Tokens per training example of `task` at `batch_size` with dynamic padding (the expected longest row of
    a random batch, from results/padded-lengths.csv; benchmarks/padded_lengths.py), else TOKENS_PER_EXAMPLE."""
    table = _reference_table("padded-lengths.csv")
    rows = table[table["task"] == task] if len(table) else table
    if not len(rows):
        return float(TOKENS_PER_EXAMPLE)
    return float(np.interp(batch_size, rows["batch_size"], rows["padded_length"]))


def benchmark_throughput(model: str, batch_size: int, tokens_per_example: float, device: str) -> float | None:
    """Training examples per second from results/throughput.csv (benchmarks/throughput.py): the seconds of a
    step of this model on this kind of device, fitted as a fixed cost per step plus a cost per token over the
    measured batch sizes. None if the table has no row for them."""
    table = _reference_table("throughput.csv")
    rows = table[(table["device"] == device) & (table["model"] == model)] if len(table) else table
    if not len(rows):
        return None
    tokens = rows["batch_size"] * rows["length"]
    if len(rows) >= 2 and tokens.nunique() >= 2:
        per_token, per_step = np.polyfit(tokens, rows["seconds_per_step"], 1)
    else:
        per_token, per_step = float((rows["seconds_per_step"] / tokens).mean()), 0.0
    if per_token <= 0 or per_step < 0:  # a noisy fit: proportional to the tokens instead
        per_token, per_step = float((rows["seconds_per_step"] / tokens).mean()), 0.0
    return batch_size / (per_step + per_token * batch_size * tokens_per_example)


def trial_examples(task: Task, recipe: Recipe, covered: list[Task]) -> tuple[int, int]:
    """(training examples, evaluated examples) of one trial, from the tasks' row counts."""
    rows = task.train_split.rows
    train = recipe.epochs * (min(rows, recipe.max_train_samples) if recipe.max_train_samples else rows)
    dev = sum(s.rows for s in task.splits_with_role("dev"))
    once = sum(s.rows for s in task.splits_with_role("test"))
    once += sum(s.rows for other in covered for s in other.splits.values() if s.role in ("dev", "test"))
    return train, recipe.epochs * dev + once


def trial_seconds(train_examples: int, eval_examples: int, throughput: float) -> float:
    return train_examples / throughput + eval_examples / (EVAL_SPEEDUP * throughput)


def measured_throughput(runs: pd.DataFrame, model: str, task: str) -> float | None:
    """Median examples_per_second of the storage's completed trials of this model (this task if any)."""
    if runs.empty or "examples_per_second" not in runs:
        return None
    done = runs[(runs["state"] == "COMPLETE") & (runs["model"] == model)].dropna(subset=["examples_per_second"])
    same_task = done[done["task"] == task]
    chosen = same_task if len(same_task) else done
    return float(chosen["examples_per_second"].median()) if len(chosen) else None


def shape(ref: models.ModelRef) -> tuple[int, int]:
    """(layers, hidden) of a model: the miniatures' own, a local folder's config.json, else BERT-Base's."""
    if ref.layers:
        return ref.layers, ref.hidden
    config = Path(ref.location, "config.json")
    if ref.kind == "local" and config.is_file():
        values = json.loads(config.read_text())
        return values.get("num_hidden_layers", 12), values.get("hidden_size", 768)
    return 12, 768


def estimate(sweep, statuses, runs: pd.DataFrame, device: str) -> pd.DataFrame:
    """One row per study: trials left, examples to process and the estimated seconds, on `device`."""
    rows = []
    for status in statuses:
        plan = status.plan
        task, ref = get_task(plan.task), models.resolve(plan.model)
        covered = [get_task(t) for t in plan.covers]
        left = [p for p in sweep.grid() if status.states[point_key(p)] in ("pending", "waiting", "running")]
        measured = measured_throughput(runs, plan.model, plan.task)
        train = evals = tokens = seconds = 0
        source = "measured" if measured else "estimated"
        for point in left:
            recipe = sweep.recipe_for(point)
            t, e = trial_examples(task, recipe, covered)
            length = padded_length(plan.task, recipe.batch_size)
            benchmark = (
                None
                if measured
                else benchmark_throughput(plan.model.removeprefix("random:"), recipe.batch_size, length, device)
            )
            source = "benchmark" if benchmark else source
            speed = measured or benchmark or default_throughput(*shape(ref), recipe.batch_size, device)
            train, evals, seconds = train + t, evals + e, seconds + trial_seconds(t, e, speed)
            tokens += round(t * length)
        rows.append(
            {
                "model": plan.model,
                "task": plan.task,
                "trials": len(sweep.grid()),
                "to run": len(left),
                "train examples": train,
                "eval examples": evals,
                "train tokens": tokens,
                "speed": source,
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def report(sweep, statuses, runs: pd.DataFrame, device: str, workers: int, url: str) -> str:
    """The `glue-bench sweep --dry-run` text: the plan per study, then the totals and the time estimate."""
    table = estimate(sweep, statuses, runs, device)
    shown = table.assign(time=table["seconds"].map(duration)).drop(columns="seconds")
    total = table["seconds"].sum()
    lines = [
        f"sweep {sweep.name} ({sweep.path}) in {masked(url)}: {counted(len(table), 'study', 'studies')} × {counted(len(sweep.grid()), 'grid point')} "
        f"(batch_size {list(sweep.batch_sizes)} × lr [{', '.join(map(lr_text, sweep.lrs))}] × seed {list(sweep.seeds)}), "
        f"{counted(sweep.epochs, 'epoch')}",
        shown.to_string(index=False),
        "",
        f"{table['to run'].sum()} of {counted(table['trials'].sum(), 'trial')} to run: {table['train examples'].sum():,} "
        f"training and {table['eval examples'].sum():,} evaluated examples, {table['train tokens'].sum():,} "
        f"training tokens; about {duration(total)}{f' ({total / 3600:,.1f} hours)' if total >= 3600 else ''} of {device} "
        f"time, {duration(total / workers)} with {counted(workers, 'worker')} that do not slow each other",
    ]
    selected = {s.plan.task for s in statuses}
    for task, by in sweep.covered.items():
        if by in selected:  # --only rte: MNLI is not run, so neither is AX
            lines.append(f"{task}: covered by the {by} trials (predicted by each {by} model, never trained)")
    return "\n".join(lines)


def dry_run(sweep, studies, url: str, workers: int, device: str | None = None) -> str:
    """The plan of `glue-bench sweep --dry-run` on `device` (default: this machine's), with speeds measured in
    the storage where it has some."""
    import torch

    from glue_bench.errors import UserError
    from glue_bench.sweeping.runs import runs_table
    from glue_bench.sweeping.studies import read_status

    try:
        runs = runs_table(url)
    except UserError:  # no storage yet: nothing measured
        runs = pd.DataFrame()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if len(runs) and "env" in runs:  # only speeds measured on that kind of device
        # A trial that never ran (waiting, failed early) has no env: NaN in the table.
        runs = runs[
            runs["env"].map(lambda env: isinstance(env, str) and json.loads(env).get("device", "").startswith(device))
        ]
    return report(sweep, read_status(sweep, studies, url, missing_ok=True), runs, device, workers, url)
