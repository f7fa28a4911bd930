"""A stopped sweep resumes exactly: one grid point (random L-2_H-128, SST-2's first 20,000 rows, batch 32, 2 epochs)
run uninterrupted, then the same sweep on a new storage with checkpoint_minutes = 0.25, SIGTERMed in its second epoch
(as SLURM's time limit sends it) and run again by the same command. Prints each part's wall time, the resumed trial's
resumed_from_step, and whether the two runs' scores, curves and dev predictions are identical.

    python benchmarks/resume_check.py --data ../shared/glue_data
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from glue_bench.sweeping.artifacts import download_predictions

SWEEP = """name = "resume-check"
models = ["random:L-2_H-128"]
tasks = ["sst2"]
epochs = 2
data = "{data}"
checkpoint_minutes = {minutes}

[grid]
batch_size = [32]
lr = [1e-3]

[recipe]
max_train_samples = {rows}
"""
STUDY = "resume-check/random:L-2_H-128/sst2"


def trials(url: str) -> list:
    try:
        return optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
    except KeyError:
        return []


def result(url: str) -> tuple:
    (t,) = [t for t in trials(url) if t.state == TrialState.COMPLETE]
    curve = [{k: v for k, v in e.items() if k != "train_seconds"} for e in t.user_attrs["curve"]]
    dev = {k: download_predictions(v, url) for k, v in t.user_attrs["dev_predictions"].items()}
    return t.value, curve, dev, t.user_attrs.get("resumed_from_step"), t.user_attrs.get("resume_lost_seconds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a glue_data folder with SST-2")
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="glue-bench-resume-"))
    (tmp / "data" / "SST-2").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):  # no test file: its predictions are not what this checks
        (tmp / "data" / "SST-2" / name).symlink_to(Path(args.data).resolve() / "SST-2" / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLUE_BENCH_ARTIFACTS": str(tmp / "artifacts")}
    steps_per_epoch = -(-args.rows // 32)

    def sweep(name: str, minutes: float, stop_after_step: int | None = None) -> tuple[int, float]:
        path, url = tmp / f"{name}.toml", f"sqlite:///{tmp / name}.db"
        if not path.exists():
            path.write_text(SWEEP.format(data=tmp / "data", minutes=minutes, rows=args.rows))
        command = [sys.executable, "-m", "glue_bench.cli", "sweep", str(path), "--storage", url, "--no-progress"]
        started = time.monotonic()
        with (tmp / f"{name}.log").open("a") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            while stop_after_step is not None and process.poll() is None:
                link = max((t.user_attrs.get("checkpoint", {}) for t in trials(url)), key=len, default={})
                if link.get("step", 0) > stop_after_step:
                    process.send_signal(signal.SIGTERM)
                    break
                time.sleep(1)
            code = process.wait()
        return code, time.monotonic() - started

    print(f"SST-2, {args.rows:,} rows, batch 32, 2 epochs: {steps_per_epoch} steps an epoch; storages in {tmp}")
    code, whole = sweep("whole", 0)
    print(f"uninterrupted (checkpoint_minutes = 0): exit {code}, {whole:.0f} s")
    code, first = sweep("stopped", 0.25, stop_after_step=steps_per_epoch)
    print(f"checkpoint_minutes = 0.25, SIGTERM after a checkpoint in epoch 2: exit {code}, {first:.0f} s")
    code, again = sweep("stopped", 0.25)
    print(f"the same command again: exit {code}, {again:.0f} s")
    a, b = result(f"sqlite:///{tmp / 'whole.db'}"), result(f"sqlite:///{tmp / 'stopped.db'}")
    print(f"resumed_from_step {b[3]} (uninterrupted: {a[3]}); the stop cost {b[4]} s of training")
    print(f"score {a[0]:.6f} vs {b[0]:.6f}; scores identical {a[0] == b[0]}, curves identical {a[1] == b[1]}, "
          f"dev predictions identical {a[2] == b[2]}")  # fmt: skip
    print(f"curve: {[(e['epoch'], e['train_loss'], e['dev']['validation']['accuracy']) for e in a[1]]}")
    return 0 if a[:3] == b[:3] and b[3] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
