"""Published scores set beside ours (report --compare): the paper's test table and published dev scores.

`paper`: Turc et al. (2019), results/paper-miniatures.csv, GLUE test sets, one row per named miniature.
`dev-reference`: results/dev-reference.csv, published GLUE dev scores of the miniatures with each one's
recipe and model card; one reference row per (miniature, source). Both are data shipped with the package;
this module turns them into rows of the leaderboard's columns, each with its recipe (recipes.py fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from glue_bench.inputs import shipped
from glue_bench.inputs.model_names import DISTILLED, model_shape
from glue_bench.inputs.tasks import get_task
from glue_bench.reporting import recipes
from glue_bench.training import metrics

PAPER = "paper"
DEV = "dev-reference"
REFERENCES = (PAPER, DEV)  # report --compare
PAPER_FILE = "paper-miniatures.csv"
DEV_FILE = "dev-reference.csv"
PAPER_SOURCE = "Turc et al. (2019), BERT miniatures model card"
# The paper's recipe, as its model card states it: the best of batch size {8,16,32,64,128} × lr {3e-4,1e-4,5e-5,3e-5}
# on dev, 4 epochs, the whole train sets.
PAPER_RECIPE = {"epochs": "4", recipes.SUBSET: "0", "configurations": "20"}


@dataclass(frozen=True)
class ReferenceRow:
    """One published row: a miniature's scores from one source, in the leaderboard's columns (points)."""

    label: str  # "BERT-Tiny (L-2_H-128)"
    source: str  # the Source cell: "paper (test)", "M-FAC (Adam) (dev)"
    cells: dict[str, tuple[float, ...]]  # column label → its metrics' values (MRPC: F1, accuracy)
    spread: dict[str, tuple[float, ...]] = field(default_factory=dict)  # the published sd, where there is one
    score: float | None = None  # the published GLUE score
    task_scores: dict[str, float] = field(default_factory=dict)  # the task scores a partial Δ Score compares
    recipe: dict[str, str] = field(default_factory=dict)


def paper() -> pd.DataFrame:
    """The paper's table (points), one row per named miniature, with its task scores (points)."""
    frame = pd.read_csv(shipped.reference_dir() / PAPER_FILE, comment="#")
    for name in metrics.GLUE_TASKS:
        task = get_task(name)
        frame[name] = np.mean(
            [frame[f"{name}/{s.name}/{m}"] for s in task.splits_with_role("test") for m in task.score], axis=0
        )
    return frame


@cache
def dev_reference() -> pd.DataFrame:
    """results/dev-reference.csv: one row per (model, source, task, split, metric), points."""
    return pd.read_csv(shipped.reference_dir() / DEV_FILE, comment="#")


def rows(reference: str, ref: str, cols) -> list[ReferenceRow]:
    """The rows of `reference` for our model `ref` (a miniature's shape; random weights count as that shape,
    a distilled student has none: it learned otherwise)."""
    shape = None if DISTILLED in str(ref) else model_shape(ref)
    if shape is None:
        return []
    return _paper_rows(shape, cols) if reference == PAPER else _dev_rows(shape, cols)


def _paper_rows(shape: tuple[int, int], cols) -> list[ReferenceRow]:
    table = paper()
    match = table[(table["layers"] == shape[0]) & (table["hidden"] == shape[1])]
    if match.empty:
        return []
    found = match.iloc[0]
    return [
        ReferenceRow(
            label=f"{found['model']} (L-{found['layers']}_H-{found['hidden']})",
            source="paper (test)",
            cells={c.label: tuple(float(found[k]) for k in c.paper_keys) for c in cols},
            score=float(found["score"]),
            task_scores={t: float(found[t]) for t in metrics.GLUE_TASKS},
            recipe=dict(PAPER_RECIPE),
        )
    ]


def _dev_rows(shape: tuple[int, int], cols) -> list[ReferenceRow]:
    table = dev_reference()
    mine = table[(table["layers"] == shape[0]) & (table["hidden"] == shape[1])]
    out = []
    for source, group in mine.groupby("source", sort=False):
        values = {f"{r.task}/{r.split}/{r.metric}": (r.mean, r.sd) for r in group.itertuples()}
        cells, spread = {}, {}
        for c in cols:
            keys = [f"{c.task}/{c.split}/{m}" for m in c.metrics]
            if c.task == c.source and all(k in values for k in keys):
                cells[c.label] = tuple(float(values[k][0]) for k in keys)
                if all(pd.notna(values[k][1]) for k in keys):
                    spread[c.label] = tuple(float(values[k][1]) for k in keys)
        first = group.iloc[0]
        out.append(
            ReferenceRow(
                label=f"{first['model']} (L-{shape[0]}_H-{shape[1]})",
                source=f"{source} (dev)",
                cells=cells,
                spread=spread,
                recipe=_dev_recipe(group),
            )
        )
    return out


def _dev_recipe(group: pd.DataFrame) -> dict[str, str]:
    """What a source's card states of its recipe, per task (merged where tasks differ); the rest unknown."""
    per_task = {}
    for task, rows_of_task in group.groupby("task", sort=False):
        first = rows_of_task.iloc[0]
        recipe = {name: recipes.text(first[name]) for name in ("epochs", "max_seq_length") if pd.notna(first[name])}
        if pd.notna(first["batch_size"]):  # one fixed configuration, every train row (run_glue.py's defaults)
            recipe.update({recipes.SUBSET: "0", "configurations": "1"})
            recipe.update({"batch_size": recipes.text(first["batch_size"]), "lr": recipes.lr(first["lr"])})
        if pd.notna(first["seeds"]):
            recipe["runs"] = recipes.text(first["seeds"])
        per_task[task] = recipe
    return recipes.merged(per_task)


def intro(reference: str) -> str:
    if reference == PAPER:
        return (
            f" Paper: {PAPER_SOURCE}, on the GLUE test sets, so even an exact reproduction differs a little;"
            " Δ = ours − paper."
        )
    return (
        f" Dev references: published GLUE dev scores of the miniatures (results/{DEV_FILE}), each from its source's "
        "own recipe (below), ± its published standard deviation over seeds; Δ = ours − reference."
    )


def notes(reference: str) -> list[str]:
    """Each source's recipe and where its numbers come from."""
    if reference == PAPER:
        return [
            "paper (test): the best of batch size {8, 16, 32, 64, 128} × learning rate {3e-4, 1e-4, 5e-5, 3e-5} "
            "on dev, 4 epochs, every train row (google-research/bert run_classifier.py); scores on the GLUE test sets."
        ]
    table = dev_reference()
    out = []
    for source, group in table.groupby("source", sort=False):
        cards = _cards(group["card"].str.removeprefix("https://"))
        method = "; ".join(dict.fromkeys(group["method"]))
        out.append(f"{source} (dev): {method}; {recipes.describe(_dev_recipe(group))}; from the model cards {cards}.")
    return out


def _cards(urls) -> str:
    """Model card addresses, those that differ only in their last word (the task) as one: a/b-{mrpc,stsb}."""
    groups: dict[str, list[str]] = {}
    for url in dict.fromkeys(urls):
        stem, _, last = url.rpartition("-")
        groups.setdefault(stem, []).append(last)
    return ", ".join(
        f"{stem}-{{{','.join(ends)}}}" if len(ends) > 1 else f"{stem}-{ends[0]}" for stem, ends in groups.items()
    )
