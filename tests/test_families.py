"""Every encoder family end to end, offline: a sweep (save = "best"), status, report, compare, check, submit,
export-model reopened with plain transformers, and distillation across families, teacher and student.

The models are tests/families.py's: tiny and random, with real tokenizers (WordPiece, byte-level BPE, Unigram)
built in the fixtures. Two tasks, RTE (sentence pairs) and CoLA (single sentences), 64 train rows, one epoch:
what is checked is that each family runs, is recorded, reports and round-trips, not what it learns. Slow: a few
minutes on 2 cores, much of it tokenizing each task's train split (all of it: the cache serves every trial of a
study) once per tokenizer, so the single-sentence task is CoLA's 8,551 rows, not SST-2's 67,349.
"""

from __future__ import annotations

import json
import zipfile

import families
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from glue_bench import cli
from glue_bench.inputs import data
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping.artifacts import download_predictions
from glue_bench.sweeping.runs import runs_table

pytestmark = pytest.mark.slow

SWEEP = """# the families test
name = "families"
models = [{models}]
tasks = ["rte", "cola"]
epochs = 1
seeds = [0]
data = "{data}"
storage = "{storage}"
save = "best"

[grid]
batch_size = [16]
lr = [1e-4]

[recipe]
max_train_samples = 64
"""


@pytest.fixture(scope="module")
def swept(glue_data, tmp_path_factory):
    """Every family's tiny model swept on RTE and CoLA into one storage (2 workers, 20 trials)."""
    root = tmp_path_factory.mktemp("families")
    folders = {f: str(families.build(f, root / f, glue_data)) for f in families.FAMILIES}
    url = f"sqlite:///{root / 'runs.db'}"
    sweep = root / "families.toml"
    sweep.write_text(SWEEP.format(models=", ".join(f'"{p}"' for p in folders.values()), data=glue_data, storage=url))
    assert cli.main(["sweep", str(sweep), "--workers", "2", "--no-progress"]) == 0
    return folders, url, sweep, root


def _row(table: pd.DataFrame, folder: str, task: str) -> pd.Series:
    return table[(table["student"] == folder) & (table["task"] == task)].iloc[0]


def test_every_family_runs_is_recorded_with_its_encoder_and_reports(swept, capsys):
    folders, url, sweep, _ = swept
    table = runs_table(url)
    assert len(table) == 2 * len(families.FAMILIES) and set(table["state"]) == {"COMPLETE"}
    for family, folder in folders.items():
        for task in ("rte", "cola"):
            row = _row(table, folder, task)
            assert row["model_type"] == family
            assert row["encoder_ran"] == ("fast" if family in families.FAST else "hf"), family
            assert row["max_length"] == 128 and row["checkpoint_dtype"] == "float32"
    capsys.readouterr()
    assert cli.main(["status", str(sweep)]) == 0
    assert "20 of 20 trials complete" in capsys.readouterr().out
    assert cli.main(["report", "--sweep", str(sweep)]) == 0
    board = capsys.readouterr().out
    assert all(folder in board for folder in folders.values())
    assert cli.main(["compare", folders["roberta"], folders["albert"], "--sweep", str(sweep)]) == 0
    assert "| rte |" in capsys.readouterr().out


def test_check_accepts_the_run_against_its_own_export(swept, tmp_path, capsys):
    _, url, sweep, _ = swept
    baseline = tmp_path / "baseline.csv"
    assert cli.main(["export", "--sweep", str(sweep), "--out", str(baseline)]) == 0
    capsys.readouterr()
    assert cli.main(["check", "--baseline", str(baseline), "--storage", url]) == 0
    # 10 families x (RTE's accuracy; CoLA's Matthews correlation and accuracy)
    assert "0 regressions, 0 improvements, 30 unchanged" in capsys.readouterr().out


def test_a_submission_of_a_family_is_checked(swept, tmp_path, capsys):
    folders, _, sweep, _ = swept
    out = tmp_path / "submission.zip"
    args = ["submit", "--sweep", str(sweep), "--model", folders["deberta-v2"], "--out", str(out)]
    assert cli.main([*args, "--fill-missing", "majority"]) == 0
    assert cli.main(["submit", "--check", str(out)]) == 0
    with zipfile.ZipFile(out) as z:
        assert len(z.read("RTE.tsv").decode().splitlines()) == 3001


@pytest.mark.parametrize("family", families.FAMILIES)
def test_the_kept_model_exports_and_plain_transformers_reproduces_its_predictions(swept, glue_data, tmp_path, family):
    folders, url, sweep, _ = swept
    out = tmp_path / family
    assert (
        cli.main(
            ["export-model", "--model", folders[family], "--task", "rte", "--sweep", str(sweep), "--out", str(out)]
        )
        == 0
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.id2label == {0: "entailment", 1: "not_entailment"}
    task = get_task("rte")
    test = data.load_split(task, task.splits["test"], data.resolve_source(str(glue_data)))
    predicted = []
    with torch.inference_mode():
        for start in range(0, len(test), 256):
            rows = test[start : start + 256]  # {"text_a": [...], "text_b": [...], ...}
            batch = tokenizer(
                rows["text_a"], rows["text_b"], truncation=True, max_length=128, padding=True, return_tensors="pt"
            )
            predicted += model(**batch).logits.argmax(-1).tolist()
    row = _row(runs_table(url), folders[family], "rte")
    recorded = download_predictions(json.loads(row["predictions"])["rte/test"], url)
    assert recorded["idx"] == test["idx"] and predicted == recorded["prediction"]


def test_every_family_teaches_and_learns_across_families(swept, glue_data, capsys):
    """Each family's kept RTE model teaches a BERT-Tiny student, and each family learns from the kept RoBERTa:
    each reads the rows with its own tokenizer, the outputs matched by row id."""
    folders, url, _, _ = swept
    common = ["--task", "rte", "--batch-size", "16", "--lr", "1e-4", "--epochs", "1", "--max-train-samples", "64"]
    common += ["--data", str(glue_data), "--storage", url, "--no-progress"]
    for family, folder in folders.items():
        assert cli.main(["run", "--model", "random:L-2_H-128", *common, "--teacher", f"kept:families/{folder}"]) == 0
        if family != "roberta":
            assert (
                cli.main(["run", "--model", folder, *common, "--teacher", f"kept:families/{folders['roberta']}"]) == 0
            )
    table = runs_table(url)
    taught = table[table["teacher"].fillna("") != ""]
    assert len(taught) == 2 * len(families.FAMILIES) - 1 and set(taught["state"]) == {"COMPLETE"}
    assert taught["model"].nunique() == len(taught)  # every student of every teacher its own model
    assert taught["teacher/agreement/validation"].notna().all()
