"""AX scored locally: the Matthews correlation by category, by hand on a tiny table and end to end on the real
labelled diagnostic set with a real (tiny) MNLI fine-tune."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest

from glue_bench.cli import main
from glue_bench.errors import UserError
from glue_bench.reporting.diagnostics import ax_report, breakdown
from glue_bench.sweeping import trial as trials
from glue_bench.sweeping.runs import runs_table
from glue_bench.training.recipe import Recipe


def test_breakdown_by_hand():
    frame = pd.DataFrame(
        {
            "label": [0, 2, 0, 2, 1, 1],
            "prediction": [0, 2, 2, 0, 1, 0],
            "Logic": ["Negation", "Negation;Conditionals", "Conditionals", "", "", ""],
            "Knowledge": ["", "", "Common sense", "Common sense", "", "World knowledge"],
        }
    )
    got = {
        (r.category, r.subcategory): (r.examples, r.mcc) for r in breakdown(frame, ["Logic", "Knowledge"]).itertuples()
    }
    # Gorodkin's K-class MCC (c·s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)), c correct of s, counts t (true), p (predicted)
    expected = {
        ("All", ""): (6, 6 / math.sqrt(528)),  # c 3, s 6, t (2, 2, 2), p (3, 1, 2): (18 − 12) / √(22 · 24)
        ("Logic", "(any)"): (3, 0.5),  # y 0 2 0, p 0 2 2: (6 − 4) / √(4 · 4)
        ("Logic", "Conditionals"): (2, 0.0),  # p constant: no correlation
        ("Logic", "Negation"): (2, 1.0),
        ("Knowledge", "(any)"): (3, -3 / math.sqrt(24)),  # y 0 2 1, p 2 0 0: (0 − 3) / √(4 · 6)
        ("Knowledge", "Common sense"): (2, -1.0),
        ("Knowledge", "World knowledge"): (1, 0.0),
    }
    assert list(got) == list(expected)
    for key, (examples, mcc) in expected.items():
        assert got[key][0] == examples and got[key][1] == pytest.approx(mcc), key


@pytest.fixture(scope="module")
def mnli_trial(tmp_path_factory, glue_hub, glue_data):
    """A real MNLI fine-tune (random:L-2_H-128, 64 rows, 1 epoch) that also predicts AX: its dev and test rows
    are real MNLI rows from glue_hub (no MNLI training data here: it trains on dev rows; this checks the
    plumbing, not the model), AX's labelled set is the real diagnostic-full.tsv."""
    hub, original = glue_hub, glue_data
    if not (hub / "mnli").is_dir() or not (original / "diagnostic" / "diagnostic-full.tsv").is_file():
        pytest.skip("the real MNLI dev rows and diagnostic-full.tsv are not on this machine")
    root = tmp_path_factory.mktemp("data")
    (root / "mnli").mkdir()
    for split, source, rows in [
        ("train", "validation_matched", slice(0, 64)),
        ("validation_matched", "validation_matched", slice(1000, 1100)),
        ("validation_mismatched", "validation_mismatched", slice(0, 100)),
        ("test_matched", "test_matched", slice(0, 50)),
        ("test_mismatched", "test_mismatched", slice(0, 50)),
    ]:
        frame = pd.read_parquet(hub / "mnli" / f"{source}-00000-of-00001.parquet").iloc[rows]
        frame.to_parquet(root / "mnli" / f"{split}-00000-of-00001.parquet")
    (root / "ax").mkdir()
    (root / "ax" / "test-00000-of-00001.parquet").symlink_to(hub / "ax" / "test-00000-of-00001.parquet")
    (root / "diagnostic").mkdir()
    (root / "diagnostic" / "diagnostic-full.tsv").symlink_to(original / "diagnostic" / "diagnostic-full.tsv")

    url = f"sqlite:///{tmp_path_factory.mktemp('storage') / 'runs.db'}"
    spec = trials.TrialSpec(
        "random:L-2_H-128",
        "mnli",
        str(root),
        Recipe(batch_size=16, lr=1e-4, epochs=1, max_train_samples=64),
        check_rows=False,
    )
    prepared = trials.prepare(spec)
    study = optuna.create_study(
        storage=url, study_name=trials.study_name("t", "random:L-2_H-128", "mnli"), direction="maximize"
    )
    trial = study.ask(trials.grid_distributions([16], [1e-4], [0]))
    study.tell(trial, trials.execute(prepared, trial, url, progress=False))
    return url, str(root)


def test_ax_breakdown_of_a_real_mnli_trial(mnli_trial):
    url, data = mnli_trial
    table = runs_table(url)
    report = ax_report(table, url, "random:L-2_H-128", data)
    rows = report.table.set_index(["Category", "Subcategory"])
    recorded = table["extra/ax/diagnostic/mcc"].iloc[0]
    assert rows.loc[("All", ""), "MCC"] == f"{100 * recorded:.1f}"  # the trial's own AX score, recomputed
    # Example counts of the real diagnostic-full.tsv (counted with awk/sort/uniq over its columns)
    for key, count in {
        ("All", ""): 1104,
        ("Lexical Semantics", "(any)"): 368,
        ("Logic", "(any)"): 364,
        ("Predicate-Argument Structure", "(any)"): 424,
        ("Knowledge", "(any)"): 284,
        ("Logic", "Negation"): 82,
        ("Lexical Semantics", "Lexical entailment"): 140,
        ("Knowledge", "Common sense"): 150,
        ("Knowledge", "World knowledge"): 134,
        ("Domain", "News"): 204,
        ("Domain", "Artificial"): 300,
    }.items():
        assert rows.loc[key, "Examples"] == str(count), key
    assert ("Domain", "(any)") not in rows.index  # every example has a domain: no separate row
    assert len(rows) == 1 + 4 + 7 + 12 + 12 + 2 + 5  # All, 4 "(any)", the fine-grained categories, 5 domains


def test_ax_from_the_command_line_and_its_errors(mnli_trial, capsys):
    url, data = mnli_trial
    assert main(["report", "--storage", url, "--ax", "random:L-2_H-128", "--data", data, "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Category,Subcategory,Examples,MCC\nAll,,1104,") and "Logic,Negation,82," in out
    with pytest.raises(UserError, match="no completed mnli trial of L-2_H-128; AX is predicted by the mnli model"):
        ax_report(runs_table(url), url, "bert-tiny", data)
