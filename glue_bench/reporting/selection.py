"""Selection: the best configuration per (model, task) on dev, from the runs table.

A configuration is a trial's (sweep, batch size, learning rate, rest of the recipe, a teacher's weights and
transfer rows); its seeds are averaged.
Per (model, task) the configuration with the best mean task score wins (the trial's `score`,
metrics.task_score: MNLI selects on (matched + mismatched) / 2). The leaderboard, the grid view, plots,
submissions and AX diagnostics all select through here. Values stay fractions, as in the runs table.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from glue_bench.errors import UserError
from glue_bench.inputs.tasks import get_task
from glue_bench.reporting import baselines
from glue_bench.sweeping.runs import RECIPE_COLUMNS, TAUGHT_COLUMNS, latest, read_runs, runs_table

# A distilled student's teacher weights and transfer rows are in its model's identity already (runs.model_id);
# in the key too, so that seeds trained against two versions of a kept teacher are never one configuration.
CONFIG = ("sweep", "batch_size", "lr") + RECIPE_COLUMNS + TAUGHT_COLUMNS


def load_runs(storage: str | None = None, runs: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """The runs table from an exported file (--runs) or a storage (--storage), optionally one sweep's."""
    table = read_runs(runs) if runs else runs_table(storage, sweep)
    if sweep:
        table = table[table["sweep"] == sweep]
    if table.empty:
        where = f"--runs {runs}" if runs else "the storage"
        raise UserError(
            f"{where} holds no trials{f' of sweep {sweep}' if sweep else ''}; run some first "
            "(glue-bench run or glue-bench sweep), or pass the right --storage/--runs/--sweep"
        )
    return table


def collapsed_splits(row: dict) -> str:
    """'validation: all 1' for each dev split on which a trial predicted one class everywhere; '' if none.

    Exact where the trial recorded the classes it predicted on each dev split (`predicted_classes`);
    older trials are judged by their metrics equalling a constant predictor's (baselines.py).
    """
    try:
        task = get_task(row["task"])
    except UserError:  # a user's task file not on this machine: nothing to compare with
        return ""
    recorded = row.get("predicted_classes")
    classes = json.loads(recorded) if isinstance(recorded, str) and recorded else {}
    if classes:  # a classifier's trial; regression records none and is judged by its metrics
        return "; ".join(
            f"{split}: all {task.labels[ids[0]]}" for split, ids in sorted(classes.items()) if len(ids) == 1
        )
    dev: dict[str, dict[str, float]] = {}
    for key, value in row.items():
        if key.startswith("dev/") and isinstance(value, (int, float)) and not math.isnan(value):
            _, split, metric = key.split("/", 2)
            dev.setdefault(split, {})[metric] = float(value)
    return "; ".join(baselines.degenerate_splits(task, dev))


def _seed_list(seeds) -> str:
    return ", ".join(str(int(s)) for s in sorted(seeds))


def configurations(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, configuration) with a completed seed, ordered best first per (model, task).

    Each grid point counts once (runs.latest). Columns: the mean and std over seeds of every value; `seeds`,
    the number of distinct completed seeds, and `seed_list`, which ("0, 1, 2"); `configurations`, how many
    configurations of its (model, task) the selection chose from; `failed_seeds` and `missing_seeds` (of the seeds the same sweep
    and recipe ran elsewhere in its grid), `complete` when both are empty; `collapsed`, how many seeds
    predicted one class on a dev split, and `degenerate`, which (e.g. "seed 1: validation: all 1"); the
    best seed's trial. A complete configuration ranks above every incomplete one; then by mean score.
    """
    counted = latest(table)
    keys = ["model", "task"] + [c for c in CONFIG if c in counted.columns]
    done = counted[counted["state"] == "COMPLETE"].copy()
    extra = [
        "seeds",
        "seed_list",
        "configurations",
        "failed_seeds",
        "missing_seeds",
        "complete",
        "collapsed",
        "degenerate",
        "best_trial",
    ]
    if done.empty:
        return pd.DataFrame(columns=keys + ["score", "std:score"] + extra)
    done["degenerate"] = [collapsed_splits(row) for row in done.to_dict("records")]
    values = ["score"] + sorted(c for c in done.columns if c.startswith(("dev/", "extra/", "teacher/")))
    done[values] = done[values].apply(pd.to_numeric, errors="coerce")
    grouped = done.groupby(keys, dropna=False, sort=False)
    out = grouped[values].mean()
    out = out.join(grouped[values].std(ddof=1).add_prefix("std:"))
    out["seeds"] = grouped["seed"].nunique()
    out["seed_list"] = grouped["seed"].agg(lambda seeds: _seed_list(set(seeds)))
    out["best_trial"] = grouped["score"].idxmax().map(lambda i: done.loc[i, "trial"])
    out = out.reset_index()

    # Which seeds each configuration should have: those its sweep and recipe ran at any grid point.
    family = [k for k in keys if k not in ("batch_size", "lr")]
    expected = {_key(k): set(g["seed"]) for k, g in counted.groupby(family, dropna=False, sort=False)}
    states = {_key(k): g for k, g in counted.groupby(keys, dropna=False, sort=False)}
    by_config = {_key(k): g for k, g in done.groupby(keys, dropna=False, sort=False)}
    failed, missing, collapsed, degenerate = [], [], [], []
    for row in out[keys].itertuples(index=False):
        config, trials = _key(tuple(row)), by_config[_key(tuple(row))]
        ran = states[config]
        complete_seeds = set(trials["seed"])
        failed_seeds = set(ran.loc[ran["state"] == "FAIL", "seed"]) - complete_seeds
        family_key = _key(tuple(v for k, v in zip(keys, row) if k in family))
        failed.append(_seed_list(failed_seeds))
        missing.append(_seed_list(expected[family_key] - complete_seeds - failed_seeds))
        flagged = trials[trials["degenerate"] != ""].sort_values("seed")
        collapsed.append(len(flagged))
        if len(complete_seeds) == 1:
            degenerate.append("; ".join(flagged["degenerate"]))
        else:
            degenerate.append("; ".join(f"seed {int(r.seed)}: {r.degenerate}" for r in flagged.itertuples()))
    out["failed_seeds"], out["missing_seeds"] = failed, missing
    out["complete"] = (out["failed_seeds"] == "") & (out["missing_seeds"] == "")
    out["collapsed"], out["degenerate"] = collapsed, degenerate
    out["configurations"] = out.groupby(["model", "task"], sort=False)["score"].transform("size")
    out["_order"] = range(len(out))
    return (
        out.sort_values(
            ["model", "task", "complete", "score", "_order"], ascending=[True, True, False, False, True], kind="stable"
        )
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def _key(values: tuple) -> tuple:
    """A group key with NaN made equal to itself (recipe columns an older trial does not have)."""
    return tuple("<nan>" if v is None or isinstance(v, float) and math.isnan(v) else v for v in values)


def passed_over(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, task), the incomplete configurations that score above the selected complete one."""
    configs = configurations(table)
    rows = []
    for _, group in configs.groupby(["model", "task"], sort=False):
        winner = group.iloc[0]
        if winner["complete"]:
            rows.append(group[(~group["complete"]) & (group["score"] > winner["score"])])
    return pd.concat(rows) if rows else configs.iloc[:0]


def best(table: pd.DataFrame) -> pd.DataFrame:
    """The winning configuration per (model, task)."""
    return configurations(table).groupby(["model", "task"], sort=False).head(1).reset_index(drop=True)


def winning_trial(table: pd.DataFrame, winner: pd.Series) -> pd.Series:
    """The runs-table row of a winning configuration's best seed."""
    return table[
        (table["model"] == winner["model"])
        & (table["task"] == winner["task"])
        & (table["sweep"] == winner["sweep"])
        & (table["trial"] == winner["best_trial"])
    ].iloc[0]


def prediction_ids(row: pd.Series, column: str = "predictions") -> dict[str, str]:
    """A trial's {"task/split": artifact id}: a JSON string in the runs table (and in an exported file).
    column="dev_predictions": its dev predictions (with labels); {} for a trial recorded before they were kept."""
    value = row.get(column)
    if isinstance(value, dict):
        return value
    return json.loads(value) if isinstance(value, str) and value else {}


def selected_trials(table: pd.DataFrame, winner: pd.Series, counted: pd.DataFrame | None = None) -> pd.DataFrame:
    """The completed trials (one per seed, runs.latest) of a configuration that `configurations` or `best`
    returned: the seeds its mean rests on, ordered by seed. `counted`: latest(table), when already at hand."""
    counted = latest(table) if counted is None else counted
    keys = ["model", "task"] + [c for c in CONFIG if c in counted.columns]
    done = counted[counted["state"] == "COMPLETE"]
    target = _key(tuple(winner[k] for k in keys))
    mine = [i for i, row in zip(done.index, done[keys].itertuples(index=False)) if _key(tuple(row)) == target]
    return done.loc[mine].sort_values("seed", kind="stable")
