"""Checkpoints in real sweeps, in real processes (slow): a launcher stopped by SIGTERM (SLURM's time limit, scancel)
writes its trials' checkpoints and the same command resumes them; a worker killed outright (SIGKILL: a node that
dies) leaves its last periodic checkpoint, which the retry after the grace period resumes. Either way each trial ends
with the uninterrupted run's result: its score, curve and dev predictions."""

from __future__ import annotations

import os
import signal

import optuna
import pytest
from optuna.trial import TrialState
from sweep_processes import launch, sweep_env, wait_for, workers_of

from glue_bench.inputs.models import bundled_tokenizer, miniature_config
from glue_bench.sweeping.artifacts import download_predictions
from glue_bench.sweeping.storage import open_storage, storage_exists

pytestmark = pytest.mark.slow

SWEEP = """name = "resume"
models = ["random:L-2_H-128"]
tasks = ["sst2"]
epochs = 2
data = "{data}"
pack = {pack}
checkpoint_minutes = {minutes}

[grid]
batch_size = [16]
lr = {lrs}

[recipe]
max_train_samples = {rows}
gradient_accumulation_steps = {accumulation}
{distill}"""
STUDY = "resume/random:L-2_H-128/sst2"


def _sweep(tmp_path, data, lrs, pack=1, rows=1200, accumulation=1, distill="", minutes=0.02, name="resume"):
    path = tmp_path / f"{name}.toml"
    path.write_text(
        SWEEP.format(
            data=data, pack=pack, lrs=lrs, rows=rows, accumulation=accumulation, distill=distill, minutes=minutes
        )
    )
    return path


def _trials(url: str) -> list:
    if not storage_exists(url):
        return []  # not made yet
    storage = open_storage(url, create=False)
    if STUDY not in optuna.get_all_study_names(storage):
        return []
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)


def _results(url: str) -> dict:
    """Each grid point's complete trial: its score, curve (without timings) and dev predictions."""
    out = {}
    for t in _trials(url):
        if t.state == TrialState.COMPLETE:
            curve = [{k: v for k, v in e.items() if k != "train_seconds"} for e in t.user_attrs["curve"]]
            dev = {k: download_predictions(v, url) for k, v in t.user_attrs["dev_predictions"].items()}
            out[t.params["lr"]] = (t.value, curve, dev)
    return out


def _resumed(url: str) -> dict:
    return {t.params["lr"]: t.user_attrs["resumed_from_step"] for t in _trials(url) if t.state == TrialState.COMPLETE}


def _checkpointed(url: str, step: int):
    return lambda: any(t.user_attrs.get("checkpoint", {}).get("step", 0) >= step for t in _trials(url))


def _run(path, url, tmp_path, name, env=None) -> int:
    log = tmp_path / f"{name}.log"
    process = launch(path, url, 1, tmp_path, log, env)
    try:
        return process.wait(timeout=900)
    finally:
        print(log.read_text()[-2000:])


def test_a_pack_with_a_teacher_stopped_by_sigterm_resumes_from_its_checkpoints_exactly(
    tmp_path, sst2_without_test, glue_data
):
    """A pack of 4 learning rates, distilled from a teacher with transfer rows, 2 micro-batches a step: SIGTERM in
    its second epoch, then the same command. Every trial resumes from its checkpoint (resumed_from_step > 0) and
    ends with the uninterrupted sweep's score, curve and dev predictions."""
    from transformers import AutoModelForSequenceClassification

    teacher = tmp_path / "teacher"
    AutoModelForSequenceClassification.from_config(miniature_config(2, 128)).save_pretrained(teacher)
    bundled_tokenizer().save_pretrained(teacher)
    transfer = tmp_path / "sentences.tsv"
    lines = (glue_data / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    transfer.write_text("\n".join(line.split("\t")[0] for line in lines[:1] + lines[5000:5400]) + "\n")
    distill = f'[distill]\nteacher = "{teacher}"\ntransfer = "{transfer}"\nalpha = 0.8\n'
    lrs = [3e-3, 2e-3, 1e-3, 5e-4]
    path = _sweep(tmp_path, sst2_without_test, lrs, pack=4, rows=1000, accumulation=2, distill=distill)
    never = _sweep(
        tmp_path, sst2_without_test, lrs, pack=4, rows=1000, accumulation=2, distill=distill, minutes=0, name="whole"
    )
    whole, stopped = f"sqlite:///{tmp_path / 'whole.db'}", f"sqlite:///{tmp_path / 'stopped.db'}"
    env = sweep_env(tmp_path)

    assert _run(never, whole, tmp_path, "whole", env) == 0  # never checkpointed
    log = tmp_path / "stopped.log"
    sweep = launch(path, stopped, 1, tmp_path, log, env)
    try:
        assert wait_for(_checkpointed(stopped, 95), 900), log.read_text()[-3000:]  # an epoch is 88 steps
        os.kill(sweep.pid, signal.SIGTERM)
        assert sweep.wait(timeout=30) == 143, log.read_text()[-3000:]
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    print(log.read_text()[-2000:])
    assert _run(path, stopped, tmp_path, "again", env) == 0
    resumed = _resumed(stopped)
    print(f"resumed_from_step per learning rate: {resumed}")
    assert sorted(resumed) == sorted(lrs) and all(step >= 95 for step in resumed.values())
    assert _results(stopped) == _results(whole)
    scores = [value for value, _, _ in _results(whole).values()]
    assert max(scores) > 0.55  # learned (the majority class is 50.9): the comparison means something


def test_a_killed_workers_trial_resumes_from_its_last_periodic_checkpoint(tmp_path, sst2_without_test):
    """SIGKILL to the worker mid-trial (no chance to write anything), a grace period of 4 s: the same command
    fails the dead worker's trial once its heartbeat is stale, and the retry resumes from the last periodic
    checkpoint, not step 0, ending with the uninterrupted result."""
    path, never = (
        _sweep(tmp_path, sst2_without_test, [2e-3]),
        _sweep(tmp_path, sst2_without_test, [2e-3], minutes=0, name="whole"),
    )
    whole, killed = f"sqlite:///{tmp_path / 'whole.db'}", f"sqlite:///{tmp_path / 'killed.db'}"
    env = sweep_env(tmp_path)  # heartbeat 1 s, grace 4 s
    assert _run(never, whole, tmp_path, "whole", env) == 0  # never checkpointed
    log = tmp_path / "killed.log"
    sweep = launch(path, killed, 1, tmp_path, log, env)
    try:
        assert wait_for(_checkpointed(killed, 40), 600), log.read_text()[-3000:]
        (worker,) = workers_of(log)
        os.kill(worker, signal.SIGKILL)
        assert sweep.wait(timeout=60) == 1, log.read_text()[-3000:]
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    dead = [t for t in _trials(killed) if t.state == TrialState.RUNNING]
    assert len(dead) == 1 and dead[0].user_attrs["checkpoint"]["step"] >= 40
    assert _run(path, killed, tmp_path, "again", env) == 0
    assert _resumed(killed) == {2e-3: dead[0].user_attrs["checkpoint"]["step"]}  # its newest periodic checkpoint
    assert _resumed(whole) == {2e-3: 0}
    assert _results(killed) == _results(whole)
    (score, _, _) = _results(whole)[2e-3]
    assert score > 0.55  # learned (the majority class is 50.9): the comparison means something
