"""MNLI, QQP and AX paths on small fixtures written in the exact original GLUE format.

../shared has no MNLI or QQP train files, so these fixtures (sentences written for them, not GLUE rows)
exercise the TSV layouts of train, dev and test; their row counts are not the release's.
"""

from __future__ import annotations

import pytest
from conftest import FIXTURES

from glue_bench.inputs import data
from glue_bench.inputs.tasks import registry
from glue_bench.sweeping import trial
from glue_bench.training.recipe import Recipe

SOURCE = data.resolve_source(str(FIXTURES / "glue_data"))


def _load(task_name, split_name):
    task = registry()[task_name]
    return data.load_split(task, task.splits[split_name], SOURCE, check_rows=False).to_pandas()


def test_mnli_tsv_layout_and_hub_label_ids():
    train = _load("mnli", "train")
    assert list(train["label"]) == [0, 2, 1, 0, 2, 1]  # entailment 0, neutral 1, contradiction 2 (the Hub's ids)
    assert train.loc[0, "text_a"] == "The chef tasted the soup before serving it."
    assert train.loc[0, "text_b"] == "The soup was tasted."
    assert list(train["idx"]) == list(range(6))
    matched = _load("mnli", "validation_matched")  # five annotator labels, then gold_label
    assert list(matched["label"]) == [1, 2, 0, 1, 2, 0]
    test = _load("mnli", "test_mismatched")
    assert list(test["label"]) == [-1] * 6 and list(test["idx"]) == list(range(6))


def test_qqp_tsv_layout():
    train = _load("qqp", "train")
    assert list(train["label"]) == [1, 0, 1, 0, 1, 0]
    assert list(train["idx"]) == list(range(6))  # the row, not QQP's pair id (500, 501, …), as on the Hub
    assert train.loc[2, "text_b"] == "Which city is Australia's capital?"
    test = _load("qqp", "test")
    assert list(test["idx"]) == list(range(6)) and (test["label"] == -1).all()


def test_fixture_row_counts_are_checked():
    task = registry()["qqp"]
    with pytest.raises(data.UserError, match="6 rows, but qqp validation has 40430 in the GLUE release"):
        data.load_split(task, task.splits["validation"], SOURCE)


def test_mnli_trial_predicts_both_test_splits_and_ax(tmp_path):
    """One tiny MNLI fine-tune: dev metrics on matched and mismatched, predictions for both test
    splits and for AX (test and the labelled diagnostic split, which is also scored)."""
    spec = trial.TrialSpec(
        model="random:L-2_H-128",
        task="mnli",
        data=str(FIXTURES / "glue_data"),
        recipe=Recipe(batch_size=4, lr=1e-4, epochs=1),
        check_rows=False,
    )
    prepared = trial.prepare(spec)
    assert set(prepared.dev) == {"validation_matched", "validation_mismatched"}
    assert set(prepared.to_predict) == {"mnli/test_matched", "mnli/test_mismatched", "ax/test", "ax/diagnostic"}
    from glue_bench.training.loop import fine_tune

    result = fine_tune(
        prepared.model, prepared.task, prepared.train, prepared.dev, prepared.to_predict, spec.recipe, progress=False
    )
    assert set(result.dev) == {"validation_matched", "validation_mismatched"}
    assert len(result.curve) == 1 and result.steps == 2
    assert result.predictions["ax/test"]["idx"] == [0, 1, 2, 3]
    assert set(result.predictions["mnli/test_matched"]["prediction"]) <= {0, 1, 2}
    assert set(result.extra_metrics) == {"ax/diagnostic"}
