"""Commands that only read a storage (issue 22, items 6 and 7): a storage that does not exist is refused in
one line, never made; a dry run writes nothing; `status` names the metric of each best dev score."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from glue_bench.cli import main
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping import schema, status
from glue_bench.sweeping import sweep_file as sweeps

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "sweeps" / "cpu-smoke.toml")

READERS = [
    ["status", SMOKE],
    ["export", "--out", "{tmp}/runs.csv"],
    ["report"],
    ["compare", "bert-tiny", "bert-mini"],
    ["submit", "--model", "bert-tiny", "--out", "{tmp}/s.zip"],
    ["export-model", "--model", "bert-tiny", "--task", "rte", "--out", "{tmp}/model"],
    ["check", "--baseline", str(ROOT / "results" / "baselines" / "ci-baseline.csv")],
]


@pytest.mark.parametrize("argv", READERS, ids=lambda argv: argv[0])
def test_a_command_that_only_reads_refuses_a_storage_that_does_not_exist(argv, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'results' / 'nope.db'}"
    assert main([a.format(tmp=tmp_path) for a in argv] + ["--storage", url]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"glue-bench: error: --storage {url}: no such file; run a sweep first or pass the right --storage"
    ]
    assert not (tmp_path / "results").exists()  # nothing made


@pytest.mark.parametrize("argv", READERS[:3], ids=lambda argv: argv[0])
def test_a_file_that_holds_no_results_is_refused_and_left_as_it_is(argv, tmp_path, capsys):
    """An empty file (or any SQLite file without Optuna's tables) is no storage: reading it must not turn it
    into one."""
    path = tmp_path / "empty.db"
    path.touch()
    url = f"sqlite:///{path}"
    assert main([a.format(tmp=tmp_path) for a in argv] + ["--storage", url]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"glue-bench: error: --storage {url}: holds no glue-bench results (no Optuna tables); run a sweep first "
        "or pass the right --storage"
    ]
    assert path.stat().st_size == 0


def test_status_of_an_existing_storage_without_the_sweep_shows_it_not_queued(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    optuna.create_study(storage=url, study_name="other/random:L-2_H-128/rte")
    path = tmp_path / "s.toml"
    path.write_text(
        'models = ["random:L-2_H-128"]\ntasks = ["rte", "wnli"]\n[grid]\nbatch_size = [16, 32]\nlr = [1e-4, 5e-5]\n'
    )
    assert main(["status", str(path), "--storage", url]) == 0
    assert "0 of 8 trials complete, 0 failed, 0 running, 0 waiting, 8 not queued" in capsys.readouterr().out


@pytest.mark.parametrize("storage_file", ["none", "empty"])
def test_a_dry_run_writes_nothing(tmp_path, glue_data, capsys, storage_file):
    """No storage yet, or an empty file where it will be (a killed first run, `touch`): the dry run plans all
    8 trials and leaves every file as it was."""
    path = tmp_path / "smoke.toml"
    path.write_text(
        'models = ["random:L-2_H-128"]\ntasks = ["rte", "wnli"]\nepochs = 1\n'
        f'storage = "sqlite:///{tmp_path}/results/x.db"\n[grid]\nbatch_size = [16, 32]\nlr = [1e-4, 5e-5]\n'
    )
    if storage_file == "empty":
        (tmp_path / "results").mkdir()
        (tmp_path / "results" / "x.db").touch()
    before = sorted((str(p.relative_to(tmp_path)), p.stat().st_size) for p in tmp_path.rglob("*") if p.is_file())
    assert main(["sweep", str(path), "--data", str(glue_data), "--dry-run"]) == 0
    assert "8 of 8 trials to run" in capsys.readouterr().out
    assert (
        sorted((str(p.relative_to(tmp_path)), p.stat().st_size) for p in tmp_path.rglob("*") if p.is_file()) == before
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["smoke.toml"] + (["results"] if storage_file == "empty" else [])
    )


# --- status names its metric (22.7) ----------------------------------------------------------------------


def test_each_tasks_score_is_named_as_its_task_file_says():
    named = {name: status.score_metric(get_task(name)) for name in ("mrpc", "qqp", "stsb", "cola", "rte", "mnli")}
    assert named == {
        "mrpc": "(F1 + acc) / 2",
        "qqp": "(F1 + acc) / 2",
        "stsb": "(Pearson + Spearman) / 2",
        "cola": "MCC",
        "rte": "acc",
        "mnli": "acc, mean of 2 dev splits",
    }


def test_status_names_the_metric_of_each_best_dev_score(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\nmodels = ["random:L-2_H-128"]\ntasks = ["mrpc", "cola"]\nepochs = 1\n'
        "[grid]\nbatch_size = [16]\nlr = [1e-4]\n"
    )
    sweep = sweeps.load(path)
    best = optuna.trial.create_trial(
        value=0.7134,
        params={"batch_size": 16, "lr": 1e-4, "seed": 0},
        distributions=schema.grid_distributions([16], [1e-4], [0]),
    )
    statuses = [status.StudyStatus(plan, best=best) for plan in sweep.studies()]
    lines = status.format_status(sweep, statuses, "sqlite:///x.db").splitlines()
    assert lines[1].split()[-5:] == ["best", "dev", "score", "metric", "at"]
    assert lines[2].endswith(
        "mrpc  0/1        0        0       0           0        0            0          71.34 (F1 + acc) / 2 bs 16, lr 1e-4, seed 0"
    )
    assert lines[3].endswith(
        "cola  0/1        0        0       0           0        0            0          71.34            MCC bs 16, lr 1e-4, seed 0"
    )
