"""Transfer data: unlabelled rows a teacher labels for its student (a distillation recipe's `transfer`).

A TSV, CSV, JSON lines or parquet file holding the task's text columns under the Hub's names (`sentence`,
or `sentence1`/`sentence2`, …: tasks/<name>.toml's hub_columns); any other column, a label included, is
ignored. The rows come out in the uniform layout of every split (text_a, text_b, label -1, idx), checked as
strictly as the GLUE files: a missing column, an empty file, bad encoding or a missing text is one line.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from glue_bench.errors import UserError, did_you_mean
from glue_bench.inputs.data import first_undecodable_line, uniform
from glue_bench.inputs.tasks import Task

FORMATS = {".tsv": "TSV", ".csv": "CSV", ".jsonl": "JSON lines", ".json": "JSON lines", ".parquet": "parquet"}


def _read(path: Path) -> pd.DataFrame:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"transfer {path}: unknown format; write a {', '.join(sorted(FORMATS))} file")
    if path.stat().st_size == 0:
        raise UserError(f"transfer {path}: the file is empty; it needs a header and some rows")
    try:
        if kind in ("TSV", "CSV"):
            # TSV as the GLUE files: no quoting (their texts hold unbalanced quotes); CSV quoted as CSV is.
            extra = {"sep": "\t", "quoting": csv.QUOTE_NONE} if kind == "TSV" else {}
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", **extra)
        if kind == "JSON lines":
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        return pd.read_parquet(path)
    except UnicodeDecodeError as e:
        raise UserError(
            f"transfer {path}: line {first_undecodable_line(path)}: not UTF-8 text ({e.reason}); re-save it as UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise UserError(f"transfer {path}: the file is empty; it needs a header and some rows") from None
    except Exception as e:  # pandas and pyarrow raise many types for a malformed file
        raise UserError(f"transfer {path}: cannot read it as {kind} ({type(e).__name__}: {e})") from None


def load_transfer(task: Task, path: str, limit: int = 0):
    """The file's rows (its first `limit` when limit > 0) as a datasets.Dataset in the uniform layout."""
    import datasets

    file = Path(path)
    if not file.is_file():
        raise UserError(f"transfer {path}: no such file")
    frame = _read(file)
    for column in task.hub_columns:
        if column not in frame.columns:
            found = ", ".join(map(str, frame.columns)) or "none"
            raise UserError(
                f"transfer {path}: no '{column}' column, which {task.name} reads its text from; "
                f"{did_you_mean(column, [str(c) for c in frame.columns])}the file has columns {found}"
            )
    if frame.empty:
        raise UserError(f"transfer {path}: the file has a header but no rows")
    frame = frame.head(limit) if limit else frame
    texts = [frame[c] for c in task.hub_columns]
    for column, values in zip(task.hub_columns, texts):
        bad = np.flatnonzero([not isinstance(v, str) for v in values])
        if len(bad):
            raise UserError(
                f"transfer {path}: row {bad[0] + 1}: no '{column}' text (found {values.iloc[bad[0]]!r}); "
                "fill it in or drop the row"
            )
    label = np.full(len(frame), -1.0 if task.regression else -1, dtype=np.float32 if task.regression else np.int64)
    text_b = texts[1].to_numpy(dtype=object) if task.is_pair else [None] * len(frame)
    rows = uniform(texts[0].to_numpy(dtype=object), text_b, label, np.arange(len(frame), dtype=np.int64), {})
    return datasets.Dataset.from_pandas(rows, preserve_index=False)


def fingerprint(path: str, limit: int = 0) -> str:
    """Identifies the rows by the file's content (a transfer file is the user's own and may be edited)."""
    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]
    return f"transfer:{digest}:{limit}"
