"""`glue-bench run`: fine-tune one model on one task once, and record the trial."""

from __future__ import annotations

import argparse
import sys

from glue_bench.cli.parsing import STORAGE_HELP, positive_float, positive_int, whole_number


def add_parsers(sub) -> None:
    run = sub.add_parser(
        "run",
        help="fine-tune one model on one task once, and record the trial",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # --help shows each default (epochs 4, …)
    )
    run.add_argument("--model", required=True, help="bert-tiny, L-4_H-256, random:L-2_H-128, a folder or a Hub id")
    run.add_argument("--task", required=True, help="cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli")
    run.add_argument("--batch-size", type=positive_int, required=True)
    run.add_argument("--lr", type=positive_float, required=True)
    run.add_argument("--epochs", type=positive_int, default=4, help="passes over the train rows")
    run.add_argument("--seed", type=int, default=0, help="the head's initialisation, the batch order, dropout")
    run.add_argument("--max-seq-length", type=positive_int, default=128, help="tokens per row, at most")
    run.add_argument(
        "--max-train-samples",
        type=whole_number,
        default=0,
        help="train on the first N rows only (quick checks); 0: every row",
    )
    run.add_argument("--group-by-length", action="store_true", help="batches of similar length (changes results)")
    run.add_argument("--bf16", action="store_true", help="bf16 autocast on a GPU (changes results)")
    run.add_argument("--tf32", action="store_true", help="TF32 matrix products on a GPU (changes results)")
    run.add_argument(
        "--fused-adamw",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the fused AdamW kernel (the default); --no-fused-adamw: foreach on a CPU (other last bits, slower)",
    )
    run.add_argument(
        "--encoder",
        choices=("fast", "hf"),
        default="fast",
        help="fast: glue-bench's unpadded BERT encoder where it applies; "
        "hf: the Hugging Face model (same initial weights)",
    )
    run.add_argument(
        "--teacher",
        help="distil: a fine-tuned model for the task (a folder, a Hub id, kept:SWEEP[/MODEL]) whose outputs the "
        "student learns",
    )
    run.add_argument("--alpha", type=float, default=0.0, help="with --teacher: weight of the labels' loss")
    run.add_argument("--temperature", type=positive_float, default=1.0, help="with --teacher: softmax temperature")
    run.add_argument("--transfer", help="with --teacher: a file of unlabelled rows (tsv, csv, jsonl, parquet) to add")
    run.add_argument(
        "--max-transfer-samples", type=whole_number, default=0, help="the first N transfer rows only; 0: all"
    )
    run.add_argument(
        "--save", action="store_true", help="keep the fine-tuned model if it is the best of its study so far"
    )
    run.add_argument("--data", help="hub, or a folder in the glue_data or Hub parquet layout (env GLUE_BENCH_DATA)")
    run.add_argument("--storage", help=STORAGE_HELP)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)


def recipe_of(args):
    """The Recipe the options of `run` ask for."""
    from glue_bench.training.recipe import Recipe

    return Recipe(
        batch_size=args.batch_size,
        lr=args.lr,
        epochs=args.epochs,
        seed=args.seed,
        max_seq_length=args.max_seq_length,
        max_train_samples=args.max_train_samples,
        group_by_length=args.group_by_length,
        bf16=args.bf16,
        tf32=args.tf32,
        fused_adamw=args.fused_adamw,
        encoder=args.encoder,
        teacher=args.teacher or "",
        temperature=args.temperature,
        alpha=args.alpha,
        transfer=args.transfer or "",
        max_transfer_samples=args.max_transfer_samples,
    )


def cmd_run(args) -> int:
    from glue_bench.inputs import models
    from glue_bench.inputs.tasks import get_task

    get_task(args.task), models.resolve(args.model)  # a misspelt name: one line at once, before torch loads
    import optuna

    from glue_bench.sweeping import trial as trials
    from glue_bench.sweeping.storage import masked, open_storage
    from glue_bench.training.loop import Diverged

    recipe = recipe_of(args)
    spec = trials.TrialSpec(model=args.model, task=args.task, data=args.data, recipe=recipe, save=args.save)
    storage = open_storage(args.storage)  # a bad URL fails fast; opening records nothing
    prepared = trials.prepare(spec, args.storage)  # every other user error surfaces before a trial is created
    # A distilled student is a study of its own: its best model is kept apart from its plain self's.
    named = models.student_name(prepared.model_ref.ref, recipe.teacher, recipe.transfer)
    name = trials.study_name("adhoc", named, prepared.task.name)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    for key, value in {"sweep": "adhoc", "model": prepared.model_ref.ref, "task": prepared.task.name}.items():
        study.set_user_attr(key, value)  # as a sweep's study has them: kept:adhoc finds its model
    trial = study.ask(trials.grid_distributions([args.batch_size], [args.lr], [args.seed]))
    try:
        score = trials.execute(prepared, trial, args.storage, progress=not args.no_progress)
    except Diverged as e:
        trial.set_user_attr("fail_reason", f"diverged: {e}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        print(f"glue-bench: the run diverged ({e}); recorded as failed trial {trial.number} of {name}", file=sys.stderr)
        return 1
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            trial.set_user_attr("interrupted", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    study.tell(trial, score)
    _print_result(prepared.task, study.trials[trial.number], name, masked(args.storage))
    if args.save:
        from glue_bench.sweeping.kept import kept

        entry = kept(study)
        print(
            f"kept model: trial {entry['trial']} (dev score {100 * entry['value']:.2f}), the best of study {name}; "
            f"glue-bench export-model --model '{named}' "
            f"--task {prepared.task.name} --out DIR writes it"
        )
    return 0


def _print_result(task, frozen, study_name: str, url: str) -> None:
    attrs = frozen.user_attrs
    for split, values in {**attrs["metrics"], **attrs["extra_metrics"]}.items():
        shown = "  ".join(f"{name} {100 * value:.2f}" for name, value in values.items())
        print(f"{task.name} {split}: {shown}")
    for split, value in attrs.get("teacher", {}).get("agreement", {}).items():
        theirs = "  ".join(f"{n} {100 * v:.2f}" for n, v in attrs["teacher"]["metrics"][split].items())
        print(f"teacher on {split}: {theirs}; the student agrees with it on {100 * value:.2f}%")
    print(f"score {100 * frozen.value:.2f}  ({'+'.join(task.score)}, mean over dev splits)")
    print(
        f"train {attrs['train_seconds']:.1f}s, {attrs['examples_per_second']:.0f} examples/s on {attrs['env']['device']} "
        f"({attrs['encoder']} encoder); "
        f"recorded as trial {frozen.number} of study {study_name} in {url}"
    )
