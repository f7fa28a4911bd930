"""The CI regression gate: compare a new run's dev metrics with a committed baseline runs table.

A cell is (model, task, batch size, lr); its value for a metric is the mean over seeds, in points. The new
mean may fall below the baseline mean by at most the allowed drop, else the cell is a regression; a rise
beyond it is an improvement. A grid point whose new trials all failed (a NaN loss) is a regression too.

`auto` tolerance: allowed drop = max(FLOOR, K × the baseline's seed standard deviation) per cell and metric.
K = 3: the difference of two 3-seed means has a spread of about 0.8 × the seed spread, and 3 seeds
estimate that spread poorly (2 degrees of freedom), so 3 × keeps false alarms rare; a real break
(shuffled labels, a diverged run) moves a metric by 10+ points. The FLOOR of 2 points covers a baseline
whose seeds happen to agree and the run-to-run drift of another CPU: another CPU (or thread count)
sums floats in another order, and after fine-tuning a handful of dev predictions flip.

Refused (UserError, exit 2) rather than compared: runs whose models, tasks, grid points, recipes or metrics
differ from the baseline's, an unfinished new run, a baseline with a grid point that never completed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from glue_bench.errors import UserError, counted
from glue_bench.inputs.tasks import get_task
from glue_bench.reporting import bootstrap
from glue_bench.sweeping.runs import RECIPE_COLUMNS, latest
from glue_bench.training.recipe import lr_text

K = 3.0  # × the baseline's seed standard deviation (sample std over seeds)
FLOOR = 2.0  # points: the smallest allowed drop under `auto`
CELL = ["model", "task", "batch_size", "lr"]
POINT = CELL + ["seed"]


BOOTSTRAP = "bootstrap"


def parse_tolerance(text: str) -> float | str | None:
    """`auto` → None; `bootstrap` → BOOTSTRAP; a number of points ≥ 0 → that number."""
    if text == "auto":
        return None
    if text == BOOTSTRAP:
        return BOOTSTRAP
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0 or math.isinf(value):
        raise UserError(f"--tolerance {text}: pass auto, bootstrap or a number of points >= 0 (e.g. 1.5)")
    return value


def describe_tolerance(tolerance: float | str | None) -> str:
    if tolerance == BOOTSTRAP:
        return (
            "bootstrap: a regression when the whole 95% paired bootstrap interval of the task score's change "
            f"(new − baseline; seeds and dev rows resampled, {bootstrap.RESAMPLES} resamples) lies below 0"
        )
    if tolerance is None:
        return f"auto: allowed drop = max({FLOOR:g}, {K:g} x baseline seed std) points"
    return f"{tolerance:g} points"


def _normalised(table: pd.DataFrame) -> pd.DataFrame:
    """Key columns made comparable across a storage and a CSV round trip (lr 5e-05 vs 4.99999…e-05)."""
    table = table.copy()
    table["sweep"] = table["sweep"].fillna("").astype(str)
    table["lr"] = table["lr"].map(lambda v: float(f"{v:.12g}") if pd.notna(v) else v)
    for column in ("batch_size", "seed"):
        table[column] = pd.to_numeric(table[column])
    return table.dropna(subset=POINT)


def _metric_columns(table: pd.DataFrame) -> list[str]:
    return sorted(c for c in table.columns if c.startswith(("dev/", "extra/")) and table[c].notna().any())


def select_sweeps(new: pd.DataFrame, baseline: pd.DataFrame, sweep: str | None) -> pd.DataFrame:
    """The new runs of `sweep`, or by default of the sweep(s) the baseline was made by."""
    wanted = [sweep] if sweep else sorted(set(baseline["sweep"]))
    chosen = new[new["sweep"].isin(wanted)]
    if chosen.empty:
        held = ", ".join(sorted(set(new["sweep"]))) or "none"
        raise UserError(
            f"the new runs hold no trials of sweep {', '.join(wanted)} (they hold: {held}); "
            "run that sweep or pass --sweep NAME"
        )
    return chosen


def _settle(table: pd.DataFrame, which: str) -> pd.DataFrame:
    """One row per grid point (runs.latest: its latest completed trial, else its latest one). A point whose
    latest trial is still running or waiting means the run is unfinished."""
    points = latest(table)
    settled = points[points["state"].isin(["COMPLETE", "FAIL"])]
    unsettled = points[~points["state"].isin(["COMPLETE", "FAIL"])]
    if not unsettled.empty:
        first = unsettled.iloc[0]
        raise UserError(
            f"the {which} run is unfinished: {counted(len(unsettled), 'grid point')} without a finished trial "
            f"(e.g. {first['task']} bs={first['batch_size']:g} lr={first['lr']:g} seed={first['seed']:g}, "
            f"{first['state']}); finish the sweep, then check"
        )
    return settled.sort_values(POINT, ignore_index=True)


def _names(points: pd.DataFrame) -> str:
    shown = [f"{r.model} {r.task} bs={r.batch_size:g} lr={r.lr:g} seed={r.seed:g}" for r in points.head(3).itertuples()]
    more = f" and {len(points) - 3} more" if len(points) > 3 else ""
    return "; ".join(shown) + more


def _check_same_grid(base: pd.DataFrame, new: pd.DataFrame) -> None:
    base_keys, new_keys = base.set_index(POINT).index, new.set_index(POINT).index
    only_base, only_new = base[~base_keys.isin(new_keys)], new[~new_keys.isin(base_keys)]
    if only_base.empty and only_new.empty:
        return
    differences, pair = [], ["model", "task"]
    for which, one, other in (("new run", base, new), ("baseline", new, base)):
        # A (model, task) wholly missing on one side: name it, not each of its grid points.
        lacking = one[pair].drop_duplicates()
        lacking = lacking[~lacking.set_index(pair).index.isin(other.set_index(pair).index)]
        if not lacking.empty:
            differences.append(f"the {which} lacks " + ", ".join(f"{r.task} ({r.model})" for r in lacking.itertuples()))
            only_base = only_base[~only_base.set_index(pair).index.isin(lacking.set_index(pair).index)]
            only_new = only_new[~only_new.set_index(pair).index.isin(lacking.set_index(pair).index)]
    if not only_base.empty:
        differences.append(f"only in the baseline: {_names(only_base)}")
    if not only_new.empty:
        differences.append(f"only in the new run: {_names(only_new)}")
    raise UserError(
        f"the grids differ: {'; '.join(differences)}; run the same sweep as the baseline, or make a new baseline"
    )


def _same(a, b) -> bool:
    def blank(value) -> bool:  # an empty text reads back from a CSV as NaN
        return value is None or value == "" or isinstance(value, float) and math.isnan(value)

    if blank(a) and blank(b):
        return True
    if isinstance(a, (bool, str)) or isinstance(b, (bool, str)):
        return str(a) == str(b)
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _check_same_recipe(base: pd.DataFrame, new: pd.DataFrame) -> None:
    columns = [c for c in RECIPE_COLUMNS if c in base.columns]
    for column in columns:
        if column not in new.columns:
            raise UserError(
                f"the recipes differ: the new runs have no {column} column; export them with this glue-bench version"
            )
        for key, group in new.groupby(["model", "task"], sort=True):
            expected = base.loc[(base["model"] == key[0]) & (base["task"] == key[1]), column].iloc[0]
            found = group[column].iloc[0]
            if not all(_same(v, expected) for v in group[column]):
                raise UserError(
                    f"the recipes differ: {key[1]} ({key[0]}) has {column}={found} in the new run, "
                    f"{expected} in the baseline; run the same sweep as the baseline, or make a new baseline"
                )


def _check_same_metrics(base: pd.DataFrame, new: pd.DataFrame, metrics: list[str]) -> None:
    done = new[new["state"] == "COMPLETE"]
    for task, group in base.groupby("task", sort=True):
        expected = [m for m in metrics if group[m].notna().all()]
        found = [m for m in metrics if m in done.columns and done.loc[done["task"] == task, m].notna().all()]
        if set(expected) - set(found):
            raise UserError(
                f"the metrics differ: {task} has no {', '.join(sorted(set(expected) - set(found)))} "
                "in the new run; the task definitions changed since the baseline: make a new baseline"
            )


@dataclass(frozen=True)
class Comparison:
    table: pd.DataFrame  # one row per (cell, metric): baseline, std, new, change, allowed (points), verdict
    tolerance: str  # how the allowed drop (or the bootstrap rule) was set

    @property
    def regressions(self) -> pd.DataFrame:
        return self.table[self.table["verdict"].isin(["REGRESSION", "FAILED"])]


def compare(
    baseline: pd.DataFrame,
    new: pd.DataFrame,
    tolerance: float | str | None = None,
    sweep: str | None = None,
    fetch_baseline: Callable[[str], dict] | None = None,
    fetch_new: Callable[[str], dict] | None = None,
) -> Comparison:
    """Compare each (model, task, batch size, lr, metric) of `new` with `baseline`. Both are runs tables.

    With `tolerance` BOOTSTRAP each cell's task score is compared instead, by a paired bootstrap of the dev
    predictions, which `fetch_baseline` / `fetch_new` read by artifact id (a sidecar file, a storage)."""
    baseline, new = _normalised(baseline), _normalised(new)
    if baseline.empty:
        raise UserError("the baseline holds no trials; export it from a finished sweep (glue-bench export)")
    new = select_sweeps(new, baseline, sweep)
    base = _settle(baseline, "baseline")
    failed_base = base[base["state"] != "COMPLETE"]
    if not failed_base.empty:
        raise UserError(
            f"the baseline has grid points that never completed ({_names(failed_base)}); "
            "make the baseline again from a run where every trial completed"
        )
    new = _settle(new, "new")
    _check_same_grid(base, new)
    _check_same_recipe(base, new)
    metrics = _metric_columns(base)
    _check_same_metrics(base, new, metrics)

    if tolerance == BOOTSTRAP:
        return Comparison(_bootstrap_rows(base, new, fetch_baseline, fetch_new), describe_tolerance(tolerance))
    rows = []
    new_cells = dict(list(new.groupby(CELL, sort=True)))
    for cell, base_cell in base.groupby(CELL, sort=True):
        new_cell = new_cells[cell]  # present: the grids are the same
        failures = new_cell[new_cell["state"] != "COMPLETE"]
        for metric in metrics:
            if base_cell[metric].isna().all():
                continue
            points = 100 * base_cell[metric]
            mean, std = points.mean(), (points.std() if len(points) > 1 else 0.0)
            allowed = max(FLOOR, K * std) if tolerance is None else tolerance
            row = dict(
                zip(CELL, cell),
                metric=metric.split("/", 1)[1],
                seeds=len(points),
                baseline=mean,
                std=std,
                allowed=allowed,
            )
            if not failures.empty:
                reason = failures["fail_reason"].dropna()
                row.update(
                    new=math.nan,
                    change=math.nan,
                    verdict="FAILED",
                    note=str(reason.iloc[0]) if len(reason) else "trial failed",
                )
            else:
                new_mean = 100 * new_cell[metric].mean()
                # An exported baseline holds points (×100, then ÷100 on reading): equal up to that rounding is equal.
                change = 0.0 if math.isclose(new_mean, mean, rel_tol=1e-12, abs_tol=1e-12) else new_mean - mean
                verdict = "REGRESSION" if change < -allowed else "improved" if change > allowed else "unchanged"
                row.update(new=new_mean, change=change, verdict=verdict, note="")
            rows.append(row)
    return Comparison(pd.DataFrame(rows), describe_tolerance(tolerance))


def _bootstrap_rows(base: pd.DataFrame, new: pd.DataFrame, fetch_baseline, fetch_new) -> pd.DataFrame:
    """One row per cell: the task score (mean over seeds) of each side from its dev predictions, and the
    paired 95% bootstrap interval of the change (the same resampled dev rows for both sides)."""
    rows, rng = [], np.random.default_rng(bootstrap.SEED)
    new_cells = dict(list(new.groupby(CELL, sort=True)))
    for cell, base_cell in base.groupby(CELL, sort=True):
        task = get_task(cell[1])
        new_cell = new_cells[cell]
        seed_scores = 100 * base_cell["score"]
        row = dict(zip(CELL, cell), metric="score", seeds=len(base_cell), baseline=seed_scores.mean())
        row.update(std=seed_scores.std() if len(seed_scores) > 1 else 0.0, new=math.nan, change=math.nan)
        failures = new_cell[new_cell["state"] != "COMPLETE"]
        if not failures.empty:
            reason = failures["fail_reason"].dropna()
            row.update(interval="-", verdict="FAILED", note=str(reason.iloc[0]) if len(reason) else "trial failed")
            rows.append(row)
            continue
        new_sample = bootstrap.load_sample(task, new_cell, None, fetch=fetch_new)
        if isinstance(new_sample, str):
            raise UserError(f"--tolerance bootstrap: the new run's {task.name} ({cell[0]}): {new_sample}")
        # the baseline's sidecar keeps predictions only: its labels are the new run's (the same rows, checked)
        base_sample = bootstrap.load_sample(task, base_cell, None, fetch=fetch_baseline, labels_from=new_sample)
        if isinstance(base_sample, str):
            raise UserError(f"--tolerance bootstrap: the baseline's {task.name} ({cell[0]}): {base_sample}")
        samples = [base_sample, new_sample]
        try:
            base_rep, new_rep = bootstrap.resample(samples, bootstrap.RESAMPLES, rng)
        except ValueError as e:  # other dev rows: another task file, a truncated dev split
            raise UserError(f"--tolerance bootstrap: {e}; make a new baseline") from None
        scores = [100 * bootstrap.observed(sample) for sample in samples]
        low, high = bootstrap.interval(100 * (new_rep.task - base_rep.task))
        verdict = "REGRESSION" if high < 0 else "improved" if low > 0 else "unchanged"
        row.update(baseline=scores[0], new=scores[1], change=scores[1] - scores[0])
        row.update(interval=f"[{low:+.2f}, {high:+.2f}]", verdict=verdict, note="")
        rows.append(row)
    return pd.DataFrame(rows)


def render(result: Comparison) -> str:
    """The table, then one line per regression naming the task and metric, then the verdict."""
    shown = result.table.copy()
    shown["std"] = shown["std"].where(shown["seeds"] > 1)  # one seed has no spread to show: "-", not 0.00
    for column in [c for c in ("baseline", "std", "new", "change", "allowed") if c in shown.columns]:
        sign = "+" if column == "change" else ""
        shown[column] = shown[column].map(lambda v, sign=sign: "-" if pd.isna(v) else f"{v:{sign}.2f}")
    shown["batch_size"] = shown["batch_size"].map(lambda v: f"{v:g}")
    shown["lr"] = shown["lr"].map(lr_text)
    shown = shown.drop(columns="note")
    lines = [shown.to_string(index=False), "", f"tolerance {result.tolerance}"]
    counts = result.table["verdict"].value_counts()
    lines.append(
        f"{counted(counts.get('REGRESSION', 0) + counts.get('FAILED', 0), 'regression')}, "
        f"{counted(counts.get('improved', 0), 'improvement')}, {counts.get('unchanged', 0)} unchanged"
    )
    for r in result.regressions.itertuples():
        where = f"{r.task} {r.metric} (model {r.model}, bs={r.batch_size:g} lr={r.lr:g})"
        if r.verdict == "FAILED":
            lines.append(f"REGRESSION {where}: the new run failed: {r.note}")
        elif "interval" in result.table.columns:
            lines.append(
                f"REGRESSION {where}: {r.baseline:.2f} -> {r.new:.2f} ({r.change:+.2f} points; the 95% interval "
                f"of the change, {r.interval}, lies below 0)"
            )
        else:
            lines.append(
                f"REGRESSION {where}: {r.baseline:.2f} -> {r.new:.2f} ({r.change:+.2f} points, "
                f"allowed drop {r.allowed:.2f})"
            )
    return "\n".join(lines)
