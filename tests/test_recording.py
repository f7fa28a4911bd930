"""Recording a trial's end when the storage fails part-way (issue 20, items 4-6), in one process on SQLite:

- a failure recorded again after a storage error that hit after part of it was done is still queued again;
- a finished trial declared dead during a storage outage is recorded once, on a new trial of its grid point,
  its waiting retry never run, and the kept model names a COMPLETE trial;
- a reader of a kept model gets the old or the new model whole while a swap replaces it, and no artifact is
  left behind that nothing names.

Storage errors are injected at the storage's own methods, as a database that restarts raises them.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from glue_bench.cli import main
from glue_bench.sweeping import kept, launcher, runs, schema, status, studies, worker
from glue_bench.sweeping import storage as storage_module
from glue_bench.sweeping import sweep_file as sweeps
from glue_bench.sweeping import trial as trials
from glue_bench.sweeping.storage import artifacts_dir, open_storage, ride_out

ONE_POINT = """# glue-bench sweep one.toml
name = "one"
models = ["random:L-2_H-128"]
tasks = ["wnli"]
epochs = 1
data = "{data}"
storage = "{storage}"
save = "best"

[grid]
batch_size = [16]
lr = [1e-4]

[recipe]
max_train_samples = 32
"""
OOM = "out of memory: CUDA out of memory. Tried to allocate 1.00 GiB"


def outage() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


def one_point_sweep(tmp_path: Path, glue_data: Path, storage: str) -> sweeps.Sweep:
    path = tmp_path / "one.toml"
    path.write_text(ONE_POINT.format(data=glue_data, storage=storage))
    return sweeps.load(path)


def summary(study: optuna.Study) -> list[tuple]:
    return [
        (t.number, t.state.name, t.user_attrs.get("fail_kind"), t.system_attrs.get("retry_history"))
        for t in study.get_trials()
    ]


# --- 20.5: a failure recorded twice ------------------------------------------------------------------------


def fail_answer_lost(monkeypatch) -> list:
    """The FAIL is committed, but its answer is lost (the connection drops as the commit returns)."""
    real, lost = optuna.storages.RDBStorage.set_trial_state_values, []

    def set_trial_state_values(self, trial_id, state, values=None):
        done = real(self, trial_id, state, values)
        if state == TrialState.FAIL and not lost:
            lost.append(trial_id)
            raise outage()
        return done

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", set_trial_state_values)
    return lost


def retry_refused(monkeypatch) -> list:
    """The FAIL is committed; the storage goes away before the retry is added."""
    real, refused = optuna.Study.add_trial, []

    def add_trial(self, trial):
        if not refused:
            refused.append(trial.state)
            raise outage()
        return real(self, trial)

    monkeypatch.setattr(optuna.Study, "add_trial", add_trial)
    return refused


@pytest.mark.parametrize("fault", [fail_answer_lost, retry_refused], ids=["FAIL's answer lost", "retry refused"])
def test_a_transient_failure_recorded_again_after_a_partial_success_is_still_queued_again(
    tmp_path, glue_data, storage, monkeypatch, capsys, fault
):
    monkeypatch.setenv("GLUE_BENCH_STORAGE_RETRY_SECONDS", "10")
    sweep = one_point_sweep(tmp_path, glue_data, storage)
    studies.enqueue(sweep, sweep.studies(), storage)
    held = open_storage(storage, heartbeat=True)
    study = optuna.load_study(study_name=sweep.studies()[0].name, storage=held)
    trial = worker.take_waiting(study, held)
    injected = fault(monkeypatch)

    worker._fail(study, trial, OOM, storage, transient=True)

    assert injected  # the storage error happened
    assert summary(study) == [(0, "FAIL", "transient", None), (1, "WAITING", None, [0])]
    assert schema.point_states(study.get_trials()) == {(16, 1e-4, 0): "waiting"}
    err = capsys.readouterr().err
    assert "the storage did not answer while recording a failure (OperationalError" in err
    assert f"trial 0 of {study.study_name} failed: {OOM}; queued again" in err


def test_a_dead_workers_trial_whose_retry_was_refused_is_retried_when_failing_it_is_repeated(
    tmp_path, glue_data, storage, monkeypatch
):
    """Failing a stale trial and queueing its retry are two transactions: a storage error between them, and
    ride_out's repeat finds no stale trial any more. The retry must still be queued."""
    monkeypatch.setenv("GLUE_BENCH_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("GLUE_BENCH_GRACE_SECONDS", "2")
    monkeypatch.setenv("GLUE_BENCH_STORAGE_RETRY_SECONDS", "10")
    sweep = one_point_sweep(tmp_path, glue_data, storage)
    studies.enqueue(sweep, sweep.studies(), storage)
    held = open_storage(storage, heartbeat=True)
    study = optuna.load_study(study_name=sweep.studies()[0].name, storage=held)
    worker.take_waiting(study, held)  # RUNNING with one heartbeat; then its worker dies
    time.sleep(3)
    refused = retry_refused(monkeypatch)

    ride_out(lambda: studies.fail_stale([study], storage), "looking for a trial to run")

    assert refused == [TrialState.WAITING]
    assert summary(study) == [(0, "FAIL", None, None), (1, "WAITING", None, [0])]


# --- 20.4: a finished trial declared dead during an outage ----------------------------------------------------


class Outage:
    """From the first call of the faulty write on, every write of this worker fails, and so do its heartbeats;
    ride_out's first wait is where another worker, which can still reach the storage, declares the trial dead
    (studies.fail_stale, once its heartbeat is older than the grace period); then the storage is back."""

    def __init__(self, monkeypatch, url: str, study_name: str, first: str):
        self.url, self.first, self.down, self.other_worker = url, first, False, False
        self.declared_dead = False
        other = open_storage(url, heartbeat=True)
        self.other_study = optuna.load_study(study_name=study_name, storage=other)
        rdb = optuna.storages.RDBStorage
        for method in ("set_trial_user_attr", "set_trial_system_attr", "set_trial_state_values", "create_new_trial"):
            monkeypatch.setattr(rdb, method, self._faulty(method, getattr(rdb, method)))
        real_heartbeat = rdb.record_heartbeat

        def record_heartbeat(storage, trial_id):
            if self.down:
                raise outage()
            return real_heartbeat(storage, trial_id)

        monkeypatch.setattr(rdb, "record_heartbeat", record_heartbeat)
        monkeypatch.setattr(storage_module, "time", self)

    def _faulty(self, method: str, real):
        def call(storage, *args, **kwargs):
            starts = method == self.first and self._is_first(args, kwargs)
            if not self.declared_dead and starts:
                self.down = True
            if self.down and not self.other_worker:
                raise outage()
            return real(storage, *args, **kwargs)

        return call

    def _is_first(self, args, kwargs) -> bool:
        if self.first == "set_trial_user_attr":  # the first of the finished trial's results
            return (kwargs.get("key") or args[1]) == "metrics"
        state = kwargs.get("state", args[1] if len(args) > 1 else None)
        return state == TrialState.COMPLETE  # its completion

    # ride_out's clock: its first wait is the outage
    monotonic = staticmethod(time.monotonic)

    def sleep(self, seconds: float) -> None:
        if not self.down:
            return time.sleep(min(seconds, 0.2))
        time.sleep(3.5)  # longer than the grace period (2 s): the heartbeat is stale
        self.other_worker = True
        try:
            studies.fail_stale([self.other_study], self.url)
        finally:
            self.other_worker, self.down, self.declared_dead = False, False, True


@pytest.mark.slow
@pytest.mark.parametrize("first", ["set_trial_user_attr", "set_trial_state_values"], ids=["results", "completion"])
def test_a_finished_trial_declared_dead_in_an_outage_is_recorded_once_and_its_retry_never_runs(
    tmp_path, glue_data, storage, monkeypatch, capsys, first
):
    monkeypatch.setenv("GLUE_BENCH_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("GLUE_BENCH_GRACE_SECONDS", "2")
    sweep = one_point_sweep(tmp_path, glue_data, storage)
    plans = sweep.studies()
    studies.enqueue(sweep, plans, storage)
    scores = []
    real_fine_tune = trials.fine_tune_pack

    def fine_tune(model, task, *args, **kwargs):
        results = real_fine_tune(model, task, *args, **kwargs)
        scores.extend(trials.metrics.task_score(task, result.dev) for result in results)
        return results

    monkeypatch.setattr(trials, "fine_tune_pack", fine_tune)
    outage_ = Outage(monkeypatch, storage, plans[0].name, first)

    assert worker.work(launcher.worker_plan(plans, storage, str(glue_data), sweep)) == 0

    assert outage_.declared_dead
    study = optuna.load_study(study_name=plans[0].name, storage=storage)
    kept_trial = kept.kept(study)["trial"]
    assert (kept_trial, study.trials[kept_trial].state) == (2, TrialState.COMPLETE)  # never a FAIL trial
    # (number, state, results_of, superseded_by, ran a fine-tune): 0 declared dead, its retry 1 never run, its
    # result recorded as 2
    assert [
        (
            t.number,
            t.state.name,
            t.user_attrs.get("results_of"),
            t.user_attrs.get("superseded_by"),
            t.datetime_start is not None,
        )
        for t in study.trials
    ] == [(0, "FAIL", None, None, True), (1, "FAIL", None, 2, False), (2, "COMPLETE", 0, None, True)]
    ran, retry, recorded = study.trials
    assert (ran.state, ran.user_attrs.get("fail_reason")) == (TrialState.FAIL, None)  # declared dead
    # its retry, queued by the other worker, never ran: the point was complete when it would have
    assert (retry.state, retry.user_attrs.get("superseded_by"), retry.datetime_start) == (TrialState.FAIL, 2, None)
    assert retry.system_attrs["retry_history"] == [0]
    # the finished fine-tune's result, recorded once, as a retry of the trial that ran it
    assert (recorded.state, recorded.value, recorded.user_attrs["results_of"]) == (TrialState.COMPLETE, scores[0], 0)
    assert len(scores) == 1  # one fine-tune in all
    assert recorded.user_attrs["worker"] == ran.user_attrs["worker"]
    assert (recorded.system_attrs["failed_trial"], recorded.system_attrs["retry_history"]) == (0, [0])
    assert recorded.user_attrs["metrics"] and recorded.user_attrs["predictions"]
    assert sorted(p.name for p in artifacts_dir(storage).iterdir()) == named_artifacts(study)
    assert "its result is recorded as trial 2" in capsys.readouterr().err
    table = runs.runs_table(storage).set_index("trial")  # the runs table and status read it as it is
    assert (table["state"].tolist(), table.loc[2, "retry_of"]) == (["FAIL", "FAIL", "COMPLETE"], 0)
    assert [dict(s.points) for s in status.read_status(sweep, plans, storage)] == [{"complete": 1}]
    assert main(["status", str(sweep.path)]) == 0


def named_artifacts(study: optuna.Study) -> list[str]:
    """Every artifact a trial's attributes or the study's kept model name, once."""
    named = {entry["artifact"]} if (entry := kept.kept(study)) else set()
    for t in study.trials:
        for key in ("predictions", "dev_predictions"):
            named |= set(t.user_attrs.get(key, {}).values())
    return sorted(named)


# --- 20.6: the kept model's swap, and no artifact left behind ------------------------------------------------


def _tar(content: str) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        body = content.encode()
        info = tarfile.TarInfo("weights.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return data.getvalue()


def test_a_reader_of_the_kept_model_gets_the_new_one_whole_when_a_swap_removes_the_old_one(
    tmp_path, storage, monkeypatch
):
    """A worker reads the study's kept_model (model A), and before it opens A another worker finishes a better
    trial: the swap names B and removes A. The reader must get B whole, not fail."""
    monkeypatch.setenv("GLUE_BENCH_CACHE", str(tmp_path / "cache"))
    study = optuna.create_study(storage=storage, study_name="s/m/sst2", direction="maximize")
    store = storage_module.artifact_store(storage)
    store.write("model-a", io.BytesIO(_tar("A" * 1000)))
    store.write("model-b", io.BytesIO(_tar("B" * 1000)))
    study.set_user_attr(kept.KEPT_ATTR, {"trial": 0, "value": 0.5, "artifact": "model-a"})
    real_download = optuna.artifacts.download_artifact
    swapped = []

    def download_during_a_swap(**kwargs):
        if not swapped:  # the other worker's swap, as it is done: name the new model, remove the old one
            swapped.append(kwargs["artifact_id"])
            study.set_user_attr(kept.KEPT_ATTR, {"trial": 1, "value": 0.7, "artifact": "model-b"})
            store.remove("model-a")
        return real_download(**kwargs)

    monkeypatch.setattr(optuna.artifacts, "download_artifact", download_during_a_swap)
    folder = kept.kept_folder(study, storage)
    assert swapped == ["model-a"]
    assert folder.name == "model-b" and (folder / "weights.txt").read_text() == "B" * 1000
    assert [p.name for p in folder.parent.iterdir()] == ["model-b"]  # nothing half-written left in the cache


@pytest.mark.slow
def test_no_artifact_is_left_behind_by_a_repeated_write_or_a_replaced_kept_model(
    tmp_path, glue_data, storage, monkeypatch
):
    """Two `glue-bench run --save` of one study, the first one's artifact links refused once by the storage
    (ride_out repeats the write): every artifact in the store is named by a trial or is the kept model."""
    monkeypatch.setenv("GLUE_BENCH_STORAGE_RETRY_SECONDS", "10")
    real = optuna.storages.RDBStorage.set_trial_system_attr
    refused = []

    def set_trial_system_attr(self, trial_id, key, value):
        if key.startswith("artifacts:") and not refused:
            refused.append(key)
            raise outage()
        return real(self, trial_id, key, value)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_system_attr", set_trial_system_attr)
    for lr in ("1e-4", "1e-3"):
        argv = ["run", "--model", "random:L-2_H-128", "--task", "wnli", "--data", str(glue_data), "--epochs", "1"]
        argv += ["--batch-size", "16", "--lr", lr, "--max-train-samples", "32", "--save", "--no-progress"]
        assert main([*argv, "--storage", storage]) == 0
    assert refused
    study = optuna.load_study(study_name="adhoc/random:L-2_H-128/wnli", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    files = sorted(p.name for p in artifacts_dir(storage).iterdir())
    assert files == named_artifacts(study)
    assert len(files) == 2 * 2 + 1  # per trial: WNLI's test and dev predictions; one kept model
