"""The dry run's cost model: padded tokens per example and measured throughput per architecture, by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glue_bench.cli import main
from glue_bench.sweeping import cost

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tables(monkeypatch):
    """Hand-made reference tables in place of results/throughput.csv and results/padded-lengths.csv."""
    throughput = pd.DataFrame(
        {
            "device": ["cpu", "cpu", "cpu"],
            "model": ["L-2_H-128", "L-2_H-128", "L-4_H-256"],
            "batch_size": [8, 32, 8],
            "length": [64, 64, 64],
            "seconds_per_step": [0.1, 0.25, 0.2],
        }
    )
    lengths = pd.DataFrame({"task": ["rte", "rte"], "batch_size": [16, 32], "padded_length": [100.0, 120.0]})
    tables = {"throughput.csv": throughput, "padded-lengths.csv": lengths}
    monkeypatch.setattr(cost, "_reference_table", lambda name: tables[name])


def test_throughput_is_a_fixed_cost_per_step_plus_a_cost_per_token(tables):
    # 512 tokens: 0.1 s, 2048 tokens: 0.25 s → 0.15 s / 1536 tokens per token, 0.05 s per step.
    per_token = 0.15 / 1536
    assert cost.benchmark_throughput("L-2_H-128", 16, 40.0, "cpu") == pytest.approx(16 / (0.05 + per_token * 640))
    # One measured batch size: proportional to the tokens.
    assert cost.benchmark_throughput("L-4_H-256", 16, 40.0, "cpu") == pytest.approx(16 / (0.2 / 512 * 640))
    assert cost.benchmark_throughput("L-2_H-128", 16, 40.0, "cuda") is None
    assert cost.benchmark_throughput("L-12_H-768", 16, 40.0, "cpu") is None


def test_padded_length_interpolates_between_batch_sizes(tables):
    assert cost.padded_length("rte", 16) == 100.0
    assert cost.padded_length("rte", 24) == 110.0
    assert cost.padded_length("rte", 128) == 120.0  # beyond the table: its last value
    assert cost.padded_length("cola", 32) == cost.TOKENS_PER_EXAMPLE  # not in the table


def test_expected_longest_row_of_a_batch_by_hand():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from padded_lengths import expected_max

    # Lengths 1 and 2, equally likely; two rows: the longer is 1 only if both are 1 (1/4) → 1/4 + 2·3/4.
    assert expected_max(np.array([1, 2]), 2) == pytest.approx(1.75)
    assert expected_max(np.array([3, 3, 3]), 8) == pytest.approx(3.0)
    assert expected_max(np.array([1, 2, 3, 4]), 1) == pytest.approx(2.5)  # one row: the mean


def test_the_shipped_tables_cover_every_trained_task_and_miniature():
    lengths = pd.read_csv(ROOT / "results" / "padded-lengths.csv")
    assert set(lengths["task"]) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert (lengths.groupby("task")["padded_length"].apply(lambda v: v.is_monotonic_increasing)).all()
    throughput = pd.read_csv(ROOT / "results" / "throughput.csv")
    cpu = throughput[throughput["device"] == "cpu"]
    assert len(set(cpu["model"])) == 24 and (cpu.groupby("model")["batch_size"].nunique() >= 2).all()


def test_dry_run_uses_the_benchmark_table(tmp_path, glue_data, capsys):
    assert (
        main(
            [
                "sweep",
                str(ROOT / "benchmarks" / "grid-wnli.toml"),
                "--storage",
                f"sqlite:///{tmp_path}/x.db",
                "--dry-run",
                "--data",
                str(glue_data),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "(batch_size [8, 16, 32, 64, 128] × lr [3e-4, 1e-4, 5e-5, 3e-5] × seed [0]), 4 epochs" in out.splitlines()[0]
    row = next(line for line in out.splitlines() if line.startswith("random:L-2_H-128 wnli"))
    # 4 epochs × 635 rows × 20 configurations; tokens: each batch size's padded length from the table.
    lengths = pd.read_csv(ROOT / "results" / "padded-lengths.csv").query("task == 'wnli'")
    tokens = sum(round(4 * 635 * length) * 4 for length in lengths["padded_length"])
    assert row.split()[4:8] == ["50800", str(20 * 4 * 71 + 20 * 146), str(tokens), "benchmark"]
    assert not (tmp_path / "x.db").exists()
