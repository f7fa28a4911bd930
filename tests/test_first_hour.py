"""The rough edges a new user met in the first hour (issue 30, item 4), each through the real command line:
errors that name where a value came from, the nearest model shape, every bad key of a sweep file at once, no
empty storage file left by a run that failed before training, the per-worker status table, and the launcher's
line for a worker killed by a signal when it was the only one."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from optuna.trial import TrialState
from sweep_processes import all_trials, launch, wait_for, workers_of, write_sweep

from glue_bench.cli import main
from glue_bench.sweeping import status, sweep_file

LAYOUTS = (
    "a folder in the original glue_data layout (CoLA/train.tsv, …) or in the Hub's parquet layout "
    "(cola/train-00000-of-00001.parquet, …)"
)
RUN = ["run", "--task", "wnli", "--batch-size", "32", "--lr", "1e-4", "--epochs", "1", "--no-progress"]
SWEEP = """models = ["random:L-2_H-128"]
tasks = ["wnli"]
epochs = 1
seeds = [0]
{data}
[grid]
batch_size = [32]
lr = [1e-4]

[recipe]
max_train_samples = 32
"""


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_a_missing_data_folder_is_named_by_where_it_came_from(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "no-such-folder"
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("GLUE_BENCH_DATA", str(missing))
    code, err = run_main([*RUN, "--model", "random:L-2_H-128", "--storage", storage], capsys)
    assert (code, err) == (
        2,
        f"glue-bench: error: GLUE_BENCH_DATA={missing}: no such folder; pass 'hub' or {LAYOUTS}\n",
    )
    monkeypatch.delenv("GLUE_BENCH_DATA")
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.format(data=f'data = "{missing}"'))
    code, err = run_main(["sweep", str(path), "--storage", storage, "--dry-run"], capsys)
    assert (code, err) == (2, f"glue-bench: error: {path}: data = {missing}: no such folder; pass 'hub' or {LAYOUTS}\n")


@pytest.mark.parametrize(
    "model, nearest",
    [
        ("random:L-2_H-129", "random:L-2_H-128"),  # one off the hidden size: not L-2_H-512, the closest spelling
        ("random:L-3_H-128", "random:L-2_H-128"),
        ("L-12_H-700", "L-12_H-768"),
        ("random:bert-tinny", "random:bert-tiny"),
    ],
)
def test_an_unknown_model_shape_suggests_the_nearest_one(model, nearest, tmp_path, capsys):
    code, err = run_main([*RUN, "--model", model, "--storage", f"sqlite:///{tmp_path / 'runs.db'}"], capsys)
    assert code == 2
    assert err.startswith(f"glue-bench: error: unknown model '{model}': did you mean '{nearest}'? use bert-tiny|")
    assert not (tmp_path / "runs.db").exists()


def test_a_sweep_file_with_several_bad_keys_names_them_all(tmp_path, capsys):
    path = tmp_path / "s.toml"
    text = SWEEP.format(data="").replace("epochs", "epoch").replace("seeds", "seed").replace("lr =", "lrs =")
    path.write_text(text.replace("max_train_samples", "max_train_sample") + "\n[distil]\nteacher = 'x'\n")
    code, err = run_main(["sweep", str(path), "--dry-run"], capsys)
    assert code == 2
    assert err.splitlines() == [
        f"glue-bench: error: {path}: unknown key 'epoch' (did you mean 'epochs'?)",
        f"glue-bench: error: {path}: unknown key 'seed' (did you mean 'seeds'?)",
        f"glue-bench: error: {path}: unknown key 'distil' (did you mean 'distill'?)",
        f"glue-bench: error: {path} [grid]: unknown key 'lrs' (did you mean 'lr'?)",
        f"glue-bench: error: {path} [recipe]: unknown key 'max_train_sample' (did you mean 'max_train_samples'?)",
    ]
    with pytest.raises(Exception, match="unknown key 'epoch'"):
        sweep_file.load(path)


def test_a_run_that_fails_before_training_leaves_no_storage_behind(tmp_path, monkeypatch, capsys, glue_data):
    monkeypatch.setenv("GLUE_BENCH_DATA", str(tmp_path / "no-such-folder"))
    fresh = tmp_path / "new" / "deeper" / "runs.db"
    code, err = run_main([*RUN, "--model", "random:L-2_H-128", "--storage", f"sqlite:///{fresh}"], capsys)
    assert code == 2 and "no such folder" in err
    assert not (tmp_path / "new").exists()  # neither the file nor the folders made for it
    # A storage that was there before stays, with what it holds: a real run, then a failed one against it.
    monkeypatch.delenv("GLUE_BENCH_DATA")
    kept = tmp_path / "kept.db"
    argv = [*RUN, "--model", "random:L-2_H-128", "--max-train-samples", "32", "--storage", f"sqlite:///{kept}"]
    assert run_main([*argv, "--data", str(glue_data)], capsys)[0] == 0
    before = kept.read_bytes()
    assert run_main([*argv, "--data", str(tmp_path / "no-such-folder")], capsys)[0] == 2
    assert kept.read_bytes() == before


def test_status_shows_each_worker_its_host_and_slurm_task(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.format(data=""))
    sweep = sweep_file.load(path)
    plan = sweep.studies()[0]
    workers = Counter(
        {
            ("node1:101", "7_0", "complete"): 3,
            ("node1:101", "7_0", "interrupted"): 1,
            ("node2:202", "7_1", "complete"): 4,
            ("node2:202", "7_1", "running"): 1,
            ("node2:303", "", "died"): 1,
        }
    )
    lines = status.format_status(sweep, [status.StudyStatus(plan, workers=workers)], "sqlite:///x.db").splitlines()
    at = lines.index("trials per worker:")
    assert lines[at + 1 :] == [
        "   worker  host SLURM task  complete  running  failed  interrupted  died",
        "node1:101 node1        7_0         3        0       0            1     0",
        "node2:202 node2        7_1         4        1       0            0     0",
        "node2:303 node2          -         0        0       0            0     1",
    ]


@pytest.mark.slow
def test_the_launcher_reports_its_only_worker_killed(tmp_path, glue_data):
    """One worker, SIGKILLed mid-trial: the launcher's loop ends with it, and still says so (pid, signal, why)."""
    log = tmp_path / "launcher.log"
    grid = {"batch_size": [8], "lr": [1e-4], "seed": [0]}
    launcher = launch(write_sweep(tmp_path, glue_data, grid), f"sqlite:///{tmp_path / 'runs.db'}", 1, tmp_path, log)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert wait_for(lambda: any(t.state == TrialState.RUNNING for t in all_trials(url)), 300), log.read_text()
    (pid,) = workers_of(log)
    os.kill(pid, signal.SIGKILL)
    assert launcher.wait(timeout=120) == 1
    time.sleep(0.1)
    line = next(line for line in log.read_text().splitlines() if "was killed by" in line)
    print(line)
    assert line == (
        f"glue-bench: worker 0 (pid {pid}) was killed by SIGKILL (SIGKILL: the kernel's out-of-memory killer, a "
        "scheduler past its time or memory limit, or `kill -9`; `dmesg` names the OOM killer); its trial is "
        "retried once its heartbeat goes stale"
    )
