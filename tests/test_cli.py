"""The command line itself: `run`'s recipe options generated from the Recipe, a help line for every option of
every command, what `report --out` says, and messages in plain English (issues 22, 24 and 20)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, fields

import optuna
import pytest

from glue_bench.cli import build_parser, main
from glue_bench.cli.parsing import OneLineParser, add_fields, values_of
from glue_bench.cli.run import _print_result, recipe_of
from glue_bench.errors import UserError, counted
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping.launcher import describe_placement
from glue_bench.training.recipe import Recipe, described, field_help

RUN = ["run", "--model", "random:L-2_H-128", "--task", "rte", "--batch-size", "16", "--lr", "3e-5"]


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _help(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option: no hyphen split by the wrapping
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--help"])
    assert stopped.value.code == 0
    return capsys.readouterr().out


# --- run's options are the Recipe's fields -------------------------------------------------------------------


def test_every_recipe_field_is_a_run_option_with_its_help_line(capsys, monkeypatch):
    helps = field_help()
    assert [name for name, text in helps.items() if not text.strip()] == []  # a field added without help fails
    shown = " ".join(_help(["run"], capsys, monkeypatch).split("options:")[1].split())
    actions = {a.dest: a for a in _commands()["run"]._actions}
    for f in fields(Recipe):
        flag = "--" + f.name.replace("_", "-")
        assert flag in actions[f.name].option_strings and actions[f.name].help == helps[f.name]
        # the option (and its --no- form, or its metavar), then its help line
        assert re.search(rf" {re.escape(flag)}(, --no-\S+| \S+)? {re.escape(helps[f.name])}", shown), flag
    bools = [f.name for f in fields(Recipe) if f.type == "bool"]
    assert bools and all(f"--no-{name.replace('_', '-')}" in actions[name].option_strings for name in bools)


def test_the_defaults_are_the_recipes_and_every_option_reaches_its_field():
    parse = build_parser().parse_args
    assert recipe_of(parse(RUN)) == Recipe(batch_size=16, lr=3e-5)
    chosen = [
        *["--epochs", "2", "--seed", "3", "--max-seq-length", "64", "--weight-decay", "0", "--warmup-ratio", "0.06"],
        *["--max-grad-norm", "0", "--max-train-samples", "100", "--group-by-length", "--bf16", "--tf32"],
        *["--eval-batch-size", "64", "--no-fused-adamw", "--encoder", "hf", "--teacher", "kept:adhoc"],
        *["--temperature", "2", "--alpha", "0.5", "--transfer", "rows.tsv", "--max-transfer-samples", "10"],
    ]
    assert recipe_of(parse([*RUN, *chosen])) == Recipe(
        batch_size=16,
        lr=3e-5,
        epochs=2,
        seed=3,
        max_seq_length=64,
        weight_decay=0.0,
        warmup_ratio=0.06,
        max_grad_norm=0.0,
        max_train_samples=100,
        group_by_length=True,
        bf16=True,
        tf32=True,
        eval_batch_size=64,
        fused_adamw=False,
        encoder="hf",
        teacher="kept:adhoc",
        temperature=2.0,
        alpha=0.5,
        transfer="rows.tsv",
        max_transfer_samples=10,
    )
    assert recipe_of(parse([*RUN, "--bf16", "--no-bf16"])).bf16 is False  # the last one wins


@pytest.mark.parametrize(
    "argv, error",
    [
        (RUN[:-2], "the following arguments are required: --lr"),
        ([*RUN, "--encoder", "bert"], "argument --encoder: invalid choice: 'bert' (choose from 'fast', 'hf')"),
        ([*RUN, "--eval-batch-size", "0"], "argument --eval-batch-size: must be a positive whole number, got 0"),
        ([*RUN, "--weight-decay", "-0.1"], "argument --weight-decay: must be a finite number >= 0, got -0.1"),
        ([*RUN, "--max-grad-norm", "inf"], "argument --max-grad-norm: must be a finite number >= 0, got inf"),
        ([*RUN, "--seed", "x"], "argument --seed: 'x' is not a whole number"),
    ],
)
def test_a_bad_recipe_option_is_one_line_naming_it(argv, error, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == f"glue-bench run: error: {error}; see glue-bench run --help\n"


def test_the_recipes_other_checks_run_when_it_is_built(capsys):
    assert main([*RUN, "--warmup-ratio", "1", "--storage", "sqlite:///unused.db"]) == 2
    assert capsys.readouterr().err == "glue-bench: error: warmup_ratio must be in [0, 1), got 1.0\n"


@dataclass(frozen=True)
class Grown(Recipe):
    """The Recipe with fields added later, each declared once, with its help."""

    accumulation_steps: int = described(1, "micro-batches summed into one optimizer step")
    fp16: bool = described(False, "fp16 autocast with a gradient scaler")
    optimizer: str = described("adamw", "adamw: PyTorch's; bert: the paper's", choices=("adamw", "bert"))

    def __post_init__(self):
        super().__post_init__()
        if self.accumulation_steps < 1:
            raise UserError(f"accumulation_steps must be a positive number, got {self.accumulation_steps!r}")


def test_a_field_added_later_is_an_option_with_no_edit_of_the_command_line(capsys):
    parser = OneLineParser(prog="grown")
    add_fields(parser, Grown(batch_size=8, lr=1e-4))
    args = parser.parse_args(["--batch-size", "8", "--lr", "1e-4", "--accumulation-steps", "4", "--fp16"])
    assert Grown(**values_of(args, Grown)) == Grown(batch_size=8, lr=1e-4, accumulation_steps=4, fp16=True)
    assert parser.parse_args(["--batch-size", "8", "--lr", "1e-4", "--optimizer", "bert"]).optimizer == "bert"
    with pytest.raises(SystemExit):  # its bound, found by asking the dataclass: refused by argparse, named
        parser.parse_args(["--batch-size", "8", "--lr", "1e-4", "--accumulation-steps", "0"])
    assert "argument --accumulation-steps: must be a positive whole number, got 0" in capsys.readouterr().err


def test_a_field_without_a_help_line_is_refused():
    @dataclass(frozen=True)
    class Bare(Recipe):
        undocumented: int = 0

    with pytest.raises(TypeError, match="Bare.undocumented has no help line"):
        add_fields(argparse.ArgumentParser(), Bare(batch_size=8, lr=1e-4))


# --- help for every command -----------------------------------------------------------------------------------


def test_every_command_has_a_description_and_every_option_a_help_line(capsys, monkeypatch):
    for name, parser in _commands().items():
        assert parser.description, f"glue-bench {name} has no description"
        assert [a.dest for a in parser._actions if not a.help] == [], name
        shown = _help([name], capsys, monkeypatch)
        assert "(default: None)" not in shown and "(default: )" not in shown, name


def test_run_help_names_every_form_of_a_model_and_required_options_show_no_default(capsys, monkeypatch):
    shown = _help(["run"], capsys, monkeypatch)
    model = next(line for line in shown.splitlines() if line.strip().startswith("--model"))
    for form in ("bert-tiny", "L-<layers>_H-<hidden>", "random:L-2_H-128", "package:<module>/<folder>", "Hub id"):
        assert form in model
    for required in ("--model", "--task", "--batch-size", "--lr"):
        line = next(line for line in shown.splitlines() if line.strip().startswith(required))
        assert "default" not in line and len(line.split()) > 3, line  # a help line, no "(default: None)"
    assert "passes over the train rows (default: 4)" in shown


# --- what the commands say ------------------------------------------------------------------------------------


def test_report_out_says_what_it_wrote(tmp_path, capsys):
    out = tmp_path / "board.md"
    assert main(["report", "--runs", "tests/fixtures/report/runs.csv", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == f"glue-bench: wrote {out}: GLUE leaderboard, 3 rows ({out.stat().st_size:,} bytes)\n"


def test_counts_are_plain_english(monkeypatch):
    assert [counted(1, "model"), counted(2, "model"), counted(0, "model")] == ["1 model", "2 models", "0 models"]
    assert counted(1, "study", "studies") == "1 study" and counted(3, "study", "studies") == "3 studies"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert describe_placement(1, []) == "1 worker on the CPU (1 thread each)"


def _trial(task: str, own: dict, teacher: dict, agreement: float) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        value=sum(own.values()) / len(own),
        user_attrs={
            "metrics": {"validation": own},
            "extra_metrics": {},
            "teacher": {"agreement": {"validation": agreement}, "metrics": {"validation": teacher}},
            "train_seconds": 12.0,
            "examples_per_second": 40.0,
            "env": {"device": "cpu"},
            "encoder": "fast",
        },
    )


def test_a_students_agreement_with_its_teacher_is_a_share_of_rows_or_a_correlation(capsys):
    """Issue 20.8: on STS-B the recorded agreement is a Pearson r, not a share of rows."""
    stsb = _trial("stsb", {"pearson": 0.1, "spearmanr": 0.0925}, {"pearson": 0.88, "spearmanr": 0.875}, 0.0746)
    _print_result(get_task("stsb"), stsb, "adhoc/x/stsb", "sqlite:///r.db")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "stsb validation: pearson 10.00  spearmanr 9.25",
        "teacher on validation: pearson 88.00  spearmanr 87.50; "
        "the student's outputs correlate with its teacher's at Pearson r 0.0746",
    ]
    sst2 = _trial("sst2", {"accuracy": 0.8}, {"accuracy": 0.85}, 750 / 872)
    _print_result(get_task("sst2"), sst2, "adhoc/x/sst2", "sqlite:///r.db")
    assert capsys.readouterr().out.splitlines()[1] == (
        "teacher on validation: accuracy 85.00; the student agrees with its teacher on 86.01% of rows"
    )


def test_a_slow_stage_of_run_gets_a_line_and_a_fast_one_none(capsys, monkeypatch):
    """`run` loading and tokenizing into a log is never silent for long: each stage that outlasts SLOW_SECONDS
    gets its line on stderr; one that ends sooner (a cached tokenization, an error at once) prints nothing."""
    import time

    from glue_bench.cli.run import SlowStages

    monkeypatch.setattr(SlowStages, "SLOW_SECONDS", 0.2)
    with SlowStages() as say:
        say("reading rte's splits")  # over at once: no line
        say("loading model random:L-2_H-128")
        time.sleep(0.5)
        say("tokenizing rte's splits")  # ends with the block, before its time
    time.sleep(0.3)
    assert capsys.readouterr().err == "glue-bench: loading model random:L-2_H-128\n"
