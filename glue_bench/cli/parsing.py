"""The parser pieces every command shares: argument types, the one-line error, --sweep/--storage."""

from __future__ import annotations

import argparse

from glue_bench.errors import did_you_mean

# --sweep and --storage mean the same in every command that reads results (results())
SWEEP_HELP = "a sweep's name, or its file (sweeps/x.toml: that sweep, in the storage it writes to)"
STORAGE_HELP = "Optuna storage URL (env GLUE_BENCH_STORAGE; default sqlite:///results/glue-bench.db)"


def whole_number(text: str, low: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < low:
        kind = "a positive whole number" if low == 1 else f"a whole number >= {low}"
        raise argparse.ArgumentTypeError(f"must be {kind}, got {value}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, low=1)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class OneLineParser(argparse.ArgumentParser):
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


def results(args) -> tuple[str | None, str | None]:
    """(storage URL, sweep name) for a command that reads results, the same way for every one: --sweep takes
    a sweep's name or its file (which names the sweep and its storage); --storage overrides the storage."""
    name, url = args.sweep, args.storage
    if name and name.endswith(".toml"):
        from glue_bench.sweeping import sweep_file as sweeps

        sweep = sweeps.load(name)
        name, url = sweep.name, sweeps.resolve_storage(sweep, args.storage)
    return url, name
