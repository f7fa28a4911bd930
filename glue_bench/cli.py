"""The command line: a thin layer over the library. Every user error ends in one line and exit code 2."""

from __future__ import annotations

import argparse
import sys

from glue_bench.errors import UserError, did_you_mean


def _whole_number(text: str, low: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < low:
        kind = "a positive whole number" if low == 1 else f"a whole number >= {low}"
        raise argparse.ArgumentTypeError(f"must be {kind}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, low=1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def cmd_tasks(args) -> int:
    import pandas as pd

    from glue_bench.inputs.tasks import registry

    rows = []
    for task in registry().values():
        rows.append(
            {
                "task": task.name,
                "type": "regression" if task.regression else f"{len(task.labels)} classes",
                "texts": len(task.hub_columns),
                "score": "+".join(task.score),
                "train": sum(s.rows for s in task.splits_with_role("train")) or f"(from {task.predicted_by})",
                "dev": " + ".join(str(s.rows) for s in task.splits_with_role("dev")),
                "test": " + ".join(str(s.rows) for s in task.splits_with_role("test")),
                "submission": ", ".join(s.submission for s in task.splits_with_role("test")),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def cmd_models(args) -> int:
    import pandas as pd

    from glue_bench.inputs import models

    named = {v: k for k, v in models.NAMED.items()}
    rows = [
        {
            "model": models.miniature_name(layers, hidden),
            "alias": named.get(models.miniature_name(layers, hidden), ""),
            "layers": layers,
            "hidden": hidden,
            "heads": hidden // 64,
            "parameters": f"{models.parameter_count(layers, hidden) / 1e6:.1f}M",
            "hub id": models.hub_id(layers, hidden),
        }
        for layers, hidden in models.all_miniatures()
    ]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _recipe(args):
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

    recipe = _recipe(args)
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


def _results(args) -> tuple[str | None, str | None]:
    """(storage URL, sweep name) for a command that reads results, the same way for every one: --sweep takes
    a sweep's name or its file (which names the sweep and its storage); --storage overrides the storage."""
    name, url = args.sweep, args.storage
    if name and name.endswith(".toml"):
        from glue_bench.sweeping import sweep_file as sweeps

        sweep = sweeps.load(name)
        name, url = sweep.name, sweeps.resolve_storage(sweep, args.storage)
    return url, name


def cmd_check(args) -> int:
    from glue_bench.reporting import check
    from glue_bench.sweeping.runs import read_runs, runs_table

    tolerance = check.parse_tolerance(args.tolerance)
    baseline = read_runs(args.baseline, option="--baseline")
    url, sweep = _results(args)
    new = read_runs(args.runs) if args.runs else runs_table(url)
    fetch_baseline = fetch_new = None
    if tolerance == check.BOOTSTRAP:  # dev predictions: the baseline's from its sidecar, the new run's stored
        from glue_bench.sweeping.runs import read_dev_sidecar
        from glue_bench.sweeping.trial import download_predictions

        if args.runs:
            raise UserError(
                "--tolerance bootstrap reads the new run's dev predictions and labels from its storage: "
                "pass --storage URL (or --sweep FILE) instead of --runs"
            )
        fetch_baseline = read_dev_sidecar(args.baseline).__getitem__

        def fetch_new(artifact: str) -> dict:
            return download_predictions(artifact, url)

    result = check.compare(baseline, new, tolerance, sweep, fetch_baseline, fetch_new)
    print(check.render(result))
    return 1 if len(result.regressions) else 0


def cmd_report(args) -> int:
    from glue_bench.reporting import render
    from glue_bench.reporting.selection import load_runs

    url, sweep = _results(args)
    fmt = render.choose_format(args.format, args.out)
    table = load_runs(url, args.runs, sweep)
    text = None  # the leaderboard page, else the Report `result` rendered in `fmt`
    if args.grid:
        from glue_bench.reporting.grid import grid

        result = grid(table, args.grid)
    elif args.ax:
        from glue_bench.reporting.diagnostics import ax_report

        result = ax_report(table, url, args.ax, args.data)
    else:
        from glue_bench.reporting.leaderboard import leaderboard

        intervals = None
        if args.ci:
            from glue_bench.reporting.bootstrap import selected_replicates

            intervals = selected_replicates(table, url, resamples=args.resamples)
        result = leaderboard(table, compare_paper=args.compare == "paper", intervals=intervals)
        if fmt == "html":  # the leaderboard as HTML is the whole page: the figure, the grids and AX with it
            from glue_bench.reporting.page import page

            text = page(result, table, url, args.compare == "paper", args.data)
    render.write(text or render.render(result, fmt), args.out)
    if args.plot:
        from glue_bench.reporting import plots

        print(plots.plot(table, args.plot, task=args.plot_task, compare_paper=args.compare == "paper"), file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    from glue_bench.reporting import render
    from glue_bench.reporting.compare import compare
    from glue_bench.reporting.selection import load_runs

    url, sweep = _results(args)
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    result = compare(load_runs(url, None, sweep), url, args.a, args.b, tasks, args.resamples)
    render.write(render.render(result, render.choose_format(args.format, args.out)), args.out)
    return 0


def cmd_submit(args) -> int:
    from glue_bench.reporting import submit
    from glue_bench.reporting.selection import load_runs

    if args.check:
        for line in submit.check_zip(args.check):
            print(line)
        print(f"{args.check}: every file has the right rows, indices and labels for the GLUE server")
        return 0
    if not args.model or not args.out:
        raise UserError("submit needs --model M --out FILE.zip (or --check FILE.zip to check a zip)")
    url, sweep = _results(args)
    sources, filled = submit.build(load_runs(url, None, sweep), url, args.model, args.out, args.fill_missing)
    for line in sources:
        print(line)
    for line in filled:
        print(f"glue-bench: WARNING: {line}", file=sys.stderr)
    print(
        f"wrote {args.out}: {len(submit.server_files())} files, rows and labels checked"
        + (f"; {len(filled)} FILLED with a majority baseline" if filled else "")
    )
    return 0


def cmd_sweep(args) -> int:
    from glue_bench.sweeping import sweep_file as sweeps
    from glue_bench.sweeping.launcher import run_sweep

    sweep = sweeps.load(args.file)
    studies = sweeps.select(sweep, args.only)
    url = sweeps.resolve_storage(sweep, args.storage)
    if args.dry_run:  # the plan, then every check the real run makes, all problems at once
        from glue_bench.sweeping.cost import dry_run
        from glue_bench.sweeping.studies import recipe_conflicts

        print(dry_run(sweep, studies, url, args.workers, args.device))
        problems = recipe_conflicts(sweep, studies, url)
        try:
            sweeps.preflight(sweep, studies, args.data, url)
        except UserError as e:
            problems += str(e).splitlines()
        if problems:
            raise UserError("\n".join(problems))
        print("pre-flight: every task's data and every model is available here, and no study conflicts")
        return 0
    source = sweeps.preflight(sweep, studies, args.data, url)  # every user error ends here, before any trial
    return run_sweep(
        sweep, studies, url, source.location, args.workers, args.retry_failed, progress=not args.no_progress
    )


def cmd_prefetch(args) -> int:
    from glue_bench.sweeping import prefetch
    from glue_bench.sweeping import sweep_file as sweeps

    sweep = sweeps.load(args.file)
    print(prefetch.render(sweep, prefetch.prefetch(sweep, sweeps.select(sweep, args.only), args.data)))
    return 0


def cmd_status(args) -> int:
    from glue_bench.sweeping import sweep_file as sweeps
    from glue_bench.sweeping.studies import format_status, read_status

    sweep = sweeps.load(args.file)
    studies = sweeps.select(sweep, args.only)
    url = sweeps.resolve_storage(sweep, args.storage)
    print(format_status(sweep, read_status(sweep, studies, url), url))
    return 0


def cmd_export(args) -> int:
    from glue_bench.sweeping.runs import export, runs_table

    url, name = _results(args)
    table = runs_table(url, sweep=name)
    if table.empty:
        raise UserError(
            f"no trials{f' of sweep {name}' if name else ''} in the storage; "
            "check --storage and --sweep (glue-bench status FILE lists a sweep's studies)"
        )
    export(table, args.out)
    print(f"wrote {args.out}: {len(table)} trials, {table['study'].nunique()} studies, {len(table.columns)} columns")
    if args.with_dev_predictions:
        from glue_bench.sweeping.runs import sidecar_path, write_dev_sidecar

        count = write_dev_sidecar(table, args.out, url)
        print(f"wrote {sidecar_path(args.out)}: the dev predictions of {count} trial splits")
    return 0


def cmd_export_model(args) -> int:
    from glue_bench.reporting.exported_model import export_model

    url, sweep = _results(args)
    print(export_model(url, args.model, args.task, sweep, args.out))
    return 0


# --sweep and --storage mean the same in every command that reads results (_results)
SWEEP_HELP = "a sweep's name, or its file (sweeps/x.toml: that sweep, in the storage it writes to)"
STORAGE_HELP = "Optuna storage URL (env GLUE_BENCH_STORAGE; default sqlite:///results/glue-bench.db)"


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage before its error: print the error alone, on one line."""

    def error(self, message):
        if message.startswith("unrecognized arguments: "):  # a misspelt option: name the closest one
            options = _option_strings(self)
            for word in message.removeprefix("unrecognized arguments: ").split():
                if word.startswith("--") and (hint := did_you_mean(word.split("=")[0], options)):
                    message = f"{message} ({hint.strip()})"
                    break
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of a parser and of its subcommands (argparse reports a subcommand's unknown option
    from the top-level parser)."""
    found = []
    for action in parser._actions:
        found += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _option_strings(sub)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="glue-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("tasks", help="list the GLUE tasks").set_defaults(func=cmd_tasks)
    sub.add_parser("models", help="list the 24 BERT miniatures").set_defaults(func=cmd_models)

    run = sub.add_parser(
        "run",
        help="fine-tune one model on one task once, and record the trial",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # --help shows each default (epochs 4, …)
    )
    run.add_argument("--model", required=True, help="bert-tiny, L-4_H-256, random:L-2_H-128, a folder or a Hub id")
    run.add_argument("--task", required=True, help="cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli")
    run.add_argument("--batch-size", type=_positive_int, required=True)
    run.add_argument("--lr", type=_positive_float, required=True)
    run.add_argument("--epochs", type=_positive_int, default=4, help="passes over the train rows")
    run.add_argument("--seed", type=int, default=0, help="the head's initialisation, the batch order, dropout")
    run.add_argument("--max-seq-length", type=_positive_int, default=128, help="tokens per row, at most")
    run.add_argument(
        "--max-train-samples",
        type=_whole_number,
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
    run.add_argument("--temperature", type=_positive_float, default=1.0, help="with --teacher: softmax temperature")
    run.add_argument("--transfer", help="with --teacher: a file of unlabelled rows (tsv, csv, jsonl, parquet) to add")
    run.add_argument(
        "--max-transfer-samples", type=_whole_number, default=0, help="the first N transfer rows only; 0: all"
    )
    run.add_argument(
        "--save", action="store_true", help="keep the fine-tuned model if it is the best of its study so far"
    )
    run.add_argument("--data", help="hub, or a folder in the glue_data or Hub parquet layout (env GLUE_BENCH_DATA)")
    run.add_argument("--storage", help=STORAGE_HELP)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check",
        help="CI gate: compare a new run with a baseline; exit 1 on a regression",
        description="Compare each (model, task, batch size, lr, metric) of a new run, "
        "averaged over seeds, with a baseline runs table (glue-bench export). Exit 0: no "
        "regression; 1: a regression; 2: the runs cannot be compared (the message says why).",
    )
    check.add_argument("--baseline", required=True, help="the baseline runs table (.csv or .parquet)")
    new_runs = check.add_mutually_exclusive_group()
    new_runs.add_argument("--storage", help="the new run's Optuna storage URL (env GLUE_BENCH_STORAGE)")
    new_runs.add_argument("--runs", help="the new run as an exported runs table instead of a storage")
    check.add_argument(
        "--sweep",
        metavar="NAME|FILE",
        help="the new run's sweep: a name, or its file (its name and storage); default: the baseline's sweep",
    )
    check.add_argument(
        "--tolerance",
        default="auto",
        help="allowed drop: auto (max(2, 3 x baseline seed std) points), a number of points, or bootstrap (a "
        "regression only when the paired 95%% bootstrap interval of the task score's change lies below 0; the "
        "baseline needs its dev predictions: export --with-dev-predictions)",
    )
    check.set_defaults(func=cmd_check)

    rep = sub.add_parser(
        "report",
        help="the leaderboard (best configuration per task on dev), a grid, AX, plots",
        description="One row per model (smallest first), the columns of the paper's table; "
        "--compare paper puts the paper's numbers and the difference beside ours.",
    )
    source = rep.add_mutually_exclusive_group()
    source.add_argument("--storage", help=STORAGE_HELP)
    source.add_argument("--runs", help="an exported runs table (.csv or .parquet) instead of a storage")
    rep.add_argument(
        "--sweep",
        metavar="NAME|FILE",
        help=SWEEP_HELP,
    )
    rep.add_argument(
        "--format",
        choices=["markdown", "csv", "latex", "html"],
        help="default: from the --out suffix (.md .csv .tex .html), else markdown",
    )
    rep.add_argument(
        "--compare", choices=["paper"], help="the paper's table (results/paper-miniatures.csv) beside ours"
    )
    rep.add_argument("--out", help="write to this file instead of stdout")
    view = rep.add_mutually_exclusive_group()
    view.add_argument("--grid", metavar="MODEL:TASK", help="one model's batch size x learning rate grid for one task")
    view.add_argument(
        "--ax", metavar="MODEL", help="AX scored locally, by category (needs --data with diagnostic-full.tsv)"
    )
    rep.add_argument("--data", help="for --ax: a folder holding diagnostic/diagnostic-full.tsv (env GLUE_BENCH_DATA)")
    rep.add_argument("--plot", metavar="FILE.png", help="also draw the 6 x 4 grid of miniatures and score against size")
    rep.add_argument(
        "--plot-task", metavar="TASK", help="colour the plot by this task's score (default: the GLUE score)"
    )
    rep.add_argument(
        "--ci",
        action="store_true",
        help="a 95%% bootstrap interval beside every score (resampling seeds and dev rows; needs the trials' "
        "dev predictions)",
    )
    rep.add_argument("--resamples", type=_positive_int, default=1000, help="bootstrap resamples for --ci")
    rep.set_defaults(func=cmd_report)

    cmp = sub.add_parser(
        "compare",
        help="model B against model A per task: B − A with a paired 95%% bootstrap interval and a verdict",
        description="Each model at its selected configuration per task; the interval resamples the same dev "
        "rows for both models and each model's seeds on their own. Verdict: B better / A better when the "
        "interval lies above / below 0, else no difference shown. Exit 0; 2 for a missing model or task.",
    )
    cmp.add_argument("a", metavar="A", help="a model as the trials recorded it (bert-tiny, random:L-2_H-128, …)")
    cmp.add_argument("b", metavar="B", help="the model compared with A")
    cmp.add_argument("--tasks", metavar="T1,T2", help="only these tasks (default: every task both have)")
    cmp.add_argument(
        "--sweep",
        metavar="NAME|FILE",
        help=SWEEP_HELP,
    )
    cmp.add_argument("--storage", help=STORAGE_HELP)
    cmp.add_argument("--resamples", type=_positive_int, default=1000, help="bootstrap resamples")
    cmp.add_argument("--format", choices=["markdown", "csv", "latex", "html"], help="default: markdown")
    cmp.add_argument("--out", help="write to this file instead of stdout")
    cmp.set_defaults(func=cmd_compare)

    sbm = sub.add_parser(
        "submit",
        help="the 11 files the GLUE server takes, zipped and checked",
        description="One model's test predictions (the best trial per task; AX from its MNLI "
        "trial) as the GLUE server's files; or --check an existing zip.",
    )
    sbm.add_argument("--storage", help="Optuna storage URL (env GLUE_BENCH_STORAGE); its prediction artifacts are read")
    sbm.add_argument(
        "--sweep",
        metavar="NAME|FILE",
        help=SWEEP_HELP,
    )
    sbm.add_argument("--model", help="bert-tiny, L-2_H-128, random:L-2_H-128, … as the trials recorded it")
    sbm.add_argument("--out", metavar="FILE.zip", help="the zip to write")
    sbm.add_argument(
        "--fill-missing",
        choices=["majority"],
        help="fill tasks without predictions with the majority dev class (said loudly)",
    )
    sbm.add_argument("--check", metavar="FILE.zip", help="check an existing submission zip and exit")
    sbm.set_defaults(func=cmd_submit)

    swp = sub.add_parser(
        "sweep",
        help="run a sweep file's grid as Optuna trials (resumable, any number of workers)",
        description="Run every grid point of a sweep file once. Run it again to resume; run it "
        "on several machines with one PostgreSQL --storage to share the work.",
    )
    swp.add_argument("file", metavar="FILE", help="a sweep file, e.g. sweeps/cpu-smoke.toml")
    swp.add_argument(
        "--storage",
        help="Optuna storage URL (default: the file's storage, else env "
        "GLUE_BENCH_STORAGE, else sqlite:///results/glue-bench.db)",
    )
    swp.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes on this machine, spread over its GPUs (several may share one)",
    )
    swp.add_argument(
        "--only",
        action="append",
        metavar="NAME[,NAME]",
        help="run only these tasks and/or models of the sweep (repeatable)",
    )
    swp.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan: trials, examples to process and an estimated time; run nothing",
    )
    swp.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        help="with --dry-run: estimate the time on this kind of device (default: this machine's)",
    )
    swp.add_argument("--data", help="override the file's data source (a folder on this machine, or hub)")
    swp.add_argument(
        "--retry-failed", action="store_true", help="run again the trials that failed (NaN loss, out of memory, …)"
    )
    swp.add_argument("--no-progress", action="store_true", help="no progress bar")
    swp.set_defaults(func=cmd_sweep)

    pre = sub.add_parser(
        "prefetch", help="download every dataset and model a sweep reads into the Hugging Face caches (offline nodes)"
    )
    pre.add_argument("file", metavar="FILE", help="a sweep file, e.g. sweeps/paper.toml")
    pre.add_argument("--only", action="append", metavar="NAME[,NAME]", help="only these tasks and/or models")
    pre.add_argument("--data", help="override the file's data source (a folder on this machine, or hub)")
    pre.set_defaults(func=cmd_prefetch)

    sts = sub.add_parser("status", help="a sweep's trials per study: done, running, failed, waiting; best so far")
    sts.add_argument("file", metavar="FILE", help="a sweep file, e.g. sweeps/cpu-smoke.toml")
    sts.add_argument("--storage", help="Optuna storage URL (default: the file's storage)")
    sts.add_argument("--only", action="append", metavar="NAME[,NAME]", help="only these tasks and/or models")
    sts.set_defaults(func=cmd_status)

    exp = sub.add_parser("export", help="write the runs table (one row per trial) to CSV or Parquet")
    exp.add_argument("--storage", help=STORAGE_HELP)
    exp.add_argument(
        "--sweep",
        metavar="NAME|FILE",
        help=SWEEP_HELP,
    )
    exp.add_argument("--out", required=True, metavar="FILE.csv|FILE.parquet", help="the file to write")
    exp.add_argument(
        "--with-dev-predictions",
        action="store_true",
        help="also write the trials' dev predictions beside it (FILE.dev-predictions.json.gz), for a baseline "
        "that check --tolerance bootstrap resamples",
    )
    exp.set_defaults(func=cmd_export)

    xm = sub.add_parser(
        "export-model",
        help='a study\'s kept best model as a folder transformers opens (save = "best" or run --save kept it)',
        description="Write the kept model of (model, task) to a folder: config (id2label in the task's label "
        "names), weights, tokenizer and a model card (README.md) with the recipe, the sweep and the dev scores. "
        "AutoModelForSequenceClassification.from_pretrained opens it.",
    )
    xm.add_argument("--model", required=True, help="the model as the runs table names it (a distilled one: 'M <- T')")
    xm.add_argument("--task", required=True, help="the task its study trained on")
    xm.add_argument(
        "--sweep",
        metavar="NAME|FILE",
        help=SWEEP_HELP,
    )
    xm.add_argument("--storage", help=STORAGE_HELP)
    xm.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) folder")
    xm.set_defaults(func=cmd_export_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with one line on a bad option
    try:
        from glue_bench.inputs.hub import quiet_libraries

        quiet_libraries(progress=not getattr(args, "no_progress", False))
        return args.func(args)
    except UserError as e:  # one line per problem (a dry run may find several)
        for line in str(e).splitlines():
            print(f"glue-bench: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "glue-bench: interrupted; finished trials are kept in the storage: run the same command again to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
