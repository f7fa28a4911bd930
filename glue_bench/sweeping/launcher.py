"""The launcher: enqueue a sweep's grid, start its workers, and follow them with a progress bar.

`run_sweep` enqueues the grid (studies.enqueue), then starts N worker processes
(`python -m glue_bench.sweeping.worker PLAN.json`), spread over the GPUs with CUDA_VISIBLE_DEVICES (several
per GPU when N is larger), and follows the storage until they are done. Many machines: run the same command
on each with one shared PostgreSQL --storage; the workers of all of them take distinct trials.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

from tqdm.auto import tqdm

from glue_bench.errors import counted
from glue_bench.sweeping import stops
from glue_bench.sweeping.status import read_status
from glue_bench.sweeping.storage import masked, open_storage, ride_out
from glue_bench.sweeping.studies import enqueue

POLL_SECONDS = 2.0  # how often the launcher reads the storage for its progress bar
# A worker's memory under glibc's default malloc grows with trial after trial of variable-length batches (MiniLM
# on RTE: 1.5 GB after the first trial, 3.6 GB by the twelfth): glibc raises its mmap threshold up to 32 MB as big
# blocks are freed, and the big blocks it then serves from the heap fragment it. A fixed threshold of 4 MB keeps the
# worker flat (0.8-1.0 GB between trials; benchmarks/worker_memory.py) at the same step speed
# (benchmarks/allocator_speed.py). A MALLOC_MMAP_THRESHOLD_ already set is kept.
MMAP_THRESHOLD = str(4 * 1024 * 1024)
STOP_WAIT_SECONDS = 25.0  # how long stopped workers get to record their trials before they are killed


def visible_gpus() -> list[str]:
    """The GPUs workers may use: CUDA_VISIBLE_DEVICES if set, else all that torch sees."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_env(index: int, workers: int, gpus: list[str]) -> dict:
    """Worker `index`'s environment: its GPU (round robin, so several workers can share one), or on a CPU
    its share of the cores, so N workers do not fight over the same threads; glibc's malloc with a fixed mmap
    threshold."""
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    else:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    env.setdefault("MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD)
    return env


def describe_placement(workers: int, gpus: list[str]) -> str:
    if not gpus:
        threads = os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // workers)
        return f"{counted(workers, 'worker')} on the CPU ({threads} thread{'' if str(threads) == '1' else 's'} each)"
    used = {g: sum(1 for i in range(workers) if gpus[i % len(gpus)] == g) for g in gpus[:workers]}
    return f"{counted(workers, 'worker')} on GPU " + ", ".join(f"{g} (×{n})" for g, n in used.items())


def worker_plan(studies, url: str, source_location: str, sweep) -> dict:
    grid = {"batch_size": list(sweep.batch_sizes), "lr": list(sweep.lrs), "seed": list(sweep.seeds)}
    return {
        "storage": url,
        "studies": [
            {
                "name": s.name,
                "model": s.model,
                "task": s.task,
                "data": source_location,
                "recipe": sweep.base_recipe(),
                "grid": grid,
                "save": sweep.save,
                "pack": sweep.pack,
                "tensorboard": sweep.tensorboard,
                "checkpoint_minutes": sweep.checkpoint_minutes,
            }
            for s in studies
        ],
    }


def _finished(sweep, studies, url, storage) -> int:
    return ride_out(lambda: sum(s.finished for s in read_status(sweep, studies, url, storage)), "following the sweep")


def launch(sweep, studies, url: str, source_location: str, workers: int, progress: bool = True) -> list[int]:
    """Start the workers and follow them with a progress bar (finished trials of the sweep, time left).
    Returns the workers' exit codes. Whatever goes wrong here, no worker is left behind unwatched and the
    plan file is removed."""
    gpus = visible_gpus()
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="glue-bench-plan-", delete=False) as f:
        json.dump(worker_plan(studies, url, source_location, sweep), f)
    command = [sys.executable, "-m", "glue_bench.sweeping.worker", f.name]
    procs, bar, storage = [], None, None
    try:
        procs = [subprocess.Popen(command, env=worker_env(i, workers, gpus)) for i in range(workers)]
        print(
            f"glue-bench: {describe_placement(workers, gpus)}: pids {' '.join(str(p.pid) for p in procs)}",
            file=sys.stderr,
        )
        total = len(sweep.grid()) * len(studies)
        storage = ride_out(lambda: open_storage(url), "opening the storage")
        done = _finished(sweep, studies, url, storage)
        poll = max(POLL_SECONDS, len(studies) / 20)  # a big sweep: read the storage less often
        # A bar on a terminal; in a log (SLURM, CI) a line whenever trials finish, not a bar's carriage returns.
        terminal = progress and sys.stderr.isatty()
        bar = tqdm(
            total=total,
            initial=done,
            desc=f"sweep {sweep.name}",
            unit="trial",
            disable=not terminal,
            dynamic_ncols=True,
        )
        reported, started = set(), time.monotonic()
        while any(p.poll() is None for p in procs):
            time.sleep(poll)
            now = _finished(sweep, studies, url, storage)
            bar.update(now - done)
            if progress and not terminal and now != done:
                elapsed = round(time.monotonic() - started)
                print(
                    f"sweep {sweep.name}: {now} of {counted(total, 'trial')} finished ({elapsed // 60}m{elapsed % 60:02d}s)",
                    file=sys.stderr,
                    flush=True,
                )
            done = now
            _report_killed(procs, reported, bar)
        _report_killed(procs, reported, bar)  # the last worker's end also ends the loop: reported here
        bar.update(_finished(sweep, studies, url, storage) - done)
    except BaseException as e:
        stops.caught()
        _stop_workers(procs, terminated=isinstance(e, SystemExit))
        raise
    finally:
        if bar is not None:
            bar.close()
        if storage is not None:
            storage.engine.dispose()
        os.unlink(f.name)
    return [p.returncode for p in procs]


def _report_killed(procs: list, reported: set, bar) -> None:
    """One line per worker killed by a signal, once: its pid, the signal, and for SIGKILL who sends one."""
    for i, p in enumerate(procs):
        if p.returncode is not None and p.returncode < 0 and i not in reported:
            reported.add(i)
            name = signal.Signals(-p.returncode).name
            hint = (
                " (SIGKILL: the kernel's out-of-memory killer, a scheduler past its time or memory limit, or `kill -9`;"
                " `dmesg` names the OOM killer)"
                if -p.returncode == signal.SIGKILL
                else ""
            )
            bar.write(
                f"glue-bench: worker {i} (pid {p.pid}) was killed by {name}{hint}; its trial is retried once its "
                "heartbeat goes stale",
                file=sys.stderr,
            )


def _stop_workers(procs: list, terminated: bool) -> None:
    """The launcher stops: its workers stop too, each recording its trial as interrupted (queued again at once).

    SIGTERM (SLURM, scancel, kill): passed on to the workers at once. Ctrl-C reached the workers already (one
    process group): they get a moment before a SIGINT (a SIGINT sent to this launcher alone, an error here).
    Whatever has not exited after STOP_WAIT_SECONDS is killed (its trial is retried once its heartbeat is stale),
    so that the launcher and its workers are all gone before SLURM's SIGKILL, 30 s after its SIGTERM."""
    started = time.monotonic()
    if not terminated:
        while any(p.poll() is None for p in procs) and time.monotonic() < started + 5:
            time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM if terminated else signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=max(0.1, started + STOP_WAIT_SECONDS - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    print(
        f"glue-bench: stopped ({'SIGTERM' if terminated else 'interrupted'}); workers exited "
        f"{' '.join(str(p.returncode) for p in procs) or '-'}; their running trials are queued again: "
        "run the same command to resume",
        file=sys.stderr,
        flush=True,
    )


def run_sweep(
    sweep, studies, url: str, source_location: str, workers: int = 1, retry_failed: bool = False, progress: bool = True
) -> int:
    """Enqueue what is missing, run it with `workers` processes, and summarise. 0: every trial complete.
    SIGTERM does what Ctrl-C does: the workers stop, their trials queued again; exit 143 (stops.py)."""
    with stops.handled():
        return _run_sweep(sweep, studies, url, source_location, workers, retry_failed, progress)


def _run_sweep(sweep, studies, url, source_location, workers, retry_failed, progress) -> int:
    started = time.monotonic()
    added = enqueue(sweep, studies, url, retry_failed)
    points = _count(ride_out(lambda: read_status(sweep, studies, url), "reading the sweep's state"))
    total = len(sweep.grid()) * len(studies)
    left = points["waiting"] + points["running"]
    print(
        f"sweep {sweep.name}: {counted(len(studies), 'study', 'studies')}, {counted(total, 'trial')}: "
        f"{points['complete']} complete, "
        f"{points['failed']} failed, {left} to run ({added} newly queued); storage {masked(url)}"
    )
    if left:
        launch(sweep, studies, url, source_location, workers, progress)
    else:
        print("nothing to run")
    points = _count(ride_out(lambda: read_status(sweep, studies, url), "reading the sweep's state"))
    print(
        f"sweep {sweep.name}: {points['complete']} of {counted(total, 'trial')} complete, {points['failed']} failed "
        f"(in {time.monotonic() - started:.0f}s); details: glue-bench status {sweep.path}"
        + (f" --storage {masked(url)}" if url != sweep.storage else "")
    )
    if points["complete"] == total:
        return 0
    unfinished = total - points["complete"] - points["failed"]
    if unfinished:
        print(
            f"{counted(unfinished, 'trial')} not finished (a worker died or was stopped): run the same command again "
            "to resume",
            file=sys.stderr,
        )
    if points["failed"] and not retry_failed:
        print(
            f"{counted(points['failed'], 'trial')} failed (fail_reason in glue-bench status); --retry-failed runs them again",
            file=sys.stderr,
        )
    return 1


def _count(statuses) -> dict:
    total = Counter()
    for status in statuses:
        total.update(status.points)
    return total
