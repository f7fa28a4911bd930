"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from glue_bench.inputs.tasks import registry
from glue_bench.training import metrics

TASKS = registry()


def test_binary_classification_by_hand():
    # tp = 2 (rows 0, 3), tn = 1 (row 1), fp = 1 (row 2), fn = 0
    predictions, labels = [1, 0, 1, 1], [1, 0, 0, 1]
    mrpc = metrics.compute(TASKS["mrpc"], predictions, labels)
    assert mrpc["accuracy"] == pytest.approx(3 / 4)
    assert mrpc["f1"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))  # precision 2/3, recall 1 → 0.8
    cola = metrics.compute(TASKS["cola"], predictions, labels)
    # MCC = (tp·tn − fp·fn) / √((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2 − 0) / √(3·2·2·1)
    assert cola["mcc"] == pytest.approx(2 / math.sqrt(12))


def test_three_class_mcc_for_ax_by_hand():
    labels = [0, 0, 1, 1, 2, 2]
    predictions = [0, 1, 1, 1, 2, 0]
    # Gorodkin's K-class MCC: c = 4 correct of s = 6, true counts t = (2, 2, 2), predicted p = (2, 3, 1):
    # (c·s − Σ t·p) / √((s² − Σ p²)(s² − Σ t²)) = (24 − 12) / √((36 − 14)(36 − 12)) = 12 / √528
    assert metrics.compute(TASKS["ax"], predictions, labels)["mcc"] == pytest.approx(12 / math.sqrt(528))


def test_regression_correlations_by_hand():
    predictions, labels = [1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 16.0]
    stsb = metrics.compute(TASKS["stsb"], predictions, labels)
    # deviations (−1.5, −.5, .5, 1.5) and (−6.5, −3.5, 1.5, 8.5): Σxy = 25, Σx² = 5, Σy² = 129
    assert stsb["pearson"] == pytest.approx(25 / math.sqrt(5 * 129))
    assert stsb["spearman"] == pytest.approx(1.0)  # the same order
    flat = metrics.compute(TASKS["stsb"], [2.5] * 4, labels)
    assert flat == {"pearson": 0.0, "spearman": 0.0}  # a constant prediction has no correlation


def test_task_scores_follow_the_glue_definition():
    assert metrics.task_score(TASKS["mrpc"], {"validation": {"f1": 0.9, "accuracy": 0.8}}) == pytest.approx(0.85)
    assert metrics.task_score(TASKS["stsb"], {"validation": {"pearson": 0.8, "spearman": 0.7}}) == pytest.approx(0.75)
    mnli = {"validation_matched": {"accuracy": 0.8}, "validation_mismatched": {"accuracy": 0.7}}
    assert metrics.task_score(TASKS["mnli"], mnli) == pytest.approx(0.75)
    assert metrics.task_score(TASKS["cola"], {"validation": {"mcc": 0.3, "accuracy": 0.7}}) == pytest.approx(0.3)


def test_glue_score_is_the_mean_of_nine_and_says_when_partial():
    nine = dict(zip(metrics.GLUE_TASKS, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))
    assert metrics.glue_score(nine) == (pytest.approx(0.5), True)
    assert metrics.glue_score({**nine, "ax": 0.0}) == (pytest.approx(0.5), True)  # AX never counts
    partial = {"cola": 0.2, "rte": 0.6}
    assert metrics.glue_score(partial) == (pytest.approx(0.4), False)
