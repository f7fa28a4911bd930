"""A distillation teacher: its reference resolved and checked against the task, and its outputs on the rows.

A teacher is a fine-tuned classifier (regressor) for the task: a folder, a Hub id, a folder written by
`glue-bench export-model`, or `kept:<sweep>[/<model>]`, the model kept by `save = "best"` of that sweep's
study for the task in the same storage. Its label count, and its label names where it has them, must be the
task's. It reads the rows with its own tokenizer (it may be of another family than its student). Its outputs
are computed once and cached on disk under a key of every input they depend on (inputs/cache.py), so every
student trial of a sweep, in any worker, shares them; they are matched to the student's rows by row id.
"""

from __future__ import annotations

import fcntl
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

from glue_bench.errors import UserError, counted
from glue_bench.inputs import cache, data, hub, model_names, models, weights
from glue_bench.inputs.tasks import Task
from glue_bench.sweeping import kept
from glue_bench.sweeping.storage import masked, open_storage
from glue_bench.training import families

DEFAULT_NAME = re.compile(r"^LABEL_\d+$")  # the names transformers gives labels nobody named


@dataclass(frozen=True)
class Teacher:
    ref: str  # as the recipe records it
    location: str  # a folder or a Hub id that from_pretrained opens
    fingerprint: str  # identifies its weights: the cache key of its outputs


def resolve(ref: str, task: Task, url: str | None) -> Teacher:
    """The teacher `ref` for `task`, its labels checked: every problem is one line (a UserError)."""
    text = ref.strip()
    if text.startswith(model_names.KEPT):
        folder, artifact = _kept(text, task, url)
        teacher = Teacher(text, str(folder), f"kept:{artifact}")
    else:
        try:
            model_ref = models.resolve(text)
        except UserError as e:
            raise UserError(f"teacher {ref}: {e}") from None
        if model_ref.kind == "random":
            raise UserError(f"teacher {ref}: random weights teach nothing; pass a model fine-tuned on {task.name}")
        local = model_ref.kind == "local"
        fingerprint = weights.folder_fingerprint(model_ref.location) if local else f"hub:{model_ref.location}"
        teacher = Teacher(model_ref.ref, model_ref.location, fingerprint)
    _check_labels(teacher, task)
    if teacher.fingerprint.startswith("hub:"):  # its config is in the cache now: the revision it came from
        teacher = Teacher(
            teacher.ref, teacher.location, f"{teacher.fingerprint}@{weights.hub_revision(teacher.location)}"
        )
    return teacher


def _kept(text: str, task: Task, url: str | None) -> tuple[Path, str]:
    """kept:<sweep>[/<model>] → (the kept model's folder, its artifact id): exactly one study of the sweep and
    task keeps a model and matches <model> (the student's reference, or the model part of the study's name,
    which a distilled student's holds with its identity's hash), else one line naming the candidates."""
    sweep, _, model = text.removeprefix(model_names.KEPT).partition("/")
    storage = open_storage(url, create=False)
    wanted = model_names.normalise_model(model) if model else None
    found = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        attrs = summary.user_attrs
        named = summary.study_name.split("/", 1)[-1].rsplit("/", 1)[0]  # <sweep>/<named>/<task>
        if (
            attrs.get("sweep") == sweep
            and attrs.get("task") == task.name
            and wanted in (None, attrs.get("model"), named)
        ):
            found.append(optuna.load_study(study_name=summary.study_name, storage=storage))
    if wanted is not None and any(s.study_name == f"{sweep}/{wanted}/{task.name}" for s in found):
        found = [s for s in found if s.study_name == f"{sweep}/{wanted}/{task.name}"]  # named exactly
    with_model = [s for s in found if kept.kept(s)]
    if not with_model:
        what = f"sweep {sweep}'s {task.name} study" + (f" of {wanted}" if wanted else "")
        why = 'has no kept model: run it with save = "best"' if found else "is not in the storage"
        raise UserError(f"teacher {text}: {what} in {masked(url)} {why}")
    if len(with_model) > 1:
        names = ", ".join(f"kept:{sweep}/{s.study_name.split('/', 1)[1].rsplit('/', 1)[0]}" for s in with_model)
        raise UserError(
            f"teacher {text}: {len(with_model)} {task.name} studies of sweep {sweep} keep a model: name one of {names}"
        )
    study = with_model[0]
    folder, entry = kept.fetch(study, url)  # the folder and its entry read together: a swap cannot split them
    return folder, entry["artifact"]


def _check_labels(teacher: Teacher, task: Task) -> None:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(teacher.location, local_files_only=not hub.reachable())
    except (OSError, ValueError) as e:
        raise UserError(f"teacher {teacher.ref}: cannot read its config ({type(e).__name__}: {e})") from None
    names = [config.id2label[i] for i in sorted(config.id2label)] if config.id2label else []
    theirs = counted(config.num_labels, "label") + (f" ({', '.join(names)})" if names else "")
    ours = "1 output (a regression task)" if task.regression else f"{task.num_labels} labels ({', '.join(task.names)})"
    if config.num_labels != task.num_labels:
        raise UserError(
            f"teacher {teacher.ref} has {theirs}, {task.name} has {ours}: pass a teacher fine-tuned on {task.name}"
        )
    named = [n for n in names if not DEFAULT_NAME.match(str(n))]
    if named and not task.regression and [str(n).lower() for n in names] != [n.lower() for n in task.names]:
        raise UserError(
            f"teacher {teacher.ref}'s labels are {', '.join(names)}, {task.name}'s are {ours} in this order: "
            "pass a teacher fine-tuned on this task (or fix its config's id2label)"
        )


# --- the teacher's outputs, cached ---------------------------------------------------------------------


class Outputs:
    """The teacher's outputs on sets of rows, each read from the disk cache or computed (the teacher is loaded
    only when one is missing). The teacher reads the rows with its own tokenizer; its outputs are matched to
    the student's rows by their ids."""

    def __init__(self, teacher: Teacher, task: Task, max_length: int, batch_size: int, bf16: bool):
        self.teacher, self.task, self.max_length = teacher, task, max_length
        self.batch_size, self.bf16 = batch_size, bf16
        self._model = self._tokenizer = None

    def on(self, rows: dict, load_rows, idx) -> np.ndarray:
        """The teacher's outputs on the rows that the record `rows` identifies, in the order of the row ids
        `idx` (the student's); load_rows() gives the rows (a raw split: text_a, text_b, label, idx) when they
        are not cached yet. The key holds the teacher's fingerprint (its weights and tokenizer files), the
        rows (task, columns, source, limit), the maximum length and the dtype and device of the outputs."""
        import torch

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        autocast = self.bf16 and device.type == "cuda"
        record = {
            "teacher": self.teacher.fingerprint,
            "rows": rows,
            "max_length": self.max_length,
            "dtype": "bfloat16 autocast" if autocast else "float32",
            "device": device.type,
        }
        path = cache.path("teacher", record, ".npz")
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one worker computes, the others wait and read
            if not path.is_file():
                ids, values = self._compute(load_rows(), rows, device, autocast)
                tmp = path.with_suffix(".tmp.npz")
                np.savez(tmp, idx=ids, outputs=values)
                tmp.replace(path)
            with np.load(path) as stored:
                return matched(stored["idx"], stored["outputs"], np.asarray(idx), self.teacher.ref)

    def _compute(self, raw, rows: dict, device, autocast: bool) -> tuple[np.ndarray, np.ndarray]:
        from glue_bench.training.batches import Packed
        from glue_bench.training.encoder import UnpaddedEncoder
        from glue_bench.training.inference import outputs

        if self._model is None:
            self._model, self._tokenizer = models.load(models.resolve(self.teacher.location), self.task, seed=0)
        model = self._model.to(device)
        net = UnpaddedEncoder.from_hf(model) if families.supports(model.config) else model
        length = models.max_length(model.config, self._tokenizer, self.max_length)  # what the teacher can take
        tokenized = data.tokenize(raw, self._tokenizer, length, {"teacher rows": rows})
        packed = Packed(tokenized)
        values = outputs(net, packed, self.batch_size, device, bf16=autocast)[0]  # [rows, labels]
        return packed.idx, values[:, 0] if self.task.regression else values


def matched(ids: np.ndarray, values: np.ndarray, wanted: np.ndarray, teacher: str) -> np.ndarray:
    """values (row-aligned with ids) in the order of the row ids `wanted`."""
    order = np.argsort(ids, kind="stable")
    at = np.clip(np.searchsorted(ids, wanted, sorter=order), 0, max(len(ids) - 1, 0))
    found = order[at] if len(ids) else at
    if len(wanted) and (not len(ids) or (ids[found] != wanted).any()):
        missing = wanted[ids[found] != wanted] if len(ids) else wanted
        raise UserError(f"teacher {teacher}: its cached outputs have no row with id {missing[0]}; clear the cache")
    return values[found]
