"""How a trial's end is recorded: a finished fine-tune (complete), a failure (fail), a stop (interrupt).

Each runs under the planning lock (so a planner or another worker never sees half of it) with stop signals
held back (stops.deferred), and each is safe to repeat after a partial success (storage.ride_out repeats it
after a storage error): it reads the trial's state first and does only what is left.

A finished fine-tune is never lost. A worker cut off from the storage for longer than the grace period is
declared dead by another worker, which fails its trial and queues a retry (studies.fail_stale). When the
worker gets through again, `complete` records its result as a new COMPLETE trial of the same grid point, with
the lineage (failed_trial, retry_history) of the trial it ran, and cancels the waiting retry, which is then
not run. In a sweep a grid point is COMPLETE at most once: a trial that finishes a point another trial has
completed meanwhile (the retry already running elsewhere) is recorded FAIL with `superseded_by`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from glue_bench.sweeping import kept, studies
from glue_bench.sweeping.schema import grid_point
from glue_bench.sweeping.stops import deferred
from glue_bench.sweeping.storage import plan_lock


@dataclass
class Results:
    """A finished fine-tune as it is recorded: its score, its user attrs, its artifacts (already in the artifact
    store, linked to the trial that records them), and its model's artifact if it may become the kept one."""

    score: float
    attrs: dict
    artifacts: dict = field(default_factory=dict)  # artifact id → its meta (JSON), as optuna.artifacts links them
    model: str | None = None

    def uploads(self) -> list[str]:
        return [*self.artifacts, self.model]


def _write(storage, trial_id: int, results: Results) -> None:
    for key, value in results.attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)
    for artifact, meta in results.artifacts.items():
        storage.set_trial_system_attr(trial_id, f"artifacts:{artifact}", meta)


def complete(trial: optuna.Trial, results: Results, url: str | None, once_per_point: bool) -> FrozenTrial | None:
    """Record a finished fine-tune of `trial` and swap in its kept model; returns the trial that records it,
    or None where the result is not recorded (a non-finite score, recorded FAIL; or, with once_per_point, a
    grid point another trial completed meanwhile). See the module doc."""
    study, storage = trial.study, trial.study._storage
    with plan_lock(url), deferred():
        ours = storage.get_trial(trial._trial_id)
        if not math.isfinite(results.score):  # its results kept for a look, the trial FAIL
            if ours.state == TrialState.RUNNING:
                _write(storage, ours._trial_id, results)
            _fail(study, ours, f"the dev score is {results.score}", False, {}, retries=once_per_point)
            kept.discard([results.model], url)
            return None
        point = grid_point(ours)
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.number == ours.number or once_per_point and grid_point(t) == point
        ]
        recorded = next(
            (t for t in done if t.number == ours.number or t.user_attrs.get("results_of") == ours.number), None
        )
        if recorded is None and done:  # another trial completed the point: ours is not recorded twice
            if ours.state == TrialState.RUNNING:
                storage.set_trial_user_attr(ours._trial_id, "superseded_by", done[0].number)
                storage.set_trial_state_values(ours._trial_id, TrialState.FAIL)
            kept.discard(results.uploads(), url)
            _say(
                f"trial {ours.number} of {study.study_name}: trial {done[0].number} completed its grid point first; not recorded twice"
            )
            return None
        if recorded is None and ours.state == TrialState.RUNNING:
            _write(storage, ours._trial_id, results)
            storage.set_trial_state_values(ours._trial_id, TrialState.COMPLETE, [results.score])
            recorded = storage.get_trial(ours._trial_id)
        elif recorded is None:  # declared dead while it ran: its result on a new trial of its grid point
            recorded = _record_anew(study, ours, results)
            _say(
                f"trial {ours.number} of {study.study_name} was declared dead while it ran; its result is recorded "
                f"as trial {recorded.number}"
            )
        if once_per_point:
            _cancel_waiting(study, point, recorded.number)
        if results.model:
            kept.swap(study, recorded.number, results.score, results.model, url)
        return recorded


def _say(line: str) -> None:
    print(f"glue-bench: {line}", file=sys.stderr, flush=True)


def _record_anew(study: optuna.Study, ours: FrozenTrial, results: Results) -> FrozenTrial:
    """A COMPLETE trial of `ours`'s grid point holding its results, in one transaction, with the lineage of a
    retry of `ours` (as Optuna's RetryHeartbeatStaleTrialCallback writes it) and results_of naming it."""
    lineage = {
        "failed_trial": ours.system_attrs.get("failed_trial", ours.number),
        "retry_history": [*ours.system_attrs.get("retry_history", []), ours.number],
    }
    inherited = {k: v for k, v in ours.system_attrs.items() if not k.startswith("artifacts:")}
    links = {f"artifacts:{artifact}": meta for artifact, meta in results.artifacts.items()}
    template = optuna.trial.create_trial(
        state=TrialState.COMPLETE,
        value=results.score,
        params=ours.params,
        distributions=ours.distributions,
        user_attrs={**ours.user_attrs, **results.attrs, "results_of": ours.number},
        system_attrs={**inherited, **lineage, **links},
    )
    template.datetime_start = ours.datetime_start or template.datetime_start
    study.add_trial(template)
    return next(t for t in reversed(study.get_trials(deepcopy=False)) if t.user_attrs.get("results_of") == ours.number)


def _cancel_waiting(study: optuna.Study, point: tuple, number: int) -> None:
    """A waiting trial of a point that is complete now (the retry queued for a trial declared dead) never runs."""
    storage = study._storage
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if grid_point(waiting) == point:
            storage.set_trial_user_attr(waiting._trial_id, "superseded_by", number)
            storage.set_trial_state_values(waiting._trial_id, TrialState.FAIL)


def fail(trial: optuna.Trial, reason: str, url: str | None, transient: bool, **attrs) -> bool:
    """Record the trial FAIL with its reason. A transient failure (out of memory, the network, the storage)
    is queued again, up to MAX_RETRIES times along its lineage; a permanent one (diverged, bad input) is
    settled until --retry-failed. Returns whether its grid point is queued to run again."""
    study = trial.study
    with plan_lock(url), deferred():
        ours = study._storage.get_trial(trial._trial_id)
        _fail(study, ours, reason, transient, attrs)
        return _queued(study, ours)


def _fail(study: optuna.Study, ours: FrozenTrial, reason: str, transient: bool, attrs: dict, retries=True) -> None:
    """FAIL with fail_reason, then (a sweep's trial) its retry if it asks for one; only what is not done yet."""
    storage = study._storage
    if ours.state == TrialState.RUNNING:
        attrs = {**attrs, "fail_reason": reason, "fail_kind": "transient" if transient else "permanent"}
        for key, value in attrs.items():
            storage.set_trial_user_attr(ours._trial_id, key, value)
        storage.set_trial_state_values(ours._trial_id, TrialState.FAIL)
    if retries:
        studies.queue_retries(study)  # a FAIL told by an earlier try, or by a worker that declared ours dead


def interrupt(trial: optuna.Trial, url: str | None) -> bool:
    """Record a trial stopped by Ctrl-C or SIGTERM: FAIL with `interrupted`, its grid point queued again at
    once (not the trial's fault: no retry is counted). Returns whether its grid point is queued."""
    study = trial.study
    storage = study._storage
    with plan_lock(url), deferred():
        ours = storage.get_trial(trial._trial_id)
        if ours.state == TrialState.RUNNING:
            storage.set_trial_user_attr(ours._trial_id, "interrupted", True)
            storage.set_trial_state_values(ours._trial_id, TrialState.FAIL)
        studies.queue_retries(study)
        return _queued(study, ours)


def _queued(study: optuna.Study, ours: FrozenTrial) -> bool:
    point = grid_point(ours)
    return any(grid_point(t) == point for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
