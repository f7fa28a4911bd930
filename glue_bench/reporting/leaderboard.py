"""The leaderboard: the selected configuration per (model, task) in the paper's columns, the paper beside it.

Values are fractions in the runs table and points (× 100) here, one decimal as the paper prints them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from glue_bench.errors import UserError
from glue_bench.inputs import shipped
from glue_bench.inputs.models import DISTILLED, by_size, model_label, model_shape
from glue_bench.inputs.tasks import get_task, registry
from glue_bench.reporting.cells import (
    DEGENERATE,
    INCOMPLETE,
    MISSING,
    collapse_mark,
    points,
    seed_gaps,
    signed,
)
from glue_bench.reporting.render import Report
from glue_bench.reporting.selection import best, passed_over
from glue_bench.training import metrics
from glue_bench.training.recipe import lr_text

PAPER_FILE = "paper-miniatures.csv"
PAPER_SOURCE = "Turc et al. (2019), BERT miniatures model card"
OURS = "ours (dev)"  # the Source of a model's own row beside the paper's (the page sorts by these rows)


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
    return [
        Column(
            Path(test.submission).stem, name, tasks[name].predicted_by or name, dev.name, test.name, tasks[name].score
        )
        for name in names
        for dev, test in zip(tasks[name].splits_with_role("dev"), tasks[name].splits_with_role("test"))
    ]


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
            value = (
                float(mine.iloc[0][keys].astype(float).mean())
                if len(mine) and mine.iloc[0][keys].notna().all()
                else math.nan
            )
            run, complete = int(not math.isnan(value)), True
        rows.append({"model": ref, "value": 100 * value, "tasks": run, "complete": complete})
    return pd.DataFrame(rows, columns=["model", "value", "tasks", "complete"]).dropna(subset=["value"])


def paper() -> pd.DataFrame:
    """The paper's table (points), one row per named miniature, with its task scores (points)."""
    frame = pd.read_csv(shipped.reference_dir() / PAPER_FILE, comment="#")
    for name in metrics.GLUE_TASKS:
        task = get_task(name)
        frame[name] = np.mean(
            [frame[f"{name}/{s.name}/{m}"] for s in task.splits_with_role("test") for m in task.score], axis=0
        )
    return frame


def paper_row(ref: str) -> pd.Series | None:
    """The paper's row of a miniature fine-tuned on labels (a distilled student has none: it learned otherwise)."""
    shape = None if DISTILLED in str(ref) else model_shape(ref)
    table = paper()
    match = table[(table["layers"] == shape[0]) & (table["hidden"] == shape[1])] if shape else table.iloc[:0]
    return match.iloc[0] if len(match) else None


def _ours_cell(winner: pd.Series | None, column: Column) -> str:
    if winner is None or any(pd.isna(winner.get(k)) for k in column.runs_keys):
        return MISSING
    parts = []
    for key in column.runs_keys:
        std = winner.get(f"std:{key}")
        parts.append(points(winner[key]) + (f"±{100 * std:.1f}" if winner["seeds"] > 1 and pd.notna(std) else ""))
    text = "/".join(parts)
    if column.task == column.source:  # AX cells show the MNLI model: its flags belong to the MNLI cells
        text += collapse_mark(winner) + ("" if winner["complete"] else f" {INCOMPLETE}")
    return text


def leaderboard(table: pd.DataFrame, compare_paper: bool = False, intervals: dict | None = None) -> Report:
    """intervals: bootstrap.selected_replicates of this table (report --ci): each cell gets its 95% interval."""
    winners = best(table)
    if winners.empty:
        raise UserError(
            "no completed trials to report: every trial failed or is still running "
            "(see glue-bench export for their fail_reason)"
        )
    scores = task_scores(winners)
    cols = columns()
    rows, flagged, unfinished, seeds, partial, taught = [], [], [], set(), False, []
    placed: dict[tuple[int, str], tuple[str, str]] = {}
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
            if not winner["complete"]:
                unfinished.append(f"{ref} {task} ({seed_gaps(winner)})")
        if DISTILLED in ref:
            taught.append(_distilled_note(ref, mine))
        if intervals is not None:
            placed.update({(len(rows), k): v for k, v in _intervals(ref, scores.loc[ref], cols, intervals).items()})
        if not compare_paper:
            rows.append(ours)
            continue
        rows.append({"Model": ours.pop("Model"), "Source": OURS, **ours})
        rows += _paper_rows(ref, mine, scores.loc[ref], cols)
    frame = pd.DataFrame(rows).fillna(MISSING)
    intro = (
        "Best configuration per task on the dev sets (batch size × learning rate, by the mean task score "
        "over seeds), in points. MRPC and QQP: F1/accuracy; STS-B: Pearson/Spearman; CoLA and AX: Matthews "
        "correlation; the rest: accuracy. AX: the MNLI model on the labelled diagnostic set. Score: the GLUE "
        "score, the mean of the 9 task scores (AX excluded)."
    )
    if compare_paper:
        intro += (
            f" Paper: {PAPER_SOURCE}, on the GLUE test sets, so even an exact reproduction differs a little;"
            " Δ = ours − paper."
        )
    notes = [f"{MISSING} not run."]
    if partial:
        notes.append(
            "(k/9): a partial score, the mean of the k GLUE tasks run"
            + ("; its Δ compares with the paper's mean over the same tasks." if compare_paper else ".")
        )
    if seeds - {1}:
        notes.append(
            f"±: the sample standard deviation over the selected configuration's seeds "
            f"({' or '.join(map(str, sorted(seeds - {1})))}); no ±: one seed."
        )
    if flagged:
        some = f" ({DEGENERATE}k/n: k of its n seeds did)" if any("seed " in f for f in flagged) else ""
        notes.append(
            f"{DEGENERATE} a collapsed fine-tune: it scores exactly what predicting one class everywhere "
            f"scores on that dev split, not a real result{some}: {'; '.join(flagged)}."
        )
    if unfinished:
        notes.append(
            f"{INCOMPLETE} incomplete: no configuration of that task has every seed finished, so the mean rests "
            f"on fewer seeds: {'; '.join(unfinished)}."
        )
    skipped = passed_over(table)
    if len(skipped):
        shown = "; ".join(
            f"{r['model']} {r['task']} bs {r['batch_size']:g} lr {lr_text(r['lr'])} ({points(r['score'])}, "
            f"{seed_gaps(r)})"
            for _, r in skipped.iterrows()
        )
        notes.append(f"Not selected though higher, because a seed failed or is missing: {shown}.")
    notes += taught
    if intervals is not None:
        notes += _interval_notes(intervals)
    return Report("GLUE leaderboard", frame, intro, notes, text_columns=2 if compare_paper else 1, intervals=placed)


def _distilled_note(ref: str, mine: dict) -> str:
    """A distilled student's teacher and recipe, and per task how closely it follows the teacher."""
    first = next(iter(mine.values()))
    how = f"alpha {first['alpha']:g}, temperature {first['temperature']:g}"
    if isinstance(first.get("transfer"), str) and first["transfer"]:
        how += f", transfer rows {first['transfer']}"
    tasks = []
    for task, winner in mine.items():
        agree = [winner[c] for c in winner.index if c.startswith("teacher/agreement/") and pd.notna(winner[c])]
        own = [
            winner[f"teacher/dev/{s.name}/{m}"]
            for s in get_task(task).splits_with_role("dev")
            for m in get_task(task).score
            if pd.notna(winner.get(f"teacher/dev/{s.name}/{m}"))
        ]
        if agree:
            tasks.append(
                f"{task}: "
                + (
                    f"its outputs' Pearson r with its teacher's {points(float(np.mean(agree)))}"
                    if get_task(task).regression
                    else f"agrees with its teacher on {points(float(np.mean(agree)))}% of dev rows"
                )
                + (f", the teacher's own dev score {points(float(np.mean(own)))}" if own else "")
            )
    return f"{ref}: distilled from {first['teacher']} ({how})" + (f"; {'; '.join(tasks)}." if tasks else ".")


def _intervals(ref: str, scores: pd.Series, cols: list[Column], intervals: dict) -> dict[str, tuple[str, str]]:
    """A model's row: column label → its interval in points (each dev split's score; Score: the GLUE score)."""
    from glue_bench.reporting.bootstrap import glue_replicates, interval

    out = {}
    for c in cols:
        found = intervals.get((ref, c.source))
        if c.task == c.source and not isinstance(found, (str, type(None))):
            out[c.label] = tuple(points(v) for v in interval(found.splits[c.split]))
    run = [t for t in metrics.GLUE_TASKS if pd.notna(scores.get(t))]
    found = {t: intervals.get((ref, t)) for t in run}
    if run and not any(isinstance(v, (str, type(None))) for v in found.values()):
        out["Score"] = tuple(points(v) for v in interval(glue_replicates(found)))
    return out


def _interval_notes(intervals: dict) -> list[str]:
    resamples = next((len(v.task) for v in intervals.values() if not isinstance(v, str)), 0)
    notes = [
        f"[lo, hi]: a 95% percentile bootstrap interval at the selected configuration ({resamples} resamples "
        "of its seeds, then of the dev rows, the metric recomputed each time; numpy seed 0): of the column's "
        "split score (the mean of the metrics shown: MRPC (F1+acc)/2); Score: of the GLUE score, the same "
        "replicate of every task averaged."
    ]
    reasons: dict[str, list[str]] = {}
    for (model, task), why in sorted(intervals.items(), key=lambda item: item[0]):
        if isinstance(why, str):
            reasons.setdefault(why, []).append(f"{model} {task}")
    if len(reasons) == 1 and not resamples:  # nothing has one, for one reason (a table of older trials)
        return notes + [f"No interval anywhere ({next(iter(reasons))})."]
    notes += [f"No interval ({why}): {', '.join(cells)}." for why, cells in reasons.items()]
    return notes


def _score_cell(score: float, complete: bool, run: int) -> str:
    if math.isnan(score):
        return MISSING
    return points(score) if complete else f"{points(score)} ({run}/{len(metrics.GLUE_TASKS)})"


def _paper_rows(ref: str, mine: dict, scores: pd.Series, cols: list[Column]) -> list[dict]:
    found = paper_row(ref)
    if found is None:
        return []
    theirs = {
        "Model": f"{found['model']} (L-{found['layers']}_H-{found['hidden']})",
        "Source": "paper (test)",
        "Score": f"{found['score']:.1f}",
    }
    delta = {"Model": "", "Source": "Δ"}
    for c in cols:
        theirs[c.label] = "/".join(f"{found[k]:.1f}" for k in c.paper_keys)
        winner = mine.get(c.source)
        if winner is not None and all(pd.notna(winner.get(k)) for k in c.runs_keys):
            delta[c.label] = "/".join(signed(100 * winner[r] - found[p]) for r, p in zip(c.runs_keys, c.paper_keys))
    run = [t for t in metrics.GLUE_TASKS if pd.notna(scores.get(t))]
    if run:
        ours = 100 * float(np.mean([scores[t] for t in run]))
        if len(run) == len(metrics.GLUE_TASKS):
            delta["Score"] = signed(ours - found["score"])
        else:
            delta["Score"] = (
                f"{signed(ours - float(np.mean([found[t] for t in run])))} ({len(run)}/{len(metrics.GLUE_TASKS)})"
            )
    return [theirs, delta]
