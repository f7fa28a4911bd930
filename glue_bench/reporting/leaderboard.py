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
from glue_bench.inputs.model_names import DISTILLED, by_size, model_label
from glue_bench.inputs.tasks import get_task, registry
from glue_bench.reporting import recipes, references
from glue_bench.reporting.bootstrap import glue_replicates, interval
from glue_bench.reporting.cells import (
    DEGENERATE,
    INCOMPLETE,
    MISSING,
    collapse_mark,
    points,
    seed_gaps,
    signed,
)
from glue_bench.reporting.render import RECIPE, Report
from glue_bench.reporting.selection import best, passed_over
from glue_bench.training import metrics
from glue_bench.training.recipe import lr_text

OURS = "ours (dev)"  # the Source of a model's own row beside a reference's (the page sorts by these rows)


def ours_source(recipe: dict[str, str]) -> str:
    """A model's own Source cell; a row trained on a subset of the train rows says so beside a reference."""
    subset = recipes.subset(recipe)
    return f"{OURS[:-1]}, {subset})" if subset else OURS


def is_ours(source: str) -> bool:
    return source.startswith(OURS[:-1])


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
    the number of GLUE tasks it rests on, whether that is all of them, and `subset`: whether a score it rests
    on was trained on a subset of the train rows (max_train_samples)."""
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
        subset = winners.loc[winners["model"] == ref, recipes.SUBSET] if recipes.SUBSET in winners else []
        subset = any(recipes.text(v) not in ("0", "none") for v in subset)
        rows.append({"model": ref, "value": 100 * value, "tasks": run, "complete": complete, "subset": subset})
    return pd.DataFrame(rows, columns=["model", "value", "tasks", "complete", "subset"]).dropna(subset=["value"])


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


def leaderboard(table: pd.DataFrame, compare: str | None = None, intervals: dict | None = None) -> Report:
    """compare: a reference of references.REFERENCES set beside each model (its rows and Δ). intervals:
    bootstrap.selected_replicates of this table (report --ci): each cell gets its 95% interval."""
    winners = best(table)
    if winners.empty:
        raise UserError(
            "no completed trials to report: every trial failed or is still running "
            "(see glue-bench export for their fail_reason)"
        )
    scores = task_scores(winners)
    cols = columns()
    fields = recipes.recipe_fields(winners)
    mine_of = {ref: {r["task"]: r for _, r in winners[winners["model"] == ref].iterrows()} for ref in scores.index}
    recipe_of = {
        ref: recipes.merged({t: recipes.configuration(w, fields) for t, w in mine.items()})
        for ref, mine in mine_of.items()
    }
    shared, own = recipes.split(recipe_of)
    theirs_of = {ref: references.rows(compare, ref, cols) if compare else [] for ref in scores.index}
    show_recipes = any(own.values()) or any(theirs_of.values())
    rows, flagged, unfinished, seeds, partial, taught, ours_rows = [], [], [], set(), False, [], []
    placed: dict[tuple[int, str], tuple[str, str]] = {}
    for ref in scores.index:
        mine, theirs = mine_of[ref], theirs_of[ref]
        score, complete = metrics.glue_score(scores.loc[ref].dropna().to_dict())
        run = int(scores.loc[ref].notna().sum())
        partial |= not complete
        ours = {"Model": model_label(ref)}
        if compare:
            ours["Source"] = ours_source(recipe_of[ref])
        if show_recipes:  # the fields in which rows differ: from each other, or from the reference beside them
            unlike = {k for row in theirs for k, v in row.recipe.items() if recipe_of[ref].get(k, v) != v}
            ours[RECIPE] = recipes.describe({k: v for k, v in recipe_of[ref].items() if k in own[ref] or k in unlike})
        ours["Score"] = _score_cell(score, complete, run)
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
        ours_rows.append(len(rows))
        rows.append(ours)
        for found in theirs:
            rows += _reference_rows(found, mine, scores.loc[ref], cols, show_recipes)
    frame = pd.DataFrame(rows).fillna(MISSING)
    intro = (
        "Best configuration per task on the dev sets (batch size × learning rate, by the mean task score "
        "over seeds), in points. MRPC and QQP: F1/accuracy; STS-B: Pearson/Spearman; CoLA and AX: Matthews "
        "correlation; the rest: accuracy. AX: the MNLI model on the labelled diagnostic set. Score: the GLUE "
        "score, the mean of the 9 task scores (AX excluded)."
    )
    if compare:
        intro += references.intro(compare)
    notes = [f"{MISSING} not run."]
    if show_recipes:
        notes.append(
            "Recipe: the fields in which a row's recipe differs from another row's"
            + (" or from the reference's beside it" if compare else "")
            + " (the rest are stated above the table); configurations: how many (batch size, lr, recipe) "
            "configurations the best was chosen from."
        )
    if any(recipes.subset(r) for r in recipe_of.values()) and compare:
        notes.append("ours (dev, N train rows): trained on the first N train rows only, not the whole train set.")
    if partial:
        notes.append(
            "(k/9): a partial score, the mean of the k GLUE tasks run"
            + ("; its Δ compares with the paper's mean over the same tasks." if compare == references.PAPER else ".")
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
    if compare:
        notes += references.notes(compare)
    if intervals is not None:
        notes += _interval_notes(intervals)
    return Report(
        "GLUE leaderboard",
        frame,
        intro,
        notes,
        text_columns=1 + bool(compare) + show_recipes,
        intervals=placed,
        recipe=recipes.describe(shared),
        recipe_of="every model's row" if compare else "every row",
        recipe_rows=tuple(ours_rows),
    )


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


def _reference_rows(found, mine: dict, scores: pd.Series, cols: list[Column], show_recipes: bool) -> list[dict]:
    """A reference row (references.ReferenceRow) and the Δ row under it (ours − theirs, per metric)."""
    theirs = {"Model": found.label, "Source": found.source}
    delta = {"Model": "", "Source": "Δ"}
    if show_recipes:
        theirs[RECIPE], delta[RECIPE] = recipes.describe(found.recipe), ""
    theirs["Score"] = f"{found.score:.1f}" if found.score is not None else MISSING
    for c in cols:
        values = found.cells.get(c.label)
        if values is None:
            continue
        spread = found.spread.get(c.label)
        theirs[c.label] = "/".join(f"{v:.1f}" + (f"±{spread[i]:.1f}" if spread else "") for i, v in enumerate(values))
        winner = mine.get(c.source)
        if winner is not None and all(pd.notna(winner.get(k)) for k in c.runs_keys):
            delta[c.label] = "/".join(signed(100 * winner[r] - v) for r, v in zip(c.runs_keys, values))
    run = [t for t in metrics.GLUE_TASKS if pd.notna(scores.get(t))]
    if run and found.score is not None:
        ours = 100 * float(np.mean([scores[t] for t in run]))
        if len(run) == len(metrics.GLUE_TASKS):
            delta["Score"] = signed(ours - found.score)
        else:
            partial = float(np.mean([found.task_scores[t] for t in run]))
            delta["Score"] = f"{signed(ours - partial)} ({len(run)}/{len(metrics.GLUE_TASKS)})"
    return [theirs, delta]
