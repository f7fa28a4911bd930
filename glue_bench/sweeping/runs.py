"""Storage → the runs table (pandas, one row per trial), and its export to CSV or Parquet.

Everything downstream (report, submit, check) reads this table, from a storage or an exported file.

Columns: sweep, model, task, study, trial, state, batch_size, lr, seed, score, one `dev/<split>/<metric>`
column per dev metric, `extra/<task>/<split>/<metric>` for splits of other tasks the model scored (AX's
diagnostic), recipe fields (epochs, max_seq_length, …), timings, fail_reason, covers (tasks never trained
but predicted by this trial's model: "ax" on MNLI rows), retry_of (the trial a retry re-runs), and JSON
columns curve, recipe, env, predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd

from glue_bench.errors import UserError
from glue_bench.sweeping.storage import open_storage

RECIPE_COLUMNS = (
    "epochs",
    "max_seq_length",
    "weight_decay",
    "warmup_ratio",
    "max_grad_norm",
    "max_train_samples",
    "group_by_length",
    "bf16",
    "tf32",
    "fused_adamw",
)
ADDED_RECIPE_FIELDS = {"fused_adamw": False}  # absent in older trials: they ran the default
ID_COLUMNS = ["sweep", "model", "task", "study", "trial", "state", "batch_size", "lr", "seed", "score"]


def _row(study: optuna.study.StudySummary | optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
    attrs = trial.user_attrs
    sweep, model, task = study.study_name.split("/", 2) if study.study_name.count("/") >= 2 else ("", "", "")
    info = study.user_attrs  # a sweep's study records its sweep, model and task (a model ref may hold '/')
    sweep, model, task = info.get("sweep", sweep), info.get("model", model), info.get("task", task)
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}  # waiting: its enqueued grid point
    row = {
        "sweep": sweep,
        "model": attrs.get("model", model),
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
    recipe = attrs.get("recipe", {})
    row.update({name: recipe.get(name, ADDED_RECIPE_FIELDS.get(name)) for name in RECIPE_COLUMNS})
    for name in (
        "train_seconds",
        "eval_seconds",
        "train_examples",
        "steps",
        "examples_per_second",
        "data",
        "fail_reason",
    ):
        row[name] = attrs.get(name)
    row["covers"] = ",".join(info.get("covers", [])) or None  # tasks this model also predicts (MNLI: ax)
    row["retry_of"] = trial.system_attrs.get("failed_trial")  # a killed worker's trial, run again
    row["started"] = trial.datetime_start
    row["completed"] = trial.datetime_complete
    for name in ("curve", "recipe", "env", "predictions"):
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
        rows.extend(_row(study, t) for t in study.get_trials(deepcopy=False))
    return _ordered(pd.DataFrame(rows))


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=ID_COLUMNS)
    metric_columns = sorted(c for c in table.columns if c.startswith(("dev/", "extra/")))
    rest = [c for c in table.columns if c not in ID_COLUMNS and c not in metric_columns]
    return table[ID_COLUMNS + metric_columns + rest].sort_values(["sweep", "model", "task", "trial"], ignore_index=True)


def export(table: pd.DataFrame, path: str) -> None:
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
    return table
