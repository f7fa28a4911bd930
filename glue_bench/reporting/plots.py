"""The figure: the 6 × 4 grid of miniatures (layers × hidden size) coloured by score, and score against size.

Left, the miniatures' grid as the paper lays it out (rows L = 2 … 12, columns H = 128 … 768), each cell
coloured by the GLUE score (or one task's score) of that shape; right, the same scores against the
parameter count (models.parameter_count), the paper's four named models beside ours when asked.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from glue_bench.errors import UserError, counted  # noqa: E402
from glue_bench.inputs import model_names, models  # noqa: E402
from glue_bench.inputs.tasks import get_task  # noqa: E402
from glue_bench.reporting import leaderboard, references  # noqa: E402

NAMES = {shape: "BERT-" + name.removeprefix("bert-").title() for name, shape in models.NAMED.items()}


def _heatmap_models(scores: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The models drawn in the grid: one per shape. Pretrained and random-init models of a shape are not
    comparable, so the family with more shapes is drawn (pretrained on a tie), and a distilled student is not
    its plain self; the scatter shows all."""
    plain = [
        model_names.model_shape(m) in models.all_miniatures() and model_names.DISTILLED not in m
        for m in scores["model"]
    ]
    shaped = scores[plain].copy()
    shaped["random"] = shaped["model"].str.startswith("random:")
    counts = shaped.groupby("random").size()
    random = bool(len(counts)) and counts.get(True, 0) > counts.get(False, 0)
    chosen = shaped[shaped["random"] == random]
    chosen = chosen.assign(shape=[model_names.model_shape(m) for m in chosen["model"]]).drop_duplicates("shape")
    return chosen, "random-init weights" if random else "pretrained"


def _paper_values(task: str | None) -> pd.DataFrame:
    table = references.paper()
    column = "score" if task is None else ("ax/test/mcc" if get_task(task).name == "ax" else get_task(task).name)
    return pd.DataFrame(
        {
            "model": table["model"],
            "shape": list(zip(table["layers"], table["hidden"])),
            "value": table[column].astype(float),
        }
    )


def plot(table: pd.DataFrame, path: str, task: str | None = None, compare_paper: bool = False) -> str:
    """Draw the figure into `path` (.png, .pdf or .svg); returns a one-line description."""
    if Path(path).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UserError(f"--plot {path}: write .png, .pdf or .svg")
    fig, said = figure(table, task, compare_paper)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=200)
    plt.close(fig)
    return f"{said} → {path}"


def png(table: pd.DataFrame, task: str | None = None, compare_paper: bool = False, dpi: int = 100) -> tuple[bytes, str]:
    """The same figure as PNG bytes, for the leaderboard page to inline; a lower resolution than a file's
    keeps the page small. Returns the bytes and the description."""
    fig, said = figure(table, task, compare_paper)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue(), said


def figure(table: pd.DataFrame, task: str | None = None, compare_paper: bool = False):
    """The figure (a matplotlib Figure, for the caller to save and close) and a one-line description."""
    scores = leaderboard.model_scores(table, task)
    if scores.empty:
        raise UserError(f"--plot: no model has a {'GLUE' if task is None else task} score yet; run some trials first")
    what = "GLUE score" if task is None else f"{get_task(task).name.upper()} score"
    paper = _paper_values(task) if compare_paper else None
    grid_models, family = _heatmap_models(scores)
    if grid_models.empty and paper is None:
        raise UserError("--plot: no model is a BERT miniature (L-2_H-128 … L-12_H-768): nothing to draw")
    ours = {
        row["shape"]: (row["value"], "" if row["complete"] else f"({row['tasks']}/9 tasks)", row["subset"])
        for _, row in grid_models.iterrows()
    }
    theirs = {row["shape"]: (row["value"], "", False) for _, row in paper.iterrows()} if paper is not None else {}

    panels = 3 if paper is not None else 2
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(5.6 * panels, 4.8),
        layout="constrained",
        gridspec_kw={"width_ratios": [1] * (panels - 1) + [1.3]},
    )
    known = [v for v, _, _ in [*ours.values(), *theirs.values()]]
    low, high = min(known), max(known)
    if high - low < 1:
        low, high = low - 1, high + 1
    subset = " (* a train subset)" if scores["subset"].any() else ""  # never set beside the paper unmarked
    image = _grid_panel(axes[0], ours, low, high, f"ours: dev, {family}{subset}")
    if paper is not None:
        _grid_panel(axes[1], theirs, low, high, "paper: GLUE test sets")
        axes[1].set_ylabel("")
    fig.colorbar(image, ax=list(axes[:-1]), label=f"{what} (points)", shrink=0.9)
    _scatter(axes[-1], scores, paper, what)
    fig.suptitle(f"{what} of the BERT miniatures by layers × hidden size; best configuration per task", fontsize=12)
    return fig, f"{what}: {len(grid_models)} of 24 shapes in the grid, {counted(len(scores), 'model')} in the scatter"


def _grid_panel(ax, cells: dict, low: float, high: float, title: str):
    """The 6 × 4 grid (rows L = 2 … 12, columns H = 128 … 768); `cells` maps (L, H) → (value, note, subset):
    a value trained on a subset of the train rows is starred."""
    values = np.full((len(models.LAYERS), len(models.HIDDEN)), np.nan)
    for (layers, hidden), (value, _, _) in cells.items():
        values[models.LAYERS.index(layers), models.HIDDEN.index(hidden)] = value
    cmap = plt.get_cmap("viridis").with_extremes(bad="#eeeeee")  # shapes not run: light grey
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=low, vmax=high, aspect="auto")
    for i, layers in enumerate(models.LAYERS):
        for j, hidden in enumerate(models.HIDDEN):
            colour = "#888888"
            if (layers, hidden) in cells:
                value, note, subset = cells[(layers, hidden)]
                colour = "white" if (value - low) / (high - low) < 0.6 else "black"  # readable on viridis
                ax.text(
                    j,
                    i,
                    f"{value:.1f}" + ("*" if subset else "") + (f"\n{note}" if note else ""),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color=colour,
                    fontweight="bold",
                )
            name = NAMES.get(models.miniature_name(layers, hidden))
            if name:
                ax.text(j - 0.46, i - 0.36, name, ha="left", va="center", fontsize=6.5, color=colour, style="italic")
    ax.set_xticks(range(len(models.HIDDEN)), [f"H={h}" for h in models.HIDDEN])
    ax.set_yticks(range(len(models.LAYERS)), [f"L={n}" for n in models.LAYERS])
    ax.set_xticks(np.arange(-0.5, len(models.HIDDEN)), minor=True)  # white lines between the cells
    ax.set_yticks(np.arange(-0.5, len(models.LAYERS)), minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("hidden size")
    ax.set_ylabel("layers")
    ax.set_title(title, fontsize=11)
    return image


def _scatter(ax, scores: pd.DataFrame, paper: pd.DataFrame | None, what: str) -> None:
    shapes = [model_names.model_shape(m) for m in scores["model"]]
    sized = scores.assign(
        params=[models.parameter_count(*s) / 1e6 if s in models.all_miniatures() else np.nan for s in shapes]
    ).dropna(subset=["params"])
    for random, marker, label in ((False, "o", "ours, pretrained"), (True, "D", "ours, random init")):
        part = sized[sized["model"].str.startswith("random:") == random]
        if len(part):
            hollow = ~part["complete"].to_numpy()
            if not hollow.all():
                ax.scatter(
                    part["params"][~hollow],
                    part["value"][~hollow],
                    marker=marker,
                    s=40,
                    color="C0" if not random else "C2",
                    label=label,
                    zorder=3,
                )
            if hollow.any():
                ax.scatter(
                    part["params"][hollow],
                    part["value"][hollow],
                    marker=marker,
                    s=40,
                    facecolors="none",
                    edgecolors="C0" if not random else "C2",
                    label=f"{label} (partial)",
                    zorder=3,
                )
            for _, row in part.iterrows():
                ax.annotate(
                    row["model"].removeprefix("random:") + ("*" if row["subset"] else ""),
                    (row["params"], row["value"]),
                    fontsize=7,
                    xytext=(4, 3),
                    textcoords="offset points",
                )
    if paper is not None:
        params = [models.parameter_count(*s) / 1e6 for s in paper["shape"]]
        ax.plot(params, paper["value"], "s--", color="C3", label="paper (test)", zorder=2, markersize=6)
        for x, (_, row) in zip(params, paper.iterrows()):
            ax.annotate(
                row["model"], (x, row["value"]), fontsize=7, color="C3", xytext=(4, -10), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}M"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.margins(x=0.2, y=0.08)  # room for the point labels
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel(f"{what} (points)")
    subset = " (* a train subset)" if scores["subset"].any() else ""
    ax.set_title(f"{what} against model size{subset}", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
