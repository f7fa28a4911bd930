"""`glue-bench sweep --dry-run`: the plan of a sweep as text, per study and in all, with its time on this machine's
kind of device or another (cost.py estimates it), using the speeds measured by the storage's trials where it has
some."""

from __future__ import annotations

import json
import os

import pandas as pd

from glue_bench.errors import UserError, counted
from glue_bench.sweeping.cost import STARTUP_SECONDS, device_text, estimate
from glue_bench.sweeping.runs import runs_table
from glue_bench.sweeping.status import read_status
from glue_bench.sweeping.storage import masked
from glue_bench.training.recipe import lr_text


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def parallel(device: str, workers: int) -> tuple[int, str]:
    """How many trials run at once with `workers` (--workers is per machine), and on what."""
    if device == "cpu":
        cores = os.cpu_count() or 1
        return min(
            workers, cores
        ), f"{counted(workers, 'worker')} on {min(workers, cores)} of this machine's {cores} cores"
    import torch

    gpus = torch.cuda.device_count()
    if not gpus:  # planning elsewhere: each worker on its own GPU
        return (
            workers,
            f"{counted(workers, 'worker')} on {counted(workers, 'GPU')}, one each (with fewer, they share them round-robin)",
        )
    return min(
        workers, gpus
    ), f"{counted(workers, 'worker')} on this machine's {counted(gpus, 'GPU')}, shared round-robin"


def report(sweep, statuses, runs: pd.DataFrame, device: str, workers: int, url: str, stored=None) -> str:
    """The `glue-bench sweep --dry-run` text: the plan per study, then the totals and the time estimate."""
    table = estimate(sweep, statuses, runs, device, stored)
    shown = table.assign(time=table["seconds"].map(duration)).drop(columns="seconds")
    trials = table["seconds"].sum()
    total = STARTUP_SECONDS + trials if table["to run"].sum() else 0.0
    at_once, on = parallel(device, workers)
    hours = f" ({total / 3600:,.1f} hours)" if total >= 3600 else ""
    lines = [
        f"sweep {sweep.name} ({sweep.path}) in {masked(url)}: {counted(len(table), 'study', 'studies')} × {counted(len(sweep.grid()), 'grid point')} "
        f"(batch_size {list(sweep.batch_sizes)} × lr [{', '.join(map(lr_text, sweep.lrs))}] × seed {list(sweep.seeds)}), "
        f"{counted(sweep.epochs, 'epoch')}",
        shown.to_string(index=False),
        "",
        f"{table['to run'].sum()} of {counted(table['trials'].sum(), 'trial')} to run: {table['train examples'].sum():,} "
        f"training and {table['eval examples'].sum():,} evaluated examples, {table['train tokens'].sum():,} "
        f"training tokens (real, unpadded)",
        f"about {duration(total)}{hours} of {device_text(device)}; "
        f"{duration(STARTUP_SECONDS + trials / at_once) if total else duration(0)} with {on}",
    ]
    slower = sorted({e for e in table["encoder"] if e.startswith("hf (")})
    if slower:
        lines.append(
            f"{', '.join(slower)}: run as the Hugging Face model (its family is not one the unpadded encoder covers: "
            "slower, computing on the padding too, and solo, no packs); the estimate counts their padded tokens"
        )
    selected = {s.plan.task for s in statuses}
    for task, by in sweep.covered.items():
        if by in selected:  # --only rte: MNLI is not run, so neither is AX
            lines.append(f"{task}: covered by the {by} trials (predicted by each {by} model, never trained)")
    return "\n".join(lines)


def dry_run(sweep, studies, url: str, workers: int, device: str | None = None) -> str:
    """The plan of `glue-bench sweep --dry-run` on `device` (default: this machine's), with speeds measured in
    the storage where it has some."""
    import torch

    try:
        runs = runs_table(url)
    except UserError:  # no storage yet: nothing measured
        runs = pd.DataFrame()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    stored = runs
    if len(runs) and "env" in runs:  # only speeds measured on that kind of device
        # A trial that never ran (waiting, failed early) has no env: NaN in the table.
        runs = runs[
            runs["env"].map(lambda env: isinstance(env, str) and json.loads(env).get("device", "").startswith(device))
        ]
    return report(sweep, read_status(sweep, studies, url, missing_ok=True), runs, device, workers, url, stored)
