"""The task registry: one frozen dataclass per `tasks/<name>.toml`, loaded strictly.

Everything task-specific lives in those files, so no code branches on a task's name. A user's own task file
may name an `evaluate` metric module (metric_module, a local path) for metrics that are not built in; it is
loaded and tried where the task file is read, so a wrong module stops the run before any training.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

from glue_bench.errors import UserError, did_you_mean, unknown_key
from glue_bench.inputs import shipped

ROLES = ("train", "dev", "test")
KNOWN_METRICS = ("accuracy", "f1", "mcc", "pearson", "spearman")


@dataclass(frozen=True)
class Split:
    """One split of a task: where it lives in each data layout and how many rows it has."""

    name: str  # our name, the Hub's split name where there is one (validation_matched, …)
    role: str  # train | dev | test
    rows: int  # expected row count of the official release
    hub: str  # the Hub's split name; "" when the Hub does not have it
    file: str  # file name in the original glue_data layout
    header: bool  # whether the TSV file starts with a header row
    text_a: str | int  # column of the first text: a header name, or a 0-based position
    text_b: str | int | None = None
    label: str | int | None = None  # absent in test splits
    idx: str | int | None = None  # absent: the row number is the index
    submission: str = ""  # GLUE server file name, for test splits
    extra_columns: tuple[str, ...] = ()  # kept as they are (e.g. AX's diagnostic categories)


@dataclass(frozen=True)
class Task:
    name: str
    glue_dir: str  # folder in the original glue_data layout
    hub_config: str  # config of nyu-mll/glue
    hub_columns: tuple[str, ...]  # text_a[, text_b] column names in the Hub's files
    labels: tuple[str, ...]  # label strings of the original files, in label-id order; () if regression
    regression: bool
    metrics: tuple[str, ...]  # all dev metrics computed
    score: tuple[str, ...]  # the task score: mean of these metrics, averaged over the dev splits
    splits: dict[str, Split]
    predicted_by: str = ""  # a task with no training data, predicted by this task's model (AX ← MNLI)
    label_range: tuple[float, ...] = ()  # a regression task's [low, high]: submissions are clipped to it
    label_names: tuple[str, ...] = ()  # names of the labels where the files hold codes ("0"/"1"); () : labels
    metric_module: str = ""  # an `evaluate` metric module (its resolved path) computing the metrics not built in
    source_file: str = ""

    @property
    def is_pair(self) -> bool:
        return len(self.hub_columns) == 2

    @property
    def names(self) -> tuple[str, ...]:
        """The labels' names in label-id order, as a model's id2label gives them (SST-2: negative, positive)."""
        return self.label_names or self.labels

    @property
    def num_labels(self) -> int:
        return 1 if self.regression else len(self.labels)

    def splits_with_role(self, role: str) -> list[Split]:
        return [s for s in self.splits.values() if s.role == role]

    @property
    def train_split(self) -> Split | None:
        train = self.splits_with_role("train")
        return train[0] if train else None


def _check_keys(table: dict, cls, where: str, required_names: set[str]) -> None:
    allowed = {f.name for f in fields(cls)} - {"name", "splits", "source_file"}
    for key in table:
        if key not in allowed:
            raise unknown_key(key, allowed, where)
    for key in sorted(required_names - set(table)):
        raise UserError(f"{where}: missing required key '{key}'")


def _expect(value, types, where: str, key: str):
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        names = " or ".join(t.__name__ for t in _as_tuple(types))
        raise UserError(f"{where}: key '{key}' must be {names}, got {value!r}")
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


_SPLIT_TYPES = {
    "role": str,
    "rows": int,
    "hub": str,
    "file": str,
    "header": bool,
    "text_a": (str, int),
    "text_b": (str, int),
    "label": (str, int),
    "idx": (str, int),
    "submission": str,
    "extra_columns": list,
}
_TASK_TYPES = {
    "glue_dir": str,
    "hub_config": str,
    "hub_columns": list,
    "labels": list,
    "regression": bool,
    "metrics": list,
    "score": list,
    "predicted_by": str,
    "label_range": list,
    "label_names": list,
    "metric_module": str,
}


def _parse_split(name: str, table: dict, where: str) -> Split:
    where = f"{where} [splits.{name}]"
    if not isinstance(table, dict):
        raise UserError(f"{where}: must be a table")
    required = {"role", "rows", "hub", "file", "header", "text_a"}
    _check_keys(table, Split, where, required)
    for key, value in table.items():
        _expect(value, _SPLIT_TYPES[key], where, key)
    if table["role"] not in ROLES:
        raise UserError(f"{where}: role must be one of {', '.join(ROLES)}, got '{table['role']}'")
    if table["rows"] < 0:
        raise UserError(f"{where}: rows must be >= 0, got {table['rows']}")
    if table["role"] != "test" and "label" not in table:
        raise UserError(f"{where}: a {table['role']} split needs a 'label' column")
    values = dict(table)
    values["extra_columns"] = tuple(values.get("extra_columns", ()))
    return Split(name=name, **values)


def parse_task(data: dict, where: str) -> Task:
    """Build a Task from a parsed TOML table; every problem names the file and the key."""
    required = {"glue_dir", "hub_config", "hub_columns", "labels", "regression", "metrics", "score", "splits"}
    if "name" not in data:
        raise UserError(f"{where}: missing required key 'name'")
    body = {k: v for k, v in data.items() if k != "name"}
    _check_keys({k: v for k, v in body.items() if k != "splits"}, Task, where, required - {"splits"})
    if "splits" not in body or not isinstance(body["splits"], dict) or not body["splits"]:
        raise UserError(f"{where}: missing required table [splits.<name>]")
    for key, value in body.items():
        if key != "splits":
            _expect(value, _TASK_TYPES[key], where, key)
    for key in ("hub_columns", "labels", "metrics", "score", "label_names"):
        if not all(isinstance(v, str) for v in body.get(key, ())):
            raise UserError(f"{where}: key '{key}' must be a list of strings")
    if len(body["hub_columns"]) not in (1, 2):
        raise UserError(f"{where}: hub_columns must name 1 or 2 text columns")
    if "metric_module" in body:
        body["metric_module"] = _module_path(body["metric_module"], where)
    for metric in body["metrics"]:
        if metric not in KNOWN_METRICS and "metric_module" not in body:
            raise UserError(
                f"{where}: unknown metric '{metric}'; known: {', '.join(KNOWN_METRICS)}, or name an evaluate "
                'metric module that computes it (metric_module = "my_metric.py")'
            )
    if not body["score"] or not set(body["score"]) <= set(body["metrics"]):
        raise UserError(f"{where}: score must list some of the task's metrics {body['metrics']}")
    if body["regression"] == bool(body["labels"]):
        raise UserError(f"{where}: a regression task has labels = [], a classification task lists its labels")
    if "label_range" in body:
        low_high = body["label_range"]
        if (
            len(low_high) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in low_high)
            or not low_high[0] < low_high[1]
            or not body["regression"]
        ):
            raise UserError(f"{where}: label_range must be [low, high] with low < high, for a regression task")
        body["label_range"] = tuple(float(v) for v in low_high)
    if "label_names" in body and len(body["label_names"]) != len(body["labels"]):
        raise UserError(f"{where}: label_names must name each of the {len(body['labels'])} labels, in their order")
    splits = {name: _parse_split(name, table, where) for name, table in body.pop("splits").items()}
    if not any(s.role == "dev" for s in splits.values()):
        raise UserError(f'{where}: a task needs at least one split with role = "dev"')
    tuples = {k: tuple(body[k]) for k in ("hub_columns", "labels", "metrics", "score", "label_names") if k in body}
    task = Task(name=data["name"], splits=splits, source_file=where, **{**body, **tuples})
    if task.metric_module:
        _check_module(task, where)
    return task


def _module_path(value: str, where: str) -> str:
    """metric_module: a path relative to the task file (or absolute), of a file or folder that exists."""
    path = Path(where).parent / value
    if not path.exists():
        raise UserError(
            f"{where}: metric_module '{value}' not found ({path}); give the path of an evaluate metric module "
            "(a .py file or its folder), relative to the task file"
        )
    return str(path.resolve())


@cache
def metric_module(path: str):
    """The `evaluate` metric module at a local path, loaded once per process. keep_in_memory: no cache files,
    which workers computing at the same moment would share."""
    import evaluate

    return evaluate.load(path, keep_in_memory=True)


def _check_module(task: Task, where: str) -> None:
    """Load the module and try it on two rows: it must return a number for each metric it is named for."""
    own = [m for m in task.metrics if m not in KNOWN_METRICS]
    probe = [0.0, 1.0] if task.regression else [0, min(1, len(task.labels) - 1)]
    try:
        result = metric_module(task.metric_module).compute(predictions=probe, references=probe[::-1])
    except Exception as e:  # a user's code: any error is theirs to fix, in one line
        raise UserError(
            f"{where}: metric_module {task.metric_module}: cannot load it and compute on two rows as an evaluate "
            f"metric ({type(e).__name__}: {e})"
        ) from None
    got = result if isinstance(result, dict) else {}
    missing = [m for m in own if not isinstance(got.get(m), (int, float)) or isinstance(got.get(m), bool)]
    if missing or any(not math.isfinite(float(got[m])) for m in own):
        raise UserError(
            f"{where}: metric_module {task.metric_module} returns {sorted(got) if got else result!r}, not a number "
            f"for each of the metrics {', '.join(missing or own)} that `metrics` names"
        )


def load_task_file(path: Path) -> Task:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read task file ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    task = parse_task(data, str(path))
    if task.name != path.stem:
        raise UserError(f"{path}: name = '{task.name}' must match the file name '{path.stem}'")
    return task


def _task_files() -> list[Path]:
    return sorted(shipped.task_dir().glob("*.toml"))


@cache
def registry() -> dict[str, Task]:
    """All shipped tasks by name."""
    tasks = {p.stem: load_task_file(p) for p in _task_files()}
    for task in tasks.values():
        if task.predicted_by and task.predicted_by not in tasks:
            raise UserError(f"{task.source_file}: predicted_by = '{task.predicted_by}' is not a task")
    return tasks


def get_task(name: str) -> Task:
    """A task by name, or by the path of a user's own TOML file."""
    if name.endswith(".toml"):
        return load_task_file(Path(name))
    tasks = registry()
    key = name.lower().replace("-", "")
    if key in tasks:
        return tasks[key]
    raise UserError(
        f"unknown task '{name}': {did_you_mean(key, tasks)}known tasks: {', '.join(tasks)} (or the path of your own task .toml file)"
    )


def dependents(task: Task) -> list[Task]:
    """Tasks predicted by this task's model (MNLI → AX)."""
    return [t for t in registry().values() if t.predicted_by == task.name]
