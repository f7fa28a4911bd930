"""A report (title, intro, a table of strings, notes) as Markdown, CSV, LaTeX or HTML.

The table's cells are already formatted (the leaderboard and grid views decide what a cell says); this module only lays
them out. CSV holds the table alone: prose does not belong in a CSV file. The recipe the rows share (`recipe`) is the
exception: a CSV row read on its own must still say how it was trained, so CSV repeats it in a "Shared recipe" column.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from glue_bench.errors import UserError

FORMATS = ("markdown", "csv", "latex", "html")
RECIPE, UNLIKE = "Recipe", "Unlike recipes"  # columns of prose (how rows were trained): HTML lets them wrap
SUFFIXES = {".md": "markdown", ".csv": "csv", ".tex": "latex", ".html": "html", ".htm": "html"}


@dataclass
class Report:
    title: str
    table: pd.DataFrame  # every cell a string
    intro: str = ""
    notes: list[str] = field(default_factory=list)
    text_columns: int = 1  # the leading columns that hold names (left-aligned); the rest hold numbers
    # (row position, column) → (low, high), already formatted: an interval beside that cell's value
    intervals: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)
    # The recipe (recipes.describe) that the rows share, stated once: "Recipe of <recipe_of>: …"; the fields in
    # which rows differ are the table's own "Recipe" column. recipe_rows: the rows it applies to (None: all).
    recipe: str = ""
    recipe_of: str = "every row"
    recipe_rows: tuple[int, ...] | None = None

    @property
    def recipe_line(self) -> str:
        return f"Recipe of {self.recipe_of}: {self.recipe}." if self.recipe else ""


def shown(report: Report) -> pd.DataFrame:
    """The table as Markdown, LaTeX and HTML show it: each interval in brackets after its cell's value,
    "84.2 [83.1, 85.0]". CSV keeps them as numbers in their own columns (csv())."""
    if not report.intervals:
        return report.table
    table = report.table.copy()
    for (row, column), (low, high) in report.intervals.items():
        table.iloc[row, table.columns.get_loc(column)] += f" [{low}, {high}]"
    return table


def choose_format(fmt: str | None, out: str | None) -> str:
    """--format, else the --out file's suffix, else Markdown."""
    if fmt:
        return fmt
    if out and Path(out).suffix.lower() in SUFFIXES:
        return SUFFIXES[Path(out).suffix.lower()]
    if out:
        raise UserError(f"--out {out}: cannot tell the format from the suffix; pass --format {'|'.join(FORMATS)}")
    return "markdown"


def render(report: Report, fmt: str) -> str:
    return {"markdown": markdown, "csv": csv, "latex": latex, "html": to_html}[fmt](report)


def markdown(report: Report) -> str:
    def row(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = ["---" if i < report.text_columns else "---:" for i in range(report.table.shape[1])]
    lines = [f"## {report.title}", ""]
    lines += [f"{text}\n" for text in (report.intro, report.recipe_line) if text]
    lines += [row(report.table.columns), row(rule)] + [row(r) for r in shown(report).itertuples(index=False)]
    if report.notes:
        lines += [""] + [f"{note}  " if i < len(report.notes) - 1 else note for i, note in enumerate(report.notes)]
    return "\n".join(lines) + "\n"


def csv(report: Report) -> str:
    """The table; a column with intervals is followed by "<column> lo" and "<column> hi"."""
    table = report.table.copy()
    for column in [c for c in report.table.columns if any(k[1] == c for k in report.intervals)]:
        at = table.columns.get_loc(column) + 1
        for i, name in enumerate(("lo", "hi")):
            values = [report.intervals.get((row, column), ("", ""))[i] for row in range(len(table))]
            table.insert(at + i, f"{column} {name}", values)
    if report.recipe:
        rows = range(len(table)) if report.recipe_rows is None else report.recipe_rows
        table["Shared recipe"] = ["" if i not in rows else report.recipe for i in range(len(table))]
    return table.to_csv(index=False, lineterminator="\n")


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_SYMBOLS = {
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "—": "--",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "−": "$-$",
    "→": r"$\to$",
}


def latex_text(text: str) -> str:
    text = re.sub(r"(?<![\w.])-(?=\d)", "−", str(text))  # a minus sign, not a hyphen: -0.4, not L-2
    return "".join(_LATEX_SYMBOLS.get(c, _LATEX_ESCAPES.get(c, c)) for c in text)


def latex(report: Report) -> str:
    """A booktabs table; the notes go below it in small type."""
    spec = "l" * report.text_columns + "r" * (report.table.shape[1] - report.text_columns)
    lines = [
        r"% needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        f"\\caption{{{latex_text(report.title)}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_text(c) for c in report.table.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(latex_text(c) for c in row) + r" \\" for row in shown(report).itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if report.intro or report.recipe or report.notes:
        prose = " ".join(latex_text(p) for p in [report.intro, report.recipe_line, *report.notes] if p)
        lines += [r"\par\smallskip\footnotesize", prose]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(report: Report) -> str:
    """A whole page (doctype, UTF-8, title), so that ×, † and Δ read right when it is opened from disk."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{html.escape(report.title)}</title></head>',
        "<body>",
        *html_section(report),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def html_section(report: Report, level: int = 2, **table_options) -> list[str]:
    """The report as lines of an HTML fragment: its title as a heading, the intro, the table, the notes.
    The leaderboard page (page.py) puts several of these on one page; table_options go to html_table."""
    parts = [f"<h{level}>{html.escape(report.title)}</h{level}>"]
    parts += [f"<p>{html.escape(text)}</p>" for text in (report.intro, report.recipe_line) if text]
    parts += html_table(report, **table_options)
    parts += [f"<p><small>{html.escape(note)}</small></p>" for note in report.notes]
    return parts


def html_table(report: Report, attributes: str = "", groups: list[int] | None = None, cell_class=None) -> list[str]:
    """The table as lines of HTML. attributes: added to the <table> tag (an id, a class). groups: the row
    positions that each open a <tbody>, rows that belong together (a model and its paper rows: a sort moves
    them as one); default one <tbody>. cell_class(text): a CSS class for a body cell, or ""."""
    starts = set(groups or [])

    def cells(values, tag: str, intervals: dict | None = None) -> str:
        out = []
        for i, (column, value) in enumerate(zip(report.table.columns, values)):
            text = html.escape(str(value))
            if intervals and column in intervals:  # an element of its own, so that the page can style it
                low, high = intervals[column]
                text += f' <span class="ci">[{html.escape(low)}, {html.escape(high)}]</span>'
            css = cell_class(str(value)) if cell_class and tag == "td" else ""
            css = " ".join(filter(None, [css, "prose" if tag == "td" and column in (RECIPE, UNLIKE) else ""]))
            css = f' class="{css}"' if css else ""
            out.append(f"<{tag}{_align(i, report)}{css}>{text}</{tag}>")
        return "<tr>" + "".join(out) + "</tr>"

    by_row: dict[int, dict[str, tuple[str, str]]] = {}
    for (row, column), low_high in report.intervals.items():
        by_row.setdefault(row, {})[column] = low_high
    parts = [
        f"<table{' ' + attributes if attributes else ''}>",
        "<thead>",
        cells(report.table.columns, "th"),
        "</thead>",
    ]
    parts.append("<tbody>")
    for position, values in enumerate(report.table.itertuples(index=False)):
        if position in starts and position:
            parts += ["</tbody>", "<tbody>"]
        parts.append(cells(values, "td", by_row.get(position)))
    parts += ["</tbody>", "</table>"]
    return parts


def _align(column: int, report: Report) -> str:
    return "" if column < report.text_columns else ' style="text-align: right"'


def write(text: str, out: str | None) -> None:
    """To --out, or to stdout."""
    if not out:
        print(text, end="")
        return
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"--out {out}: cannot write it ({e.strerror})") from None
