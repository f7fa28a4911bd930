"""Storage → the runs table (pandas, one row per trial), and its export to CSV or Parquet.

Everything downstream (report, submit, check) reads this table, from a storage or an exported file.

Columns: sweep, model, task, study, trial, state, batch_size, lr, seed, score, one `dev/<split>/<metric>`
column per dev metric, `extra/<task>/<split>/<metric>` for splits of other tasks the model scored (AX's
diagnostic), recipe fields (epochs, max_seq_length, …), timings, fail_reason, covers (tasks never trained
but predicted by this trial's model: "ax" on MNLI rows), retry_of (the trial a retry re-runs),
resumed_from_step (the step of the checkpoint it continued from, 0 when it started afresh) and
resume_lost_seconds (what the stop it resumed from cost: the training run after that checkpoint), and JSON
columns curve, recipe, env, predictions, dev_predictions ("task/split" → artifact id of the test and of the
dev predictions; dev ones hold the labels too), predicted_classes (per dev split, the classes a classifier
predicted) and pack (the pack the trial trained in: {"size", "trials"}).
`model_id` is a trial's model's identity (model_names.model_identity: the student's reference and a distilled student's
teacher, teacher weights and transfer rows) and `model` the name reports show, unique per identity in the storage:
a distilled student's is "<student> ← <teacher>" (its own row in every report), made longer where two identities
would share it. A distilled student also has `student` (its own reference), the `teacher` recipe column,
`teacher_weights`, and `teacher/agreement/<split>` (its agreement with the teacher) and
`teacher/dev/<split>/<metric>` (the teacher's own dev metrics). checkpoint_dtype and param_dtype: what the
checkpoint's weights held and what the parameters were trained in (float32); model_type, the model's family
(config.model_type); max_length, the tokens a row was cut to (max_seq_length, or less where the model takes fewer).
An exported table adds `counted`: whether the trial is the one that stands for its grid point (`latest`).
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import optuna
import pandas as pd

from glue_bench.errors import UserError
from glue_bench.inputs.model_names import display_names, model_identity, student_name
from glue_bench.sweeping.artifacts import download_predictions
from glue_bench.sweeping.schema import LEGACY_RECIPE_VALUES
from glue_bench.sweeping.storage import open_storage
from glue_bench.training.recipe import shared_fields

RECIPE_COLUMNS = shared_fields()  # every Recipe field but the grid point's: a new field is a column at once
ID_COLUMNS = ["sweep", "model", "task", "study", "trial", "state", "batch_size", "lr", "seed", "score"]


POINT = ["sweep", "model", "task", "batch_size", "lr", "seed"]


# Besides the recipe, what a distilled student's trial learned from: seeds trained against two versions of a
# kept teacher, or two contents of one transfer file, are never one configuration.
TAUGHT_COLUMNS = ("teacher_weights", "transfer_rows")


def point_columns(table: pd.DataFrame) -> list[str]:
    """What makes two trials runs of the same thing: the sweep, model, task, grid point, whole recipe and what
    a distilled student learned from."""
    return POINT + [c for c in RECIPE_COLUMNS + TAUGHT_COLUMNS if c in table.columns]


def latest(table: pd.DataFrame) -> pd.DataFrame:
    """The one trial that stands for each grid point and recipe: its latest COMPLETE trial, else its latest
    trial in any state (a failed, running or waiting point). A trial run again (a second `glue-bench run`
    with the same seed, a retry) replaces the earlier one and never counts as another seed. Report, submit,
    check, plots and export all count trials through this one rule."""
    if table.empty:
        return table
    keys = point_columns(table)
    frame = table[keys].copy()
    frame["lr"] = frame["lr"].map(lambda v: float(f"{v:.12g}") if pd.notna(v) else v)  # a CSV round trip
    # NaN, None, bools and numbers group alike whether read from a storage or a file.
    frame = frame.map(lambda v: "" if v is None or isinstance(v, float) and math.isnan(v) else str(v))
    frame["_done"] = (table["state"] == "COMPLETE").to_numpy()
    frame["_trial"] = pd.to_numeric(table["trial"]).to_numpy()
    chosen = frame.sort_values(["_done", "_trial"], kind="stable").groupby(keys, sort=False, dropna=False).tail(1).index
    return table.loc[table.index.isin(chosen)]


def _row(study: optuna.study.StudySummary | optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
    attrs = trial.user_attrs
    sweep, model, task = study.study_name.split("/", 2) if study.study_name.count("/") >= 2 else ("", "", "")
    info = study.user_attrs  # a sweep's study records its sweep, model and task (a model ref may hold '/')
    sweep, model, task = info.get("sweep", sweep), info.get("model", model), info.get("task", task)
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}  # waiting: its enqueued grid point
    # A distilled student is a model of its own; a waiting trial has no recipe yet: its study's names its teacher.
    taught = attrs.get("recipe", info.get("recipe", {}))
    student = attrs.get("model", model)
    row = {
        "sweep": sweep,
        "model": student_name(student, taught.get("teacher"), taught.get("transfer")),  # made unique in _named
        "task": attrs.get("task", task),
        "study": study.study_name,
        "trial": trial.number,
        "state": trial.state.name,
        "batch_size": params.get("batch_size"),
        "lr": params.get("lr"),
        "seed": params.get("seed"),
        "score": trial.value if trial.values else None,
    }
    for split, values in attrs.get("metrics", {}).items():
        for name, value in values.items():
            row[f"dev/{split}/{name}"] = value
    for key, values in attrs.get("extra_metrics", {}).items():
        for name, value in values.items():
            row[f"extra/{key}/{name}"] = value
    for split, value in attrs.get("teacher", {}).get("agreement", {}).items():
        row[f"teacher/agreement/{split}"] = value
    for split, values in attrs.get("teacher", {}).get("metrics", {}).items():
        for name, value in values.items():
            row[f"teacher/dev/{split}/{name}"] = value
    row.update({name: taught.get(name, LEGACY_RECIPE_VALUES.get(name)) for name in RECIPE_COLUMNS})
    row["student"] = student
    for name in (
        "train_seconds",
        "eval_seconds",
        "train_examples",
        "steps",
        "resumed_from_step",
        "resume_lost_seconds",
        "examples_per_second",
        "data",
        "checkpoint_dtype",
        "checkpoint_labels",
        "param_dtype",
        "model_type",
        "max_length",
        "teacher_weights",
        "transfer_rows",
        "transfer_count",
        "fail_reason",
        "worker",  # host:pid
        "slurm",  # the SLURM task that ran it (ARRAYJOB_TASK), under SLURM
    ):
        row[name] = attrs.get(name)
    if attrs.get("interrupted"):  # Ctrl-C, not the trial's fault: the next sweep queues its point again
        row["fail_reason"] = "interrupted"
    row["encoder_ran"] = attrs.get("encoder")  # the recipe's `encoder` is the one asked for; this one ran
    row["covers"] = ",".join(info.get("covers", [])) or None  # tasks this model also predicts (MNLI: ax)
    row["retry_of"] = trial.system_attrs.get("failed_trial")  # a killed worker's trial, run again
    row["started"] = trial.datetime_start
    row["completed"] = trial.datetime_complete
    for name in ("curve", "recipe", "env", "predictions", "dev_predictions", "predicted_classes", "pack"):
        row[name] = json.dumps(attrs[name], sort_keys=True) if name in attrs else None
    return row


def runs_table(storage_url: str | None, sweep: str | None = None) -> pd.DataFrame:
    """One row per trial of every study in the storage (or of one sweep)."""
    storage = open_storage(storage_url, create=False)
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if sweep and not summary.study_name.startswith(f"{sweep}/"):
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        rows.extend(_with_reruns([_row(study, t) for t in study.get_trials(deepcopy=False)]))
    table = pd.DataFrame(_named(rows))
    # a column of whole numbers that some rows lack (steps of a failed trial, checkpoint_labels of a model without a
    # head) stays whole: pandas' nullable Int64, not float64's 76.0 and NaN
    for column in table.columns:
        values = [row[column] for row in rows if row.get(column) is not None]
        if values and len(values) < len(rows) and all(type(v) is int for v in values):
            table[column] = table[column].astype("Int64")
    return _ordered(table)


def _named(rows: list[dict]) -> list[dict]:
    """Each row's model by its identity (model_id: the student, a teacher's full reference and weights, the
    transfer rows' content) and a name unique per identity in the storage (model), which every report shows."""
    for row, name in zip(rows, display_names(rows)):
        row["model_id"] = model_identity(row["student"], row["teacher"], row["teacher_weights"], row["transfer_rows"])
        row["model"] = name
    return rows


def _with_reruns(rows: list[dict]) -> list[dict]:
    """rerun_by: for a trial that did not finish (interrupted, or a killed worker's), the next trial of its
    study that ran the same grid point."""
    for row in rows:
        if row["state"] == "FAIL":
            later = [r["trial"] for r in rows if r["trial"] > row["trial"] and all(r[k] == row[k] for k in POINT)]
            row["rerun_by"] = min(later) if later else None
    return rows


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=ID_COLUMNS)
    metric_columns = sorted(c for c in table.columns if c.startswith(("dev/", "extra/", "teacher/")))
    rest = [c for c in table.columns if c not in ID_COLUMNS and c not in metric_columns]
    return table[ID_COLUMNS + metric_columns + rest].sort_values(["sweep", "model", "task", "trial"], ignore_index=True)


def _metric_columns(table: pd.DataFrame) -> list[str]:
    """The columns holding metric values: the task score, every dev metric, other tasks' metrics (AX), a
    distilled student's agreement with its teacher and the teacher's own dev metrics."""
    return [c for c in table.columns if c == "score" or c.startswith(("dev/", "extra/", "teacher/"))]


def export(table: pd.DataFrame, path: str) -> None:
    """Write the runs table; `counted` marks the trial that stands for its grid point (see `latest`).

    Metrics are written in points (x 100), as every report shows them; `metric_unit` says so, and read_runs
    turns them back (a file exported before, without that column, holds fractions)."""
    table = table.assign(counted=table.index.isin(latest(table).index))
    metrics = _metric_columns(table)
    table[metrics] = table[metrics].astype(float) * 100
    table["metric_unit"] = "points"
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        table.to_csv(out, index=False)
    elif out.suffix == ".parquet":
        table.to_parquet(out, index=False)
    else:
        raise UserError(f"--out {path}: write .csv or .parquet")


def read_runs(path: str, option: str = "--runs") -> pd.DataFrame:
    """A runs table exported earlier (CSV or Parquet). `option` names the file in error messages."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{option} {path}: no such file; make one with glue-bench export --out {path}")
    try:
        table = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
    except Exception as e:
        raise UserError(f"{option} {path}: cannot read it as a runs table ({type(e).__name__}: {e})") from None
    missing = [c for c in ID_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"{option} {path}: not a glue-bench runs table (missing columns {', '.join(missing)})")
    if "metric_unit" in table.columns:
        units = set(table.pop("metric_unit").dropna())
        if not units <= {"points"}:
            raise UserError(f"{option} {path}: unknown metric_unit {sorted(units)}; glue-bench exports 'points'")
        metrics = _metric_columns(table)
        table[metrics] = table[metrics].astype(float) / 100
    return _with_recipe_columns(table)


def _with_recipe_columns(table: pd.DataFrame) -> pd.DataFrame:
    """A table exported before a recipe field had its own column: the field from the `recipe` JSON column."""
    absent = [c for c in RECIPE_COLUMNS if c not in table.columns]
    if not absent or "recipe" not in table.columns:
        return table
    recipes = [json.loads(r) if isinstance(r, str) and r else {} for r in table["recipe"]]
    for name in absent:
        table[name] = [r.get(name, LEGACY_RECIPE_VALUES.get(name)) for r in recipes]
    return table


def sidecar_path(path: str) -> Path:
    """Where an exported runs table keeps its trials' dev predictions: runs.csv → runs.dev-predictions.json.gz."""
    file = Path(path)
    return file.with_name(f"{file.stem}.dev-predictions.json.gz")


def write_dev_sidecar(table: pd.DataFrame, path: str, storage_url: str | None) -> int:
    """Every dev-prediction artifact the table's trials name, in one gzipped JSON file beside the export
    ({artifact id: {"idx", "prediction"}}), so that `check --tolerance bootstrap` can resample a committed
    baseline without its storage. The model's outputs only: the labels are the dataset's, not a file to
    commit; check takes them from the new run. Returns the number of artifacts written."""
    kept = {}
    for ids in table.get("dev_predictions", pd.Series(dtype=object)).dropna():
        for artifact in json.loads(ids).values():
            values = download_predictions(artifact, storage_url)
            kept[artifact] = {"idx": values["idx"], "prediction": values["prediction"]}
    with gzip.open(sidecar_path(path), "wt", encoding="utf-8") as f:
        json.dump(kept, f, separators=(",", ":"))
    return len(kept)


def read_dev_sidecar(path: str, option: str = "--baseline") -> dict[str, dict]:
    """The dev predictions kept beside an exported runs table (write_dev_sidecar)."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise UserError(
            f"{option} {path}: no {sidecar.name} beside it, which --tolerance bootstrap resamples; export the "
            f"baseline again with glue-bench export --with-dev-predictions --out {path}"
        )
    try:
        with gzip.open(sidecar, "rt", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, EOFError, ValueError) as e:
        raise UserError(f"{option} {path}: cannot read {sidecar.name} ({type(e).__name__}: {e})") from None
