"""`glue-bench sweep`, `status` and `export`: run a sweep file's grid, follow it, write its runs table."""

from __future__ import annotations

import dataclasses

from glue_bench.cli.parsing import STORAGE_HELP, SWEEP_HELP, positive_int, results
from glue_bench.errors import UserError, counted


def add_parsers(sub) -> None:
    _add_sweep(sub)
    _add_prefetch(sub)
    _add_status(sub)
    _add_export(sub)


def _add_sweep(sub) -> None:
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
        type=positive_int,
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
    swp.add_argument(
        "--pack",
        help="learning rates a worker trains at once as one stacked model (exact to their solo runs): auto (every "
        "learning rate of a batch size and seed on a GPU; solo on a CPU, where packs measured no faster) or a "
        "number, 1 for solo; overrides the sweep file's pack",
    )
    swp.add_argument(
        "--checkpoint-minutes",
        type=float,
        metavar="MINUTES",
        help="a running trial writes a checkpoint every MINUTES of training and when it is stopped, and its grid "
        "point resumes from it when it runs again (0: none); overrides the sweep file's checkpoint_minutes "
        "(default 30)",
    )
    swp.add_argument("--no-progress", action="store_true", help="no progress bar")
    swp.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from glue_bench.sweeping import preflight
    from glue_bench.sweeping import sweep_file as sweeps
    from glue_bench.sweeping.launcher import run_sweep

    sweep = sweeps.load(args.file)
    if args.pack is not None:
        pack = args.pack if args.pack == "auto" else int(args.pack) if args.pack.isdigit() else args.pack
        sweep = dataclasses.replace(sweep, pack=sweeps.check_pack(pack, "--pack"))
    if args.checkpoint_minutes is not None:
        minutes = sweeps.check_checkpoint_minutes(args.checkpoint_minutes, "--checkpoint-minutes")
        sweep = dataclasses.replace(sweep, checkpoint_minutes=minutes)
    studies = sweeps.select(sweep, args.only)
    url = sweeps.resolve_storage(sweep, args.storage)
    if args.dry_run:  # the plan, then every check the real run makes, all problems at once
        from glue_bench.sweeping.plan import dry_run
        from glue_bench.sweeping.studies import recipe_conflicts

        print(dry_run(sweep, studies, url, args.workers, args.device))
        problems = recipe_conflicts(sweep, studies, url)
        try:
            preflight.preflight(sweep, studies, args.data, url)
        except UserError as e:
            problems += str(e).splitlines()
        if problems:
            raise UserError("\n".join(problems))
        print("pre-flight: every task's data and every model is available here, and no study conflicts")
        return 0
    source = preflight.preflight(sweep, studies, args.data, url)  # every user error ends here, before any trial
    return run_sweep(
        sweep, studies, url, source.location, args.workers, args.retry_failed, progress=not args.no_progress
    )


def _add_prefetch(sub) -> None:
    pre = sub.add_parser(
        "prefetch",
        help="download every dataset and model a sweep reads into the Hugging Face caches (offline nodes)",
        description="On a machine that reaches the Hub (a login node), fetch every GLUE config and model a sweep "
        "reads into the caches its workers read (HF_HOME, the datasets cache), and say what was fetched and its size.",
    )
    pre.add_argument("file", metavar="FILE", help="a sweep file, e.g. sweeps/paper.toml")
    pre.add_argument("--only", action="append", metavar="NAME[,NAME]", help="only these tasks and/or models")
    pre.add_argument("--data", help="override the file's data source (a folder on this machine, or hub)")
    pre.set_defaults(func=cmd_prefetch)


def cmd_prefetch(args) -> int:
    from glue_bench.sweeping import prefetch
    from glue_bench.sweeping import sweep_file as sweeps

    sweep = sweeps.load(args.file)
    print(prefetch.render(sweep, prefetch.prefetch(sweep, sweeps.select(sweep, args.only), args.data)))
    return 0


def _add_status(sub) -> None:
    sts = sub.add_parser(
        "status",
        help="a sweep's trials per study: done, running, failed, waiting; best so far",
        description="Per study of a sweep file (one per model and task): its trials complete, running, failed, "
        "waiting and not yet queued, and its best dev score so far; then the totals and the commonest failures.",
    )
    sts.add_argument("file", metavar="FILE", help="a sweep file, e.g. sweeps/cpu-smoke.toml")
    sts.add_argument("--storage", help="Optuna storage URL (default: the file's storage)")
    sts.add_argument("--only", action="append", metavar="NAME[,NAME]", help="only these tasks and/or models")
    sts.set_defaults(func=cmd_status)


def cmd_status(args) -> int:
    from glue_bench.sweeping import sweep_file as sweeps
    from glue_bench.sweeping.status import format_status, read_status

    sweep = sweeps.load(args.file)
    studies = sweeps.select(sweep, args.only)
    url = sweeps.resolve_storage(sweep, args.storage)
    print(format_status(sweep, read_status(sweep, studies, url), url))
    return 0


def _add_export(sub) -> None:
    exp = sub.add_parser(
        "export",
        help="write the runs table (one row per trial) to CSV or Parquet",
        description="The runs table: one row per trial, with its study, model, task, grid point, whole recipe, "
        "state, dev metrics per split, timings and environment. A baseline for check, or for your own analysis.",
    )
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


def cmd_export(args) -> int:
    from glue_bench.sweeping.runs import export, runs_table

    url, name = results(args)
    table = runs_table(url, sweep=name)
    if table.empty:
        raise UserError(
            f"no trials{f' of sweep {name}' if name else ''} in the storage; "
            "check --storage and --sweep (glue-bench status FILE lists a sweep's studies)"
        )
    export(table, args.out)
    print(
        f"wrote {args.out}: {counted(len(table), 'trial')}, {counted(table['study'].nunique(), 'study', 'studies')}, "
        f"{len(table.columns)} columns"
    )
    if args.with_dev_predictions:
        from glue_bench.sweeping.runs import sidecar_path, write_dev_sidecar

        count = write_dev_sidecar(table, args.out, url)
        print(f"wrote {sidecar_path(args.out)}: the dev predictions of {counted(count, 'trial split')}")
    return 0
