"""The constant predictor on each dev split, and spotting trials that score exactly what it scores.

A fine-tune that collapses predicts one class everywhere (CoLA: MCC 0; MRPC: F1 81.2 / accuracy 68.4).
Its dev metrics then equal a constant predictor's, which the split's label counts fix exactly. The
counts of the GLUE dev splits ship in results/dev-labels.toml, so a report needs no data to flag such
trials; regenerate the file with `python -m glue_bench.reporting.baselines DATA_DIR [DATA_DIR …] > results/dev-labels.toml`.
"""

from __future__ import annotations

import math
import sys
import tomllib
from functools import cache

import numpy as np

from glue_bench.inputs import data, shipped
from glue_bench.inputs.tasks import Task, registry
from glue_bench.training import metrics

TOLERANCE = 1e-9  # metric values are k/n fractions or exact zeros: two distinct ones differ by far more


@cache
def dev_labels() -> dict:
    """{task: {split: {"counts": {label: n}} or {"mean": x}}} from results/dev-labels.toml."""
    return tomllib.loads((shipped.reference_dir() / "dev-labels.toml").read_text(encoding="utf-8"))


def constant_metrics(task: Task, split: str) -> dict[str, dict[str, float]]:
    """{label: dev metrics of predicting that label everywhere}; {} where the counts are unknown.

    A regression task's constant prediction has no correlation with anything: one entry, "constant".
    """
    key = (task.source_file, task.name, split)
    if key not in _CONSTANT:  # a report checks every trial: compute each split's once
        _CONSTANT[key] = _constant_metrics(task, split)
    return _CONSTANT[key]


_CONSTANT: dict[tuple, dict] = {}


def _constant_metrics(task: Task, split: str) -> dict[str, dict[str, float]]:
    if task.regression:
        return {"constant": metrics.compute(task, np.zeros(2), np.array([0.0, 1.0]))}
    counts = dev_labels().get(task.name, {}).get(split, {}).get("counts")
    if not counts:
        return {}
    gold = np.repeat([task.labels.index(label) for label in counts], list(counts.values()))
    return {label: metrics.compute(task, np.full(len(gold), task.labels.index(label)), gold) for label in counts}


def degenerate_splits(task: Task, dev: dict[str, dict[str, float]]) -> list[str]:
    """The dev splits on which these metrics equal a constant predictor's ("validation: all 1")."""
    found = []
    for split, values in dev.items():
        for label, expected in constant_metrics(task, split).items():
            if all(
                name in values and not math.isnan(values[name]) and abs(values[name] - value) <= TOLERANCE
                for name, value in expected.items()
            ):
                found.append(f"{split}: {'constant' if label == 'constant' else 'all ' + label}")
    return found


def majority(task: Task) -> str:
    """The most frequent dev label (a regression task: the mean dev label), as the GLUE server writes it."""
    splits = dev_labels().get(task.name, {})
    if task.regression:
        means = [s["mean"] for s in splits.values() if "mean" in s]
        return f"{np.mean(means):.3f}" if means else ""
    totals: dict[str, int] = {}
    for split in splits.values():
        for label, n in split.get("counts", {}).items():
            totals[label] = totals.get(label, 0) + n
    return max(totals, key=totals.get) if totals else ""


def dev_label_toml(sources: list[str]) -> str:
    """results/dev-labels.toml, counted from the first of `sources` that holds each dev split."""
    lines = [
        "# Label counts of the GLUE dev splits (the official release), by the label strings of tasks/*.toml.",
        "# A constant predictor's dev metrics follow from them exactly: reports flag trials that score them.",
        "# Regenerate: python -m glue_bench.reporting.baselines ../shared/glue_data ../shared/glue_hub > results/dev-labels.toml",
    ]
    resolved = [data.resolve_source(s) for s in sources]
    for task in registry().values():
        for split in task.splits_with_role("dev"):
            source = next((s for s in resolved if data.available(task, split, s)), None)
            if source is None:
                continue
            labels = np.asarray(data.load_split(task, split, source)["label"])
            lines += ["", f"[{task.name}.{split.name}]"]
            if task.regression:
                lines.append(f"mean = {float(np.mean(labels)):.6f}")
            else:
                ids, counts = np.unique(labels, return_counts=True)
                pairs = ", ".join(f'"{task.labels[i]}" = {n}' for i, n in zip(ids, counts))
                lines.append(f"counts = {{ {pairs} }}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dev_label_toml(sys.argv[1:]))
