"""Sweeps that train: every grid point runs once with the sweep's recipe, a rerun runs nothing, and a trial
that fails is recorded with its reason while the sweep goes on. Tiny: random BERT-Tiny, 32 WNLI rows."""

from __future__ import annotations

import threading
import time

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from glue_bench.cli import main
from glue_bench.sweeping import launcher, runs, schema, studies, worker
from glue_bench.sweeping import sweep_file as sweeps
from glue_bench.sweeping import trial as trials
from glue_bench.sweeping.storage import open_storage
from glue_bench.training.loop import Diverged, fine_tune

TINY = """# glue-bench sweep tiny.toml
name = "tiny"
models = ["random:L-2_H-128"]
tasks = ["wnli"]
epochs = 1
data = "{data}"
storage = "{storage}"

[grid]
batch_size = [16, 32]
lr = [{lrs}]

[recipe]
max_train_samples = 32
"""


def tiny_sweep(tmp_path, glue_data, storage, lrs="1e-4"):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(data=glue_data, storage=storage, lrs=lrs))
    return path


def finished(storage_url: str) -> list[tuple]:
    study = optuna.load_study(study_name="tiny/random:L-2_H-128/wnli", storage=storage_url)
    return [(t.number, t.state.name, t.params, t.value, t.datetime_complete) for t in study.trials]


def test_a_sweep_runs_each_point_once_with_its_recipe_and_a_rerun_runs_nothing(tmp_path, glue_data, storage, capsys):
    path = tiny_sweep(tmp_path, glue_data, storage)
    assert main(["sweep", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sweep tiny: 1 study, 2 trials: 0 complete, 0 failed, 2 to run (2 newly queued)" in out
    assert "sweep tiny: 2 of 2 trials complete, 0 failed" in out
    first = finished(storage)
    assert [(n, state, params) for n, state, params, _, _ in first] == [
        (0, "COMPLETE", {"batch_size": 16, "lr": 1e-4, "seed": 0}),
        (1, "COMPLETE", {"batch_size": 32, "lr": 1e-4, "seed": 0}),
    ]

    # The worker ran exactly the sweep's recipe: the same fine-tune here gives the same dev metrics.
    spec = trials.TrialSpec(
        "random:L-2_H-128",
        "wnli",
        str(glue_data),
        sweeps.load(path).recipe_for({"batch_size": 16, "lr": 1e-4, "seed": 0}),
    )
    prepared = trials.prepare(spec)
    here = fine_tune(prepared.model, prepared.task, prepared.train, prepared.dev, {}, spec.recipe, progress=False)
    recorded = optuna.load_study(study_name="tiny/random:L-2_H-128/wnli", storage=storage).trials[0]
    assert recorded.user_attrs["metrics"] == here.dev
    assert recorded.user_attrs["recipe"]["max_train_samples"] == 32 and recorded.user_attrs["train_examples"] == 32

    assert main(["sweep", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 complete, 0 failed, 0 to run (0 newly queued)" in out and "nothing to run" in out
    assert finished(storage) == first  # nothing re-run, nothing touched

    assert main(["status", str(path)]) == 0
    assert "2 of 2 trials complete, 0 failed, 0 running, 0 waiting, 0 not queued" in capsys.readouterr().out
    out_csv = tmp_path / "runs.csv"
    assert main(["export", "--sweep", str(path), "--out", str(out_csv)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out_csv}: 2 trials, 1 study")
    # The file shows metrics in points, as every report does, and reads back as the storage's fractions.
    exported, stored = pd.read_csv(out_csv), runs.runs_table(storage)
    assert set(exported["metric_unit"]) == {"points"}
    for column in ("score", "dev/validation/accuracy"):
        assert exported[column].tolist() == pytest.approx((100 * stored[column]).tolist(), abs=1e-9)
        assert runs.read_runs(str(out_csv))[column].tolist() == pytest.approx(stored[column].tolist(), abs=1e-12)
    assert "metric_unit" not in runs.read_runs(str(out_csv)).columns


def test_failing_trials_are_recorded_with_their_reason_and_the_sweep_goes_on(
    tmp_path, glue_data, storage, monkeypatch, capsys
):
    sweep = sweeps.load(tiny_sweep(tmp_path, glue_data, storage, lrs="1e-4, 3e-5"))
    real = trials.fine_tune_pack

    def faulty(model, task, train, dev, to_predict, recipe, lrs, **kwargs):  # injected faults, by grid point
        if (recipe.batch_size, recipe.lr) == (16, 3e-5):
            raise Diverged(7, float("nan"))
        if (recipe.batch_size, recipe.lr) == (32, 3e-5):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")
        if recipe.batch_size == 32:
            raise ValueError("a bad batch: token id 40000 is outside the vocabulary")
        return real(model, task, train, dev, to_predict, recipe, lrs, **kwargs)

    monkeypatch.setattr(trials, "fine_tune_pack", faulty)
    plans = sweep.studies()
    assert studies.enqueue(sweep, plans, storage) == 4
    assert worker.work(launcher.worker_plan(plans, storage, str(glue_data), sweep)) == 0
    study = optuna.load_study(study_name=plans[0].name, storage=storage)
    first = {(t.params["batch_size"], t.params["lr"]): t for t in reversed(study.trials)}  # each point's first try
    outcome = {
        point: (t.state, t.user_attrs.get("fail_reason"), t.user_attrs.get("fail_kind")) for point, t in first.items()
    }
    oom = "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert outcome == {
        (16, 1e-4): (TrialState.COMPLETE, None, None),
        (16, 3e-5): (TrialState.FAIL, "diverged: loss became nan at step 7", "permanent"),
        (32, 1e-4): (TrialState.FAIL, "ValueError: a bad batch: token id 40000 is outside the vocabulary", "permanent"),
        (32, 3e-5): (TrialState.FAIL, oom, "transient"),
    }
    assert first[(16, 3e-5)].user_attrs["fail_step"] == 7
    # Out of memory is transient: retried 3 times (each a new trial with its lineage), then settled.
    retries = [t for t in study.trials if "failed_trial" in t.system_attrs]
    assert [(t.state, t.user_attrs["fail_reason"]) for t in retries] == [(TrialState.FAIL, oom)] * 3
    root = first[(32, 3e-5)].number
    assert [t.system_attrs["retry_history"] for t in retries] == [[root], [root, root + 1], [root, root + 1, root + 2]]
    assert {t.system_attrs["failed_trial"] for t in retries} == {root}
    err = capsys.readouterr().err
    assert "trial 1 of tiny/random:L-2_H-128/wnli failed: diverged: loss became nan at step 7\n" in err
    assert f"trial {root + 3} of tiny/random:L-2_H-128/wnli failed: {oom}; retries used up" in err

    # Failures are settled: a rerun queues nothing, unless asked to retry them.
    assert studies.enqueue(sweep, plans, storage) == 0
    assert studies.enqueue(sweep, plans, storage, retry_failed=True) == 3
    assert len(study.trials) == 10


def test_a_transient_failure_is_retried_and_a_failed_write_never_fails_a_finished_trial(
    tmp_path, glue_data, storage, monkeypatch, capsys
):
    """Out of memory on a point's first try, and the storage refusing the first write of a finished trial's
    results: both points end COMPLETE, the first after one automatic retry, the second without any FAIL."""
    sweep = sweeps.load(tiny_sweep(tmp_path, glue_data, storage))
    real_fine_tune, real_set = trials.fine_tune_pack, optuna.storages.RDBStorage.set_trial_user_attr
    faults = {"oom": 1, "write": 1}

    def fine_tune_oom_once(model, task, train, dev, to_predict, recipe, lrs, **kwargs):
        if recipe.batch_size == 16 and faults["oom"]:
            faults["oom"] -= 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_fine_tune(model, task, train, dev, to_predict, recipe, lrs, **kwargs)

    def set_user_attr_fails_once(self, trial_id, key, value):
        if key == "metrics" and faults["write"]:
            faults["write"] -= 1
            raise optuna.exceptions.StorageInternalError("server closed the connection unexpectedly")
        return real_set(self, trial_id, key, value)

    monkeypatch.setattr(trials, "fine_tune_pack", fine_tune_oom_once)
    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_user_attr", set_user_attr_fails_once)
    plans = sweep.studies()
    studies.enqueue(sweep, plans, storage)
    assert worker.work(launcher.worker_plan(plans, storage, str(glue_data), sweep)) == 0
    trials_ = optuna.load_study(study_name=plans[0].name, storage=storage).trials
    assert faults == {"oom": 0, "write": 0}
    assert [(t.params["batch_size"], t.state.name, t.system_attrs.get("failed_trial")) for t in trials_] == [
        (16, "FAIL", None),
        (32, "COMPLETE", None),
        (16, "COMPLETE", 0),
    ]
    assert all("metrics" in t.user_attrs for t in trials_ if t.state == TrialState.COMPLETE)
    err = capsys.readouterr().err
    assert "the storage did not answer while recording a finished trial's results (StorageInternalError" in err
    assert "failed: out of memory: CUDA out of memory. Tried to allocate 1.00 GiB; queued again" in err
    assert main(["status", str(sweep.path)]) == 0
    assert "2 of 2 trials complete, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "count, placement",
    [
        (4, ["0", "1", "0", "1"]),  # 4 workers on 2 GPUs: two per GPU
        (1, ["0"]),
    ],
)
def test_workers_are_spread_over_the_gpus(monkeypatch, count, placement):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    gpus = launcher.visible_gpus()
    assert gpus == ["0", "1"]
    assert [launcher.worker_env(i, count, gpus)["CUDA_VISIBLE_DEVICES"] for i in range(count)] == placement
    assert launcher.describe_placement(4, gpus) == "4 workers on GPU 0 (×2), 1 (×2)"


def test_cpu_workers_share_the_cores(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert launcher.visible_gpus() == []
    assert [launcher.worker_env(i, 4, [])["OMP_NUM_THREADS"] for i in range(4)] == ["2"] * 4
    assert launcher.describe_placement(4, []) == "4 workers on the CPU (2 threads each)"


def test_a_planner_never_enqueues_a_point_whose_stale_trial_is_being_retried(tmp_path, glue_data, storage, monkeypatch):
    """A dead worker's trial is failed and its retry queued in two transactions. A planner (a resubmitted
    launcher) looking between them saw a failed point without a retry and enqueued it again: it ran twice.
    Here the retry is held back until the planner is done (or 3 s): it must still enqueue nothing."""
    monkeypatch.setenv("GLUE_BENCH_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("GLUE_BENCH_GRACE_SECONDS", "2")
    sweep = sweeps.load(tiny_sweep(tmp_path, glue_data, storage))
    plans = sweep.studies()
    studies.enqueue(sweep, plans, storage)
    held = open_storage(storage, heartbeat=True)
    study = optuna.load_study(study_name=plans[0].name, storage=held)
    dead = worker.take_waiting(study, held)  # RUNNING with one heartbeat: then its worker "dies"
    point = schema.grid_point(held.get_trial(dead._trial_id))
    time.sleep(3)  # the heartbeat is now older than the grace period

    in_window, planner_done, added = threading.Event(), threading.Event(), []
    queue_retries = studies.queue_retries

    def retry_after_the_planner(study_):
        if not in_window.is_set():  # the first call, fail_stale's: the trial is FAIL now, its retry not queued yet
            in_window.set()
            planner_done.wait(timeout=3)
        return queue_retries(study_)

    def planner():
        in_window.wait(timeout=30)
        added.append(studies.enqueue(sweep, plans, storage))
        planner_done.set()

    monkeypatch.setattr(studies, "queue_retries", retry_after_the_planner)
    thread = threading.Thread(target=planner)
    thread.start()
    studies.fail_stale([study], storage)
    thread.join(timeout=60)
    waiting = [t for t in study.get_trials() if t.state == TrialState.WAITING and schema.grid_point(t) == point]
    assert added == [0]
    assert len(waiting) == 1 and waiting[0].system_attrs["failed_trial"] == dead.number


def test_a_sweep_in_a_log_writes_a_line_per_finished_trial_and_no_bar(tmp_path, glue_data, storage):
    """stderr not a terminal (a SLURM or CI log): no tqdm carriage returns, a line whenever trials finish."""
    import os
    import subprocess
    import sys

    path = tiny_sweep(tmp_path, glue_data, storage)
    out = subprocess.run(
        [sys.executable, "-m", "glue_bench.cli", "sweep", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "GLUE_BENCH_CACHE": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stderr and "trial/s" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("sweep tiny: ")]
    assert lines and lines[-1].startswith("sweep tiny: 2 of 2 trials finished (")
    assert all(" of 2 trials finished (" in line for line in lines)
