"""AX scored locally: the Matthews correlation by category, by hand on a tiny table and end to end on the real
labelled diagnostic set with a real (tiny) MNLI fine-tune."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from glue_bench.cli import main
from glue_bench.errors import UserError
from glue_bench.reporting.diagnostics import ax_report, breakdown
from glue_bench.sweeping.runs import runs_table


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
