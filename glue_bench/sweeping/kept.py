"""The best model of a study, kept (`save = "best"`): the fine-tuned weights of its best trial in the artifact store.

One model per study, never more, so that the paper's 4,320 trials do not fill a disk: a trial that finishes
better than the kept one (a higher dev score; on a tie, the lower trial number, so the outcome does not depend
on which worker finished first) uploads its model (`upload`, before its trial is recorded), and when the trial
is recorded COMPLETE (recording.complete, under the planning lock) `swap` makes the study's `kept_model`
attribute name it and removes the model it replaced; a model that lost is removed too. So the kept model
always names a COMPLETE trial, and no model is left behind unnamed.

A reader (a `kept:` teacher, export-model) reads the attribute, then the artifact; if a swap removed the artifact
in between, it reads the attribute again and gets the new model (`fetch`): the old model whole or the new one
whole, never a part of either (the download goes to a temporary folder, renamed into place when complete).
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
import uuid
from pathlib import Path

import optuna

from glue_bench.errors import UserError
from glue_bench.inputs.cache import cache_dir
from glue_bench.inputs.tasks import Task
from glue_bench.sweeping.storage import artifact_store, masked

KEPT_ATTR = "kept_model"  # study user attr: {"trial": number, "value": dev score, "artifact": artifact id}


def kept(study: optuna.Study) -> dict | None:
    return study.user_attrs.get(KEPT_ATTR)


def _better(value: float, number: int, current: dict | None) -> bool:
    return current is None or value > current["value"] or value == current["value"] and number < current["trial"]


def may_win(study: optuna.Study, value: float, number: int) -> bool:
    """Whether a trial with this score could become the kept model (so its model is worth uploading)."""
    return _better(value, number, kept(study))


def upload(model, tokenizer, task: Task, url: str | None) -> str:
    """The model as save_pretrained writes it, with the task's label names, as one tar in the artifact store;
    returns its artifact id. Nothing is written to the storage: `swap` names it, or `discard` removes it."""
    if not task.regression:
        model.config.id2label = dict(enumerate(task.names))
        model.config.label2id = {name: i for i, name in enumerate(task.names)}
    artifact = str(uuid.uuid4())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "model")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        archive = Path(tmp, "model.tar")
        with tarfile.open(archive, "w") as tar:
            for file in sorted(folder.iterdir()):
                tar.add(file, arcname=file.name)
        with open(archive, "rb") as f:
            artifact_store(url).write(artifact, f)
    return artifact


def swap(study: optuna.Study, number: int, value: float, artifact: str, url: str | None) -> bool:
    """Make the uploaded `artifact` of COMPLETE trial `number` the kept model if it is the best; remove the
    model that loses. Call it under the planning lock. Safe to repeat: a model already kept stays kept.
    Returns whether it is kept."""
    current = kept(study)
    if current is not None and current["artifact"] == artifact:
        return True
    won = _better(value, number, current)
    if won:
        study.set_user_attr(KEPT_ATTR, {"trial": number, "value": value, "artifact": artifact})
    discard([(current or {}).get("artifact") if won else artifact], url)
    return won


def discard(artifacts, url: str | None) -> None:
    """Remove artifacts nothing names any more (a replaced or losing model, a result recorded elsewhere)."""
    store = artifact_store(url)
    for artifact in artifacts:
        if artifact:
            with contextlib.suppress(Exception):  # already gone: nothing to free
                store.remove(artifact)


def kept_folder(study: optuna.Study, url: str | None) -> Path:
    """The kept model of `study` as a folder from_pretrained opens (its name is the artifact id)."""
    return fetch(study, url)[0]


def fetch(study: optuna.Study, url: str | None) -> tuple[Path, dict]:
    """(the kept model of `study` as a folder from_pretrained opens, downloaded once into the cache; the
    `kept_model` entry it is). A swap that removes the model while it is read: the new one is read."""
    entry, tried = kept(study), []
    while entry is not None and entry["artifact"] not in tried:
        tried.append(entry["artifact"])
        folder = cache_dir() / "kept" / entry["artifact"]
        try:
            return (folder if folder.is_dir() else _download(entry["artifact"], folder, url)), entry
        except Exception as e:  # the artifact was removed by a swap (then the entry changed), moved or cleaned
            error = e
        entry = kept(study)
    if not tried:
        raise UserError(
            f'study {study.study_name} in {masked(url)} keeps no model; run its sweep with save = "best" '
            "(or glue-bench run --save)"
        )
    raise UserError(
        f"study {study.study_name}: its kept model (artifact {tried[-1]}) cannot be read from the artifact store "
        f"({type(error).__name__}: {error}); set GLUE_BENCH_ARTIFACTS to the folder that holds it"
    )


def _download(artifact: str, folder: Path, url: str | None) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        archive = Path(tmp, "model.tar")
        optuna.artifacts.download_artifact(
            artifact_store=artifact_store(url), file_path=str(archive), artifact_id=artifact
        )
        unpacked = Path(tmp, "model")
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
        with contextlib.suppress(OSError):  # another process unpacked it first: theirs is the same
            os.rename(unpacked, folder)
    return folder
