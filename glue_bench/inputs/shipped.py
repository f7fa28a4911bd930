"""Where the files shipped with the package are: the task registry, the reference tables, the vocabulary.

A wheel maps tasks/ to glue_bench/task_files/ and results/ to glue_bench/reference/ (pyproject.toml); a
source checkout and an editable install read tasks/ and results/ beside the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # glue_bench/


def task_dir() -> Path:
    """The shipped task files (tasks/*.toml)."""
    installed = PACKAGE / "task_files"
    return installed if installed.is_dir() else PACKAGE.parent / "tasks"


def reference_dir() -> Path:
    """The shipped reference tables: the paper's scores, dev label counts, measured speeds (results/)."""
    installed = PACKAGE / "reference"
    return installed if installed.is_dir() else PACKAGE.parent / "results"


def vocab_file() -> str:
    """The uncased WordPiece vocabulary all 24 miniatures share (glue_bench/vocab/vocab.txt)."""
    return str(resources.files("glue_bench.vocab").joinpath("vocab.txt"))
