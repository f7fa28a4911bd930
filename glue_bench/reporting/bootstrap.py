"""Bootstrap intervals of task scores and of the GLUE score, at each (model, task)'s selected configuration.

One replicate resamples the configuration's seeds (with replacement), then each dev split's rows (with
replacement; the same row indices for every seed, and for every model of the same call: a paired design),
recomputes the task's own metric on each resampled seed (MCC, (F1 + accuracy) / 2, (Pearson + Spearman) / 2,
not a mean of per-row values; MNLI: the mean of its two splits) and averages over the resampled seeds. The
GLUE score of a replicate is the mean of its task scores (the same replicate index in every task). The
interval is the 2.5 and 97.5 percentiles over B replicates (numpy's default linear interpolation).

The draws, from numpy's default_rng(seed), in this order per task: for each sample (a model's selected
configuration) the seed indices, an integers(0, K, size=(B, K)) matrix; then for each dev split, for each
replicate b, integers(0, n, size=n). Rows are resampled as counts (weights) and every metric is computed
from weighted sufficient statistics, vectorized over replicates and seeds: a confusion matrix per
replicate and seed for classification, weighted moments (of average ranks, for Spearman) for regression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from glue_bench.errors import UserError
from glue_bench.inputs.tasks import Task, get_task
from glue_bench.reporting.selection import best, prediction_ids, selected_trials
from glue_bench.sweeping.artifacts import download_predictions
from glue_bench.sweeping.runs import latest
from glue_bench.training.metrics import GLUE_TASKS

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
BLOCK = 100  # replicates whose row counts are held at once: QQP's 40,430 rows × 100 × 8 bytes = 32 MB
NO_DEV_PREDICTIONS = "no dev predictions recorded: its trials ran before glue-bench kept them"
RESAMPLED = ("accuracy", "f1", "mcc", "pearson", "spearman")  # the metrics split_scores recomputes per resample


@dataclass
class Sample:
    """A (model, task) at its selected configuration: per dev split the labels and each seed's predictions,
    rows in `idx` order."""

    task: Task
    idx: dict[str, np.ndarray]  # split → (n,) row indices
    labels: dict[str, np.ndarray]  # split → (n,)
    predictions: dict[str, np.ndarray]  # split → (K, n), one row per seed


@dataclass
class Replicates:
    """A sample's B bootstrap replicates: the task score and each dev split's score (fractions)."""

    task: np.ndarray  # (B,)
    splits: dict[str, np.ndarray]  # split → (B,)
    rows: int = 0  # replicates of one task with the same `rows` resampled the same dev rows (paired)


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of replicates."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def resample(samples: list[Sample], resamples: int = RESAMPLES, rng: np.random.Generator | None = None):
    """Replicates of each sample; every sample is of the same task on the same dev rows (checked)."""
    rng = np.random.default_rng(SEED) if rng is None else rng
    task = samples[0].task
    splits = [s.name for s in task.splits_with_role("dev")]
    for other in samples[1:]:
        for split in splits:
            if not np.array_equal(other.idx[split], samples[0].idx[split]) or not np.array_equal(
                other.labels[split], samples[0].labels[split]
            ):
                raise ValueError(f"{task.name} {split}: the samples were not scored on the same dev rows")
    seeds = [
        rng.integers(0, len(s.predictions[splits[0]]), size=(resamples, len(s.predictions[splits[0]]))) for s in samples
    ]
    # per sample, per split: (K, B) score of each seed on each replicate's rows
    per_seed = [{} for _ in samples]
    for split in splits:
        labels = samples[0].labels[split]
        n = len(labels)
        stacked = np.concatenate([s.predictions[split] for s in samples])  # (sum K, n)
        scores = np.empty((len(stacked), resamples))
        for start in range(0, resamples, BLOCK):
            size = min(BLOCK, resamples - start)
            counts = np.empty((size, n))
            for b in range(size):
                counts[b] = np.bincount(rng.integers(0, n, size=n), minlength=n)
            scores[:, start : start + size] = split_scores(task, stacked, labels, counts)
        offset = 0
        for i, sample in enumerate(samples):
            k = len(sample.predictions[split])
            per_seed[i][split] = scores[offset : offset + k]
            offset += k
    out = []
    for chosen, mine in zip(seeds, per_seed):
        split_values = {split: _over_seeds(mine[split], chosen) for split in splits}
        out.append(Replicates(_over_seeds(np.mean([mine[s] for s in splits], axis=0), chosen), split_values))
    return out


def _over_seeds(values: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """(K, B) scores of each seed on each replicate's rows, (B, K) resampled seed indices → (B,) means."""
    return np.take_along_axis(values.T, chosen, axis=1).mean(axis=1)


def split_scores(task: Task, predictions: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The split score (the mean of the task's score metrics) of each seed's predictions (K, n) on each
    resample, given as row counts (R, n): a (K, R) array."""
    if task.regression:
        label_ranks = _ranks(labels.astype(float), counts) if "spearman" in task.score else None
        values = [
            np.stack([_correlation(name, p, labels, counts, label_ranks) for p in np.asarray(predictions, float)])
            for name in task.score
        ]
    else:
        classes = max(len(task.labels), int(predictions.max()) + 1, int(labels.max()) + 1)
        confusion = _confusion(predictions.astype(np.int64), labels.astype(np.int64), counts, classes)
        values = [from_confusion(name, confusion) for name in task.score]
    return np.mean(values, axis=0)


def from_confusion(name: str, confusion: np.ndarray) -> np.ndarray:
    """metrics.METRICS[name] from weighted confusion matrices (..., C, C) [predicted, true]."""
    total = confusion.sum(axis=(-2, -1))
    correct = np.trace(confusion, axis1=-2, axis2=-1)
    if name == "accuracy":
        return correct / total
    if name == "f1":  # binary, positive class 1, zero_division 0 (as metrics.METRICS)
        tp, fp, fn = confusion[..., 1, 1], confusion[..., 1, 0], confusion[..., 0, 1]
        denominator = 2 * tp + fp + fn
        return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    if name == "mcc":  # sklearn's multiclass formula, 0 where a marginal is constant
        predicted, true = confusion.sum(axis=-1), confusion.sum(axis=-2)
        covariance = correct * total - (predicted * true).sum(axis=-1)
        spread = (total**2 - (predicted**2).sum(axis=-1)) * (total**2 - (true**2).sum(axis=-1))
        root = np.sqrt(np.where(spread > 0, spread, 1.0))
        return np.where(spread > 0, covariance / root, 0.0)
    raise ValueError(f"no resampled form of the metric '{name}'")


def _confusion(predictions: np.ndarray, labels: np.ndarray, counts: np.ndarray, classes: int) -> np.ndarray:
    """(K, R, C, C) weighted confusion matrices [predicted, true]: one matrix product of the counts with each
    row's one-hot (seed, predicted, true) cell."""
    seeds, n = predictions.shape
    cells = (np.arange(seeds)[:, None] * classes + predictions) * classes + labels[None, :]
    # float32 is exact here: every count and sum is a whole number below 2**24
    onehot = np.zeros((n, seeds * classes * classes), dtype=np.float32)
    onehot[np.broadcast_to(np.arange(n), (seeds, n)).ravel(), cells.ravel()] = 1.0
    confusion = (counts.astype(np.float32) @ onehot).astype(np.float64)
    return confusion.reshape(len(counts), seeds, classes, classes).transpose(1, 0, 2, 3)


def _ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row's average rank (scipy's 'average' ties) within each resample (R, n), copies counted."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    group = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
    per_group = np.add.reduceat(counts[:, order], starts, axis=1)  # (R, U)
    rank = np.cumsum(per_group, axis=1) - per_group + (per_group + 1) / 2
    out = np.empty_like(counts)
    out[:, order] = rank[:, group]
    return out


def _correlation(name: str, predictions, labels, counts, label_ranks=None) -> np.ndarray:
    """Weighted Pearson (of average ranks for Spearman) per resample; 0 where either side is constant, as
    metrics._correlation."""
    if name == "spearman":
        x, y = _ranks(predictions, counts), label_ranks
    else:
        x = np.broadcast_to(predictions - predictions.mean(), counts.shape)
        y = np.broadcast_to(labels - labels.mean(), counts.shape)
    total = counts.sum(axis=1)
    mx, my = (counts * x).sum(axis=1) / total, (counts * y).sum(axis=1) / total
    dx, dy = x - mx[:, None], y - my[:, None]
    vx, vy = (counts * dx * dx).sum(axis=1), (counts * dy * dy).sum(axis=1)
    cov = (counts * dx * dy).sum(axis=1)
    scale = (counts * x * x).sum(axis=1) + (counts * y * y).sum(axis=1) + 1.0
    constant = (vx <= 1e-12 * scale) | (vy <= 1e-12 * scale)
    return np.where(constant, 0.0, cov / np.sqrt(np.where(constant, 1.0, vx * vy)))


def glue_replicates(per_task: dict[str, Replicates]) -> np.ndarray | None:
    """The GLUE score per replicate: the mean of the GLUE tasks' replicates; None if there are none."""
    present = [per_task[t].task for t in GLUE_TASKS if t in per_task]
    return np.mean(present, axis=0) if present else None


def observed(sample: Sample) -> float:
    """The sample's task score on its dev rows as they are (no resampling), averaged over its seeds."""
    ones = {s: np.ones((1, len(labels))) for s, labels in sample.labels.items()}
    per_split = [split_scores(sample.task, sample.predictions[s], sample.labels[s], ones[s])[:, 0] for s in ones]
    return float(np.mean(per_split, axis=0).mean())


def load_sample(
    task: Task, trials: pd.DataFrame, storage_url: str | None, fetch=None, labels_from: Sample | None = None
) -> Sample | str:
    """A configuration's seeds' dev predictions from their artifacts, rows put in idx order; a one-line
    reason (str) where they cannot be had. `fetch(artifact_id)` reads one (default: from the storage's
    artifact store). Predictions kept without their labels (a baseline's sidecar) take those of
    `labels_from`, a sample of the same task on the same rows."""
    if fetch is None:

        def fetch(artifact: str) -> dict:
            return download_predictions(artifact, storage_url)

    unresampled = [m for m in task.score if m not in RESAMPLED]
    if unresampled:  # a task file's own metric (metric_module): no weighted form to resample it with
        return f"its score metric {', '.join(unresampled)} comes from a metric module and cannot be resampled"
    splits = [s.name for s in task.splits_with_role("dev")]
    idx, labels, predictions = {}, {}, {s: [] for s in splits}
    for _, row in trials.iterrows():
        ids = prediction_ids(row, "dev_predictions")
        missing = [s for s in splits if f"{task.name}/{s}" not in ids]
        if missing:
            return NO_DEV_PREDICTIONS
        for split in splits:
            try:
                values = fetch(ids[f"{task.name}/{split}"])
            except Exception as e:  # a moved or deleted artifacts folder, an artifact not in a sidecar
                return f"cannot read the dev predictions of trial {row['trial']} ({type(e).__name__})"
            order = np.argsort(values["idx"], kind="stable")
            row_idx = np.asarray(values["idx"])[order]
            if "label" in values:
                row_labels = np.asarray(values["label"])[order]
            elif labels_from is not None and np.array_equal(labels_from.idx.get(split), row_idx):
                row_labels = labels_from.labels[split]
            else:
                return f"its {split} predictions were kept without labels, and no run on the same rows has them"
            if split not in idx:
                idx[split], labels[split] = row_idx, row_labels
            elif not (np.array_equal(idx[split], row_idx) and np.array_equal(labels[split], row_labels)):
                return f"its seeds were scored on different {split} rows"
            predictions[split].append(np.asarray(values["prediction"])[order])
    return Sample(task, idx, labels, {s: np.stack(p) for s, p in predictions.items()})


def selected_replicates(
    table: pd.DataFrame,
    storage_url: str | None,
    models: list[str] | None = None,
    tasks: list[str] | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[tuple[str, str], Replicates | str]:
    """(model, task) → the replicates of its selected configuration (selection.best), or a one-line reason
    why it has none. One generator for the whole call, tasks in the GLUE order then by name, models in the
    order given (else as best() lists them): every model of a task gets the same dev rows per replicate."""
    winners, counted = best(table), latest(table)
    if models is not None:
        winners = winners[winners["model"].isin(models)]
    if tasks is not None:
        winners = winners[winners["task"].isin(tasks)]
    rng = np.random.default_rng(seed)
    order = {t: i for i, t in enumerate(GLUE_TASKS)}
    rank = {m: i for i, m in enumerate(models or [])}
    out: dict[tuple[str, str], Replicates | str] = {}
    for name in sorted(winners["task"].unique(), key=lambda t: (order.get(t, len(order)), t)):
        mine = winners[winners["task"] == name]
        try:
            task = get_task(name)
        except UserError:  # a user's own task file that is not on this machine
            out.update({(m, name): "its task file is not on this machine" for m in mine["model"]})
            continue
        mine = mine.iloc[sorted(range(len(mine)), key=lambda i: rank.get(mine.iloc[i]["model"], len(rank)))]
        loaded = []
        for _, winner in mine.iterrows():
            sample = load_sample(task, selected_trials(table, winner, counted), storage_url)
            if isinstance(sample, str):
                out[(winner["model"], name)] = sample
            else:
                loaded.append((winner["model"], sample))
        # the same rows for all: group by the dev rows scored (a user's own task may differ between models)
        groups: list[list[tuple[str, Sample]]] = []
        for model, sample in loaded:
            for group in groups:
                first = group[0][1]
                if all(
                    np.array_equal(first.idx[s], sample.idx[s]) and np.array_equal(first.labels[s], sample.labels[s])
                    for s in first.idx
                ):
                    group.append((model, sample))
                    break
            else:
                groups.append([(model, sample)])
        for number, group in enumerate(groups):
            for (model, _), replicates in zip(group, resample([s for _, s in group], resamples, rng)):
                replicates.rows = number
                out[(model, name)] = replicates
    return out
