"""A sweep's Optuna studies in the storage: enqueue each grid point exactly once, and read where they stand.

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
from collections import Counter
from dataclasses import dataclass, field

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from glue_bench.errors import UserError, counted
from glue_bench.inputs.tasks import Task, get_task
from glue_bench.sweeping.kept import KEPT_ATTR
from glue_bench.sweeping.runs import LEGACY_RECIPE_VALUES
from glue_bench.sweeping.storage import MAX_RETRIES, masked, open_storage, plan_lock, storage_exists
from glue_bench.sweeping.sweep_file import StudyPlan, Sweep
from glue_bench.sweeping.trial import GRID_PARAMS
from glue_bench.training.recipe import defaults as recipe_defaults
from glue_bench.training.recipe import lr_text

POINT_STATES = ("complete", "failed", "running", "waiting", "pending")
_RANK = {"complete": 4, "running": 3, "waiting": 2, "failed": 1}


def grid_point(trial: FrozenTrial) -> tuple:
    """(batch_size, lr, seed) of a trial; an enqueued trial holds them as fixed params until it runs."""
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    return tuple(params.get(name) for name in GRID_PARAMS)


def point_key(point: dict) -> tuple:
    return tuple(point[name] for name in GRID_PARAMS)


def _trial_state(trial: FrozenTrial) -> str | None:
    if trial.state == TrialState.FAIL:
        return "failed" if trial.user_attrs.get("fail_reason") else None
    return {TrialState.COMPLETE: "complete", TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}.get(
        trial.state
    )


def point_states(trials: list[FrozenTrial]) -> dict[tuple, str]:
    """Each grid point's state (see the module doc); points with no trial are absent (pending)."""
    states: dict[tuple, str] = {}
    for trial in trials:
        state = _trial_state(trial)
        point = grid_point(trial)
        if state and _RANK[state] > _RANK.get(states.get(point), 0):
            states[point] = state
    return states


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


def _existing_studies(url: str, storage=None, missing_ok: bool = False) -> tuple:
    """(the storage, the names of its studies). A storage that does not exist is refused (one line), or with
    missing_ok (a dry run, which plans a sweep not run yet) is (None, empty): nothing has run. A storage that
    does not answer is not an empty one: StorageUnreachable goes on up."""
    if storage is None:
        if missing_ok and not storage_exists(url):
            return None, set()
        storage = open_storage(url, create=False)
    return storage, set(optuna.get_all_study_names(storage))


def recipe_conflicts(sweep: Sweep, plans: list[StudyPlan], url: str) -> list[str]:
    """What `enqueue` would refuse, found without writing anything: each study already in the storage that
    was run with another recipe (a dry run reports them all)."""
    storage, existing = _existing_studies(url, missing_ok=True)
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


# --- where a sweep stands -----------------------------------------------------------------------------


@dataclass
class StudyStatus:
    plan: StudyPlan
    states: dict = field(default_factory=dict)  # grid point → one of POINT_STATES
    points: Counter = field(default_factory=Counter)  # POINT_STATES → count, over the sweep's grid
    retried: int = 0  # retries queued: of a killed worker's trial, of a transient failure
    interrupted: int = 0  # trials stopped by Ctrl-C or SIGTERM (their points queued again at once)
    best: FrozenTrial | None = None
    reasons: list[str] = field(default_factory=list)  # fail_reason of failed points
    kept: dict | None = None  # the kept best model (save = "best"): {"trial", "value", "artifact"}
    workers: Counter = field(default_factory=Counter)  # (worker host:pid, SLURM task, WORKER_STATES) → trials

    @property
    def finished(self) -> int:
        return self.points["complete"] + self.points["failed"]


def read_status(
    sweep: Sweep, plans: list[StudyPlan], url: str, storage=None, missing_ok: bool = False
) -> list[StudyStatus]:
    """Each study's grid points by state; a study not in the storage yet: all pending. A storage that does
    not exist is refused, unless missing_ok (then all pending). Pass an open `storage` to read it again and
    again (the launcher's progress bar)."""
    storage, existing = _existing_studies(url, storage, missing_ok)
    statuses = []
    grid = [point_key(p) for p in sweep.grid()]
    for plan in plans:
        status = StudyStatus(plan)
        trials = []
        if plan.name in existing:
            study = optuna.load_study(study_name=plan.name, storage=storage)
            trials = study.get_trials(deepcopy=False)
            status.kept = study.user_attrs.get(KEPT_ATTR)
        states = point_states(trials)
        status.states = {point: states.get(point, "pending") for point in grid}
        status.points.update(status.states.values())
        status.retried = sum(1 for t in trials if "failed_trial" in t.system_attrs)
        status.interrupted = sum(1 for t in trials if t.user_attrs.get("interrupted"))
        status.reasons = [
            t.user_attrs["fail_reason"]
            for t in trials
            if _trial_state(t) == "failed" and states[grid_point(t)] == "failed"
        ]
        status.workers.update(
            (t.user_attrs["worker"], t.user_attrs.get("slurm", ""), _worker_state(t))
            for t in trials
            if "worker" in t.user_attrs
        )
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        status.best = max(complete, key=lambda t: t.value) if complete else None
        statuses.append(status)
    return statuses


WORKER_STATES = ("complete", "running", "failed", "interrupted", "died")


def _worker_state(trial: FrozenTrial) -> str:
    """What became of a trial its worker took: interrupted (Ctrl-C, SIGTERM, scancel), died (its heartbeat went
    stale: the worker was killed), or its state."""
    if trial.state == TrialState.FAIL:
        return (
            "interrupted"
            if trial.user_attrs.get("interrupted")
            else "failed"
            if "fail_reason" in trial.user_attrs
            else "died"
        )
    return "complete" if trial.state == TrialState.COMPLETE else "running"


def format_workers(statuses: list[StudyStatus]) -> str:
    """Per worker (host:pid), the host and SLURM task that ran it, and what became of the trials it took."""
    import pandas as pd

    total = Counter()
    for s in statuses:
        total.update(s.workers)
    workers = sorted({(worker, task) for worker, task, _ in total})
    if not workers:
        return ""
    rows = [
        {
            "worker": worker,
            "host": worker.rsplit(":", 1)[0],
            **({"SLURM task": task or "-"} if any(task for _, task in workers) else {}),
            **{state: total[worker, task, state] for state in WORKER_STATES},
        }
        for worker, task in workers
    ]
    return "trials per worker:\n" + pd.DataFrame(rows).to_string(index=False)


def _best(trial: FrozenTrial | None) -> tuple[str, str]:
    """The best trial's dev score (points) and its grid point, as two columns: scores then align on the point."""
    if trial is None:
        return "-", ""
    point = dict(zip(GRID_PARAMS, grid_point(trial)))
    at = [f"bs {point['batch_size']:g}", f"lr {lr_text(point['lr'])}"]
    if point.get("seed") is not None:
        at.append(f"seed {point['seed']:g}")
    return f"{100 * trial.value:.2f}", ", ".join(at)


METRIC_NAMES = {"accuracy": "acc", "f1": "F1", "mcc": "MCC", "pearson": "Pearson", "spearman": "Spearman"}


def score_metric(task: Task) -> str:
    """What a task's dev score is, as the task file's `score` says: MRPC "(F1 + acc) / 2", MNLI "acc, mean of
    2 dev splits" (metrics.task_score)."""
    names = [METRIC_NAMES.get(name, name) for name in task.score]
    text = names[0] if len(names) == 1 else f"({' + '.join(names)}) / {len(names)}"
    dev = task.splits_with_role("dev")
    return f"{text}, mean of {len(dev)} dev splits" if len(dev) > 1 else text


def _kept(entry: dict | None) -> str:
    return "-" if entry is None else f"trial {entry['trial']} ({100 * entry['value']:.2f})"


def format_status(sweep: Sweep, statuses: list[StudyStatus], url: str) -> str:
    """The `glue-bench status` table: one line per study, then the totals and the covered tasks."""
    import pandas as pd

    grid = len(sweep.grid())
    rows = [
        {
            "model": s.plan.model,
            "task": s.plan.task,
            "done": f"{s.points['complete']}/{grid}",
            "running": s.points["running"],
            "waiting": s.points["waiting"],
            "failed": s.points["failed"],
            "not queued": s.points["pending"],
            "retried": s.retried,
            "interrupted": s.interrupted,
            "best dev score": best,
            "metric": score_metric(get_task(s.plan.task)),
            "at": at,
            **({"teacher": sweep.recipe["teacher"]} if sweep.recipe.get("teacher") else {}),
            **({"kept model": _kept(s.kept)} if sweep.save == "best" else {}),
        }
        for s in statuses
        for best, at in [_best(s.best)]
    ]
    total = Counter()
    for s in statuses:
        total.update(s.points)
    lines = [
        f"sweep {sweep.name} ({sweep.path}) in {masked(url)}",
        pd.DataFrame(rows).to_string(index=False),
        "",
        f"{total['complete']} of {counted(grid * len(statuses), 'trial')} complete, {total['failed']} failed, "
        f"{total['running']} running, {total['waiting']} waiting, {total['pending']} not queued",
    ]
    for task, by in sweep.covered.items():
        mine = [s for s in statuses if s.plan.task == by]
        lines.append(
            f"{task}: covered by the {by} trials ({sum(s.points['complete'] for s in mine)} complete); "
            f"never trained: each {by} trial predicts it, its metrics are the runs table's extra/{task}/* columns"
        )
    reasons = Counter(r for s in statuses for r in s.reasons)
    for reason, count in reasons.most_common(5):
        lines.append(f"failed ×{count}: {reason}")
    if workers := format_workers(statuses):
        lines += ["", workers]
    return "\n".join(lines)
