"""Two models, task by task: B − A at each one's selected configuration, with a paired bootstrap interval.

The same resampled dev rows score both models in each replicate; each model's seeds are resampled on
their own (bootstrap.py). Verdict: "B better" when the whole 95% interval is above 0, "A better" when below,
"no difference shown" otherwise. The GLUE line does the same with the mean over the GLUE tasks both have.

Two models are compared as they were trained: where their recipes differ (recipes.py: every recipe field, how
many configurations each was selected from, the grid point, the seeds) the table names each difference, so a
difference of recipes is never read as a difference of models. Two models scored on different dev rows
cannot be paired at all: compare refuses them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from glue_bench.errors import UserError, did_you_mean
from glue_bench.inputs.model_names import normalise_model
from glue_bench.inputs.tasks import get_task
from glue_bench.reporting import bootstrap, recipes
from glue_bench.reporting.cells import MISSING, points, signed
from glue_bench.reporting.render import UNLIKE, Report
from glue_bench.reporting.selection import best
from glue_bench.training.metrics import GLUE_TASKS


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "B better"
    if high < 0:
        return "A better"
    return "no difference shown"


def compare(
    table: pd.DataFrame,
    storage_url: str | None,
    a: str,
    b: str,
    tasks: list[str] | None = None,
    resamples: int = bootstrap.RESAMPLES,
) -> Report:
    a, b = normalise_model(a), normalise_model(b)  # bert-tiny → L-2_H-128, "M <- T" → "M ← T"
    winners = best(table)
    known = sorted(set(table["model"].dropna()))
    for model in (a, b):
        if model not in set(winners["model"]):
            raise UserError(
                f"compare: no completed trials of model '{model}'; {did_you_mean(model, known)}"
                f"the storage has: {', '.join(known) or 'no models'}"
            )
    have = {m: set(winners.loc[winners["model"] == m, "task"]) for m in (a, b)}
    if tasks:
        names = [get_task(t).name for t in tasks]  # an unknown task: one line with the closest name
        for name in names:
            for model in (a, b):
                if name not in have[model]:
                    raise UserError(
                        f"compare: model {model} has no completed {name} trials; "
                        f"{did_you_mean(name, sorted(have[model]))}it has: {', '.join(sorted(have[model])) or 'none'}"
                    )
    else:
        order = {t: i for i, t in enumerate(GLUE_TASKS)}
        names = sorted(have[a] & have[b], key=lambda t: (order.get(t, len(order)), t))
        if not names:
            raise UserError(f"compare: {a} and {b} have no task in common with completed trials")
    replicates = bootstrap.selected_replicates(table, storage_url, [a, b], names, resamples)
    for name in names:
        ra, rb = replicates[(a, name)], replicates[(b, name)]
        if not isinstance(ra, str) and not isinstance(rb, str) and ra.rows != rb.rows:
            raise UserError(
                f"compare: {a} and {b} were scored on different {name} dev rows (another task file or data), so "
                "no difference between them can be paired; compare models scored on the same dev split"
            )
    score = {(r["model"], r["task"]): float(r["score"]) for _, r in winners.iterrows()}
    unlike, shared = _recipe_differences(winners, a, b, names)
    rows, reasons, diffs = [], [], {}
    for name in names:
        ra, rb = replicates[(a, name)], replicates[(b, name)]
        row = {"Task": name, **({UNLIKE: "; ".join(unlike[name]) or "same recipe"} if any(unlike.values()) else {})}
        row |= {
            "A": points(score[(a, name)]),
            "B": points(score[(b, name)]),
            "B − A": signed(100 * (score[(b, name)] - score[(a, name)])),
        }
        if isinstance(ra, str) or isinstance(rb, str):
            reasons.append(f"{name}: {a if isinstance(ra, str) else b}: {ra if isinstance(ra, str) else rb}")
            row.update({"95% interval": MISSING, "Verdict": "no interval"})
        else:
            diffs[name] = rb.task - ra.task
            row.update(_verdict_cells(diffs[name]))
        rows.append(row)
    glue = [t for t in GLUE_TASKS if t in diffs]
    if glue:
        point = 100 * (np.mean([score[(b, t)] for t in glue]) - np.mean([score[(a, t)] for t in glue]))
        label = "GLUE score" if len(glue) == len(GLUE_TASKS) else f"GLUE score ({len(glue)}/{len(GLUE_TASKS)})"
        rows.append(
            {
                "Task": label,
                **({UNLIKE: ""} if any(unlike.values()) else {}),
                "A": points(np.mean([score[(a, t)] for t in glue])),
                "B": points(np.mean([score[(b, t)] for t in glue])),
                "B − A": signed(point),
                **_verdict_cells(np.mean([diffs[t] for t in glue], axis=0)),
            }
        )
    intro = (
        f"A = {a}, B = {b}, each at its selected configuration (best mean dev score over seeds), in points. "
        f"95% interval: a paired percentile bootstrap of B − A ({resamples} resamples; the same dev rows for "
        "both models, each model's seeds resampled on their own; numpy seed 0). Verdict: B better / A better "
        "when the interval lies above / below 0."
    )
    if any(unlike.values()):
        intro += (
            f" A and B were trained or selected differently ({UNLIKE}, A → B): B − A measures those differences "
            "as much as the models."
        )
    notes = [f"No interval for {r}." for r in reasons]
    if glue:
        notes.append(f"GLUE score: the mean over the GLUE tasks with an interval ({', '.join(glue)}).")
    if any(unlike.values()):
        notes.append(
            f"{UNLIKE}: each recipe field in which A's selected configuration differs from B's; configurations: "
            "how many each was the best of; batch_size, lr: the grid point selected; seeds: those averaged."
        )
    return Report(
        f"{b} vs {a}",
        pd.DataFrame(rows),
        intro,
        notes,
        text_columns=1 + any(unlike.values()),
        recipe=recipes.describe(shared),
        recipe_of="A and B",
    )


def _recipe_differences(winners: pd.DataFrame, a: str, b: str, names: list[str]) -> tuple[dict, dict]:
    """Per task, each field in which A's and B's selected configurations differ ("epochs 1 → 3"), and the
    fields that are the same for both on every task."""
    fields = recipes.recipe_fields(winners)
    chosen = {(r["model"], r["task"]): r for _, r in winners.iterrows()}
    both, unlike = {}, {}
    for name in names:
        pair = []
        for model in (a, b):
            winner = chosen[(model, name)]
            recipe = recipes.configuration(winner, fields)
            recipe.update(batch_size=recipes.text(winner["batch_size"]), lr=recipes.lr(winner["lr"]))
            recipe["seeds"] = winner["seed_list"]
            pair.append(recipe)
        unlike[name] = recipes.differences(*pair)
        both[(a, name)], both[(b, name)] = pair
    shared, _ = recipes.split(both)
    return unlike, shared


def _verdict_cells(differences: np.ndarray) -> dict[str, str]:
    low, high = bootstrap.interval(differences)
    return {"95% interval": f"[{signed(100 * low)}, {signed(100 * high)}]", "Verdict": verdict(low, high)}
