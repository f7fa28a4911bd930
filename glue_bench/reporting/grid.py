"""The grid view: one model's dev task score at every (batch size, learning rate) of one task."""

from __future__ import annotations

import pandas as pd

from glue_bench.errors import UserError
from glue_bench.inputs.model_names import by_size, normalise_model
from glue_bench.inputs.tasks import Task, get_task
from glue_bench.reporting import recipes
from glue_bench.reporting.cells import DEGENERATE, INCOMPLETE, MISSING, collapse_mark, points, seed_gaps
from glue_bench.reporting.render import Report
from glue_bench.reporting.selection import CONFIG, configurations
from glue_bench.training.recipe import lr_text


def grid(table: pd.DataFrame, spec: str) -> Report:
    """--grid MODEL:TASK: the dev task score of every (batch size, learning rate), to see how sensitive it is."""
    model, sep, task_name = spec.rpartition(":")
    head, slash, tail = spec.rpartition("/")
    if slash and head and (not sep or "/" in task_name) and _is_task(tail):  # MODEL/TASK: a slash for the colon
        raise UserError(f"--grid {spec}: write MODEL:TASK, a colon before the task: --grid {head}:{tail}")
    if not sep or not model:
        raise UserError(f"--grid {spec}: write MODEL:TASK, e.g. --grid bert-tiny:rte or --grid random:L-2_H-128:rte")
    task = get_task(task_name)
    model = normalise_model(model)
    trials = table[(table["model"] == model) & (table["task"] == task.name)]
    if trials.empty:
        tasks = sorted(set(table.loc[table["model"] == model, "task"]))
        have = (
            f"{model} has trials of {', '.join(tasks)}"
            if tasks
            else f"models recorded: {', '.join(by_size(table['model']))}"
        )
        raise UserError(f"--grid {spec}: no trials of {model} on {task.name}; {have}")
    return trial_grid(trials, model, task)


def _is_task(name: str) -> bool:
    try:
        get_task(name)
    except UserError:
        return False
    return True


def trial_grid(trials: pd.DataFrame, model: str, task: Task) -> Report:
    """The grid of `trials`, those of one recorded model on one task (the leaderboard page draws every one)."""
    configs = configurations(trials)
    winner = configs.iloc[0] if len(configs) else None
    varying = [
        c
        for c in CONFIG
        if c in trials.columns and c not in ("batch_size", "lr") and trials[c].nunique(dropna=False) > 1
    ]
    lrs = sorted(trials["lr"].unique(), reverse=True)
    cells: dict[tuple, str] = {}
    gaps = []
    for _, config in configs.iterrows():
        text = points(config["score"])
        if config["seeds"] > 1 and pd.notna(config["std:score"]):
            text += f"±{100 * config['std:score']:.1f}"
        text += collapse_mark(config)
        if not config["complete"]:
            text += f" {INCOMPLETE}"
            gaps.append(f"bs {config['batch_size']:g} lr {lr_text(config['lr'])}: {seed_gaps(config)}")
        if winner is not None and config.equals(winner):
            text += " (best)"
        cells[tuple(config[c] for c in varying + ["batch_size", "lr"])] = text
    rows = []
    for key, group in trials.groupby(varying + ["batch_size"], dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = {c: str(v) for c, v in zip(varying, key)}
        row["batch size"] = str(key[-1])
        for lr in lrs:
            tried = group[group["lr"] == lr]
            row[f"lr {lr_text(lr)}"] = cells.get(key + (lr,), "failed" if len(tried) else MISSING)
        rows.append(row)
    seeds = sorted(set(configs["seeds"])) if len(configs) else []
    score = "+".join(task.score) + (" (mean over the dev splits)" if len(task.splits_with_role("dev")) > 1 else "")
    shown = {cell for row in rows for cell in row.values()}
    notes = [
        note
        for cell, note in (
            (MISSING, f"{MISSING} not run."),
            ("failed", "failed: every trial of that configuration failed (glue-bench export shows why)."),
        )
        if cell in shown
    ]
    notes.append("(best): the selected configuration, by the mean over its seeds.")
    if any(n > 1 for n in seeds):
        notes.append("±: the sample standard deviation over the seeds.")
    if len(configs) and configs["collapsed"].any():
        notes.append(
            f"{DEGENERATE} predicts one class everywhere on a dev split"
            + (
                f" ({DEGENERATE}k/n: k of the n seeds)"
                if (configs.loc[configs["collapsed"] > 0, "seeds"] > 1).any()
                else ""
            )
            + ": "
            + "; ".join(
                f"bs {c['batch_size']:g} lr {lr_text(c['lr'])} ({c['degenerate']})"
                for _, c in configs[configs["collapsed"] > 0].iterrows()
            )
            + "."
        )
    if gaps:
        notes.append(
            f"{INCOMPLETE} incomplete, its mean rests on fewer seeds; it is selected only if no configuration "
            f"is complete: {'; '.join(gaps)}."
        )
    intro = f"Dev task score ({score}) in points, by batch size × learning rate; seeds per configuration: {', '.join(map(str, seeds))}."
    same = [f for f in recipes.recipe_fields(trials) if f not in varying]  # the grid's columns show the rest
    return Report(
        f"{model} on {task.name}: the grid",
        pd.DataFrame(rows),
        intro,
        notes,
        text_columns=len(varying) + 1,
        recipe=recipes.describe({f: recipes.text(trials[f].iloc[0]) for f in same}),
        recipe_of="every trial",
    )
