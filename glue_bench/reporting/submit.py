"""GLUE server submissions: one model's 11 prediction files, zipped, each checked before anything is written.

Each file is `index<TAB>prediction`, one row per test example, in the server's label strings (the task's
`labels`; STS-B a number clipped to its `label_range`). The predictions come from the best trial of the
task (selection.best, the best seed of the selected configuration); AX from the MNLI model's trial.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from glue_bench.errors import UserError
from glue_bench.inputs import model_names
from glue_bench.inputs.tasks import Split, Task, registry
from glue_bench.reporting import baselines, selection
from glue_bench.sweeping.artifacts import download_predictions
from glue_bench.training.recipe import lr_text

HEADER = ["index", "prediction"]


@dataclass(frozen=True)
class ServerFile:
    name: str  # CoLA.tsv
    task: Task  # whose test split it is (ax)
    split: Split
    predictor: Task  # whose model predicts it (mnli for ax)


def server_files() -> list[ServerFile]:
    """The files the GLUE server takes, in the registry's order."""
    tasks = registry()
    return [
        ServerFile(s.submission, t, s, tasks[t.predicted_by] if t.predicted_by else t)
        for t in tasks.values()
        for s in t.splits_with_role("test")
        if s.submission
    ]


def to_text(file: ServerFile, idx, prediction) -> str:
    """Model outputs (label ids; numbers for regression) → the file's text, rows in index order."""
    idx, values = np.asarray(idx), np.asarray(prediction)
    if len(idx) != len(values):
        raise UserError(f"{file.name}: {len(idx)} indices but {len(values)} predictions in the trial's artifact")
    order = np.argsort(idx, kind="stable")
    if file.task.regression:
        low, high = file.task.label_range or (-np.inf, np.inf)
        cells = [f"{v:.3f}" for v in np.clip(values.astype(float), low, high)[order]]
    else:
        ids = values.astype(float)
        bad = np.flatnonzero((ids != np.round(ids)) | (ids < 0) | (ids >= len(file.predictor.labels)))
        if len(bad):
            raise UserError(
                f"{file.name}: prediction {values[bad[0]].item()!r} (index {idx[bad[0]]}) is not a label id of "
                f"the {file.predictor.name} model (0 … {len(file.predictor.labels) - 1})"
            )
        cells = [file.predictor.labels[int(i)] for i in ids[order]]
    return "\t".join(HEADER) + "\n" + "".join(f"{i}\t{c}\n" for i, c in zip(idx[order], cells))


def check_text(file: ServerFile, text: str) -> None:
    """What the server checks: the header, one row per test example (indices 0 … n-1), valid labels."""
    where = f"{file.name}"
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, quoting=3)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{where}: not a two-column TSV file ({str(e).strip()[:120]})") from None
    if list(frame.columns) != HEADER:
        raise UserError(
            f"{where}: the header must be 'index<TAB>prediction', got {'<TAB>'.join(map(str, frame.columns))!r}"
        )
    if len(frame) != file.split.rows:
        raise UserError(
            f"{where}: {len(frame)} rows, but the {file.task.name} {file.split.name} set has "
            f"{file.split.rows}; the server refuses it (was the trial run on a truncated or other test file?)"
        )
    index = pd.to_numeric(frame["index"], errors="coerce")
    if index.isna().any() or not np.array_equal(np.sort(index.to_numpy()), np.arange(file.split.rows)):
        raise UserError(f"{where}: the indices must be 0 … {file.split.rows - 1}, each once")
    if file.task.regression:
        numbers = pd.to_numeric(frame["prediction"], errors="coerce")
        low, high = file.task.label_range or (-np.inf, np.inf)
        bad = np.flatnonzero(numbers.isna().to_numpy() | (numbers < low).to_numpy() | (numbers > high).to_numpy())
        if len(bad):
            raise UserError(
                f"{where}: line {bad[0] + 2}: prediction '{frame['prediction'].iloc[bad[0]]}' is not a "
                f"number in [{low:g}, {high:g}]"
            )
    else:
        bad = np.flatnonzero(~frame["prediction"].isin(file.task.labels).to_numpy())
        if len(bad):
            raise UserError(
                f"{where}: line {bad[0] + 2}: label '{frame['prediction'].iloc[bad[0]]}' is not one of "
                f"the server's {file.task.name} labels {list(file.task.labels)}"
            )


def _majority_text(file: ServerFile) -> str:
    label = baselines.majority(file.predictor)
    if not label:
        raise UserError(f"{file.name}: no dev label counts for {file.predictor.name} to fill it with a majority class")
    return "\t".join(HEADER) + "\n" + "".join(f"{i}\t{label}\n" for i in range(file.split.rows))


def build(
    table: pd.DataFrame, storage_url: str | None, model: str, out: str, fill_missing: str | None = None
) -> tuple[list[str], list[str]]:
    """Write the zip; returns (lines saying where each file came from, warnings about filled files)."""
    if Path(out).suffix.lower() != ".zip":
        raise UserError(f"--out {out}: the GLUE server takes a .zip file")
    model = model_names.normalise_model(model)
    trials = table[table["model"] == model]
    if trials.empty:
        raise UserError(
            f"no trials of model {model} in the storage; models recorded: "
            f"{', '.join(map(str, model_names.by_size(table['model'])))}"
        )
    winners = selection.best(trials)
    texts, sources, missing = {}, [], []
    for file in server_files():
        chosen = winners[winners["task"] == file.predictor.name]
        key = f"{file.task.name}/{file.split.name}"
        submitted = selection.winning_trial(trials, chosen.iloc[0]) if len(chosen) else None
        artifact = selection.prediction_ids(submitted).get(key) if submitted is not None else None
        if artifact is None:
            missing.append(file)
            continue
        winner = chosen.iloc[0]
        try:
            predictions = download_predictions(artifact, storage_url)
        except Exception as e:  # optuna raises its own type for a missing artifact, OSError for a bad folder
            raise UserError(
                f"{file.name}: cannot read the predictions artifact {artifact} of {winner['sweep']}/"
                f"{model}/{file.predictor.name} trial {winner['best_trial']} ({type(e).__name__}); are the "
                "artifacts beside the storage (or in GLUE_BENCH_ARTIFACTS)?"
            ) from None
        texts[file.name] = to_text(file, predictions["idx"], predictions["prediction"])
        check_text(file, texts[file.name])
        # The submitted seed's own dev score; the configuration was selected on its mean over seeds.
        mean = f"; mean over its {winner['seeds']} seeds {100 * winner['score']:.1f}" if winner["seeds"] > 1 else ""
        sources.append(
            f"{file.name}: {file.predictor.name} trial {winner['best_trial']} of sweep {winner['sweep']} "
            f"(batch size {winner['batch_size']}, lr {lr_text(winner['lr'])}, seed {submitted['seed']:g}: "
            f"dev score {100 * submitted['score']:.1f}{mean})"
        )
    warnings = []
    if missing and fill_missing != "majority":
        names = ", ".join(f"{f.name} ({f.predictor.name})" for f in missing)
        raise UserError(
            f"model {model} has no test predictions for {names}; run those tasks first, or pass "
            "--fill-missing majority to fill them with the majority class (a baseline, not a result)"
        )
    for file in missing:
        texts[file.name] = _majority_text(file)
        check_text(file, texts[file.name])
        what = "the mean dev label" if file.task.regression else "the majority class"
        warnings.append(
            f"{file.name} FILLED with {what} '{baselines.majority(file.predictor)}' on all "
            f"{file.split.rows} rows: model {model} has no {file.predictor.name} test predictions"
        )
    _write_zip(out, texts)
    return sources, warnings


def _write_zip(out: str, texts: dict[str, str]) -> None:
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.NamedTemporaryFile(dir=path.parent, suffix=".zip", delete=False) as tmp,
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive,
        ):
            for file in server_files():
                archive.writestr(file.name, texts[file.name])
        os.replace(tmp.name, path)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write it ({e.strerror})") from None


def check_zip(path: str) -> list[str]:
    """Check a submission zip as the server would; returns one line per file."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise UserError(f"--check {path}: not a readable zip file ({e})") from None
    with archive:
        names = set(archive.namelist())
        expected = server_files()
        lacking = [f.name for f in expected if f.name not in names]
        extra = sorted(names - {f.name for f in expected})
        if lacking or extra:
            raise UserError(
                f"{path}: the server takes exactly {len(expected)} files at the top of the zip; "
                + (f"missing {', '.join(lacking)}" if lacking else "")
                + ("; " if lacking and extra else "")
                + (f"unexpected {', '.join(extra)}" if extra else "")
            )
        lines, problems = [], []
        for file in expected:  # every file checked, every problem told: one fix-and-retry, not eleven
            try:
                check_text(file, archive.read(file.name).decode("utf-8"))
            except UnicodeDecodeError as e:
                problems.append(f"{file.name}: not UTF-8 text ({e.reason} at byte {e.start})")
            except UserError as e:
                problems.append(str(e))
            else:
                lines.append(f"{file.name}: {file.split.rows} rows, labels ok")
    if problems:
        raise UserError("\n".join(problems))
    return lines
