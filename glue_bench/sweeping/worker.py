"""A sweep worker: take waiting trials of a sweep's studies, one at a time or a pack at a time (the learning rates
of one batch size and seed, trained at once: training/loop.fine_tune_pack), and run each to COMPLETE or FAIL.

The launcher (launcher.py) starts these as `python -m glue_bench.sweeping.worker PLAN.json`. Any number of
workers, on any number of machines sharing one storage, take distinct trials. Each trial of a pack is recorded as
its own trial (metrics, predictions, curve, kept model, speed), with the pack it ran in.

Faults: a worker records a heartbeat while it runs a trial; a trial whose heartbeat goes stale (its worker
was killed, or cut off from the storage) is failed by whichever worker notices first
(optuna.storages.fail_stale_trials) and queued again (studies.queue_retries). A trial that fails by itself
(NaN loss, out of memory, a bad batch) is told FAIL with the reason in user attr fail_reason, and the worker
goes on. Ctrl-C or SIGTERM: the running trial is recorded interrupted and queued again at once, and the worker
exits (130, or 143 for SIGTERM). How each end of a trial is recorded: recording.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import gc
import json
import math
import os
import platform
import sys
import threading
import time
import traceback
from contextlib import contextmanager

import optuna
import requests
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from glue_bench.errors import UserError, first_line
from glue_bench.inputs import models
from glue_bench.inputs.hub import quiet_libraries
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping import recording, slurm, stops, sweep_file
from glue_bench.sweeping import trial as trials_
from glue_bench.sweeping.schema import grid_distributions, grid_point
from glue_bench.sweeping.storage import STORAGE_ERRORS, open_storage, plan_lock, ride_out
from glue_bench.sweeping.studies import fail_stale
from glue_bench.training import families
from glue_bench.training.recipe import Recipe

NETWORK_ERRORS = (ConnectionError, TimeoutError, requests.exceptions.ConnectionError, requests.exceptions.Timeout)
LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None)  # glibc's malloc_trim, where the C library has it
LIBC = LIBC if hasattr(LIBC, "malloc_trim") else None
POLL_SECONDS = 2.0  # how often an idle worker looks again for a trial to take
STOP_SECONDS = 10.0  # how long a stopped worker waits for the storage to record its trial (SLURM kills at 30 s)


def take_waiting(study: optuna.Study, storage, held: list | None = None) -> optuna.Trial | None:
    """A waiting trial of the study, now RUNNING and ours, or None. Safe against any number of workers:
    the WAITING → RUNNING update succeeds for one of them only (a row lock in PostgreSQL, an immediate
    transaction in SQLite). The trial taken is appended to `held` before a stop can land."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        # Heartbeat first: a worker killed right after the update still leaves one, which then goes stale.
        storage.record_heartbeat(frozen._trial_id)
        try:
            with stops.deferred():  # taken and held, or not taken: a stop never lands in between
                if storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                    trial = optuna.Trial(study, frozen._trial_id)
                    if held is not None:
                        held.append(trial)
                    return trial
        except UpdateFinishedTrialError:
            continue
    return None


def take_pack(study: optuna.Study, storage, size: int, held: list, url: str) -> list[optuna.Trial]:
    """Up to `size` waiting trials of the study that share a batch size and a seed (their learning rates differ:
    a pack, training/loop.fine_tune_pack), now RUNNING and ours; [] if none waits. One trial: take_waiting.

    Claimed under the planning lock, so that two workers do not split one row of the grid into two halves; each
    WAITING → RUNNING update is atomic besides, so no trial is ever taken twice. Each trial beats and goes stale
    on its own: a killed worker's whole pack goes back, as one trial does."""
    if size == 1:
        trial = take_waiting(study, storage, held)
        return [trial] if trial is not None else []
    with plan_lock(url):
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if not waiting:
            return []
        batch_size, _, seed = grid_point(waiting[0])
        rates, chosen = set(), []
        for frozen in waiting:
            point = grid_point(frozen)
            if (point[0], point[2]) == (batch_size, seed) and point[1] not in rates and len(chosen) < size:
                rates.add(point[1])
                chosen.append(frozen)
        taken = []
        for frozen in chosen:
            storage.record_heartbeat(frozen._trial_id)
            with stops.deferred():  # taken and held, or not taken: a stop never lands in between
                if storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                    taken.append(optuna.Trial(study, frozen._trial_id))
                    held.append(taken[-1])
        return taken


def pack_size(spec: dict, device: str) -> int:
    """How many trials of a study this worker trains at once (sweep_file.pack_size: the sweep's `pack`, solo where
    a pack cannot run: the HF model, fp16)."""
    recipe, wanted, rates = spec["recipe"], spec.get("pack", "auto"), len(spec["grid"]["lr"])
    if sweep_file.pack_size(wanted, rates, device, packable=True) == 1:
        return 1
    packable = recipe.get("encoder", "fast") == "fast" and not recipe.get("fp16")
    config = models.check(models.resolve(spec["model"]), get_task(spec["task"])) if packable else None
    return sweep_file.pack_size(wanted, rates, device, packable and families.supports(config))


@contextmanager
def heartbeat(storage, trial_ids: list[int]):
    """Record the trials' heartbeats every heartbeat interval while the block runs (Optuna's optimize does
    the same with its HeartbeatThread): each trial of a pack beats, and goes stale, on its own."""
    stop = threading.Event()

    def beat():
        while not stop.wait(storage.heartbeat_interval):
            for trial_id in trial_ids:
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


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str, url: str, transient: bool, **attrs) -> None:
    """Record the failure (and a transient one's retry), riding out a storage outage. Never raises: a worker
    that cannot record one failure goes on; the trial's heartbeat then goes stale and it is retried."""
    try:
        retried = ride_out(lambda: recording.fail(trial, reason, url, transient, **attrs), "recording a failure")
    except Exception as e:
        print(
            f"glue-bench worker: could not record that trial {trial.number} failed ({first_line(e)})", file=sys.stderr
        )
        return
    then = "; queued again" if retried else ("; retries used up" if transient else "")
    print(f"glue-bench worker: trial {trial.number} of {study.study_name} failed: {reason}{then}", file=sys.stderr)


def _interrupted(held: list, url: str) -> None:
    """Record the trials a stopped worker holds as interrupted, their points queued again at once; briefly,
    within SLURM's 30 s: a storage that does not answer leaves them to go stale and be retried."""
    for trial in held:
        try:
            ride_out(
                lambda trial=trial: recording.interrupt(trial, url), "recording an interrupted trial", STOP_SECONDS
            )
            print(
                f"glue-bench worker: trial {trial.number} of {trial.study.study_name} interrupted; queued again",
                file=sys.stderr,
            )
        except Exception as e:
            print(
                f"glue-bench worker: could not record that trial {trial.number} was interrupted ({first_line(e)})",
                file=sys.stderr,
            )


def transient(error: BaseException) -> bool:
    """Whether a failure may pass by itself (out of memory, the network, the storage), so a retry may succeed;
    otherwise it is the trial's own (a NaN loss, a bad input, a bug) and running it again would repeat it."""
    import torch

    return isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError, *NETWORK_ERRORS, *STORAGE_ERRORS))


def run_pack(study: optuna.Study, trials: list[optuna.Trial], spec: dict, url: str) -> None:
    """Run taken trials (one, or a pack that differs only in the learning rate) to COMPLETE or FAIL (with
    fail_reason), each recorded as its own trial. A stop goes on up to `work`, which records it."""
    from glue_bench.training.loop import Diverged

    try:
        points = [ride_out(lambda t=t: _grid_point(t, spec["grid"]), "starting a trial") for t in trials]
        for trial in trials:
            ride_out(lambda t=trial: t.set_user_attr("worker", f"{platform.node()}:{os.getpid()}"), "starting a trial")
            if slurm.task():  # which array task runs it, for status while it runs (its env records it too)
                ride_out(lambda t=trial: t.set_user_attr("slurm", slurm.task()), "starting a trial")
        recipe = Recipe(**spec["recipe"], **points[0])
        trial_spec = trials_.TrialSpec(
            spec["model"],
            spec["task"],
            spec["data"],
            recipe,
            save=spec.get("save") == "best",
            tensorboard=spec.get("tensorboard", False),
            checkpoint_minutes=spec.get("checkpoint_minutes", sweep_file.CHECKPOINT_MINUTES),
        )
        lrs = [point["lr"] for point in points]
        while True:
            prepared = trials_.prepare(trial_spec, url)
            try:  # recorded riding out outages, once per grid point, a score that is not finite as FAIL
                outcomes = trials_.execute_pack(prepared, trials, lrs, url, progress=False, once_per_point=True)
                break
            except Exception as e:
                smaller = accumulate_more(trial_spec.recipe, e)
                if smaller is None:
                    raise
                del prepared
                import torch

                torch.cuda.empty_cache()
                trial_spec = dataclasses.replace(trial_spec, recipe=smaller)
                print(
                    f"glue-bench worker: batch size {smaller.batch_size} does not fit on the GPU: trying again with "
                    f"{smaller.gradient_accumulation_steps} micro-batches a step (recorded in the trial's recipe)",
                    file=sys.stderr,
                )
        del prepared
        for trial, outcome in zip(trials, outcomes):
            if isinstance(outcome, Diverged):
                _fail(study, trial, f"diverged: {outcome}", url, transient=False, fail_step=outcome.step)
            elif not math.isfinite(outcome):
                print(
                    f"glue-bench worker: trial {trial.number} of {study.study_name} failed: the dev score is {outcome}",
                    file=sys.stderr,
                )
    except UpdateFinishedTrialError:  # declared dead before it could record a result: its retry runs elsewhere
        print(
            f"glue-bench worker: a trial of {study.study_name} was declared dead while it ran; its retry runs it again",
            file=sys.stderr,
        )
    except Diverged as e:
        for trial in trials:
            _fail(study, trial, f"diverged: {e}", url, transient=False, fail_step=e.step)
    except UserError as e:
        for trial in trials:
            _fail(study, trial, str(e), url, transient=transient(e))
    except Exception as e:  # out of memory, the network, a bad batch, a library error: record it, go on
        passing = transient(e)
        if not passing:
            traceback.print_exc()
        out_of_memory = "OutOfMemoryError" in type(e).__name__
        if out_of_memory:
            import torch

            torch.cuda.empty_cache()
        reason = f"{'out of memory' if out_of_memory else type(e).__name__}: {first_line(e, 300)}"
        for trial in trials:
            _fail(study, trial, reason, url, transient=passing)


def release_memory() -> None:
    """Hand a finished trial's freed memory back to the system. The big blocks go back when freed (the workers' fixed
    mmap threshold: launcher.MMAP_THRESHOLD); this gives back the free top of the heap the small ones leave. Alone,
    without the threshold, it held MiniLM on RTE at 3.2 GB by the twelfth trial instead of 3.6 (both: 0.8-1.0 GB
    between trials; benchmarks/worker_memory.py). Trimming between trials costs no training step anything."""
    gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)


def accumulate_more(recipe, error: BaseException):
    """The recipe with twice the micro-batches, for a GPU batch that ran out of memory (the batch size stays the
    grid's, the sums the same; the trial records the recipe that ran); None for any other error or when every
    micro-batch is one row already."""
    import torch

    steps = recipe.gradient_accumulation_steps
    if (
        not isinstance(error, torch.cuda.OutOfMemoryError)
        or not torch.cuda.is_available()
        or steps >= recipe.batch_size
    ):
        return None
    return dataclasses.replace(recipe, gradient_accumulation_steps=min(2 * steps, recipe.batch_size))


def _take(loaded: list, storage, url: str, held: list):
    """(taken trials with their study and spec, or None; whether any trial is still running)."""
    fail_stale([study for study, _, _ in loaded], url)  # a dead worker's trial → FAIL, and its retry queued
    busy = False
    for study, spec, size in loaded:
        trials = take_pack(study, storage, size, held, url)
        if trials:
            return (study, trials, spec), True
        busy = busy or bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return None, busy


def work(plan: dict) -> int:
    """Take and run waiting trials of the plan's studies until none is waiting or running. A stop (Ctrl-C,
    SIGTERM) records the trial this worker holds as interrupted, queues it again, and goes on up."""
    import torch  # the slow imports, before a trial is taken: an interrupt in them loses none

    import glue_bench.training.loop  # noqa: F401

    url = plan["storage"]
    storage = ride_out(lambda: open_storage(url, heartbeat=True), "opening the storage")
    loaded = ride_out(
        lambda: [(optuna.load_study(study_name=spec["name"], storage=storage), spec) for spec in plan["studies"]],
        "loading the sweep's studies",
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = [(study, spec, pack_size(spec, device)) for study, spec in loaded]
    held: list[optuna.Trial] = []  # the trials this worker runs (one, or a pack)
    try:
        while True:
            taken, busy = ride_out(lambda: _take(loaded, storage, url, held), "looking for a trial to run")
            if taken is None:
                if not busy:
                    return 0
                # A running trial may be a dead worker's: look again soon, to retry it once its heartbeat is stale.
                time.sleep(min(storage.heartbeat_interval, max(POLL_SECONDS, len(loaded) / 20)))
                continue
            study, trials, spec = taken
            with heartbeat(storage, [trial._trial_id for trial in trials]):
                run_pack(study, trials, spec, url)
            held.clear()
            release_memory()
    except (KeyboardInterrupt, SystemExit):
        stops.caught()
        _interrupted(held, url)  # a trial already recorded is left as it is
        raise


def main(argv: list[str]) -> int:
    """`python -m glue_bench.sweeping.worker PLAN.json`: one worker (the launcher starts these)."""
    import datasets
    import transformers

    quiet_libraries()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    with open(argv[0]) as f:
        plan = json.load(f)
    try:
        with stops.handled():  # SIGTERM as Ctrl-C: the running trial recorded interrupted; exit 143
            return work(plan)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
