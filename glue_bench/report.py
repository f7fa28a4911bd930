"""Leaderboard tables from the runs table: the best configuration per (model, task) on dev, the paper beside it.

A configuration is a trial's (sweep, batch size, learning rate, rest of the recipe); its seeds are averaged.
Per (model, task) the configuration with the best mean task score wins (the trial's `score`,
metrics.task_score: MNLI selects on (matched + mismatched) / 2). Values are fractions in the runs table and
points (× 100) in the reports, one decimal as the paper prints them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import baselines, metrics, models
from .errors import UserError
from .render import Report
from .runs import RECIPE_COLUMNS, read_runs, runs_table
from .tasks import get_task, registry

CONFIG = ("sweep", "batch_size", "lr") + RECIPE_COLUMNS
MISSING = "—"
DEGENERATE = "†"
PAPER_FILE = "paper-miniatures.csv"
PAPER_SOURCE = "Turc et al. (2019), BERT miniatures model card"


@dataclass(frozen=True)
class Column:
    """One column of the leaderboard: a task's dev split, shown as its score metrics (MRPC: F1/accuracy)."""

    label: str  # the GLUE server's name: CoLA, MNLI-m, AX
    task: str  # whose metrics these are (ax)
    source: str  # whose trials record them (ax ← mnli)
    split: str  # our dev split (validation_matched; ax: diagnostic)
    test_split: str  # the paper's split (test_matched)
    metrics: tuple[str, ...]

    @property
    def runs_keys(self) -> list[str]:
        prefix = "dev" if self.task == self.source else f"extra/{self.task}"
        return [f"{prefix}/{self.split}/{m}" for m in self.metrics]

    @property
    def paper_keys(self) -> list[str]:
        return [f"{self.task}/{self.test_split}/{m}" for m in self.metrics]


def columns() -> list[Column]:
    """The 9 GLUE tasks' columns in the paper's order, then the tasks their models predict (AX)."""
    tasks = registry()
    names = list(metrics.GLUE_TASKS) + [t.name for t in tasks.values() if t.predicted_by in metrics.GLUE_TASKS]
    return [Column(Path(test.submission).stem, name, tasks[name].predicted_by or name, dev.name, test.name,
                   tasks[name].score)
            for name in names
            for dev, test in zip(tasks[name].splits_with_role("dev"), tasks[name].splits_with_role("test"))]


# --- the runs table → the best configuration per (model, task) -------------------------------------

def load_runs(storage: str | None = None, runs: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """The runs table from an exported file (--runs) or a storage (--storage), optionally one sweep's."""
    table = read_runs(runs) if runs else runs_table(storage, sweep)
    if sweep:
        table = table[table["sweep"] == sweep]
    if table.empty:
        where = f"--runs {runs}" if runs else "the storage"
        raise UserError(f"{where} holds no trials{f' of sweep {sweep}' if sweep else ''}; run some first "
                        "(glue-bench run or glue-bench sweep), or pass the right --storage/--runs/--sweep")
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
    return (out.sort_values(["model", "task", "score", "_order"], ascending=[True, True, False, True], kind="stable")
            .drop(columns="_order").reset_index(drop=True))


def best(table: pd.DataFrame) -> pd.DataFrame:
    """The winning configuration per (model, task)."""
    return configurations(table).groupby(["model", "task"], sort=False).head(1).reset_index(drop=True)


def winning_trial(table: pd.DataFrame, winner: pd.Series) -> pd.Series:
    """The runs-table row of a winning configuration's best seed."""
    return table[(table["model"] == winner["model"]) & (table["task"] == winner["task"])
                 & (table["sweep"] == winner["sweep"]) & (table["trial"] == winner["best_trial"])].iloc[0]


def prediction_ids(row: pd.Series) -> dict[str, str]:
    """A trial's {"task/split": artifact id}: a JSON string in the runs table (and in an exported file)."""
    value = row.get("predictions")
    if isinstance(value, dict):
        return value
    return json.loads(value) if isinstance(value, str) and value else {}


def model_shape(ref: str) -> tuple[int, int] | None:
    match = models.SHAPE.match(str(ref).removeprefix("random:"))
    return (int(match[1]), int(match[2])) if match else None


def by_size(refs) -> list[str]:
    """Model references, smallest first (by parameter count; references of no known shape last)."""
    def key(ref):
        shape = model_shape(ref)
        return (models.parameter_count(*shape) if shape and shape in models.all_miniatures() else math.inf, str(ref))
    return sorted(set(refs), key=key)


def normalise_model(ref: str) -> str:
    """A model as trials record it (bert-tiny → L-2_H-128); a folder that is gone stays as typed."""
    try:
        return models.resolve(ref).ref
    except UserError:
        return ref


def model_label(ref: str) -> str:
    names = {v: k for k, v in models.NAMED.items()}
    return f"{ref} ({names[ref]})" if ref in names else str(ref)


# --- scores per model ----------------------------------------------------------------------------

def task_scores(winners: pd.DataFrame) -> pd.DataFrame:
    """Model × GLUE task: the winning configuration's mean task score (fraction); NaN where not run."""
    frame = winners.pivot_table(index="model", columns="task", values="score", aggfunc="first")
    return frame.reindex(index=by_size(winners["model"]), columns=list(metrics.GLUE_TASKS))


def model_scores(table: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """Per model (by size): the GLUE score, or one task's score (AX: its MNLI model's), in points, with
    the number of GLUE tasks it rests on and whether that is all of them."""
    winners = best(table)
    scores = task_scores(winners)
    rows = []
    for ref in scores.index:
        if task is None:
            value, complete = metrics.glue_score(scores.loc[ref].dropna().to_dict())
            run = int(scores.loc[ref].notna().sum())
        else:
            column = [c for c in columns() if c.task == get_task(task).name]
            if not column:
                raise UserError(f"--plot-task {task}: not a GLUE task; pick one of {', '.join(metrics.GLUE_TASKS)}, ax")
            mine = winners[(winners["model"] == ref) & (winners["task"] == column[0].source)]
            keys = [k for c in column for k in c.runs_keys]
            value = float(mine.iloc[0][keys].astype(float).mean()) if len(mine) and mine.iloc[0][keys].notna().all() else math.nan
            run, complete = int(not math.isnan(value)), True
        rows.append({"model": ref, "value": 100 * value, "tasks": run, "complete": complete})
    return pd.DataFrame(rows, columns=["model", "value", "tasks", "complete"]).dropna(subset=["value"])


def paper() -> pd.DataFrame:
    """The paper's table (points), one row per named miniature, with its task scores (points)."""
    frame = pd.read_csv(baselines.reference_dir() / PAPER_FILE, comment="#")
    for name in metrics.GLUE_TASKS:
        task = get_task(name)
        frame[name] = np.mean([frame[f"{name}/{s.name}/{m}"] for s in task.splits_with_role("test")
                               for m in task.score], axis=0)
    return frame


def paper_row(ref: str) -> pd.Series | None:
    shape = model_shape(ref)
    table = paper()
    match = table[(table["layers"] == shape[0]) & (table["hidden"] == shape[1])] if shape else table.iloc[:0]
    return match.iloc[0] if len(match) else None


# --- the leaderboard -------------------------------------------------------------------------------

def _points(value: float) -> str:
    return f"{100 * value:.1f}"


def _signed(value: float) -> str:
    return f"{value:+.1f}" if abs(value) >= 0.05 else "+0.0"


def _ours_cell(winner: pd.Series | None, column: Column) -> str:
    if winner is None or any(pd.isna(winner.get(k)) for k in column.runs_keys):
        return MISSING
    parts = []
    for key in column.runs_keys:
        std = winner.get(f"std:{key}")
        parts.append(_points(winner[key]) + (f"±{100 * std:.1f}" if winner["seeds"] > 1 and pd.notna(std) else ""))
    flagged = column.task == column.source and winner["degenerate"]
    return "/".join(parts) + (f" {DEGENERATE}" if flagged else "")


def leaderboard(table: pd.DataFrame, compare_paper: bool = False) -> Report:
    winners = best(table)
    if winners.empty:
        raise UserError("no completed trials to report: every trial failed or is still running "
                        "(see glue-bench export for their fail_reason)")
    scores = task_scores(winners)
    cols = columns()
    rows, flagged, seeds, partial = [], [], set(), False
    for ref in scores.index:
        mine = {row["task"]: row for _, row in winners[winners["model"] == ref].iterrows()}
        score, complete = metrics.glue_score(scores.loc[ref].dropna().to_dict())
        run = int(scores.loc[ref].notna().sum())
        partial |= not complete
        ours = {"Model": model_label(ref), "Score": _score_cell(score, complete, run)}
        ours.update({c.label: _ours_cell(mine.get(c.source), c) for c in cols})
        for task, winner in mine.items():
            seeds.add(int(winner["seeds"]))
            if winner["degenerate"]:
                flagged.append(f"{ref} {task} ({winner['degenerate']})")
        if not compare_paper:
            rows.append(ours)
            continue
        rows.append({"Model": ours.pop("Model"), "Source": "ours (dev)", **ours})
        rows += _paper_rows(ref, mine, scores.loc[ref], cols)
    frame = pd.DataFrame(rows).fillna(MISSING)
    intro = ("Best configuration per task on the dev sets (batch size × learning rate, by the mean task score "
             "over seeds), in points. MRPC and QQP: F1/accuracy; STS-B: Pearson/Spearman; CoLA and AX: Matthews "
             "correlation; the rest: accuracy. AX: the MNLI model on the labelled diagnostic set. Score: the GLUE "
             "score, the mean of the 9 task scores (AX excluded).")
    if compare_paper:
        intro += (f" Paper: {PAPER_SOURCE}, on the GLUE test sets, so even an exact reproduction differs a little;"
                  " Δ = ours − paper.")
    notes = [f"{MISSING} not run."]
    if partial:
        notes.append("(k/9): a partial score, the mean of the k GLUE tasks run"
                     + ("; its Δ compares with the paper's mean over the same tasks." if compare_paper else "."))
    if seeds - {1}:
        notes.append(f"±: the sample standard deviation over the selected configuration's seeds "
                     f"({' or '.join(map(str, sorted(seeds - {1})))}); no ±: one seed.")
    if flagged:
        notes.append(f"{DEGENERATE} a collapsed fine-tune: it scores exactly what predicting one class everywhere "
                     f"scores on that dev split, not a real result: {'; '.join(flagged)}.")
    return Report("GLUE leaderboard", frame, intro, notes, text_columns=2 if compare_paper else 1)


def _score_cell(score: float, complete: bool, run: int) -> str:
    if math.isnan(score):
        return MISSING
    return _points(score) if complete else f"{_points(score)} ({run}/{len(metrics.GLUE_TASKS)})"


def _paper_rows(ref: str, mine: dict, scores: pd.Series, cols: list[Column]) -> list[dict]:
    found = paper_row(ref)
    if found is None:
        return []
    theirs = {"Model": f"{found['model']} (L-{found['layers']}_H-{found['hidden']})", "Source": "paper (test)",
              "Score": f"{found['score']:.1f}"}
    delta = {"Model": "", "Source": "Δ"}
    for c in cols:
        theirs[c.label] = "/".join(f"{found[k]:.1f}" for k in c.paper_keys)
        winner = mine.get(c.source)
        if winner is not None and all(pd.notna(winner.get(k)) for k in c.runs_keys):
            delta[c.label] = "/".join(_signed(100 * winner[r] - found[p]) for r, p in zip(c.runs_keys, c.paper_keys))
    run = [t for t in metrics.GLUE_TASKS if pd.notna(scores.get(t))]
    if run:
        ours = 100 * float(np.mean([scores[t] for t in run]))
        if len(run) == len(metrics.GLUE_TASKS):
            delta["Score"] = _signed(ours - found["score"])
        else:
            delta["Score"] = f"{_signed(ours - float(np.mean([found[t] for t in run])))} ({len(run)}/{len(metrics.GLUE_TASKS)})"
    return [theirs, delta]


# --- one model's grid for one task ------------------------------------------------------------------

def lr_text(value: float) -> str:
    return np.format_float_scientific(value, trim="-", exp_digits=1)


def grid(table: pd.DataFrame, spec: str) -> Report:
    """--grid MODEL:TASK: the dev task score of every (batch size, learning rate), to see how sensitive it is."""
    model, sep, task_name = spec.rpartition(":")
    if not sep or not model:
        raise UserError(f"--grid {spec}: write MODEL:TASK, e.g. --grid bert-tiny:rte or --grid random:L-2_H-128:rte")
    task = get_task(task_name)
    model = normalise_model(model)
    trials = table[(table["model"] == model) & (table["task"] == task.name)]
    if trials.empty:
        tasks = sorted(set(table.loc[table["model"] == model, "task"]))
        have = f"{model} has trials of {', '.join(tasks)}" if tasks else f"models recorded: {', '.join(by_size(table['model']))}"
        raise UserError(f"--grid {spec}: no trials of {model} on {task.name}; {have}")
    configs = configurations(trials)
    winner = configs.iloc[0] if len(configs) else None
    varying = [c for c in CONFIG if c in trials.columns and c not in ("batch_size", "lr")
               and trials[c].nunique(dropna=False) > 1]
    lrs = sorted(trials["lr"].unique(), reverse=True)
    cells: dict[tuple, str] = {}
    for _, config in configs.iterrows():
        text = _points(config["score"])
        if config["seeds"] > 1 and pd.notna(config["std:score"]):
            text += f"±{100 * config['std:score']:.1f}"
        if config["degenerate"]:
            text += f" {DEGENERATE}"
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
    notes = [note for cell, note in ((MISSING, f"{MISSING} not run."), ("failed", "failed: every trial of that "
             "configuration failed (glue-bench export shows why).")) if cell in shown]
    notes.append("(best): the selected configuration, by the mean over its seeds.")
    if any(n > 1 for n in seeds):
        notes.append("±: the sample standard deviation over the seeds.")
    if len(configs) and configs["degenerate"].any():
        notes.append(f"{DEGENERATE} predicts one class everywhere on a dev split (its metrics equal the constant predictor's).")
    intro = f"Dev task score ({score}) in points, by batch size × learning rate; seeds per configuration: {', '.join(map(str, seeds))}."
    return Report(f"{model} on {task.name}: the grid", pd.DataFrame(rows), intro, notes,
                  text_columns=len(varying) + 1)
