"""The leaderboard page (report --format html): one self-contained HTML file to open from disk or publish.

It holds the leaderboard (sortable by a click on a column header), the 6 × 4 miniatures figure, every
model's batch size × learning rate grid per task, and the AX categories when they can be scored. It is
assembled from the same Report objects and figure as the other views (render.html_section lays each out),
and it loads nothing: the CSS and a few lines of JavaScript are inline, the figure a PNG data URI.
"""

from __future__ import annotations

import base64
import html
import os

import pandas as pd

from glue_bench.errors import UserError
from glue_bench.inputs.model_names import by_size, model_label
from glue_bench.inputs.tasks import get_task, registry
from glue_bench.reporting import plots, render
from glue_bench.reporting.cells import DEGENERATE
from glue_bench.reporting.diagnostics import ax_report, labelled_split
from glue_bench.reporting.grid import trial_grid
from glue_bench.reporting.leaderboard import is_ours
from glue_bench.reporting.render import Report
from glue_bench.training import metrics

TITLE = "glue-bench leaderboard"
STATES = {"FAIL": "failed"}  # Optuna's trial states as the summary line says them (the rest: lower case)

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 20px auto;
       max-width: 1500px; padding: 0 16px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ccc; } h3 { margin: 18px 0 6px; }
nav a { margin-right: 14px; }
p { margin: 6px 0; }
#leaderboard { overflow-x: auto; }  /* a wide leaderboard scrolls, the page does not */
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { padding: 2px 7px; border-bottom: 1px solid #e2e2e2; white-space: nowrap; }
thead th { background: #f2f2f2; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #e4e4e4; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
#board tbody + tbody { border-top: 2px solid #aaa; }
#board tbody tr + tr { color: #666; }  /* the paper's row and Δ under a model's own */
td.collapsed { background: #fcdcb4; }
td.prose { white-space: normal; min-width: 11em; max-width: 17em; font-size: 12px; }  /* a row's recipe wraps */
.ci { display: block; color: #777; font-size: 85%; }  /* the interval under its value: a narrower table */
small { color: #555; }
img { max-width: 100%; height: auto; }
.grids { display: flex; flex-wrap: wrap; gap: 0 36px; align-items: flex-start; }
.grids > div { max-width: 620px; }
summary { cursor: pointer; font-weight: 600; font-size: 1.1em; margin-top: 14px; }
"""

# A click on a header sorts by that column, a second click reverses. Each <tbody> is one model: its own row
# first, then the paper's row and Δ, so they move together, keyed by the model's own row. Cells sort by
# their leading number ("84.2 [83.1, 85.0]" → 84.2, "50.5 (4/9)" → 50.5), numbers best first; the name
# columns as text; "—" (not run) last either way. page.html#sort=SST-2 clicks that header on load
# (#sort=SST-2,SST-2 twice): a link to a sorted view, and the browser test's way in.
SCRIPT = """
function sortKey(row, column, text) {
  const cell = row.cells[column].textContent.trim();
  if (text) return cell.toLowerCase();
  const number = cell.match(/^[+-]?\\d+(\\.\\d+)?/);
  return number ? parseFloat(number[0]) : null;
}
function sortBy(th) {
  const table = th.closest("table"), column = th.cellIndex;
  const text = column < Number(table.dataset.textColumns);
  const first = text ? "ascending" : "descending";
  const order = th.getAttribute("aria-sort") !== first ? first : (text ? "descending" : "ascending");
  table.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", order);
  const sign = order === "ascending" ? 1 : -1;
  const groups = Array.from(table.tBodies, body => [sortKey(body.rows[0], column, text), body]);
  groups.sort((a, b) => (a[0] === null || b[0] === null) ? (a[0] === null) - (b[0] === null)
                                                         : sign * (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  groups.forEach(group => table.appendChild(group[1]));
}
const headers = Array.from(document.querySelectorAll("table.sortable th"));
headers.forEach(th => th.addEventListener("click", () => sortBy(th)));
const wanted = new URLSearchParams(location.hash.slice(1)).get("sort");
(wanted ? wanted.split(",") : []).forEach(name => headers.find(th => th.textContent === name)?.click());
"""


def page(
    board: Report,
    table: pd.DataFrame,
    storage_url: str | None = None,
    compare_paper: bool = False,
    data: str | None = None,
) -> str:
    """The whole page. board: the leaderboard of `table` (leaderboard.leaderboard, with the paper's rows and
    intervals as asked); storage_url and data: where the AX predictions and the labelled AX set are."""
    sections = [
        ("leaderboard", "Leaderboard", _leaderboard(board)),
        ("figure", "Figure", ["<h2>The miniatures by layers × hidden size</h2>", *_figure(table, compare_paper)]),
        ("grids", "Grids", ["<h2>Batch size × learning rate, per model and task</h2>", *_grids(table)]),
    ]
    ax = _ax(table, storage_url, data)
    if ax:
        sections.append(("ax", "AX", ["<h2>AX diagnostic categories</h2>", *ax]))
    nav = " ".join(f'<a href="#{key}">{label}</a>' for key, label, _ in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{TITLE}</title><style>{CSS}</style></head>',
        "<body>",
        f"<h1>{TITLE}</h1>",
        f"<p>{html.escape(_summary(table))}</p>",
        f"<nav>{nav}</nav>",
    ]
    for key, _, lines in sections:
        parts += [f'<section id="{key}">', *lines, "</section>"]
    parts += [f"<script>{SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _summary(table: pd.DataFrame) -> str:
    states = table["state"].value_counts()
    others = ", ".join(f"{n} {STATES.get(state, state.lower())}" for state, n in states.items() if state != "COMPLETE")
    return (
        f"{len(table)} trials ({states.get('COMPLETE', 0)} complete{', ' + others if others else ''}) of "
        f"{table['model'].nunique()} models on {table['task'].nunique()} tasks."
    )


def _collapsed(text: str) -> str:
    return "collapsed" if DEGENERATE in text else ""


def _leaderboard(board: Report) -> list[str]:
    beside_paper = "Source" in board.table.columns  # then a model's rows are its own, the paper's, Δ
    if beside_paper:
        groups = [i for i, source in enumerate(board.table["Source"]) if is_ours(source)]
    else:
        groups = list(range(len(board.table)))
    attributes = f'id="board" class="sortable" data-text-columns="{board.text_columns}"'
    lines = render.html_section(board, 2, attributes=attributes, groups=groups, cell_class=_collapsed)
    hint = "Click a column header to sort the models by it, again to reverse"
    hint += "; a model's paper and Δ rows move with it." if beside_paper else "."
    if board.table.map(lambda cell: DEGENERATE in str(cell)).any().any():
        hint += f" Shaded cells, marked {DEGENERATE}, are collapsed fine-tunes (see the notes below the table)."
    return [lines[0], f"<p>{html.escape(hint)}</p>", *lines[1:]]  # the hint under the title, above the table


def _figure(table: pd.DataFrame, compare_paper: bool) -> list[str]:
    try:
        image, said = plots.png(table, compare_paper=compare_paper)
    except UserError as e:  # nothing to draw (no miniature among the models): say so, the rest still stands
        return [f"<p>No figure: {html.escape(str(e).removeprefix('--plot: '))}.</p>"]
    data_uri = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
    return [f'<img src="{data_uri}" alt="{html.escape(said)}">', f"<p><small>{html.escape(said)}.</small></p>"]


def _task_order(name: str) -> tuple[int, str]:
    return (list(metrics.GLUE_TASKS).index(name) if name in metrics.GLUE_TASKS else len(metrics.GLUE_TASKS), name)


def _grids(table: pd.DataFrame) -> list[str]:
    """Per model (smallest first), a foldable block with its grid on every task it has trials of."""
    lines = []
    for model in by_size(table["model"]):
        mine = table[table["model"] == model]
        lines += ["<details open>", f"<summary>{html.escape(model_label(model))}</summary>", '<div class="grids">']
        for task in sorted(set(mine["task"]), key=_task_order):
            report = trial_grid(mine[mine["task"] == task], model, get_task(task))
            lines += ["<div>", *render.html_section(report, 3, cell_class=_collapsed), "</div>"]
        lines += ["</div>", "</details>"]
    return lines


def _ax(table: pd.DataFrame, storage_url: str | None, data: str | None) -> list[str]:
    """The AX breakdown of every model that has trials of the task that predicts it (MNLI); [] when none
    has: the section is left out. Without --data there is no labelled AX set: one line says so."""
    lines = []
    for task in (t for t in registry().values() if t.predicted_by):
        predictors = by_size(table.loc[table["task"] == task.predicted_by, "model"])
        if predictors and not (data or os.environ.get("GLUE_BENCH_DATA")):
            why = f"{task.name.upper()} by category needs its labelled set: pass --data, a folder holding "
            lines.append(f"<p>{html.escape(why + task.glue_dir + '/' + labelled_split(task).file)}.</p>")
            continue
        for model in predictors:
            try:
                lines += render.html_section(ax_report(table, storage_url, model, data, task.name), 3)
            except UserError as e:  # this model's AX cannot be scored (no predictions recorded, …): say why
                lines.append(f"<p>{html.escape(model_label(model))}: {html.escape(str(e))}</p>")
    return lines
