"""The one rule of what counts (runs.latest) and the selection built on it: a trial is not a seed, failed
and missing seeds keep a configuration from winning, and collapse is flagged per seed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from glue_bench.cli import main
from glue_bench.reporting import grid, leaderboard, selection
from glue_bench.sweeping.runs import export, latest, read_runs


def _trial(trial, seed, score, state="COMPLETE", bs=32, lr=1e-4, classes=(0, 1), task="rte", **extra):
    return {
        "sweep": "s",
        "model": "L-2_H-128",
        "task": task,
        "study": f"s/L-2_H-128/{task}",
        "trial": trial,
        "state": state,
        "batch_size": bs,
        "lr": lr,
        "seed": seed,
        "epochs": 4,
        "score": score if state == "COMPLETE" else None,
        "dev/validation/accuracy": score if state == "COMPLETE" else None,
        "predicted_classes": json.dumps({"validation": list(classes)}) if state == "COMPLETE" else None,
        **extra,
    }


def test_a_trial_run_again_replaces_its_seed_instead_of_adding_one():
    table = pd.DataFrame([_trial(0, 0, 0.50), _trial(1, 0, 0.60), _trial(2, 1, 0.70)])
    assert list(latest(table)["trial"]) == [1, 2]
    config = selection.configurations(table).iloc[0]
    assert config["seeds"] == 2
    assert config["score"] == pytest.approx(0.65)  # (0.60 + 0.70) / 2: the first run of seed 0 is replaced


def test_a_later_failure_does_not_hide_a_completed_run_of_the_same_point():
    table = pd.DataFrame([_trial(0, 0, 0.55), _trial(1, 0, None, state="FAIL")])
    assert list(latest(table)["trial"]) == [0]


def test_another_recipe_is_another_point():
    table = pd.DataFrame([_trial(0, 0, 0.50), _trial(1, 0, 0.60, epochs=2)])
    assert sorted(latest(table)["trial"]) == [0, 1]
    assert len(selection.configurations(table)) == 2


def test_a_configuration_with_a_failed_seed_does_not_win_over_a_complete_one():
    table = pd.DataFrame(
        [
            _trial(0, 0, 0.70, bs=16),
            _trial(1, 1, None, bs=16, state="FAIL"),  # higher mean, seed 1 diverged
            _trial(2, 0, 0.60, bs=32),
            _trial(3, 1, 0.62, bs=32),
        ]
    )
    configs = selection.configurations(table)
    winner = selection.best(table).iloc[0]
    assert (winner["batch_size"], winner["complete"]) == (32, True)
    loser = configs[configs["batch_size"] == 16].iloc[0]
    assert (loser["complete"], loser["failed_seeds"], loser["missing_seeds"]) == (False, "1", "")
    notes = " ".join(leaderboard.leaderboard(table).notes)
    assert (
        "Not selected though higher, because a seed failed or is missing: L-2_H-128 rte bs 16 lr 1e-4 "
        "(70.0, seed 1 failed)." in notes
    )
    shown = grid.grid(table, "L-2_H-128:rte").table
    assert shown["lr 1e-4"].tolist() == ["70.0 ‡", "61.0±1.4 (best)"]


def test_a_missing_seed_makes_a_configuration_incomplete_and_the_cell_says_so():
    # Seeds 0 and 1 ran at bs 32; bs 16 has only seed 0: the only configuration of its task that is complete
    # is bs 32, so it wins; with bs 32 gone, bs 16 wins but is marked incomplete and the notes say why.
    table = pd.DataFrame(
        [_trial(0, 0, 0.70, bs=16), _trial(1, 0, 0.60), _trial(2, 1, 0.62), _trial(3, 1, None, state="RUNNING", bs=16)]
    )
    assert selection.best(table).iloc[0]["batch_size"] == 32
    alone = table[table["batch_size"] == 16]
    alone = pd.concat([alone, pd.DataFrame([_trial(4, 1, None, state="FAIL", bs=8)])])
    board = leaderboard.leaderboard(alone)
    assert board.table.set_index("Model").loc["L-2_H-128 (bert-tiny)", "RTE"] == "70.0 ‡"
    assert any(n.startswith("‡ incomplete") and "L-2_H-128 rte (seed 1 missing)" in n for n in board.notes)


def test_collapse_is_flagged_per_seed_from_the_recorded_classes():
    # Seed 1 predicted one class everywhere; seed 0's accuracy equals the majority share by accident but it
    # predicted both classes: it is not flagged (RTE dev: 146 of 277 rows are entailment, 0.5271).
    table = pd.DataFrame(
        [_trial(0, 0, 146 / 277, classes=(0, 1)), _trial(1, 1, 0.60, classes=(1,)), _trial(2, 2, 0.58, classes=(0, 1))]
    )
    config = selection.configurations(table).iloc[0]
    assert (config["collapsed"], config["degenerate"]) == (1, "seed 1: validation: all not_entailment")
    board = leaderboard.leaderboard(table)
    assert board.table.set_index("Model").loc["L-2_H-128 (bert-tiny)", "RTE"] == "56.9±3.8 †1/3"
    assert any("L-2_H-128 rte (seed 1: validation: all not_entailment)" in n for n in board.notes)


def test_export_marks_the_trial_that_counts(tmp_path):
    table = pd.DataFrame([_trial(0, 0, 0.50), _trial(1, 0, 0.60)])
    export(table, str(tmp_path / "runs.csv"))
    assert read_runs(str(tmp_path / "runs.csv"))["counted"].tolist() == [False, True]


def test_the_same_run_twice_reports_one_seed(glue_data, tmp_path, capsys):
    """The reproduction of issue 11 item 1: the same `glue-bench run` twice into one storage."""
    storage = f"sqlite:///{tmp_path}/runs.db"
    argv = [
        "run",
        "--model",
        "random:L-2_H-128",
        "--task",
        "wnli",
        "--data",
        str(glue_data),
        "--batch-size",
        "32",
        "--lr",
        "1e-4",
        "--epochs",
        "1",
        "--max-train-samples",
        "64",
        "--storage",
        storage,
        "--no-progress",
    ]
    assert main(argv) == 0
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["report", "--storage", storage]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| Model"))
    row = next(line for line in out.splitlines() if line.startswith("| random:L-2_H-128"))
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")]))
    assert "±" not in out
    assert cells["WNLI"] in ("43.7 †", "56.3 †", "43.7", "56.3")  # one seed: no spread, whatever it learned
