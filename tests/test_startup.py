"""Commands that need no model answer at once: they import no torch, transformers or datasets (issue 15).
Checked on the import set, in a fresh interpreter per command, not on the time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, sys
from glue_bench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps([code, sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "datasets"})]))
"""


def _run(argv: list[str], tmp_path: Path) -> tuple[int, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)},
        timeout=120,
    )
    code, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    return code, heavy


@pytest.mark.parametrize(
    "argv, code",
    [
        (["tasks"], 0),
        (["models"], 0),
        (["--help"], 0),
        (["status", "sweeps/cpu-smoke.toml", "--storage", "sqlite:///{tmp}/none.db"], 2),  # no such storage
        (["export", "--storage", "sqlite:///{tmp}/none.db", "--out", "{tmp}/runs.csv"], 2),
        (["report", "--runs", "tests/fixtures/report/runs.csv"], 0),
        (["report", "--runs", "tests/fixtures/report/runs.csv", "--grid", "bert-tiny:rte"], 0),
        (["report", "--runs", "tests/fixtures/report/runs.csv", "--ci"], 0),
        (["report", "--runs", "tests/fixtures/report/runs.csv", "--out", "{tmp}/board.html"], 0),  # the page
        (["compare", "bert-tiny", "bert-mini", "--storage", "sqlite:///{tmp}/none.db"], 2),
        (
            ["check", "--baseline", "results/baselines/ci-baseline.csv", "--runs", "results/baselines/ci-baseline.csv"],
            0,
        ),
        (["submit", "--check", "{tmp}/none.zip"], 2),
        (["sweep", "{tmp}/typo.toml"], 2),  # a misspelt key
        (["run", "--model", "random:L-2_H-128", "--task", "rt", "--batch-size", "8", "--lr", "1e-4"], 2),
        (["run", "--model", "bert-tinyy", "--task", "rte", "--batch-size", "8", "--lr", "1e-4"], 2),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_commands_that_need_no_model_import_no_model_library(argv, code, tmp_path):
    (tmp_path / "typo.toml").write_text(
        'models = ["bert-tiny"]\ntasks = ["rte"]\nepoch = 2\n[grid]\nbatch_size = [8]\nlr = [1e-4]\n'
    )
    assert _run([a.format(tmp=tmp_path) for a in argv], tmp_path) == (code, [])
