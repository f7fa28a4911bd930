"""Where a sweep stands, read from the storage without writing to it: each study's grid points by state (studies.py's
module doc says what each state means), its best trial so far and its kept model; `glue-bench status`'s table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from glue_bench.errors import counted
from glue_bench.inputs.tasks import Task, get_task
from glue_bench.sweeping.kept import KEPT_ATTR
from glue_bench.sweeping.schema import GRID_PARAMS, grid_point, point_key, point_states, trial_state
from glue_bench.sweeping.storage import existing_studies, masked
from glue_bench.sweeping.sweep_file import StudyPlan, Sweep
from glue_bench.training.recipe import lr_text


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
    storage, existing = existing_studies(url, storage, missing_ok)
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
            if trial_state(t) == "failed" and states[grid_point(t)] == "failed"
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
        if trial.user_attrs.get("interrupted"):
            return "interrupted"
        return "failed" if "fail_reason" in trial.user_attrs else "died"
    return "complete" if trial.state == TrialState.COMPLETE else "running"


def format_workers(statuses: list[StudyStatus]) -> str:
    """Per worker (host:pid), the host and SLURM task that ran it, and what became of the trials it took."""
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
