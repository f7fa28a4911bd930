"""Checkpoints and exact resume (issue 29): a fine-tune stopped between two steps, or in an evaluation, and continued
from its checkpoint is the uninterrupted run bit for bit on a CPU: the same losses, curve, dev and test predictions
and trained weights; solo, a pack, gradient accumulation, the paper's optimizer and batch order. A checkpoint that
does not belong to the run (other rows, another recipe) or cannot be read is left alone, said in one line, and the
run starts from step 0. Through `glue-bench run`: the trial records resumed_from_step, and a finished grid point's
checkpoints are removed."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from glue_bench.cli import main
from glue_bench.sweeping import trial
from glue_bench.sweeping.runs import runs_table
from glue_bench.sweeping.storage import artifacts_dir
from glue_bench.training import loop
from glue_bench.training.checkpoint import Keeper
from glue_bench.training.recipe import Recipe

TINY = {"batch_size": 16, "lr": 2e-3, "epochs": 2, "max_train_samples": 192}  # 12 steps an epoch: exactness


class Stopping(Keeper):
    """Keeps the records of a stop in memory (through torch.save and a weights-only load, as the artifact store
    does), and stops the run as SIGTERM does, at the end of step `at`."""

    def __init__(self, at: int | None = None, resume: list[dict] | None = None):
        self.at, self.resume, self.kept, self.steps, self.refusal = at, resume, None, 0, None

    @contextmanager
    def step(self):
        yield
        self.steps += 1
        if self.steps == self.at:
            raise KeyboardInterrupt

    def stopped(self, records) -> None:
        buffer = io.BytesIO()
        torch.save(records(), buffer)
        buffer.seek(0)
        self.kept = torch.load(buffer, weights_only=True)

    def refused(self, reason: str) -> None:
        self.refusal, self.resume = reason, None


def _run(data, lrs, keeper, **recipe):
    recipe = Recipe(**{**TINY, **recipe})
    prepared = trial.prepare(trial.TrialSpec("random:L-2_H-128", "sst2", str(data), recipe))
    return loop.fine_tune_pack(
        prepared.model, prepared.task, prepared.train, prepared.dev, prepared.to_predict, recipe, lrs,
        progress=False, keeper=keeper,
    )  # fmt: skip


def _same(a: list, b: list) -> None:
    for x, y in zip(a, b, strict=True):
        strip = lambda curve: [{k: v for k, v in e.items() if k != "train_seconds"} for e in curve]  # noqa: E731
        assert strip(x.curve) == strip(y.curve)
        assert x.dev_predictions == y.dev_predictions and x.predictions == y.predictions
        assert x.steps == y.steps
        mine, theirs = x.trained_model().state_dict(), y.trained_model().state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.mark.parametrize(
    ("lrs", "at", "recipe"),
    [
        ([2e-3], 5, {}),  # solo, in the first epoch
        ([2e-3, 5e-4], 15, {"gradient_accumulation_steps": 2}),  # a pack, accumulated, in the second epoch
        ([2e-3], 7, {"optimizer": "bert", "batch_order": "tf"}),  # the paper's optimizer and batch order
    ],
    ids=["solo", "pack-accumulated", "paper-recipe"],
)
def test_a_run_stopped_between_steps_resumes_bit_for_bit(sst2_without_test, lrs, at, recipe):
    whole = _run(sst2_without_test, lrs, None, **recipe)
    stopping = Stopping(at=at)
    with pytest.raises(KeyboardInterrupt):
        _run(sst2_without_test, lrs, stopping, **recipe)
    assert [r["step"] for r in stopping.kept] == [at] * len(lrs)
    resumed = _run(sst2_without_test, lrs, Stopping(resume=stopping.kept), **recipe)
    _same(whole, resumed)


def test_a_run_stopped_in_an_evaluation_resumes_with_that_evaluation(sst2_without_test, monkeypatch):
    whole = _run(sst2_without_test, [2e-3], None)
    real = loop.predict

    def stop_in_the_first_evaluation(*args, **kwargs):
        monkeypatch.setattr(loop, "predict", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "predict", stop_in_the_first_evaluation)
    stopping = Stopping()
    with pytest.raises(KeyboardInterrupt):
        _run(sst2_without_test, [2e-3], stopping)
    assert stopping.kept[0]["step"] == 12 and stopping.kept[0]["curve"] == []  # trained epoch 1, not scored yet
    _same(whole, _run(sst2_without_test, [2e-3], Stopping(resume=stopping.kept)))


def test_records_of_other_rows_are_refused_and_the_run_starts_afresh(sst2_without_test):
    stopping = Stopping(at=5)
    with pytest.raises(KeyboardInterrupt):
        _run(sst2_without_test, [2e-3], stopping)
    other = Stopping(resume=stopping.kept)
    resumed = _run(sst2_without_test, [2e-3], other, max_train_samples=176)
    assert other.refusal.startswith("its batch_order is ")
    _same(_run(sst2_without_test, [2e-3], None, max_train_samples=176), resumed)


# --- through glue-bench run: the artifact store, the trial's records ---------------------------------------------

ARGS = ["--model", "random:L-2_H-128", "--task", "sst2", "--batch-size", "16", "--lr", "2e-3", "--epochs", "2"]
ARGS += ["--no-progress"]
LEARNS = ["--max-train-samples", "800"]  # 50 steps an epoch: enough to learn (SST-2 dev 59%, both classes)
SHORT = ["--max-train-samples", "192"]  # 12 steps an epoch


def _cli_run(data, storage, *more) -> int:
    return main(["run", *ARGS, "--data", str(data), "--storage", storage, *more])


def _stopped_in_the_first_evaluation(data, storage, monkeypatch, *more, evaluation: int = 1) -> None:
    real, calls = loop.predict, []

    def stop(*args, **kwargs):
        calls.append(1)
        if len(calls) < evaluation:
            return real(*args, **kwargs)
        monkeypatch.setattr(loop, "predict", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "predict", stop)
    assert _cli_run(data, storage, *more) == 130


def _complete(storage: str):
    table = runs_table(storage)
    return table[table["state"] == "COMPLETE"].iloc[0]


def _checkpoint_files(storage: str) -> list[Path]:
    return [p for p in artifacts_dir(storage).rglob("*") if p.is_file() and p.stat().st_size > 100_000]


def test_glue_bench_run_resumes_where_it_was_stopped_and_removes_its_checkpoints(
    sst2_without_test, tmp_path, monkeypatch, capsys
):
    whole, stopped = f"sqlite:///{tmp_path / 'whole.db'}", f"sqlite:///{tmp_path / 'stopped.db'}"
    assert _cli_run(sst2_without_test, whole, *LEARNS) == 0
    _stopped_in_the_first_evaluation(sst2_without_test, stopped, monkeypatch, *LEARNS)
    assert "stopped at step 50: checkpoint written" in capsys.readouterr().err
    assert len(_checkpoint_files(stopped)) == 1
    assert _cli_run(sst2_without_test, stopped, *LEARNS) == 0
    a, b = _complete(whole), _complete(stopped)
    assert (a["resumed_from_step"], b["resumed_from_step"]) == (0, 50)
    assert a["score"] == b["score"] and a["dev/validation/accuracy"] == b["dev/validation/accuracy"]
    curves = [[{k: v for k, v in e.items() if k != "train_seconds"} for e in json.loads(r["curve"])] for r in (a, b)]
    assert curves[0] == curves[1] and len(curves[0]) == 2
    assert a["dev/validation/accuracy"] > 0.55 and json.loads(a["predicted_classes"]) == {"validation": [0, 1]}
    assert _checkpoint_files(stopped) == []  # the grid point is complete: its checkpoint is gone


@pytest.mark.parametrize("damage", ["truncated", "another recipe"])
def test_a_checkpoint_that_cannot_be_read_or_is_another_recipes_is_left_alone(
    sst2_without_test, tmp_path, monkeypatch, capsys, damage
):
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    more = SHORT + (["--warmup-ratio", "0.2"] if damage == "another recipe" else [])
    _stopped_in_the_first_evaluation(sst2_without_test, storage, monkeypatch, *more)
    (checkpoint,) = _checkpoint_files(storage)
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    capsys.readouterr()
    assert _cli_run(sst2_without_test, storage, *SHORT) == 0
    err = capsys.readouterr().err
    said = "cannot be read (" if damage == "truncated" else "belongs to another recipe, model, data or code version"
    (line,) = [line for line in err.splitlines() if "checkpoint of trial 0 at step 12" in line]
    assert said in line and line.endswith("starting from step 0")
    assert _complete(storage)["resumed_from_step"] == 0


def test_the_newest_checkpoint_of_its_own_is_resumed_past_one_of_another_recipe(
    sst2_without_test, tmp_path, monkeypatch, capsys
):
    """Another recipe's checkpoint further on (step 24) does not hide the trial's own (step 12): it is resumed."""
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    _stopped_in_the_first_evaluation(
        sst2_without_test, storage, monkeypatch, *SHORT, "--warmup-ratio", "0.2", evaluation=2
    )
    _stopped_in_the_first_evaluation(sst2_without_test, storage, monkeypatch, *SHORT)
    capsys.readouterr()
    assert _cli_run(sst2_without_test, storage, *SHORT) == 0
    assert "belongs to another recipe" not in capsys.readouterr().err
    assert _complete(storage)["resumed_from_step"] == 12


def test_a_stop_writes_a_checkpoint_only_where_that_costs_less_than_the_training_it_saves(tmp_path, capsys):
    """A stop writes one where it fits in the STOP_SECONDS a stop leaves and, once the run has written one (its
    write speed measured), takes less time to write than the training since then; else the last one stands."""
    import optuna

    from glue_bench.sweeping import checkpoints

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    trial = optuna.create_study(storage=url).ask()
    keeper = checkpoints.ArtifactKeeper([trial], ["f"], url, minutes=0)
    keeper.period = 60.0  # on, without looking for a checkpoint to resume
    records = lambda step: lambda: [{"step": step, "weights": torch.zeros(250_000)}]  # noqa: E731  1 MB
    linked = lambda: trial.study.trials[0].user_attrs["checkpoint"]["step"]  # noqa: E731
    keeper.stopped(records(1))  # the run's first: written, however soon
    assert linked() == 1 and "stopped at step 1: checkpoint written" in capsys.readouterr().err
    keeper.bytes_per_second = 1e6  # 1 s to write one
    keeper.last -= 0.2  # a fifth of a second of training since
    keeper.stopped(records(2))
    assert linked() == 1
    assert capsys.readouterr().err.strip() == (
        "glue-bench: stopped: a checkpoint of 1 MB would take longer to write than the 0 s of training it saves; "
        "the checkpoint written 0 s ago is kept"
    )
    keeper.last -= 20  # 20 s of training: written
    keeper.stopped(records(30))
    assert linked() == 30 and "stopped at step 30: checkpoint written" in capsys.readouterr().err
    keeper.bytes_per_second, keeper.last = 1e5, keeper.last - 60  # 10 s to write: more than a stop leaves
    keeper.stopped(records(90))
    assert linked() == 30
    assert "would not be written in the 8 s a stop leaves; the checkpoint written 60 s ago is kept" in (
        capsys.readouterr().err
    )
