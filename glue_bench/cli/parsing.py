"""The parser pieces every command shares: argument types, the one-line error, --sweep/--storage."""

from __future__ import annotations

import argparse
import dataclasses
import math
from functools import partial

from glue_bench.errors import UserError, did_you_mean

# --sweep and --storage mean the same in every command that reads results (results())
SWEEP_HELP = "a sweep's name, or its file (sweeps/x.toml: that sweep, in the storage it writes to)"
STORAGE_HELP = "Optuna storage URL (env GLUE_BENCH_STORAGE; default sqlite:///results/glue-bench.db)"


def whole_number(text: str, low: int | None = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if low is not None and value < low:
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


def number(text: str, low: float | None = None) -> float:
    """A finite number, at least `low` when given."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value) or (low is not None and value < low):
        raise argparse.ArgumentTypeError(f"must be a finite number{'' if low is None else f' >= {low:g}'}, got {text}")
    return value


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default where it says something: not for a required option, an empty one or a
    plain switch."""

    def _get_help_string(self, action):
        switch = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if action.required or action.default in (None, "", argparse.SUPPRESS) or switch:
            return action.help
        return super()._get_help_string(action)


# --- options generated from a dataclass -----------------------------------------------------------------


def add_fields(parser, example) -> None:
    """One option per field of the dataclass `example` is an instance of: --field-name, its type, its default
    (none: required) and its help from the field's metadata (also "choices": the names a str field takes,
    "metavar": what --help calls its value). A bool is
    --x/--no-x. A number below the lowest value the dataclass accepts is refused by argparse, naming the option;
    every other check runs when the dataclass is built from the values (values_of)."""
    for f in dataclasses.fields(example):
        flag, kind = "--" + f.name.replace("_", "-"), f.type if isinstance(f.type, str) else f.type.__name__
        if not f.metadata.get("help"):
            raise TypeError(f"{type(example).__name__}.{f.name} has no help line (metadata={{'help': ...}})")
        shared = {"dest": f.name, "help": f.metadata["help"]}
        if f.default is dataclasses.MISSING:
            shared["required"] = True
        else:
            shared["default"] = f.default
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **shared)
        elif kind == "str":
            parser.add_argument(flag, choices=f.metadata.get("choices"), metavar=f.metadata.get("metavar"), **shared)
        elif kind in ("int", "float"):
            parser.add_argument(
                flag, type=_number_type(example, f.name, kind), metavar={"int": "N", "float": "X"}[kind], **shared
            )
        else:
            raise TypeError(f"{type(example).__name__}.{f.name}: no command-line form for type {kind}")


def _number_type(example, name: str, kind: str):
    """Parses the field's numbers: positive where the dataclass refuses 0, >= 0 where it refuses -1."""

    def accepts(value) -> bool:
        try:
            dataclasses.replace(example, **{name: value})
        except UserError:
            return False
        return True

    if kind == "int":
        return positive_int if not accepts(0) else partial(whole_number, low=None if accepts(-1) else 0)
    return positive_float if not accepts(0.0) else partial(number, low=None if accepts(-1.0) else 0.0)


def values_of(args, cls) -> dict:
    """The parsed values of the options add_fields made for `cls`, by field name."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}


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
