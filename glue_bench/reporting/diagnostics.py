"""AX scored locally: the MNLI model's predictions on the labelled diagnostic set, overall and by category.

The GLUE server scores AX (its R3, the multi-class Matthews correlation) but hides the breakdown; the
labelled release (diagnostic-full.tsv) carries the categories, so it is computed here offline. Each of the
split's extra columns (Lexical Semantics, Predicate-Argument Structure, Logic, Knowledge, and Domain) is a
coarse category; its cells list fine-grained ones separated by semicolons ("Negation;Conditionals").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from glue_bench.errors import UserError
from glue_bench.inputs import data, model_names
from glue_bench.inputs.tasks import Task, get_task
from glue_bench.reporting import selection
from glue_bench.reporting.render import Report
from glue_bench.sweeping.artifacts import download_predictions
from glue_bench.training import metrics
from glue_bench.training.recipe import lr_text


def mcc(frame: pd.DataFrame) -> float:
    return metrics.METRICS["mcc"](frame["prediction"].to_numpy(), frame["label"].to_numpy())


def breakdown(frame: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """Rows: all examples; per coarse category, the examples that have any value in it ("(any)", left out
    where every example has one) and each fine-grained value. `frame` has label, prediction and `categories`."""
    rows = [{"category": "All", "subcategory": "", "examples": len(frame), "mcc": mcc(frame)}]
    for column in categories:
        fine = frame[column].fillna("").astype(str).str.split(";").map(lambda v: sorted({x.strip() for x in v} - {""}))
        has_any = fine.map(bool)
        if not has_any.all():
            rows.append(
                {"category": column, "subcategory": "(any)", "examples": int(has_any.sum()), "mcc": mcc(frame[has_any])}
            )
        for value in sorted({v for values in fine for v in values}):
            chosen = fine.map(lambda values, value=value: value in values)
            rows.append(
                {"category": column, "subcategory": value, "examples": int(chosen.sum()), "mcc": mcc(frame[chosen])}
            )
    return pd.DataFrame(rows)


def labelled_split(ax: Task):
    """The labelled split of a task predicted by another's model (AX: diagnostic)."""
    splits = ax.splits_with_role("dev")
    if not splits:
        raise UserError(f"{ax.name} has no labelled split to score locally")
    return splits[0]


def ax_report(
    table: pd.DataFrame, storage_url: str | None, model: str, data_option: str | None, task_name: str = "ax"
) -> Report:
    """--ax MODEL: the AX Matthews correlation of MODEL's best MNLI trial, broken down by category."""
    ax = get_task(task_name)
    split = labelled_split(ax)
    model = model_names.normalise_model(model)
    winners = selection.best(table[table["model"] == model])
    chosen = winners[winners["task"] == ax.predicted_by]
    if chosen.empty:
        raise UserError(
            f"--ax {model}: no completed {ax.predicted_by} trial of {model}; AX is predicted by the "
            f"{ax.predicted_by} model: run --task {ax.predicted_by} first"
        )
    winner = chosen.iloc[0]
    row = selection.winning_trial(table, winner)
    artifact = selection.prediction_ids(row).get(f"{ax.name}/{split.name}")
    if not artifact:
        raise UserError(
            f"--ax {model}: {ax.predicted_by} trial {winner['best_trial']} recorded no {ax.name}/{split.name} "
            f"predictions; was {split.file} in its --data folder?"
        )
    try:
        predictions = download_predictions(artifact, storage_url)
    except Exception as e:  # optuna raises its own type for a missing artifact
        raise UserError(
            f"--ax {model}: cannot read the predictions artifact {artifact} ({type(e).__name__}); are "
            "the artifacts beside the storage (or in GLUE_BENCH_ARTIFACTS)?"
        ) from None
    gold = data.load_split(ax, split, data.resolve_source(data_option)).to_pandas()
    frame = gold.merge(pd.DataFrame({"idx": predictions["idx"], "prediction": predictions["prediction"]}), on="idx")
    if len(frame) != len(gold):
        raise UserError(
            f"--ax {model}: {len(predictions['idx'])} predictions match {len(frame)} of the {len(gold)} "
            f"labelled {ax.name} examples; the trial predicted another version of {split.file}"
        )
    table_out = breakdown(frame, list(split.extra_columns))
    shown = pd.DataFrame(
        {
            "Category": table_out["category"],
            "Subcategory": table_out["subcategory"],
            "Examples": table_out["examples"].astype(str),
            "MCC": [f"{100 * v:.1f}" for v in table_out["mcc"]],
        }
    )
    recorded = row.get(f"extra/{ax.name}/{split.name}/mcc")
    intro = (
        f"{model}'s {ax.predicted_by} model (trial {winner['best_trial']} of sweep {winner['sweep']}, batch size "
        f"{winner['batch_size']}, lr {lr_text(winner['lr'])}) on the {len(frame)} labelled {ax.name.upper()} examples "
        f"({split.file}): the Matthews correlation (R3 over the 3 classes), in points, overall and by category."
    )
    notes = [
        "(any): the examples with any fine-grained category in that coarse category; an example can be in several."
    ]
    if recorded is not None and pd.notna(recorded) and not np.isclose(float(recorded), table_out["mcc"].iloc[0]):
        notes.append(
            f"Note: the trial recorded {100 * float(recorded):.1f} on this split; the data differs from what it saw."
        )
    return Report(f"{ax.name.upper()} diagnostic breakdown: {model}", shown, intro, notes, text_columns=2)
