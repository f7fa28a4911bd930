"""GLUE server submissions built from a fixture storage: 11 files, row counts and labels checked; bad ones refused.

The fixture records one trial per GLUE task for L-2_H-128 the way trial.execute does (user attributes and
prediction artifacts), with predictions of the full test-set sizes that follow a known pattern.
"""

from __future__ import annotations

import zipfile

import numpy as np
import optuna
import pytest

from glue_bench.cli import main
from glue_bench.errors import UserError
from glue_bench.inputs.tasks import dependents, get_task
from glue_bench.reporting import submit
from glue_bench.reporting.selection import load_runs
from glue_bench.sweeping import artifacts, schema
from glue_bench.training import metrics

MODEL = "L-2_H-128"


def pattern(task, rows: int) -> list:
    """Prediction i: label id i mod n; STS-B: from -1 to 6, outside [0, 5] at both ends."""
    if task.regression:
        return np.linspace(-1.0, 6.0, rows).tolist()
    return [i % len(task.labels) for i in range(rows)]


def record(
    url: str,
    task_name: str,
    predictions: dict | None = None,
    sweep: str = "fixture",
    model: str = MODEL,
    seed: int = 0,
    dev_value: float = 0.5,
):
    """One completed trial of `task_name`, recorded as trial.execute records it."""
    task = get_task(task_name)
    if predictions is None:
        predictions = {}
        for other in [task, *dependents(task)]:
            for split in other.splits_with_role("test"):
                order = np.random.default_rng(0).permutation(split.rows)  # any row order: the file is sorted
                values = np.asarray(pattern(task, split.rows))
                predictions[f"{other.name}/{split.name}"] = {
                    "idx": order.tolist(),
                    "prediction": values[order].tolist(),
                }
    dev = {s.name: dict.fromkeys(task.metrics, dev_value) for s in task.splits_with_role("dev")}
    study = optuna.create_study(
        storage=url, study_name=schema.study_name(sweep, model, task.name), direction="maximize", load_if_exists=True
    )
    trial = study.ask(schema.grid_distributions([32], [1e-4], [seed]))
    for key, value in {"model": model, "task": task.name, "metrics": dev, "extra_metrics": {}}.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("predictions", artifacts.upload_predictions(predictions, url)[1])  # [0]: the links
    study.tell(trial, metrics.task_score(task, dev))


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> str:
    """A storage with every GLUE task of MODEL: a complete submission."""
    url = f"sqlite:///{tmp_path_factory.mktemp('full') / 'runs.db'}"
    for name in metrics.GLUE_TASKS:
        record(url, name)
    return url


@pytest.fixture(scope="module")
def built(full, tmp_path_factory):
    out = tmp_path_factory.mktemp("zip") / "submission.zip"
    sources, filled = submit.build(load_runs(full), full, MODEL, str(out))
    return out, sources, filled


def read(path, name: str) -> list[list[str]]:
    with zipfile.ZipFile(path) as archive:
        return [line.split("\t") for line in archive.read(name).decode("utf-8").splitlines()]


def test_the_eleven_files_with_the_servers_labels(built):
    out, sources, filled = built
    assert filled == [] and len(sources) == 11
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == sorted(
            [
                "CoLA.tsv",
                "SST-2.tsv",
                "MRPC.tsv",
                "STS-B.tsv",
                "QQP.tsv",
                "MNLI-m.tsv",
                "MNLI-mm.tsv",
                "QNLI.tsv",
                "RTE.tsv",
                "WNLI.tsv",
                "AX.tsv",
            ]
        )
    rte = read(out, "RTE.tsv")
    assert rte[:4] == [["index", "prediction"], ["0", "entailment"], ["1", "not_entailment"], ["2", "entailment"]]
    assert len(rte) == 1 + 3000
    mnli = read(out, "MNLI-mm.tsv")
    assert mnli[1:4] == [["0", "entailment"], ["1", "neutral"], ["2", "contradiction"]] and len(mnli) == 1 + 9847
    assert read(out, "CoLA.tsv")[1:3] == [["0", "0"], ["1", "1"]]
    assert len(read(out, "QQP.tsv")) == 1 + 390965


def test_stsb_is_clipped_to_zero_five(built):
    rows = read(built[0], "STS-B.tsv")[1:]
    values = [float(v) for _, v in rows]
    assert values[0] == 0.0 and values[-1] == 5.0 and min(values) == 0.0 and max(values) == 5.0
    step = 7.0 / 1378  # linspace(-1, 6, 1379)
    assert values[500] == pytest.approx(round(-1.0 + 500 * step, 3))


def test_ax_comes_from_the_mnli_trial(built):
    out, sources, _ = built
    assert read(out, "AX.tsv")[1:4] == [["0", "entailment"], ["1", "neutral"], ["2", "contradiction"]]
    assert any(line.startswith("AX.tsv: mnli trial 0 of sweep fixture") for line in sources)


def test_the_built_zip_passes_the_check(built):
    lines = submit.check_zip(str(built[0]))
    assert "QQP.tsv: 390965 rows, labels ok" in lines and len(lines) == 11


def _rewrite(source, target, name: str, transform) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for member in old.namelist():
            text = old.read(member).decode("utf-8")
            new.writestr(member, transform(text) if member == name else text)


@pytest.mark.parametrize(
    "name, transform, message",
    [
        ("RTE.tsv", lambda t: t.rsplit("\n", 2)[0] + "\n", "RTE.tsv: 2999 rows, but the rte test set has 3000"),
        ("RTE.tsv", lambda t: t.replace("\tnot_entailment\n", "\tmaybe\n", 1), "line 3: label 'maybe' is not one of"),
        ("CoLA.tsv", lambda t: t.replace("1\t1\n", "1\tacceptable\n", 1), "label 'acceptable'"),
        ("STS-B.tsv", lambda t: t.replace("\t0.000\n", "\t-0.5\n", 1), "'-0.5' is not a number in [0, 5]"),
        ("MRPC.tsv", lambda t: t.replace("\n1\t", "\n0\t", 1), "indices must be 0 … 1724, each once"),
        ("WNLI.tsv", lambda t: t.replace("index\tprediction", "id\tlabel"), "header must be 'index<TAB>prediction'"),
    ],
)
def test_a_wrong_count_label_or_index_is_refused(built, tmp_path, name, transform, message):
    bad = tmp_path / "bad.zip"
    _rewrite(built[0], bad, name, transform)
    with pytest.raises(UserError) as error:
        submit.check_zip(str(bad))
    assert message in str(error.value)


def test_every_bad_file_is_listed_not_only_the_first(built, tmp_path, capsys):
    bad, worse = tmp_path / "bad.zip", tmp_path / "worse.zip"
    _rewrite(built[0], bad, "RTE.tsv", lambda t: t.replace("\tnot_entailment\n", "\tmaybe\n", 1))
    _rewrite(bad, worse, "WNLI.tsv", lambda t: t.replace("index\tprediction", "id\tlabel"))
    assert main(["submit", "--check", str(worse)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2  # one line per bad file, in the server's order, nothing else
    assert "RTE.tsv: line 3: label 'maybe' is not one of" in err[0]
    assert "WNLI.tsv: the header must be 'index<TAB>prediction'" in err[1]


def test_a_missing_file_is_refused(built, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(built[0]) as old, zipfile.ZipFile(bad, "w") as new:
        for member in old.namelist():
            if member != "AX.tsv":
                new.writestr(member, old.read(member))
    with pytest.raises(UserError, match="missing AX.tsv"):
        submit.check_zip(str(bad))


def test_predictions_with_a_wrong_count_or_label_id_are_refused_before_writing(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    rte = get_task("rte")
    record(url, "rte", {"rte/test": {"idx": list(range(2999)), "prediction": [0] * 2999}})
    record(url, "rte", {"rte/test": {"idx": list(range(3000)), "prediction": [2] * 3000}}, model="L-4_H-256")
    out = tmp_path / "s.zip"
    with pytest.raises(UserError, match="RTE.tsv: 2999 rows, but the rte test set has 3000"):
        submit.build(load_runs(url), url, MODEL, str(out), fill_missing="majority")
    with pytest.raises(UserError, match=r"prediction 2 \(index 0\) is not a label id of the rte model \(0 … 1\)"):
        submit.build(load_runs(url), url, "L-4_H-256", str(out), fill_missing="majority")
    assert not out.exists() and rte.splits["test"].rows == 3000


def test_a_missing_task_is_refused_unless_filled_loudly(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for name in metrics.GLUE_TASKS:
        if name != "qqp":
            record(url, name)
    out = tmp_path / "s.zip"
    assert main(["submit", "--storage", url, "--model", "bert-tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no test predictions for QQP.tsv (qqp)" in err and "--fill-missing majority" in err and not out.exists()
    assert (
        main(["submit", "--storage", url, "--model", "bert-tiny", "--out", str(out), "--fill-missing", "majority"]) == 0
    )
    captured = capsys.readouterr()
    assert (
        "WARNING: QQP.tsv FILLED with the majority class '0' on all 390965 rows: model L-2_H-128 has no qqp "
        "test predictions"
    ) in captured.err
    assert "1 FILLED with a majority baseline" in captured.out
    assert {row[1] for row in read(out, "QQP.tsv")[1:]} == {"0"}
    assert main(["submit", "--check", str(out)]) == 0


def test_cli_check_refuses_a_bad_zip_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    assert main(["submit", "--check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a readable zip file" in err and err.count("\n") == 1


def test_unknown_model_and_bad_out(full, tmp_path):
    with pytest.raises(UserError, match="no trials of model L-4_H-256 in the storage; models recorded: L-2_H-128"):
        submit.build(load_runs(full), full, "bert-mini", str(tmp_path / "s.zip"))
    with pytest.raises(UserError, match="takes a .zip file"):
        submit.build(load_runs(full), full, MODEL, str(tmp_path / "s.tar"))


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_reports_from_an_exported_runs_table_equal_those_from_the_storage(full, tmp_path, suffix):
    from glue_bench.reporting import render
    from glue_bench.reporting.leaderboard import leaderboard
    from glue_bench.sweeping.runs import export, runs_table

    path = tmp_path / f"runs.{suffix}"
    export(runs_table(full), str(path))
    exported = load_runs(runs=str(path))
    assert isinstance(exported["predictions"].iloc[0], str)  # JSON columns come back as strings
    for fmt in ("markdown", "csv"):
        assert render.render(leaderboard(exported, "paper"), fmt) == render.render(
            leaderboard(load_runs(full), "paper"), fmt
        )
    if suffix == "csv":  # the predictions column of an exported table still finds the artifacts
        out = tmp_path / "s.zip"
        submit.build(exported, full, MODEL, str(out))
        assert len(submit.check_zip(str(out))) == 11


def test_label_range_is_a_regression_tasks_low_high():
    import tomllib

    from glue_bench.inputs.shipped import task_dir
    from glue_bench.inputs.tasks import parse_task

    assert get_task("stsb").label_range == (0.0, 5.0) and get_task("rte").label_range == ()
    stsb = tomllib.loads((task_dir() / "stsb.toml").read_text(encoding="utf-8"))
    for bad in ([5.0, 0.0], [0.0], ["0", "5"]):
        with pytest.raises(UserError, match="label_range must be \\[low, high\\] with low < high"):
            parse_task({**stsb, "label_range": bad}, "stsb.toml")
    rte = tomllib.loads((task_dir() / "rte.toml").read_text(encoding="utf-8"))
    with pytest.raises(UserError, match="for a regression task"):
        parse_task({**rte, "label_range": [0, 1]}, "rte.toml")


def test_the_source_line_gives_the_submitted_seeds_own_dev_score(tmp_path):
    """The configuration wins on its mean over seeds; the file holds one seed's predictions: say both."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for name in metrics.GLUE_TASKS:
        record(url, name)
    record(url, "rte", seed=1, dev_value=0.7)  # RTE: seeds 0 (0.5) and 1 (0.7), mean 0.6
    sources, _ = submit.build(load_runs(url), url, MODEL, str(tmp_path / "s.zip"))
    rte = next(line for line in sources if line.startswith("RTE.tsv"))
    assert rte == (
        "RTE.tsv: rte trial 1 of sweep fixture (batch size 32, lr 1e-4, seed 1: dev score 70.0; "
        "mean over its 2 seeds 60.0)"
    )


def test_every_command_that_reads_results_takes_a_sweep_file(full, tmp_path, capsys):
    """report, submit, check and export find a sweep's storage and name the same way: --sweep FILE."""
    sweep = tmp_path / "fixture.toml"
    sweep.write_text(
        f'models = ["{MODEL}"]\ntasks = ["rte"]\nstorage = "{full}"\n[grid]\nbatch_size = [32]\nlr = [1e-4]\n'
    )
    assert main(["report", "--sweep", str(sweep)]) == 0
    assert "| L-2_H-128 (bert-tiny) | 50.0 |" in capsys.readouterr().out
    assert main(["submit", "--sweep", str(sweep), "--model", MODEL, "--out", str(tmp_path / "s.zip")]) == 0
    assert main(["export", "--sweep", str(sweep), "--out", str(tmp_path / "runs.csv")]) == 0
    capsys.readouterr()
    assert main(["check", "--sweep", str(sweep), "--baseline", str(tmp_path / "runs.csv")]) == 0
    assert "0 regressions, 0 improvements" in capsys.readouterr().out
    # The file's name, not a guess: a sweep file named otherwise finds no trials of its sweep.
    other = tmp_path / "other.toml"
    other.write_text(sweep.read_text())
    assert main(["report", "--sweep", str(other)]) == 2
    assert "holds no trials of sweep other" in capsys.readouterr().err
