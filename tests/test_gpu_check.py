"""benchmarks/gpu_check.sh works end to end: the same steps as on a GPU, small, on this CPU (slow stage)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def test_a_bad_option_is_one_line_and_exit_2():
    out = subprocess.run(["bash", str(SCRIPT), "--device", "tpu"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "gpu_check.sh: --device must be cuda or cpu, not 'tpu'"


@pytest.mark.slow
def test_the_gpu_check_runs_on_a_cpu(glue_data, tmp_path):
    out = subprocess.run(
        ["bash", str(SCRIPT), "--device", "cpu", "--small", "--data", str(glue_data), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # --small: the encoder's eval and training checks of one random BERT (the host-sync check needs CUDA: skipped
    # on a CPU); the packs' checks on SST-2. The fast suite runs every model's in float32.
    expected = {"encoder": "4 passed, 1 skipped", "packs": "2 passed"}
    for precision in ("fp32", "bf16"):  # the exactness tests ran, and all passed
        for check, count in expected.items():
            summary = (tmp_path / f"exactness-{check}-{precision}.log").read_text().strip().splitlines()[-1]
            assert summary.startswith(count) and "failed" not in summary, summary
    throughput = pd.read_csv(tmp_path / "throughput.csv")
    assert sorted(zip(throughput["model"], throughput["batch_size"])) == [
        ("L-2_H-128", 8),
        ("L-2_H-128", 32),
        ("L-4_H-256", 8),
        ("L-4_H-256", 32),
    ]
    assert (throughput["device"] == "cpu").all() and (throughput["seconds_per_step"] > 0).all()
    per_step = throughput.set_index(["model", "batch_size"])["seconds_per_step"]
    for model in ("L-2_H-128", "L-4_H-256"):  # 4x the rows per step cost more per step
        assert per_step[(model, 32)] > per_step[(model, 8)]
    grid = pd.read_csv(tmp_path / "grid.csv", index_col="arm")
    assert list(grid.index) == ["glue-bench", "glue-bench:2", "glue-bench+pack2", "trainer-dynamic"]
    assert (grid["trials"] == 4).all() and (grid["wall_seconds"] > 0).all()
