"""Per-task metrics, the task score and the GLUE score. Metrics are fractions (0.842), reports show points.

The GLUE score is the mean of 9 task scores: CoLA MCC; SST-2, QNLI, RTE, WNLI accuracy; MRPC and QQP
(F1 + accuracy) / 2; STS-B (Pearson + Spearman) / 2; MNLI (matched + mismatched) / 2. AX is excluded.
"""

from __future__ import annotations

import math

import numpy as np

from glue_bench.inputs.tasks import Task, metric_module

# scipy and scikit-learn load when a metric is first computed: reading results and plans never needs them.

GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")


def _correlation(name: str, predictions, labels) -> float:
    import scipy.stats

    # A constant prediction has no correlation; scipy warns and returns nan: call it 0, as GLUE does.
    if np.std(predictions) == 0 or np.std(labels) == 0:
        return 0.0
    return float(getattr(scipy.stats, name)(predictions, labels)[0])


def _sklearn(name: str, **options):
    def metric(predictions, labels) -> float:
        import sklearn.metrics

        return float(getattr(sklearn.metrics, name)(labels, predictions, **options))

    return metric


METRICS = {
    "accuracy": _sklearn("accuracy_score"),
    "f1": _sklearn("f1_score", pos_label=1, average="binary", zero_division=0.0),
    "mcc": _sklearn("matthews_corrcoef"),
    "pearson": lambda p, y: _correlation("pearsonr", p, y),
    "spearman": lambda p, y: _correlation("spearmanr", p, y),
}


def compute(task: Task, predictions, labels) -> dict[str, float]:
    """Every metric of the task on one split. `predictions` are label ids (or scores for regression). Metrics
    that are not built in come from the task's `evaluate` metric module (tasks.metric_module)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    own = [name for name in task.metrics if name not in METRICS]
    found = {}
    if own:
        found = metric_module(task.metric_module).compute(predictions=predictions.tolist(), references=labels.tolist())
    return {
        name: METRICS[name](predictions, labels) if name in METRICS else float(found[name]) for name in task.metrics
    }


def split_score(task: Task, metrics: dict[str, float]) -> float:
    """The task's score on one split: the mean of its score metrics (MRPC: (F1 + accuracy) / 2)."""
    return float(np.mean([metrics[name] for name in task.score]))


def task_score(task: Task, per_split: dict[str, dict[str, float]]) -> float:
    """Mean over the task's dev splits of the split score (MNLI: (matched + mismatched) / 2)."""
    return float(np.mean([split_score(task, per_split[s.name]) for s in task.splits_with_role("dev")]))


def glue_score(task_scores: dict[str, float]) -> tuple[float, bool]:
    """(mean of the 9 GLUE task scores, complete). Missing tasks are left out and complete is False."""
    present = [task_scores[t] for t in GLUE_TASKS if t in task_scores and not math.isnan(task_scores[t])]
    complete = len(present) == len(GLUE_TASKS)
    return (float(np.mean(present)) if present else math.nan), complete
