"""How each row of a report was trained, so that a report never sets unlike runs side by side unnamed.

A recipe here is the text of every recipe field (runs.RECIPE_COLUMNS: epochs, max_train_samples, …) of a
selected configuration, plus how it was selected: `configurations`, how many configurations of its
(model, task) the selection chose the best of (compare adds the grid point and the seeds). Values are
compared as text, so that a storage's 1.0 and a CSV's 1 are one value. A report states the fields every
row shares once, and per row only the fields in which rows differ (`split`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from glue_bench.sweeping.runs import RECIPE_COLUMNS
from glue_bench.training.recipe import lr_text

SELECTION = ("configurations", "seeds", "runs")  # how a result was selected and averaged: not Recipe fields, as unlike
SUBSET = "max_train_samples"  # 0: every train row; N: the first N (a subset)


def recipe_fields(frame: pd.DataFrame | pd.Series) -> list[str]:
    """The recipe columns this runs table (or one of its rows) has; an older export may lack some."""
    have = frame.columns if isinstance(frame, pd.DataFrame) else frame.index
    return [c for c in RECIPE_COLUMNS if c in have]


def text(value) -> str:
    """A recipe value as reports print it: 1 for 1.0, true/false as in a sweep file, `none` for ""."""
    if value is None or value == "" or isinstance(value, float) and math.isnan(value):
        return "none"
    if isinstance(value, (bool, np.bool_)) or value in ("True", "False"):  # a CSV may hold the words
        return str(value).lower()
    if isinstance(value, (int, float, np.number)):
        number = float(value)
        return str(int(number)) if number.is_integer() else f"{number:g}"
    return str(value)


def lr(value) -> str:
    return lr_text(float(value))


def configuration(winner: pd.Series, fields: list[str]) -> dict[str, str]:
    """The recipe of one selected configuration (a row of selection.best)."""
    out = {name: text(winner.get(name)) for name in fields}
    out["configurations"] = text(winner["configurations"])
    return out


def merged(per_task: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """One recipe for a row of several tasks: a field the tasks agree on as it is, else each value with its
    tasks, "1 (cola, mrpc); 3 (rte)"."""
    names = list(dict.fromkeys(name for recipe in per_task.values() for name in recipe))
    out = {}
    for name in names:
        values: dict[str, list[str]] = {}
        for task, recipe in per_task.items():
            values.setdefault(recipe.get(name, "none"), []).append(task)
        out[name] = (
            next(iter(values))
            if len(values) == 1
            else "; ".join(f"{value} ({', '.join(tasks)})" for value, tasks in values.items())
        )
    return out


def split(recipes: Mapping) -> tuple[dict[str, str], dict]:
    """(the fields every recipe agrees on, per key the fields in which the recipes differ)."""
    if not recipes:
        return {}, {}
    first = next(iter(recipes.values()))
    names = list(dict.fromkeys(name for recipe in recipes.values() for name in recipe))
    shared = {n: first[n] for n in names if all(r.get(n, "none") == first.get(n, "none") for r in recipes.values())}
    own = {key: {n: v for n, v in recipe.items() if n not in shared} for key, recipe in recipes.items()}
    return shared, own


def field(name: str, value: str) -> str:
    """One field as a reader reads it: "epochs=3", "max_train_samples=500 (the first 500 train rows)"."""
    if name == "configurations" and value.isdigit():
        return "1 configuration (no selection)" if value == "1" else f"best of {value} configurations"
    if name == "seeds":  # which seeds (compare); a published reference says how many runs
        return f"seeds {value}"
    if name == "runs" and value.isdigit():
        return f"mean of {value} runs" if value != "1" else "1 run"
    if name == SUBSET and value == "0":
        return f"{name}=0 (every train row)"
    if name == SUBSET and value.isdigit():
        return f"{name}={value} (the first {value} train rows)"
    if name in SELECTION:
        return f"{name}: {value}"
    return f"{name}={value}"


def describe(recipe: Mapping[str, str]) -> str:
    return ", ".join(field(name, value) for name, value in recipe.items())


def subset(recipe: Mapping[str, str]) -> str:
    """'500 train rows' when trained on the first 500 train rows, 'train subsets' when tasks differ and some
    used one, '' when every task trained on every train row (or the table does not say)."""
    value = recipe.get(SUBSET, "none")
    if value in ("0", "none"):
        return ""
    return f"{value} train rows" if value.isdigit() else "train subsets"


def differences(a: Mapping[str, str], b: Mapping[str, str]) -> list[str]:
    """Each field in which two recipes differ, "epochs 1 → 3"."""
    return [f"{name} {a.get(name, 'none')} → {b.get(name, 'none')}" for name in a if a[name] != b.get(name, "none")]
