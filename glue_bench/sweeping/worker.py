"""A sweep worker: take waiting trials of a sweep's studies, one at a time, and run each to COMPLETE or FAIL.

The launcher (launcher.py) starts these as `python -m glue_bench.sweeping.worker PLAN.json`. Any number of
workers, on any number of machines sharing one storage, take distinct trials.

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
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import TrialState

from glue_bench.errors import UserError
from glue_bench.sweeping.storage import open_storage

POLL_SECONDS = 2.0  # how often an idle worker looks again for a trial to take


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
    from glue_bench.sweeping.trial import grid_distributions

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

    from glue_bench.sweeping import trial as trials
    from glue_bench.training.loop import Diverged
    from glue_bench.training.recipe import Recipe

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
        print(
            f"glue-bench worker: trial {trial.number} of {study.study_name} was declared dead while it ran; "
            "its retry will record the result",
            file=sys.stderr,
        )
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

    import glue_bench.sweeping.trial  # noqa: F401

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
    """`python -m glue_bench.sweeping.worker PLAN.json`: one worker (the launcher starts these)."""
    import datasets
    import transformers

    from glue_bench.inputs.hub import quiet_libraries

    quiet_libraries()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    with open(argv[0]) as f:
        plan = json.load(f)
    try:
        return work(plan)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
