"""The command line: a thin layer over the library. Every user error ends in one line and exit code 2.

One module per group of commands, each command's options beside its handler: listing (tasks, models), run,
sweep (sweep, status, export), report (report, compare, submit, check, export-model); parsing holds what they
share.
"""

from __future__ import annotations

import argparse
import sys

from glue_bench.cli import listing, report, run, sweep
from glue_bench.cli.parsing import OneLineParser
from glue_bench.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="glue-bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (listing, run, sweep, report):  # the order `glue-bench --help` lists them in
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with one line on a bad option
    try:
        from glue_bench.inputs.hub import quiet_libraries
        from glue_bench.sweeping.stops import handled

        quiet_libraries(progress=not getattr(args, "no_progress", False))
        # Ctrl-C and SIGTERM (exit 130, 143) through the code that records a stop: a training step ends first, so a
        # checkpoint written at the stop is whole (sweeping/stops.py)
        with handled():
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
