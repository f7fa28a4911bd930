"""One trial: load the task's data and the model, fine-tune, and record everything in the Optuna trial."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import platform
from dataclasses import asdict, dataclass, field, replace

import optuna

from glue_bench import __version__
from glue_bench.errors import UserError
from glue_bench.inputs import cache, data, heads, model_names, models, weights
from glue_bench.inputs.tasks import Task, dependents, get_task
from glue_bench.inputs.transfer import fingerprint, load_transfer
from glue_bench.sweeping import checkpoints, kept, recording, slurm
from glue_bench.sweeping import teacher as teachers
from glue_bench.sweeping.artifacts import upload_predictions
from glue_bench.sweeping.schema import ADHOC, study_name
from glue_bench.sweeping.storage import artifacts_dir, ride_out
from glue_bench.training import metrics
from glue_bench.training.recipe import Recipe


@dataclass(frozen=True)
class TrialSpec:
    model: str  # a model reference (see models.py)
    task: str
    data: str  # "hub" or a folder
    recipe: Recipe
    check_rows: bool = True
    save: bool = False  # keep the model if it is its study's best (save = "best", run --save)
    tensorboard: bool = False  # event files per trial under the artifacts folder (tensorboard --logdir)
    checkpoint_minutes: float = 30.0  # a checkpoint every this many minutes of training, and at a stop (0: none)


def adhoc_study(prepared: Prepared) -> tuple[str, dict]:
    """The study of a one-off `glue-bench run` and its attrs: one study per model identity and task, so a
    distilled student of another teacher (or of other weights of the same one, or other transfer rows) is
    never a trial of the same study. Its name: the student's short name, with a hash of the identity."""
    recipe, attrs = prepared.spec.recipe, prepared.distill_attrs
    student = prepared.model_ref.ref
    identity = model_names.model_identity(
        student, recipe.teacher, attrs.get("teacher_weights"), attrs.get("transfer_rows")
    )
    name = model_names.student_name(student, recipe.teacher, recipe.transfer)
    if identity != student:
        name += f" #{hashlib.sha256(identity.encode()).hexdigest()[:8]}"
    return study_name(ADHOC, name, prepared.task.name), {
        "sweep": ADHOC,
        "model": student,
        "task": prepared.task.name,
        "model_id": identity,
    }


_RAW: dict[str, dict] = {}  # kept for the life of the process: a worker's trials share them
_TOKENIZED: dict[str, dict] = {}


def load_splits(
    task: Task, source: data.DataSource, check_rows: bool, roles=("train", "dev", "test"), optional=("test",)
):
    """The task's splits as read and checked from the source (those of an `optional` role only where the source
    has them): a damaged or missing file is one line here, before any model loads."""
    key = cache.key(
        {
            "task": asdict(task),
            "source": source.location,
            "check_rows": check_rows,
            "roles": roles,
            "optional": optional,
        }
    )
    if key not in _RAW:
        _RAW[key] = {
            split.name: data.load_split(task, split, source, check_rows)
            for split in task.splits.values()
            if split.role in roles and not (split.role in optional and not data.available(task, split, source))
        }
    return _RAW[key]


def load_tokenized(
    task: Task,
    source: data.DataSource,
    tokenizer,
    max_length: int,
    check_rows: bool,
    roles=("train", "dev", "test"),
    optional=("test",),
) -> dict:
    """The task's tokenized splits (those of an `optional` role only where the source has them)."""
    key = cache.key(
        {
            "task": asdict(task),
            "source": source.location,
            "tokenizer": data.tokenizer_fingerprint(tokenizer),
            "max_length": max_length,
            "check_rows": check_rows,
            "roles": list(roles),
            "optional": list(optional),
        }
    )
    if key not in _TOKENIZED:
        _TOKENIZED[key] = {
            name: data.tokenize(raw, tokenizer, max_length, data.rows_record(task, task.splits[name], source))
            for name, raw in load_splits(task, source, check_rows, roles, optional).items()
        }
    return _TOKENIZED[key]


def environment(device: str) -> dict:
    import torch
    import transformers

    return {
        "glue_bench": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "optuna": optuna.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "device": device,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else "",
        "threads": torch.get_num_threads(),
        "allocator": "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc",
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", ""),  # the workers' (launcher.py)
        **slurm.ids(),  # SLURM's job, array job and task ("" outside SLURM)
    }


@dataclass
class Prepared:
    """A trial's inputs, loaded and checked before anything is written to the storage."""

    spec: TrialSpec
    task: Task
    model_ref: models.ModelRef
    source: data.DataSource
    model: object
    tokenizer: object
    train: object
    dev: dict
    to_predict: dict
    distill: object = None  # training.distill.Distillation: the teacher's outputs, when the recipe has a teacher
    # recorded beside the recipe's teacher and transfer: what they were when the trial ran (a kept teacher is
    # replaced when its study finds a better model; a transfer file may be edited)
    distill_attrs: dict = field(default_factory=dict)
    model_attrs: dict = field(default_factory=dict)  # checkpoint_dtype, param_dtype: recorded in the trial


def prepare(spec: TrialSpec, storage_url: str | None = None, say=None) -> Prepared:
    """Resolve the task, model and data and tokenize: every error a user can cause surfaces here. The
    storage is where a `kept:` teacher is found. say(text), when given, hears a line before each slow stage."""
    say = say or (lambda text: None)
    task = get_task(spec.task)
    ref = models.resolve(spec.model)
    source = data.resolve_source(spec.data)
    if task.train_split is None:
        raise UserError(
            f"{task.name} has no training data: it is predicted by the '{task.predicted_by}' model; "
            f"run --task {task.predicted_by}"
        )
    config = models.check(ref, task, spec.recipe.head)  # what cannot be fine-tuned: one line, before the weights load
    if spec.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError("tensorboard = true needs the tensorboard package: pip install 'glue-bench[tensorboard]'")
    teacher = _teacher(spec.recipe, task, storage_url) if spec.recipe.teacher else None  # before the slow loads
    say(f"reading {task.name}'s splits from {source.describe()}")
    load_splits(task, source, spec.check_rows)  # a damaged or missing file: one line, before the model loads
    for other in dependents(task):
        load_splits(other, source, spec.check_rows, roles=("dev", "test"), optional=("dev", "test"))
    say(f"loading model {ref.ref}")
    model, tokenizer = models.load(ref, task, spec.recipe.seed, spec.recipe.head)
    length = models.max_length(model.config, tokenizer, spec.recipe.max_seq_length)  # what the model can take
    say(f"tokenizing {task.name}'s splits (cached after the first time)")
    splits = load_tokenized(task, source, tokenizer, length, spec.check_rows)
    dev = {s.name: splits[s.name] for s in task.splits_with_role("dev")}
    to_predict = {
        f"{task.name}/{s.name}": (task, splits[s.name]) for s in task.splits_with_role("test") if s.name in splits
    }
    for other in dependents(task):  # AX: predicted by the MNLI model, its labelled split scored too
        for name, split in load_tokenized(
            other,
            source,
            tokenizer,
            length,
            spec.check_rows,
            roles=("dev", "test"),
            optional=("dev", "test"),
        ).items():
            to_predict[f"{other.name}/{name}"] = (other, split)
    prepared = Prepared(spec, task, ref, source, model, tokenizer, splits[task.train_split.name], dev, to_predict)
    # what the checkpoint held, and what its parameters train in (models.load: always float32)
    prepared.model_attrs = {
        "checkpoint_dtype": weights.checkpoint_dtype(ref),
        "checkpoint_labels": heads.checkpoint_labels(ref, config),  # its head's size (None: none); recipe.head: ours
        "param_dtype": weights.dtype_names(p.dtype for p in model.parameters()),
        "model_type": model.config.model_type,
        "max_length": length,  # the recipe's max_seq_length, or less where the model takes fewer tokens
    }
    if teacher is not None:
        say(f"the teacher's outputs ({teacher[0].ref}): computed once, then cached")
        _add_teacher(prepared, *teacher)
    return prepared


def _teacher(recipe: Recipe, task: Task, storage_url: str | None) -> tuple:
    """(the teacher, its labels checked; the transfer rows or None): a distillation's user errors."""
    teacher = teachers.resolve(recipe.teacher, task, storage_url)
    return teacher, load_transfer(task, recipe.transfer, recipe.max_transfer_samples) if recipe.transfer else None


def _add_teacher(prepared: Prepared, teacher, raw_transfer) -> None:
    """The teacher's outputs on the train rows, the transfer rows and the dev splits (training/distill.py), each
    matched to the student's rows by their idx: the teacher read them with its own tokenizer."""
    from glue_bench.training.batches import training_rows
    from glue_bench.training.distill import Distillation

    task, source, recipe = prepared.task, prepared.source, prepared.spec.recipe
    outputs = teachers.Outputs(teacher, task, recipe.max_seq_length, recipe.eval_batch_size, recipe.bf16)
    check = prepared.spec.check_rows

    train = task.train_split
    on_train = outputs.on(
        {**data.rows_record(task, train, source), "first": recipe.max_train_samples},
        lambda: training_rows(data.load_split(task, train, source, check), recipe),
        training_rows(prepared.train, recipe)["idx"],
    )
    dev = {
        s.name: outputs.on(
            data.rows_record(task, s, source),
            lambda s=s: data.load_split(task, s, source, check),
            prepared.dev[s.name]["idx"],
        )
        for s in task.splits_with_role("dev")
    }
    distill = Distillation(train=on_train, dev=dev)
    prepared.distill_attrs["teacher_weights"] = teacher.fingerprint
    if raw_transfer is not None:
        content = fingerprint(recipe.transfer, recipe.max_transfer_samples)
        rows = {"task": asdict(task), "transfer": content}  # the task says which of its columns are read
        distill.transfer = data.tokenize(raw_transfer, prepared.tokenizer, prepared.model_attrs["max_length"], rows)
        distill.transfer_outputs = outputs.on(rows, lambda: raw_transfer, raw_transfer["idx"])
        prepared.distill_attrs |= {"transfer_rows": content, "transfer_count": len(raw_transfer)}
    prepared.distill = distill


def execute(
    prepared: Prepared,
    trial: optuna.Trial,
    storage_url: str | None,
    progress: bool = True,
    once_per_point: bool = False,
) -> float:
    """Fine-tune and record everything: the results onto `trial`, then COMPLETE (FAIL for a score that is not
    finite) and the kept model swapped (recording.complete). Returns the task score (the trial's value); a NaN
    loss raises training.loop.Diverged.

    A finished fine-tune is never lost to the storage: its artifacts are written to the artifact store first,
    and the recording rides out an outage (storage.ride_out), safe to repeat; a trial declared dead meanwhile
    has its result recorded on a new trial of its grid point. once_per_point: a sweep's trial, whose grid
    point is COMPLETE at most once."""
    (outcome,) = execute_pack(prepared, [trial], [prepared.spec.recipe.lr], storage_url, progress, once_per_point)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def execute_pack(
    prepared: Prepared,
    trials: list[optuna.Trial],
    lrs: list[float],
    storage_url: str | None,
    progress: bool = True,
    once_per_point: bool = False,
) -> list:
    """A pack: the prepared recipe at each learning rate of `lrs` at once (training.loop.fine_tune_pack), trial n
    recorded onto `trials[n]` as a solo trial is (execute), with the pack it ran in (its size and trial numbers).
    Returns each trial's score, or the Diverged of a trial whose loss went NaN (not recorded: the caller fails it)."""
    task, recipe = prepared.task, prepared.spec.recipe
    recipes = [replace(recipe, lr=lr) for lr in lrs]
    pack = {"size": len(trials), "trials": [t.number for t in trials]}
    for trial, own in zip(trials, recipes):
        started = {
            "model": prepared.model_ref.ref,
            "task": task.name,
            "data": prepared.source.describe(),
            "recipe": own.to_dict(),
            "pack": pack,
            **prepared.model_attrs,
        }
        ride_out(lambda trial=trial, started=started: _set_attrs(trial, started), "starting a trial")
    minutes = prepared.spec.checkpoint_minutes
    keeper = checkpoints.ArtifactKeeper(trials, _fingerprints(prepared, recipes), storage_url, minutes)
    results = fine_tune_pack(
        prepared.model,
        task,
        prepared.train,
        prepared.dev,
        prepared.to_predict,
        recipe,
        lrs,
        progress=progress,
        distill=prepared.distill,
        log_dirs=[_log_dir(prepared, trial, storage_url) for trial in trials],
        keeper=keeper,
    )
    resumed = keeper.resumed_attrs()  # resumed_from_step: 0 when it started afresh
    outcomes = [
        result.diverged if result.diverged else _record(prepared, trial, result, storage_url, once_per_point, resumed)
        for trial, result in zip(trials, results)
    ]
    for own in recipes:  # its grid point is settled (or failed for good): nothing resumes it any more
        keeper.discard((own.batch_size, own.lr, own.seed))
    return outcomes


def _fingerprints(prepared: Prepared, recipes: list[Recipe]) -> list[str]:
    """Each trial's checkpoint fingerprint: its grid point and recipe, the rows it trains and is scored on, the
    model's starting weights and length, and a distillation's teacher weights and transfer rows."""
    task, source = prepared.task, prepared.source
    inputs = {
        "rows": [data.rows_record(task, s, source) for s in task.splits.values() if s.role in ("train", "dev")],
        "weights": weights.weights_fingerprint(prepared.model_ref),
        "max_length": prepared.model_attrs["max_length"],
        **prepared.distill_attrs,
    }
    return [
        checkpoints.fingerprint({"batch_size": r.batch_size, "lr": r.lr, "seed": r.seed}, r.to_dict(), inputs)
        for r in recipes
    ]


def _log_dir(prepared: Prepared, trial: optuna.Trial, storage_url: str | None) -> str | None:
    """Where a trial's TensorBoard event files go (tensorboard = true): artifacts/tensorboard/<study>/trial-<n>."""
    if not prepared.spec.tensorboard:
        return None
    study = trial.study.study_name.replace("/", "__")
    return str(artifacts_dir(storage_url) / "tensorboard" / study / f"trial-{trial.number}")


def _record(
    prepared: Prepared, trial: optuna.Trial, result, storage_url: str | None, once_per_point: bool, resumed: dict
) -> float:
    """One finished fine-tune's results onto its trial (recording.complete). Returns the task score."""
    task = prepared.task
    score = metrics.task_score(task, result.dev)
    links, predictions = upload_predictions(result.predictions, storage_url)
    dev = {f"{task.name}/{split}": values for split, values in result.dev_predictions.items()}
    dev_links, dev_ids = upload_predictions(dev, storage_url)
    model = None  # uploaded where it may become the kept one (seconds for a large model), swapped in when recorded
    keep = prepared.spec.save and math.isfinite(score)
    if keep and ride_out(lambda: kept.may_win(trial.study, score, trial.number), "reading the study's kept model"):
        model = kept.upload(result.trained_model(), prepared.tokenizer, task, storage_url)
    finished = {
        "metrics": result.dev,
        "extra_metrics": result.extra_metrics,
        "predicted_classes": result.dev_classes,
        "curve": result.curve,
        "train_seconds": round(result.train_seconds, 3),  # a pack's trial: its share of the pack's time
        "eval_seconds": round(result.eval_seconds, 3),
        "train_examples": result.train_examples,
        "steps": result.steps,
        "examples_per_second": round(result.train_examples / max(result.train_seconds, 1e-9), 2),
        "env": environment(result.device),
        "encoder": result.encoder,  # which ran: the recipe's "fast" runs the HF model where it does not apply
        **({"teacher": result.teacher} if result.teacher else {}),  # agreement with it, its own dev metrics
        **prepared.distill_attrs,
        "predictions": predictions,
        "dev_predictions": dev_ids,
        **resumed,
    }
    results = recording.Results(score, finished, {**links, **dev_links}, model)
    ride_out(
        lambda: recording.complete(trial, results, storage_url, once_per_point), "recording a finished trial's results"
    )
    return score


def fine_tune_pack(*args, **kwargs):
    """training.loop.fine_tune_pack, imported when a model first trains: torch takes seconds to import, and
    the commands that only read results never need it."""
    from glue_bench.training.loop import fine_tune_pack as run

    return run(*args, **kwargs)


def _set_attrs(trial: optuna.Trial, attrs: dict) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
