"""`glue-bench report`, `compare`, `submit`, `check` and `export-model`: what the recorded trials show."""

from __future__ import annotations

import sys

from glue_bench.cli.parsing import STORAGE_HELP, SWEEP_HELP, positive_int, results
from glue_bench.errors import UserError, counted


def add_parsers(sub) -> None:
    _add_check(sub)
    _add_report(sub)
    _add_compare(sub)
    _add_submit(sub)
    _add_export_model(sub)


def _add_check(sub) -> None:
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


def cmd_check(args) -> int:
    from glue_bench.reporting import check
    from glue_bench.sweeping.runs import read_runs, runs_table

    tolerance = check.parse_tolerance(args.tolerance)
    baseline = read_runs(args.baseline, option="--baseline")
    url, sweep = results(args)
    new = read_runs(args.runs) if args.runs else runs_table(url)
    fetch_baseline = fetch_new = None
    if tolerance == check.BOOTSTRAP:  # dev predictions: the baseline's from its sidecar, the new run's stored
        from glue_bench.sweeping.artifacts import download_predictions
        from glue_bench.sweeping.runs import read_dev_sidecar

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


def _add_report(sub) -> None:
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
        "--compare",
        choices=["paper", "dev-reference"],
        help="paper: the paper's GLUE test table (results/paper-miniatures.csv) beside ours; dev-reference: published "
        "dev scores of the miniatures (results/dev-reference.csv), each with its recipe",
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
    rep.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples for --ci")
    rep.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from glue_bench.reporting import render
    from glue_bench.reporting.selection import load_runs

    url, sweep = results(args)
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
        result = leaderboard(table, compare=args.compare, intervals=intervals)
        if fmt == "html":  # the leaderboard as HTML is the whole page: the figure, the grids and AX with it
            from glue_bench.reporting.page import page

            text = page(result, table, url, args.compare == "paper", args.data)
    _write(text or render.render(result, fmt), args.out, f"{result.title}{' page' if text else ''}", len(result.table))
    if args.plot:
        from glue_bench.reporting import plots

        print(plots.plot(table, args.plot, task=args.plot_task, compare_paper=args.compare == "paper"), file=sys.stderr)
    return 0


def _add_compare(sub) -> None:
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
    cmp.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples")
    cmp.add_argument("--format", choices=["markdown", "csv", "latex", "html"], help="default: markdown")
    cmp.add_argument("--out", help="write to this file instead of stdout")
    cmp.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from glue_bench.reporting import render
    from glue_bench.reporting.compare import compare
    from glue_bench.reporting.selection import load_runs

    url, sweep = results(args)
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    result = compare(load_runs(url, None, sweep), url, args.a, args.b, tasks, args.resamples)
    _write(
        render.render(result, render.choose_format(args.format, args.out)), args.out, result.title, len(result.table)
    )
    return 0


def _write(text: str, out: str | None, title: str, rows: int) -> None:
    """To stdout, or to --out, saying on stderr what was written there."""
    from glue_bench.reporting import render

    render.write(text, out)
    if out:
        print(
            f"glue-bench: wrote {out}: {title}, {counted(rows, 'row')} ({len(text.encode()):,} bytes)", file=sys.stderr
        )


def _add_submit(sub) -> None:
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
    url, sweep = results(args)
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


def _add_export_model(sub) -> None:
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


def cmd_export_model(args) -> int:
    from glue_bench.reporting.exported_model import export_model

    url, sweep = results(args)
    print(export_model(url, args.model, args.task, sweep, args.out))
    return 0
