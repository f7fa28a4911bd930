"""Selection: the best configuration per (model, task) on dev, from the runs table.

A configuration is a trial's (sweep, batch size, learning rate, rest of the recipe); its seeds are averaged.
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
from glue_bench.sweeping.runs import RECIPE_COLUMNS, read_runs, runs_table

CONFIG = ("sweep", "batch_size", "lr") + RECIPE_COLUMNS


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


def _degenerate(row: dict) -> str:
    """'validation: all 1' where a trial's dev metrics equal a constant predictor's; '' otherwise."""
    dev: dict[str, dict[str, float]] = {}
    for key, value in row.items():
        if key.startswith("dev/") and isinstance(value, (int, float)) and not math.isnan(value):
            _, split, metric = key.split("/", 2)
            dev.setdefault(split, {})[metric] = float(value)
    try:
        task = get_task(row["task"])
    except UserError:  # a user's task file not on this machine: nothing to compare with
        return ""
    return "; ".join(baselines.degenerate_splits(task, dev))


def configurations(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, configuration) of completed trials: seeds, mean and std of every value,
    the degenerate seeds' findings, the best seed's trial; ordered best first within (model, task)."""
    done = table[table["state"] == "COMPLETE"].copy()
    keys = ["model", "task"] + [c for c in CONFIG if c in done.columns]
    if done.empty:
        return pd.DataFrame(columns=keys + ["seeds", "score", "std:score", "degenerate", "best_trial"])
    done["degenerate"] = [_degenerate(row) for row in done.to_dict("records")]
    values = ["score"] + sorted(c for c in done.columns if c.startswith(("dev/", "extra/")))
    done[values] = done[values].apply(pd.to_numeric, errors="coerce")
    grouped = done.groupby(keys, dropna=False, sort=False)
    out = grouped[values].mean()
    out = out.join(grouped[values].std(ddof=1).add_prefix("std:"))
    out["seeds"] = grouped.size()
    out["degenerate"] = grouped["degenerate"].agg(lambda s: "; ".join(sorted({x for x in s if x})))
    out["best_trial"] = grouped["score"].idxmax().map(lambda i: done.loc[i, "trial"])
    out = out.reset_index()
    out["_order"] = range(len(out))
    return (
        out.sort_values(["model", "task", "score", "_order"], ascending=[True, True, False, True], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


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


def prediction_ids(row: pd.Series) -> dict[str, str]:
    """A trial's {"task/split": artifact id}: a JSON string in the runs table (and in an exported file)."""
    value = row.get("predictions")
    if isinstance(value, dict):
        return value
    return json.loads(value) if isinstance(value, str) and value else {}
