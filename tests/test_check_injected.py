"""glue-bench check on real trainings: the unchanged code passes; an injected bug fails naming task and metric.

The bugs are injected into the code, not the config, as a real regression would be: the recorded recipe
is the baseline's, so the check compares (it does not refuse) and must see the scores move.
"""

from __future__ import annotations

import numpy as np
import pytest

from glue_bench import cli
from glue_bench.sweeping import trial
from glue_bench.sweeping.runs import export, runs_table
from glue_bench.training import loop as train

SEEDS = (0, 1)
# A random-weight BERT-Tiny learns SST-2 to about 70% in seconds from 2,000 rows; 50% is chance.
RUN = [
    "--model",
    "random:L-2_H-128",
    "--task",
    "sst2",
    "--batch-size",
    "32",
    "--lr",
    "1e-3",
    "--epochs",
    "2",
    "--max-train-samples",
    "2000",
    "--no-progress",
]


def _runs(storage: str, data, may_diverge: bool = False) -> str:
    for seed in SEEDS:  # a diverged run (exit 1) is recorded as a failed trial, which check reports
        code = cli.main(["run", *RUN, "--data", str(data), "--seed", str(seed), "--storage", storage])
        assert code in ((0, 1) if may_diverge else (0,))
    return storage


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, glue_data):
    folder = tmp_path_factory.mktemp("baseline")
    path = str(folder / "baseline.csv")
    export(runs_table(_runs(f"sqlite:///{folder / 'runs.db'}", glue_data)), path)
    return path


def _check(capsys, baseline: str, storage: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["check", "--baseline", baseline, "--storage", storage])
    return code, capsys.readouterr().out


def _accuracy_line(out: str) -> str:
    return next(line for line in out.splitlines() if "validation/accuracy" in line and "sst2" in line)


@pytest.mark.slow
def test_unchanged_code_passes_and_the_table_is_deterministic(baseline, glue_data, tmp_path, capsys):
    storage = _runs(f"sqlite:///{tmp_path / 'runs.db'}", glue_data)
    code, out = _check(capsys, baseline, storage)
    assert code == 0, out
    assert "0 regressions, 0 improvements, 1 unchanged" in out
    assert " +0.00 " in _accuracy_line(out)  # same seeds, same machine: the very same scores
    assert _check(capsys, baseline, storage) == (0, out)  # run twice on the same results: the same table


@pytest.mark.slow
def test_a_learning_rate_100x_too_large_fails_the_check(baseline, glue_data, tmp_path, capsys, monkeypatch):
    make_optimizer = train._optimizer
    monkeypatch.setattr(
        train,
        "_optimizer",
        lambda net, recipe, lrs, packed, device: make_optimizer(net, recipe, [100 * lr for lr in lrs], packed, device),
    )
    storage = _runs(f"sqlite:///{tmp_path / 'runs.db'}", glue_data, may_diverge=True)
    code, out = _check(capsys, baseline, storage)
    assert code == 1, out
    assert "REGRESSION sst2 validation/accuracy" in out
    assert _check(capsys, baseline, storage) == (1, out)


@pytest.mark.slow
def test_shuffled_training_labels_fail_the_check(baseline, glue_data, tmp_path, capsys, monkeypatch):
    fine_tune = trial.fine_tune_pack

    def with_shuffled_labels(model, task, train_split, *args, **kwargs):
        labels = np.random.default_rng(0).permutation(np.asarray(train_split["label"]))
        train_split = train_split.remove_columns("label").add_column("label", labels.tolist())
        return fine_tune(model, task, train_split, *args, **kwargs)

    monkeypatch.setattr(trial, "fine_tune_pack", with_shuffled_labels)
    storage = _runs(f"sqlite:///{tmp_path / 'runs.db'}", glue_data)
    code, out = _check(capsys, baseline, storage)
    assert code == 1, out
    assert "REGRESSION sst2 validation/accuracy" in out
