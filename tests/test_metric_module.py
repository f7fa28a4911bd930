"""A user's own task whose metric is an `evaluate` metric module (tasks/*.toml key metric_module, a local path).

The module is written here, loaded offline, tried when the task file is read, and its metric computed by hand.
The tests that import `evaluate` (several seconds) are in the slow stage.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from glue_bench.errors import UserError
from glue_bench.inputs.tasks import get_task

BALANCED = '''
import datasets
import evaluate
import numpy as np


class Balanced(evaluate.Metric):
    """Balanced accuracy: the mean over the true classes of the share of their rows predicted right."""

    def _info(self):
        return evaluate.MetricInfo(
            description="balanced accuracy",
            citation="",
            inputs_description="predictions and references: class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        p, r = np.asarray(predictions), np.asarray(references)
        return {"balanced_accuracy": float(np.mean([(p[r == c] == c).mean() for c in np.unique(r)]))}
'''


def task_file(folder, metrics='["accuracy", "balanced_accuracy"]', module='metric_module = "balanced.py"') -> str:
    """A single-sentence, two-class task in the original GLUE layout (folder MINE/) naming the module."""
    path = folder / "mine.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            name = "mine"
            glue_dir = "MINE"
            hub_config = "mine"
            hub_columns = ["sentence"]
            labels = ["0", "1"]
            regression = false
            metrics = {metrics}
            score = ["balanced_accuracy"]
            {module}

            [splits.train]
            role = "train"
            rows = 16
            hub = "train"
            file = "train.tsv"
            header = true
            text_a = "sentence"
            label = "label"

            [splits.validation]
            role = "dev"
            rows = 8
            hub = "validation"
            file = "dev.tsv"
            header = true
            text_a = "sentence"
            label = "label"

            [splits.test]
            role = "test"
            rows = 4
            hub = "test"
            file = "test.tsv"
            header = true
            idx = "index"
            text_a = "sentence"
            """
        ),
        encoding="utf-8",
    )
    return str(path)


def test_a_metric_that_is_not_built_in_needs_a_module(tmp_path):
    with pytest.raises(UserError, match="unknown metric 'balanced_accuracy'.*or name an evaluate metric module"):
        get_task(task_file(tmp_path, module=""))


def test_a_module_that_is_not_there_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"metric_module 'balanced.py' not found \(.*balanced.py\); give the path"):
        get_task(task_file(tmp_path))


@pytest.mark.slow
def test_the_module_computes_the_metric_offline_by_hand(tmp_path):
    from glue_bench.training import metrics

    (tmp_path / "balanced.py").write_text(BALANCED, encoding="utf-8")
    task = get_task(task_file(tmp_path))
    assert task.metric_module == str((tmp_path / "balanced.py").resolve())
    # 4 rows of class 1 all right, 2 of class 0 both wrong: accuracy 4/6, balanced (0/2 + 4/4) / 2 = 0.5
    values = metrics.compute(task, [1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1])
    assert values == {"accuracy": pytest.approx(4 / 6), "balanced_accuracy": 0.5}
    assert metrics.task_score(task, {"validation": values}) == 0.5


@pytest.mark.slow
def test_a_module_without_the_named_metric_stops_at_the_task_file(tmp_path):
    (tmp_path / "balanced.py").write_text(BALANCED.replace('"balanced_accuracy":', '"balanced":'), encoding="utf-8")
    with pytest.raises(UserError) as error:
        get_task(task_file(tmp_path))
    assert str(error.value).endswith(
        "returns ['balanced'], not a number for each of the metrics balanced_accuracy that `metrics` names"
    )
    (tmp_path / "broken.py").write_text("this is not python", encoding="utf-8")
    with pytest.raises(UserError, match=r"metric_module .*broken.py: cannot load it and compute on two rows"):
        get_task(task_file(tmp_path, module='metric_module = "broken.py"'))


@pytest.mark.slow
def test_a_fine_tune_of_the_task_is_scored_by_the_module_and_not_resampled(tmp_path):
    """A real (tiny) fine-tune of the user's task: its dev metric is the module's, recomputed here from the
    recorded dev predictions; the bootstrap says why it cannot resample that metric."""
    from glue_bench.reporting import bootstrap
    from glue_bench.sweeping import trial
    from glue_bench.training import metrics
    from glue_bench.training.loop import fine_tune
    from glue_bench.training.recipe import Recipe

    (tmp_path / "balanced.py").write_text(BALANCED, encoding="utf-8")
    (tmp_path / "MINE").mkdir()
    words = ["a fine film", "a dull film", "good acting", "bad acting", "loved it", "hated it", "great", "awful"]
    rows = {"train.tsv": 16, "dev.tsv": 8}
    for name, count in rows.items():
        lines = ["sentence\tlabel"] + [f"{words[i % 8]}\t{(i + 1) % 2}" for i in range(count)]
        (tmp_path / "MINE" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "MINE" / "test.tsv").write_text(
        "index\tsentence\n" + "".join(f"{i}\t{words[i]}\n" for i in range(4)), encoding="utf-8"
    )
    spec = trial.TrialSpec(
        "random:L-2_H-128", task_file(tmp_path), str(tmp_path), Recipe(batch_size=4, lr=1e-3, epochs=1)
    )
    prepared = trial.prepare(spec)
    result = fine_tune(
        prepared.model, prepared.task, prepared.train, prepared.dev, prepared.to_predict, spec.recipe, progress=False
    )
    kept = result.dev_predictions["validation"]
    p, r = np.asarray(kept["prediction"]), np.asarray(kept["label"])
    assert list(r) == [1, 0, 1, 0, 1, 0, 1, 0]
    by_hand = np.mean([(p[r == c] == c).mean() for c in (0, 1)])
    assert result.dev["validation"]["balanced_accuracy"] == pytest.approx(by_hand)
    assert result.dev["validation"]["accuracy"] == pytest.approx((p == r).mean())
    assert metrics.task_score(prepared.task, result.dev) == pytest.approx(by_hand)
    sample = bootstrap.load_sample(prepared.task, None, None)
    assert sample == "its score metric balanced_accuracy comes from a metric module and cannot be resampled"
