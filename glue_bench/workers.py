"""Sweep workers, and the launcher that starts them and draws the sweep's progress bar.

`run_sweep` enqueues the grid (studies.enqueue), then starts N worker processes
(`python -m glue_bench.workers PLAN.json`), spread over the GPUs with CUDA_VISIBLE_DEVICES (several per GPU
when N is larger), and follows the storage until they are done. Each worker takes waiting trials, one at
a time, from the sweep's studies until none is waiting or running. Many machines: run the same command on
each with one shared PostgreSQL --storage; the workers of all of them take distinct trials.

Faults, all with Optuna's own mechanisms: a worker records a heartbeat while it runs a trial; a trial
whose heartbeat goes stale (its worker was killed) is failed by whichever worker notices first
(optuna.storages.fail_stale_trials) and re-queued by RetryHeartbeatStaleTrialCallback. A trial that fails
by itself (NaN loss, out of memory, a bad batch) is told FAIL with the reason in user attr fail_reason,
and the worker goes on.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from contextlib import contextmanager

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import TrialState

from .errors import UserError
from .storage import open_storage

POLL_SECONDS = 2.0  # how often the launcher reads the storage for its progress bar


# --- the worker ------------------------------------------------------------------------------------------

def take_waiting(study: optuna.Study, storage) -> optuna.Trial | None:
    """A waiting trial of the study, now RUNNING and ours, or None. Safe against any number of workers:
    the WAITING → RUNNING update succeeds for one of them only (a row lock in PostgreSQL, an immediate
    transaction in SQLite)."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        # Heartbeat first: a worker killed right after the update still leaves one, which then goes stale.
        storage.record_heartbeat(frozen._trial_id)
        try:
            if storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                return optuna.Trial(study, frozen._trial_id)
        except UpdateFinishedTrialError:
            continue
    return None


@contextmanager
def heartbeat(storage, trial_id: int):
    """Record the trial's heartbeat every heartbeat interval while the block runs (Optuna's optimize does
    the same with its HeartbeatThread)."""
    stop = threading.Event()

    def beat():
        while not stop.wait(storage.heartbeat_interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception as e:  # a storage hiccup: keep beating; a long outage makes the trial stale
                print(f"glue-bench worker: heartbeat of trial id {trial_id} not recorded ({e})", file=sys.stderr)

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _grid_point(trial: optuna.Trial, grid: dict) -> dict:
    """The trial's (batch_size, lr, seed): set already on a retried trial, else its enqueued fixed params,
    recorded now as the trial's params."""
    from .trial import grid_distributions

    ranges = grid_distributions(grid["batch_size"], grid["lr"], grid["seed"])
    point = {}
    for name, dist in ranges.items():
        if name in trial.params:
            point[name] = trial.params[name]
        elif isinstance(dist, optuna.distributions.IntDistribution):
            point[name] = trial.suggest_int(name, dist.low, dist.high)
        else:
            point[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return point


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str, **attrs) -> None:
    trial.set_user_attr("fail_reason", reason)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, state=TrialState.FAIL)
    print(f"glue-bench worker: trial {trial.number} of {study.study_name} failed: {reason}", file=sys.stderr)


def run_trial(study: optuna.Study, trial: optuna.Trial, spec: dict, storage_url: str) -> None:
    """Run one taken trial to COMPLETE or FAIL (with fail_reason). Interrupts leave it to be re-queued."""
    import torch

    from . import trial as trials
    from .train import Diverged, Recipe

    try:
        point = _grid_point(trial, spec["grid"])
        trial.set_user_attr("worker", f"{platform.node()}:{os.getpid()}")  # which process ran it
        recipe = Recipe(**spec["recipe"], **point)
        prepared = trials.prepare(trials.TrialSpec(spec["model"], spec["task"], spec["data"], recipe))
        score = trials.execute(prepared, trial, storage_url, progress=False)
        del prepared
        if not math.isfinite(score):
            _fail(study, trial, f"the dev score is {score}")
        else:
            study.tell(trial, score)
    except UpdateFinishedTrialError:  # our heartbeat went stale (a stalled machine): its retry runs elsewhere
        print(f"glue-bench worker: trial {trial.number} of {study.study_name} was declared dead while it ran; "
              "its retry will record the result", file=sys.stderr)
    except Diverged as e:
        _fail(study, trial, f"diverged: {e}", fail_step=e.step)
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        _fail(study, trial, f"out of memory: {str(e).splitlines()[0][:200]}")
    except UserError as e:
        _fail(study, trial, str(e))
    except (KeyboardInterrupt, SystemExit):
        # No fail_reason: not the trial's fault, so the next `glue-bench sweep` queues it again.
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as e:  # a bad batch, a library error: record it and go on with the next trial
        traceback.print_exc()
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        _fail(study, trial, f"{type(e).__name__}: {first}")


def work(plan: dict) -> int:
    """Take and run waiting trials of the plan's studies until none is waiting or running."""
    import torch  # noqa: F401  the slow imports, before a trial is taken: an interrupt in them loses none

    from . import trial  # noqa: F401

    storage = open_storage(plan["storage"], heartbeat=True)
    studies = [(optuna.load_study(study_name=spec["name"], storage=storage), spec) for spec in plan["studies"]]
    while True:
        taken, busy = None, False
        for study, spec in studies:
            with warnings.catch_warnings():  # "experimental" in Optuna since 2.9
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a dead worker's trial → FAIL, and a retry is queued
            trial = take_waiting(study, storage)
            if trial is not None:
                taken = (study, trial, spec)
                break
            busy = busy or bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if taken is None:
            if not busy:
                return 0
            # A running trial may be a dead worker's: look again soon, to retry it once its heartbeat is stale.
            time.sleep(min(storage.heartbeat_interval, max(POLL_SECONDS, len(studies) / 20)))
            continue
        study, trial, spec = taken
        with heartbeat(storage, trial._trial_id):
            run_trial(study, trial, spec, plan["storage"])


def main(argv: list[str]) -> int:
    """`python -m glue_bench.workers PLAN.json`: one worker (the launcher starts these)."""
    import datasets
    import transformers

    from .hub import quiet_libraries

    quiet_libraries()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    with open(argv[0]) as f:
        plan = json.load(f)
    try:
        return work(plan)
    except KeyboardInterrupt:
        return 130


# --- the launcher -----------------------------------------------------------------------------------------

def visible_gpus() -> list[str]:
    """The GPUs workers may use: CUDA_VISIBLE_DEVICES if set, else all that torch sees."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_env(index: int, workers: int, gpus: list[str]) -> dict:
    """Worker `index`'s environment: its GPU (round robin, so several workers can share one), or on a CPU
    its share of the cores, so N workers do not fight over the same threads."""
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    else:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return env


def describe_placement(workers: int, gpus: list[str]) -> str:
    if not gpus:
        threads = os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // workers)
        return f"{workers} worker(s) on the CPU ({threads} thread(s) each)"
    used = {g: sum(1 for i in range(workers) if gpus[i % len(gpus)] == g) for g in gpus[:workers]}
    return f"{workers} worker(s) on GPU " + ", ".join(f"{g} (×{n})" for g, n in used.items())


def worker_plan(studies, url: str, source_location: str, sweep) -> dict:
    grid = {"batch_size": list(sweep.batch_sizes), "lr": list(sweep.lrs), "seed": list(sweep.seeds)}
    return {"storage": url,
            "studies": [{"name": s.name, "model": s.model, "task": s.task, "data": source_location,
                         "recipe": sweep.base_recipe(), "grid": grid} for s in studies]}


def _finished(sweep, studies, url, storage) -> int:
    from .studies import read_status

    return sum(s.finished for s in read_status(sweep, studies, url, storage))


def launch(sweep, studies, url: str, source_location: str, workers: int, progress: bool = True) -> list[int]:
    """Start the workers and follow them with a progress bar (finished trials of the sweep, time left).
    Returns the workers' exit codes."""
    from tqdm.auto import tqdm

    gpus = visible_gpus()
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="glue-bench-plan-", delete=False) as f:
        json.dump(worker_plan(studies, url, source_location, sweep), f)
    command = [sys.executable, "-m", "glue_bench.workers", f.name]
    procs = [subprocess.Popen(command, env=worker_env(i, workers, gpus)) for i in range(workers)]
    print(f"glue-bench: {describe_placement(workers, gpus)}: pids {' '.join(str(p.pid) for p in procs)}",
          file=sys.stderr)
    total = len(sweep.grid()) * len(studies)
    storage = open_storage(url)
    done = _finished(sweep, studies, url, storage)
    poll = max(POLL_SECONDS, len(studies) / 20)  # a big sweep: read the storage less often
    bar = tqdm(total=total, initial=done, desc=f"sweep {sweep.name}", unit="trial", disable=not progress,
               dynamic_ncols=True)
    reported = set()
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(poll)
            now = _finished(sweep, studies, url, storage)
            bar.update(now - done)
            done = now
            for i, p in enumerate(procs):
                if p.returncode is not None and p.returncode < 0 and i not in reported:
                    reported.add(i)
                    bar.write(f"glue-bench: worker {i} (pid {p.pid}) was killed by "
                              f"{signal.Signals(-p.returncode).name}; its trial is retried once its heartbeat "
                              "goes stale", file=sys.stderr)
        bar.update(_finished(sweep, studies, url, storage) - done)
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too (one process group): give them a moment to record their trials
        # as interrupted; a SIGINT sent to this launcher alone is passed on to them.
        deadline = time.monotonic() + 5
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    finally:
        bar.close()
        storage.engine.dispose()
        os.unlink(f.name)
    return [p.returncode for p in procs]


def run_sweep(sweep, studies, url: str, source_location: str, workers: int = 1, retry_failed: bool = False,
              progress: bool = True) -> int:
    """Enqueue what is missing, run it with `workers` processes, and summarise. 0: every trial complete."""
    from .studies import enqueue, read_status

    started = time.monotonic()
    added = enqueue(sweep, studies, url, retry_failed)
    points = _count(read_status(sweep, studies, url))
    total = len(sweep.grid()) * len(studies)
    left = points["waiting"] + points["running"]
    print(f"sweep {sweep.name}: {len(studies)} studies, {total} trials: {points['complete']} complete, "
          f"{points['failed']} failed, {left} to run ({added} newly queued); storage {url}")
    if left:
        launch(sweep, studies, url, source_location, workers, progress)
    else:
        print("nothing to run")
    points = _count(read_status(sweep, studies, url))
    print(f"sweep {sweep.name}: {points['complete']} of {total} trials complete, {points['failed']} failed "
          f"(in {time.monotonic() - started:.0f}s); details: glue-bench status {sweep.path}"
          + (f" --storage {url}" if url != sweep.storage else ""))
    if points["complete"] == total:
        return 0
    unfinished = total - points["complete"] - points["failed"]
    if unfinished:
        print(f"{unfinished} trials are not finished (a worker died or was stopped): run the same command again "
              "to resume", file=sys.stderr)
    if points["failed"] and not retry_failed:
        print(f"{points['failed']} trials failed (fail_reason in glue-bench status); --retry-failed runs them again",
              file=sys.stderr)
    return 1


def _count(statuses) -> dict:
    from collections import Counter

    total = Counter()
    for status in statuses:
        total.update(status.points)
    return total


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
