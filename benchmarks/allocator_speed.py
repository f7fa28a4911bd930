"""Training speed under glibc's malloc and under jemalloc (the allocator a sweep's workers use where it is installed):
`glue-bench run` of random L-2_H-128 on SST-2's first 4,800 rows (batch 32, 1 epoch, 1 thread, no test split),
the two allocators interleaved, 3 rounds; prints each run's training examples per second and the medians.

    python benchmarks/allocator_speed.py --data ../shared/glue_data
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
# jemalloc as PyTorch's CPU tuning guide sets it: freed pages kept for reuse, not returned and taken again each step
TUNED = "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"
ARMS = {
    "glibc": {},
    "jemalloc": {"LD_PRELOAD": JEMALLOC},
    "jemalloc-tuned": {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": TUNED},
    "tcmalloc": {"LD_PRELOAD": TCMALLOC},
    # glibc with a fixed mmap threshold: blocks of 4 MB and more are mapped and given back when freed (the default
    # threshold rises to 32 MB as big blocks are freed, and they then fragment the heap)
    "glibc-mmap-4mb": {"MALLOC_MMAP_THRESHOLD_": "4194304"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arms", default="glibc,jemalloc", help=f"comma-separated, of {', '.join(ARMS)}")
    args = parser.parse_args()
    if not Path(JEMALLOC).is_file():
        print(f"{JEMALLOC} not found: apt-get install libjemalloc2", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="glue-bench-allocator-"))
    (tmp / "data" / "SST-2").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (tmp / "data" / "SST-2" / name).symlink_to(Path(args.data).resolve() / "SST-2" / name)
    speeds = {arm: [] for arm in args.arms.split(",")}
    for n in range(args.rounds):
        for arm in speeds:
            url = f"sqlite:///{tmp}/{arm}-{n}.db"
            env = {**os.environ, "OMP_NUM_THREADS": "1", "GLUE_BENCH_ARTIFACTS": str(tmp / "artifacts")}
            env.pop("LD_PRELOAD", None)
            env.update(ARMS[arm])
            command = [sys.executable, "-m", "glue_bench.cli", "run", "--model", "random:L-2_H-128", "--task", "sst2"]
            command += ["--batch-size", "32", "--lr", "1e-3", "--epochs", "1", "--max-train-samples", "4800"]
            command += ["--data", str(tmp / "data"), "--storage", url, "--no-progress", "--checkpoint-minutes", "0"]
            subprocess.run(command, env=env, check=True, capture_output=True)
            (trial,) = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url).trials
            speeds[arm].append(trial.user_attrs["examples_per_second"])
            print(f"round {n + 1} {arm}: {speeds[arm][-1]:.0f} examples/s", flush=True)
    medians = {arm: statistics.median(values) for arm, values in speeds.items()}
    base = medians.get("glibc") or next(iter(medians.values()))
    print("median examples/s: " + ", ".join(f"{arm} {m:.0f} ({m / base:.2f}x glibc)" for arm, m in medians.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
