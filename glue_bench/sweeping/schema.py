"""How a sweep lies in the Optuna storage: what every other module of this stage reads and writes by.

A sweep's (model, task) is one study, named `<sweep>/<model>/<task>` (`glue-bench run`'s under ADHOC); a grid point
(batch_size, lr, seed) is a trial's Optuna params (an enqueued trial holds them as fixed params until it runs); the
rest of a trial's recipe is a user attribute. A grid point's state is read from all the trials that ran it
(studies.py says what each state means).
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from glue_bench.training.recipe import GRID_FIELDS

# Optuna params: what a grid varies. The rest of the recipe is a user attribute.
GRID_PARAMS = GRID_FIELDS


def study_name(sweep: str, model: str, task: str) -> str:
    return f"{sweep}/{model}/{task}"


ADHOC = "adhoc"  # the sweep name of `glue-bench run`'s studies


def grid_distributions(batch_sizes, lrs, seeds) -> dict[str, optuna.distributions.BaseDistribution]:
    """Ranges spanning the given values. Not categorical: Optuna refuses a categorical param whose choices
    change within a study (a second `glue-bench run` with another lr, a sweep whose grid grew), while a
    range may. Values are never sampled from them: a single value is fixed, a sweep enqueues its points."""
    return {
        "batch_size": optuna.distributions.IntDistribution(min(batch_sizes), max(batch_sizes)),
        "lr": optuna.distributions.FloatDistribution(min(lrs), max(lrs), log=True),
        "seed": optuna.distributions.IntDistribution(min(seeds), max(seeds)),
    }


# A field added after trials were recorded: the value those older trials ran with (not today's default,
# which may have changed since). Every field added from now on gets an entry here.
LEGACY_RECIPE_VALUES = {
    "fused_adamw": False,  # foreach AdamW on a CPU
    "encoder": "hf",  # the Hugging Face model
    **{"teacher": "", "temperature": 1.0, "alpha": 0.0, "transfer": "", "max_transfer_samples": 0},  # no teacher
    **{"optimizer": "adamw", "batch_order": "shuffle", "gradient_accumulation_steps": 1, "fp16": False},
    # a seeded head: what every earlier trial from a checkpoint without a head trained (one whose head had the
    # task's size kept it, and one of another size could not run; neither recorded its checkpoint's head)
    "head": "fresh",
}

POINT_STATES = ("complete", "failed", "running", "waiting", "pending")
_RANK = {"complete": 4, "running": 3, "waiting": 2, "failed": 1}


def grid_point(trial: FrozenTrial) -> tuple:
    """(batch_size, lr, seed) of a trial; an enqueued trial holds them as fixed params until it runs."""
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    return tuple(params.get(name) for name in GRID_PARAMS)


def point_key(point: dict) -> tuple:
    return tuple(point[name] for name in GRID_PARAMS)


def trial_state(trial: FrozenTrial) -> str | None:
    """What one trial says of its grid point: complete, running, waiting, failed (for a reason of its own), or
    None (failed without one: a killed worker's, an interrupted one)."""
    if trial.state == TrialState.FAIL:
        return "failed" if trial.user_attrs.get("fail_reason") else None
    return {TrialState.COMPLETE: "complete", TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}.get(
        trial.state
    )


def point_states(trials: list[FrozenTrial]) -> dict[tuple, str]:
    """Each grid point's state (studies.py's module doc says what each means); points with no trial are absent (pending)."""
    states: dict[tuple, str] = {}
    for trial in trials:
        state = trial_state(trial)
        point = grid_point(trial)
        if state and _RANK[state] > _RANK.get(states.get(point), 0):
            states[point] = state
    return states
