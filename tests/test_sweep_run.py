"""Sweeps that train: every grid point runs once with the sweep's recipe, a rerun runs nothing, and a trial
that fails is recorded with its reason while the sweep goes on. Tiny: random BERT-Tiny, 32 WNLI rows."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from glue_bench.cli import main
from glue_bench.sweeping import launcher, studies, worker
from glue_bench.sweeping import sweep_file as sweeps
from glue_bench.sweeping import trial as trials
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
    assert "sweep tiny: 1 studies, 2 trials: 0 complete, 0 failed, 2 to run (2 newly queued)" in out
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
    assert capsys.readouterr().out.startswith(f"wrote {out_csv}: 2 trials, 1 studies")


def test_failing_trials_are_recorded_with_their_reason_and_the_sweep_goes_on(
    tmp_path, glue_data, storage, monkeypatch, capsys
):
    sweep = sweeps.load(tiny_sweep(tmp_path, glue_data, storage, lrs="1e-4, 3e-5"))
    real = trials.fine_tune

    def faulty(model, task, train, dev, to_predict, recipe, **kwargs):  # injected faults, by grid point
        if (recipe.batch_size, recipe.lr) == (16, 3e-5):
            raise Diverged(7, float("nan"))
        if (recipe.batch_size, recipe.lr) == (32, 3e-5):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")
        if recipe.batch_size == 32:
            raise ValueError("a bad batch: token id 40000 is outside the vocabulary")
        return real(model, task, train, dev, to_predict, recipe, **kwargs)

    monkeypatch.setattr(trials, "fine_tune", faulty)
    plans = sweep.studies()
    assert studies.enqueue(sweep, plans, storage) == 4
    assert worker.work(launcher.worker_plan(plans, storage, str(glue_data), sweep)) == 0
    study = optuna.load_study(study_name=plans[0].name, storage=storage)
    outcome = {
        (t.params["batch_size"], t.params["lr"]): (t.state, t.user_attrs.get("fail_reason")) for t in study.trials
    }
    assert outcome == {
        (16, 1e-4): (TrialState.COMPLETE, None),
        (16, 3e-5): (TrialState.FAIL, "diverged: loss became nan at step 7"),
        (32, 1e-4): (TrialState.FAIL, "ValueError: a bad batch: token id 40000 is outside the vocabulary"),
        (32, 3e-5): (TrialState.FAIL, "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"),
    }
    assert [t.user_attrs.get("fail_step") for t in study.trials if t.params["lr"] == 3e-5] == [7, None]
    assert (
        "trial 1 of tiny/random:L-2_H-128/wnli failed: diverged: loss became nan at step 7" in capsys.readouterr().err
    )

    # Failures are settled: a rerun queues nothing, unless asked to retry them.
    assert studies.enqueue(sweep, plans, storage) == 0
    assert studies.enqueue(sweep, plans, storage, retry_failed=True) == 3
    assert len(study.trials) == 7


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
    assert launcher.describe_placement(4, gpus) == "4 worker(s) on GPU 0 (×2), 1 (×2)"


def test_cpu_workers_share_the_cores(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert launcher.visible_gpus() == []
    assert [launcher.worker_env(i, 4, [])["OMP_NUM_THREADS"] for i in range(4)] == ["2"] * 4
    assert launcher.describe_placement(4, []) == "4 worker(s) on the CPU (2 thread(s) each)"
