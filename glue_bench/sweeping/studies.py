"""A sweep's Optuna studies in the storage: enqueue each grid point exactly once, and queue the retries of failed ones.

A grid point (batch_size, lr, seed) of a study is, from all the trials that ran it:
  complete  a trial completed;
  running   a worker has it (or had it, and died: its heartbeat will go stale and Optuna retries it);
  waiting   enqueued, no worker has taken it yet;
  failed    a trial failed for a reason of its own, recorded in user attr fail_reason (NaN loss, out of
            memory, a bad batch): settled, not re-run unless --retry-failed;
  pending   no trial yet, or only trials that failed without a reason of their own and ran out of retries
            (a killed worker's): the next `glue-bench sweep` enqueues it again.

A point whose last trial failed and asks to run again (a killed worker's, a transient failure with retries
left, an interrupted one) gets one WAITING trial at once (queue_retries): whoever fails it, at any moment.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from glue_bench.errors import UserError
from glue_bench.sweeping.schema import GRID_PARAMS, LEGACY_RECIPE_VALUES, grid_point, point_key, point_states
from glue_bench.sweeping.storage import MAX_RETRIES, existing_studies, masked, open_storage, plan_lock
from glue_bench.sweeping.sweep_file import StudyPlan, Sweep
from glue_bench.training.recipe import defaults as recipe_defaults


def _study_attrs(sweep: Sweep, plan: StudyPlan) -> dict:
    return {
        "sweep": sweep.name,
        "model": plan.model,
        "task": plan.task,
        "recipe": {**recipe_defaults(), **sweep.base_recipe()},  # whole: a changed code default shows too
        "covers": list(plan.covers),
    }


def enqueue(sweep: Sweep, plans: list[StudyPlan], url: str, retry_failed: bool = False) -> int:
    """Create the studies and enqueue every pending grid point (and failed ones with retry_failed).

    Returns how many trials were enqueued (retries queued by queue_retries too). Exactly once, even with many
    launchers on many machines: the whole look-then-enqueue runs under storage.plan_lock, as does every
    failure with its retry (fail_stale, recording.fail), so a point is never enqueued here while it is
    running or waiting, or between its failure and its retry.
    """
    added = 0
    with plan_lock(url):
        storage = open_storage(url, heartbeat=True)
        for plan in plans:
            study = optuna.create_study(
                storage=storage, study_name=plan.name, direction="maximize", load_if_exists=True
            )
            _check_same_recipe(study, sweep, plan, url)
            added += queue_retries(study)
            states = point_states(study.get_trials(deepcopy=False))
            for point in sweep.grid():
                state = states.get(point_key(point), "pending")
                if state == "pending" or retry_failed and state == "failed":
                    study.enqueue_trial(point, user_attrs={"model": plan.model, "task": plan.task})
                    added += 1
    return added


# --- failures and their retries: under the same lock as the planner ------------------------------------------


def fail_stale(studies: list[optuna.Study], url: str) -> None:
    """Fail the trials of dead workers (stale heartbeats) and queue their retries. Under the planning lock,
    no planner can look in between, see a failed point without its retry, and enqueue it a second time; and
    a retry lost to a storage error between the two is queued by the next call."""
    with plan_lock(url), warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # "experimental" in Optuna since 2.9
        for study in studies:
            optuna.storages.fail_stale_trials(study)  # RUNNING with a stale heartbeat → FAIL
            queue_retries(study)


def queue_retries(study: optuna.Study) -> int:
    """One WAITING trial for each grid point whose trials all failed and whose last one asks to run again
    (requeue). Run it under the planning lock; it is safe to run again at any moment: a point that has a
    complete, running or waiting trial is never queued. Returns how many it queued."""
    by_point: dict[tuple, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        by_point.setdefault(grid_point(trial), []).append(trial)
    queued = 0
    for point, trials in by_point.items():
        if None in point or any(t.state != TrialState.FAIL for t in trials):
            continue
        queued += requeue(study, max(trials, key=lambda t: t.number))
    return queued


def requeue(study: optuna.Study, failed: FrozenTrial) -> bool:
    """Queue the failed trial's grid point again if its failure asks for it; returns whether it did.

    Interrupted (Ctrl-C, SIGTERM): not the trial's fault, queued as a new trial. Killed (no fail_reason) or a
    transient failure: a retry with its lineage in the system attrs as Optuna's RetryHeartbeatStaleTrialCallback
    writes it (failed_trial: the first trial of the lineage; retry_history: all before), up to MAX_RETRIES
    along the lineage. A failure of the trial's own (diverged, a bad input), or a trial superseded by another
    that completed its point: settled."""
    attrs = failed.user_attrs
    user_attrs = {k: attrs[k] for k in ("model", "task") if k in attrs}
    if "superseded_by" in attrs:
        return False
    if attrs.get("interrupted"):
        study.enqueue_trial(dict(zip(GRID_PARAMS, grid_point(failed))), user_attrs=user_attrs)
        return True
    if attrs.get("fail_reason") and attrs.get("fail_kind") != "transient":
        return False
    history = [*failed.system_attrs.get("retry_history", []), failed.number]
    if len(history) > MAX_RETRIES:
        return False
    inherited = {k: v for k, v in failed.system_attrs.items() if not k.startswith("artifacts:")}  # its uploads stay its
    system_attrs = {**inherited, "failed_trial": failed.system_attrs.get("failed_trial", failed.number)}
    system_attrs["retry_history"] = history
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )
    return True


def recipe_conflicts(sweep: Sweep, plans: list[StudyPlan], url: str) -> list[str]:
    """What `enqueue` would refuse, found without writing anything: each study already in the storage that
    was run with another recipe (a dry run reports them all)."""
    storage, existing = existing_studies(url, missing_ok=True)
    problems = []
    for plan in plans:
        if plan.name in existing:
            try:
                _check_same_recipe(
                    optuna.load_study(study_name=plan.name, storage=storage), sweep, plan, url, write=False
                )
            except UserError as e:
                problems.append(str(e))
    return problems


def _check_same_recipe(study: optuna.Study, sweep: Sweep, plan: StudyPlan, url: str, write: bool = True) -> None:
    """A study holds one recipe: a sweep file edited after its first run must not mix two in one study."""
    attrs = _study_attrs(sweep, plan)
    if not study.user_attrs:
        if not write:
            return
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        return
    # Studies made before the whole recipe was recorded hold only their sweep's overrides.
    before = {**recipe_defaults(), **LEGACY_RECIPE_VALUES, **study.user_attrs.get("recipe", {})}
    if before != attrs["recipe"]:
        changed = sorted(k for k in set(before) | set(attrs["recipe"]) if before.get(k) != attrs["recipe"].get(k))
        shown = ", ".join(f"{k} {before.get(k)!r} → {attrs['recipe'].get(k)!r}" for k in changed)
        raise UserError(
            f"{sweep.path}: study {plan.name} in {masked(url)} was run with another recipe ({shown}); "
            f'give the sweep a new name (name = "{sweep.name}-2") or use another --storage'
        )
