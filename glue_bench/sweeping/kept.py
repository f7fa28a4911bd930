"""The best model of a study, kept (`save = "best"`): the fine-tuned weights of its best trial in the artifact store.

One model per study, never more, so that the paper's 4,320 trials do not fill a disk: a trial that finishes
better than the kept one (a higher dev score; on a tie, the lower trial number, so the outcome does not depend
on which worker finished first) uploads its model, and the study's `kept_model` attribute then names it and
the earlier one is removed. The swap runs under the planning lock, so any number of workers can finish at once.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
from pathlib import Path

import optuna

from glue_bench.errors import UserError
from glue_bench.inputs.cache import cache_dir
from glue_bench.inputs.tasks import Task
from glue_bench.sweeping.storage import artifact_store, masked, plan_lock

KEPT_ATTR = "kept_model"  # study user attr: {"trial": number, "value": dev score, "artifact": artifact id}


def kept(study: optuna.Study) -> dict | None:
    return study.user_attrs.get(KEPT_ATTR)


def _better(value: float, number: int, current: dict | None) -> bool:
    return current is None or value > current["value"] or value == current["value"] and number < current["trial"]


def keep_if_best(trial: optuna.Trial, value: float, model, tokenizer, task: Task, url: str | None) -> bool:
    """Keep this trial's model if it is now the study's best; returns whether it was kept."""
    study = trial.study
    if not _better(value, trial.number, kept(study)):
        return False
    artifact = _upload(trial, model, tokenizer, task, url)  # outside the lock: seconds for a large model
    with plan_lock(url):
        current = kept(study)
        won = _better(value, trial.number, current)
        if won:
            study.set_user_attr(KEPT_ATTR, {"trial": trial.number, "value": value, "artifact": artifact})
    loser = (current or {}).get("artifact") if won else artifact
    if loser:
        with contextlib.suppress(Exception):  # already gone: nothing to free
            artifact_store(url).remove(loser)
    return won


def _upload(trial: optuna.Trial, model, tokenizer, task: Task, url: str | None) -> str:
    """The model as save_pretrained writes it, with the task's label names, in one tar artifact."""
    if not task.regression:
        model.config.id2label = dict(enumerate(task.names))
        model.config.label2id = {name: i for i, name in enumerate(task.names)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "model")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        archive = Path(tmp, "model.tar")
        with tarfile.open(archive, "w") as tar:
            for file in sorted(folder.iterdir()):
                tar.add(file, arcname=file.name)
        return optuna.artifacts.upload_artifact(
            artifact_store=artifact_store(url),
            file_path=str(archive),
            study_or_trial=trial,
            mimetype="application/x-tar",
        )


def kept_folder(study: optuna.Study, url: str | None) -> Path:
    """The kept model of `study` as a folder from_pretrained opens: downloaded once into the cache."""
    entry = kept(study)
    if entry is None:
        raise UserError(
            f'study {study.study_name} in {masked(url)} keeps no model; run its sweep with save = "best" '
            "(or glue-bench run --save)"
        )
    folder = cache_dir() / "kept" / entry["artifact"]
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        archive = Path(tmp, "model.tar")
        try:
            optuna.artifacts.download_artifact(
                artifact_store=artifact_store(url), file_path=str(archive), artifact_id=entry["artifact"]
            )
        except Exception as e:  # the artifact folder moved or was cleaned
            raise UserError(
                f"study {study.study_name}: its kept model (artifact {entry['artifact']}) cannot be read from the "
                f"artifact store ({type(e).__name__}: {e}); set GLUE_BENCH_ARTIFACTS to the folder that holds it"
            ) from None
        unpacked = Path(tmp, "model")
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
        with contextlib.suppress(OSError):  # another process unpacked it first: theirs is the same
            os.rename(unpacked, folder)
    return folder
