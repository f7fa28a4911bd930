"""Measured training speed of glue-bench's loop per architecture, for the sweep's cost model.

Each architecture (random weights: speed does not depend on them) trains on synthetic rows of a fixed
length at two batch sizes; the seconds per step at the two sizes give the cost model's two numbers per
architecture and device: a fixed cost per step (optimizer, clipping, launches) and a cost per token
(glue_bench/sweeping/cost.py fits them). Rows are written to results/throughput.csv, replacing earlier rows of the
same device, model, batch size, length and threads; the file ships with the package.

    python benchmarks/throughput.py --threads 1                       # all 24 miniatures on this device
    python benchmarks/throughput.py --threads 1 --models L-6_H-384    # any shape: the packaged MiniLM's
    python benchmarks/throughput.py --models L-2_H-128,L-4_H-256 --batch-sizes 8,32 --length 64
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent.parent / "results" / "throughput.csv"
KEY = ["device", "model", "batch_size", "length", "threads"]


def synthetic_split(rows: int, length: int):
    """`rows` tokenized rows of exactly `length` tokens, labels 0/1."""
    import datasets
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(rows, length)).tolist()
    return datasets.Dataset.from_dict(
        {
            "input_ids": ids,
            "token_type_ids": [[0] * length] * rows,
            "label": (np.arange(rows) % 2).tolist(),
            "idx": list(range(rows)),
        }
    )


def seconds_per_step(model_name: str, batch_size: int, length: int, steps: int) -> float:
    """Wall seconds per training step on a GPU; on a CPU the process's CPU seconds, which stand for the
    wall time of an idle machine (one thread) and are much less disturbed by other processes' load."""
    import time

    import torch
    from transformers import AutoModelForSequenceClassification

    from glue_bench.inputs import models
    from glue_bench.inputs.tasks import get_task
    from glue_bench.training.loop import fine_tune
    from glue_bench.training.recipe import Recipe

    task = get_task("sst2")
    # Any L-<layers>_H-<hidden> shape (L-6_H-384: the packaged MiniLM's), random weights, 64-dim heads.
    layers, hidden = (int(v) for v in models.SHAPE.match(model_name).groups())
    config = models.miniature_config(layers, hidden)
    config.update({"num_labels": task.num_labels})
    model = AutoModelForSequenceClassification.from_config(config)
    recipe = Recipe(batch_size=batch_size, lr=1e-4, epochs=1)
    warm = fine_tune(model, task, synthetic_split(batch_size, length), {}, {}, recipe, progress=False)  # one step
    split = synthetic_split(steps * batch_size, length)
    cpu = time.process_time()
    result = fine_tune(model, task, split, {}, {}, recipe, progress=False)
    cpu = time.process_time() - cpu
    assert warm.steps == 1 and result.steps == steps
    return (result.train_seconds if torch.cuda.is_available() else cpu / torch.get_num_threads()) / steps


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated L-x_H-y names (default: all 24 miniatures)")
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--length", type=int, default=64, help="tokens per row")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0, help="aim for about this long per measurement")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import torch

    from glue_bench.inputs import models

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    names = args.models.split(",") if args.models else [models.miniature_name(*s) for s in models.all_miniatures()]
    rows = []
    for name in names:
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            probe = seconds_per_step(name, batch_size, args.length, 2)
            steps = max(3, min(50, math.ceil(args.seconds / probe)))
            seconds = seconds_per_step(name, batch_size, args.length, steps)
            rows.append(
                {
                    "device": device,
                    "gpu": torch.cuda.get_device_name() if device == "cuda" else "",
                    "cpu": cpu_name(),
                    "model": name,
                    "batch_size": batch_size,
                    "length": args.length,
                    "threads": args.threads,
                    "steps": steps,
                    "seconds_per_step": round(seconds, 5),
                    "tokens_per_second": round(batch_size * args.length / seconds, 1),
                    "torch": torch.__version__,
                }
            )
            print(
                f"{name} batch {batch_size}: {seconds * 1000:.1f} ms/step, "
                f"{batch_size * args.length / seconds:.0f} tokens/s",
                file=sys.stderr,
                flush=True,
            )
    new = pd.DataFrame(rows)
    out = Path(args.out)
    if out.is_file():
        old = pd.read_csv(out, keep_default_na=False)
        keep = ~old.set_index(KEY).index.isin(new.set_index(KEY).index)
        new = pd.concat([old[keep], new], ignore_index=True)
    new.sort_values(KEY).to_csv(out, index=False)
    print(f"wrote {len(rows)} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
