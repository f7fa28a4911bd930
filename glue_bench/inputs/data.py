"""Data sources → uniform splits (text_a, text_b, label, idx), and their tokenization cache.

Three sources give the same rows with the same label ids:
  hub                       nyu-mll/glue through `datasets`
  <dir> in glue_data layout  the original TSV files (CoLA/train.tsv, …)
  <dir> in Hub parquet layout  <config>/<split>-00000-of-00001.parquet (a local Hub snapshot)
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from glue_bench.errors import UserError, counted, did_you_mean, first_line
from glue_bench.inputs import cache, hub
from glue_bench.inputs.tasks import Split, Task

if TYPE_CHECKING:  # datasets loads where splits are read: commands that only read results never do
    import datasets

HUB_DATASET = "nyu-mll/glue"
UNIFORM_COLUMNS = ["text_a", "text_b", "label", "idx"]
LOCAL_LAYOUTS = (
    "a folder in the original glue_data layout (CoLA/train.tsv, …) or in the Hub's parquet layout "
    "(cola/train-00000-of-00001.parquet, …)"
)
POINT_AT_LOCAL = f"point --data (or GLUE_BENCH_DATA) at a local copy: {LOCAL_LAYOUTS}"


@dataclass(frozen=True)
class DataSource:
    """`hub`, or a local folder; `describe()` is what a trial records."""

    location: str  # "hub" or an absolute folder path

    @property
    def is_hub(self) -> bool:
        return self.location == "hub"

    def describe(self) -> str:
        return self.location


def resolve_source(data: str | None, origin: str = "--data") -> DataSource:
    """`data` (from `origin`: the --data option, a sweep file's `data` key), else GLUE_BENCH_DATA, else the Hub.
    An error names where the folder came from."""
    env = os.environ.get("GLUE_BENCH_DATA")
    value, where = (data, f"{origin} {data}") if data else (env, f"GLUE_BENCH_DATA={env}") if env else ("hub", "")
    if value == "hub":
        return DataSource("hub")
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise UserError(f"{where}: no such folder; pass 'hub' or {LOCAL_LAYOUTS}")
    return DataSource(str(folder.resolve()))


def _parquet_files(source: DataSource, task: Task, split: Split) -> list[Path]:
    if not split.hub:
        return []
    return sorted(Path(source.location, task.hub_config).glob(f"{split.hub}-*.parquet"))


def _tsv_file(source: DataSource, task: Task, split: Split) -> Path:
    return Path(source.location, task.glue_dir, split.file)


def available(task: Task, split: Split, source: DataSource) -> bool:
    """Whether the source holds this split (the Hub is assumed to hold what it lists)."""
    if source.is_hub:
        return bool(split.hub)
    return _tsv_file(source, task, split).is_file() or bool(_parquet_files(source, task, split))


def load_split(task: Task, split: Split, source: DataSource, check_rows: bool = True) -> datasets.Dataset:
    """One split as a uniform Dataset: text_a, text_b (None for one-sentence tasks), label, idx."""
    if source.is_hub:
        frame, where = _read_hub(task, split), f"{HUB_DATASET}/{task.hub_config}/{split.hub}"
        frame = _from_hub_columns(frame, task, split, where)
    elif _tsv_file(source, task, split).is_file():
        path = _tsv_file(source, task, split)
        frame, where = _from_tsv(_read_tsv(path, split), task, split, str(path)), str(path)
    elif files := _parquet_files(source, task, split):
        where = str(files[0].parent / f"{split.hub}-*.parquet")
        frame = _from_hub_columns(_read_parquet(files, where), task, split, where)
    else:
        raise UserError(
            f"{task.name} {split.name}: not found in {source.location} (looked for "
            f"{_tsv_file(source, task, split)} and {Path(source.location, task.hub_config, (split.hub or split.name) + '-*.parquet')})"
        )
    if check_rows and len(frame) != split.rows:
        raise UserError(
            f"{where}: {len(frame)} rows, but {task.name} {split.name} has {split.rows} in the GLUE "
            "release; the file is truncated or from another release: replace it with the original"
        )
    import datasets

    return datasets.Dataset.from_pandas(frame, preserve_index=False)


# --- readers -------------------------------------------------------------------------------------


def _read_tsv(path: Path, split: Split) -> pd.DataFrame:
    try:
        # QUOTE_NONE: several GLUE files hold unbalanced quotes; utf-8-sig drops MRPC's byte-order mark.
        frame = pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            header=0 if split.header else None,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; replace it with the original GLUE file") from None
    except pd.errors.ParserError as e:
        raise UserError(
            f"{path}: malformed TSV ({str(e).strip()}); is it the original tab-separated GLUE file?"
        ) from None
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: line {first_undecodable_line(path)}: not UTF-8 text ({e.reason}); re-save the file as UTF-8"
        ) from None
    _refuse_short_rows(path, frame.shape[1])
    return frame


def first_undecodable_line(path: Path) -> int:
    """pandas reports a byte offset inside its read buffer, not in the file: find the line instead."""
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return 0


def _refuse_short_rows(path: Path, width: int) -> None:
    """pandas fills the missing fields of a short row with "", so a row cut short (a truncated download)
    would pass as a row with an empty text or label."""
    with open(path, encoding="utf-8-sig", newline="") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.count("\t") + 1
            if fields < width and line.strip("\r\n"):
                raise UserError(
                    f"{path}: line {number} has {fields} of {width} tab-separated fields: the file is "
                    "cut short or damaged; replace it with the original GLUE file"
                )


def _read_parquet(files: list[Path], where: str) -> pd.DataFrame:
    try:
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(f"{where}: cannot read the parquet file ({type(e).__name__}: {e})") from None


def _read_hub(task: Task, split: Split) -> pd.DataFrame:
    import datasets

    if not split.hub:
        raise UserError(f"{task.name} {split.name} is not on the Hub; {POINT_AT_LOCAL}")
    if not hub.reachable():
        datasets.config.HF_HUB_OFFLINE = True  # use the local cache only, without retries
    try:
        return datasets.load_dataset(HUB_DATASET, task.hub_config, split=split.hub).to_pandas()
    except Exception as e:  # offline, or the Hub refused: datasets raises many types for both
        reason = first_line(e, 160)
        raise UserError(
            f"cannot load {HUB_DATASET}/{task.hub_config} from the Hugging Face Hub ({reason}); {POINT_AT_LOCAL}"
        ) from None


def _column(frame: pd.DataFrame, ref: str | int, where: str, role: str) -> pd.Series:
    if isinstance(ref, int):
        if ref >= frame.shape[1]:
            raise UserError(
                f"{where}: the {role} is column {ref} (0-based), but the file has only "
                f"{counted(frame.shape[1], 'column')}; is it tab-separated?"
            )
        return frame.iloc[:, ref]
    if ref not in frame.columns:
        names = [str(c) for c in frame.columns]
        fix = did_you_mean(ref, names)
        shown = ", ".join(names) if len(names) > 1 else f"one column '{names[0][:60]}' (is it tab-separated?)"
        raise UserError(f"{where}: no '{ref}' column for the {role}; {fix}the file has {shown}")
    return frame[ref]


def _labels_from_strings(values: pd.Series, task: Task, where: str, first_line: int) -> np.ndarray:
    if task.regression:
        numbers = pd.to_numeric(values, errors="coerce")
        bad = np.flatnonzero(numbers.isna().to_numpy())
        if len(bad):
            raise UserError(f"{where}: line {bad[0] + first_line}: label '{values.iloc[bad[0]]}' is not a number")
        return numbers.to_numpy(dtype=np.float32)
    ids = values.map({name: i for i, name in enumerate(task.labels)})
    bad = np.flatnonzero(ids.isna().to_numpy())
    if len(bad):
        raise UserError(
            f"{where}: line {bad[0] + first_line}: label '{values.iloc[bad[0]]}' is not one of "
            f"{task.name}'s labels {list(task.labels)}"
        )
    return ids.to_numpy(dtype=np.int64)


def uniform(text_a, text_b, label, idx, extra: dict) -> pd.DataFrame:
    frame = pd.DataFrame({"text_a": text_a, "text_b": text_b, "label": label, "idx": idx})
    for name, values in extra.items():
        frame[name] = values
    return frame


def _from_tsv(frame: pd.DataFrame, task: Task, split: Split, where: str) -> pd.DataFrame:
    first_line = 2 if split.header else 1  # file line of the first data row, for messages
    text_a = _column(frame, split.text_a, where, "first text").to_numpy(dtype=object)
    text_b = (
        _column(frame, split.text_b, where, "second text").to_numpy(dtype=object)
        if split.text_b is not None
        else [None] * len(frame)
    )
    if split.label is not None:
        label = _labels_from_strings(_column(frame, split.label, where, "label"), task, where, first_line)
    else:
        _refuse_test_labels(frame, task, where)
        label = np.full(len(frame), -1.0 if task.regression else -1, dtype=np.float32 if task.regression else np.int64)
    if split.idx is not None:
        raw = _column(frame, split.idx, where, "index")
        idx = pd.to_numeric(raw, errors="coerce")
        if idx.isna().any():
            line = int(np.flatnonzero(idx.isna().to_numpy())[0])
            raise UserError(f"{where}: line {line + first_line}: index '{raw.iloc[line]}' is not a number")
        idx = idx.to_numpy(dtype=np.int64)
    else:
        idx = np.arange(len(frame), dtype=np.int64)
    extra = {c: _column(frame, c, where, c).to_numpy(dtype=object) for c in split.extra_columns}
    return uniform(text_a, text_b, label, idx, extra)


def _refuse_test_labels(frame: pd.DataFrame, task: Task, where: str) -> None:
    """A test file with the label column of the task's other splits is a dev/train file in disguise."""
    label_names = {s.label for s in task.splits.values() if isinstance(s.label, str)}
    found = label_names & {str(c) for c in frame.columns}
    if found:
        raise UserError(
            f"{where}: a test file must carry no labels, but it has a '{found.pop()}' column; "
            "is it a train or dev file under the test file's name?"
        )


def _from_hub_columns(frame: pd.DataFrame, task: Task, split: Split, where: str) -> pd.DataFrame:
    columns = list(task.hub_columns) + ["label", "idx"]
    for name in columns:
        _column(frame, name, where, name)
    text_a = frame[task.hub_columns[0]].to_numpy(dtype=object)
    text_b = frame[task.hub_columns[1]].to_numpy(dtype=object) if task.is_pair else [None] * len(frame)
    if split.role == "test":  # the Hub keeps -1 for hidden labels (and MRPC's real ones): never use them
        label = np.full(len(frame), -1, dtype=np.float32 if task.regression else np.int64)
    elif task.regression:
        label = frame["label"].to_numpy(dtype=np.float32)
    else:
        label = frame["label"].to_numpy(dtype=np.int64)
        bad = np.flatnonzero((label < 0) | (label >= len(task.labels)))
        if len(bad):
            raise UserError(
                f"{where}: row {bad[0]}: label id {label[bad[0]]} is outside {task.name}'s {len(task.labels)} labels"
            )
    return uniform(text_a, text_b, label, frame["idx"].to_numpy(dtype=np.int64), {})


# --- tokenization ----------------------------------------------------------------------------------


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of the tokenizer's whole definition (vocabulary, normalizer, pair format, special tokens, the
    inputs it returns): two tokenizers with one fingerprint encode every text alike."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    spec += f"|{type(tokenizer).__name__}|{list(tokenizer.model_input_names)}"
    return hashlib.sha1(spec.encode()).hexdigest()[:16]


def model_inputs(tokenizer) -> list[str]:
    """What a tokenizer's rows keep: input_ids, and token_type_ids where the tokenizer gives them (BERT, ELECTRA,
    ALBERT do; RoBERTa, DistilBERT, MPNet do not). Batches pad to their longest row, so no mask is stored."""
    return ["input_ids"] + (["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else [])


def rows_record(task: Task, split: Split, source: DataSource) -> dict:
    """What identifies a split's rows for a cache key: the task's whole definition (its columns, labels and
    layouts), the split, and the source's fingerprint."""
    return {"task": asdict(task), "split": split.name, "source": data_fingerprint(task, split, source)}


def tokenize(split: datasets.Dataset, tokenizer, max_length: int, rows: dict) -> datasets.Dataset:
    """The split's texts as `model_inputs(tokenizer)` (no padding: batches pad to their longest row).

    Cached on disk (inputs/cache.py) under a key of `rows` (a record identifying the rows: rows_record, or a
    transfer file's), the tokenizer's fingerprint and max_length: every trial of a sweep, in any process,
    reuses it, and nothing else ever does.
    """
    keep = model_inputs(tokenizer)
    record = {"rows": rows, "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": max_length, "keep": keep}
    path = cache.path("tokenized", record, ".arrow")
    pair = split[0]["text_b"] is not None if len(split) else False

    def encode(batch):
        out = tokenizer(
            batch["text_a"],
            batch["text_b"] if pair else None,
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
        )
        return {name: out[name] for name in keep}

    return split.map(
        encode,
        batched=True,
        batch_size=2000,
        cache_file_name=str(path),
        remove_columns=["text_a", "text_b"],
        desc="tokenize",
        load_from_cache_file=True,
    )


def data_fingerprint(task: Task, split: Split, source: DataSource) -> str:
    """Identifies a split's rows cheaply: the files' sizes and modification times, or the Hub's name."""
    if source.is_hub:
        return f"hub:{task.hub_config}/{split.hub}"
    files = (
        [_tsv_file(source, task, split)]
        if _tsv_file(source, task, split).is_file()
        else _parquet_files(source, task, split)
    )
    return "|".join(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
