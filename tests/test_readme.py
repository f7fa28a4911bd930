"""The README's quick start, run as written (slow stage): its commands chain, from the sweep to the zip."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT

MARKER = "<!-- tests/test_readme.py runs the next block as written"
REAL_RESULT = "<!-- tests/test_readme.py checks that the next block names sweeps/minilm-sst2.toml's models"


def quick_start_block(marker: str = MARKER) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert marker in text, "the README lost its marker"
    block = re.search(r"```bash\n(.*?)```", text[text.index(marker) :], flags=re.S)
    assert block, "no bash block after the marker"
    return block.group(1)


def test_the_quick_start_names_one_storage_and_one_model():
    block = quick_start_block()
    commands = [line for line in block.splitlines() if line.strip()]
    assert all(line.startswith("glue-bench ") for line in commands)
    assert set(re.findall(r"--model (\S+)", block)) == {"random:L-2_H-128"}
    assert "--storage" not in block  # one storage: the sweep file's, reached through --sweep everywhere
    assert all("sweeps/cpu-smoke.toml" in line for line in commands if "--check" not in line)


def test_the_real_result_compares_the_two_models_of_its_sweep():
    """The quick start's last block (its figures measured by benchmarks/cost_check.py): the sweep, then compare
    of its random model (A) with its pretrained one (B)."""
    from glue_bench.sweeping import sweep_file

    sweep, compare = [line.split("#")[0].split() for line in quick_start_block(REAL_RESULT).splitlines()]
    assert sweep == ["glue-bench", "sweep", "sweeps/minilm-sst2.toml", "--workers", "2"]
    models = sweep_file.load(ROOT / "sweeps" / "minilm-sst2.toml").models
    assert compare == ["glue-bench", "compare", *reversed(models), "--sweep", "sweeps/minilm-sst2.toml"]


@pytest.mark.slow
def test_the_readme_quick_start_runs_as_written(tmp_path, glue_data):
    repo = tmp_path / "repo"  # a fresh checkout's view: the sweep files, no results yet, ../shared beside it
    shutil.copytree(ROOT / "sweeps", repo / "sweeps")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "glue_data").symlink_to(glue_data)
    # The sweep files name no data: GLUE_BENCH_DATA points them at the local files (else they read the Hub).
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GLUE_BENCH_CACHE": str(tmp_path / "cache"),
        "GLUE_BENCH_DATA": "../shared/glue_data",
    }
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", quick_start_block()],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "20 of 20 trials complete, 0 failed" in out.stdout
    assert (
        "| random:L-2_H-128 | ours (dev, 500 train rows) |" in out.stdout
        and "| BERT-Tiny (L-2_H-128) | paper (test) |" in out.stdout
    )
    assert "## random:L-2_H-128 on rte: the grid" in out.stdout
    assert "wrote submission.zip: 11 files" in out.stdout
    assert "submission.zip: every file has the right rows, indices and labels for the GLUE server" in out.stdout
    with zipfile.ZipFile(repo / "submission.zip") as archive:
        assert len(archive.namelist()) == 11
        rte = archive.read("RTE.tsv").decode().splitlines()
    assert rte[0] == "index\tprediction" and len(rte) == 3001  # the model's own RTE predictions, every test row


@pytest.mark.slow
def test_the_cost_table_is_what_the_dry_run_prints():
    """The README's rows for the paper's grids, CPU and GPU columns, against `sweep --dry-run --device cpu|cuda`
    (benchmarks/cost_table.py makes them; a change to the cost model must update the README)."""
    out = subprocess.run(
        [sys.executable, "benchmarks/cost_table.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
