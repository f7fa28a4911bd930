"""How far run_classifier.py's batch order (repeat, then a 100-row shuffle buffer) is from a full shuffle, per task.

For each GLUE train file here (the file's own row order, which the Hub's parquet keeps), batches of 32 over 3
epochs, drawn three ways: the file order itself, training/tf_order.py's buffered order (TF's), and a full
reshuffle every epoch (the loop's). Per way: the spread across batches of the batch's mean label (sd; a fully
shuffled batch's is the binomial one), how often a batch holds a single STS-B genre or CoLA source, and for
the buffered order how much the epochs blend (rows seen twice or not at all in the first epoch's worth of
steps). Nothing trains.

    python benchmarks/tf_batch_order.py [--data ../shared/glue_data] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glue_bench.training.tf_order import buffered_order  # noqa: E402

BATCH, EPOCHS = 32, 3
# task: (label column, group column or None, header?)
TASKS = {
    "CoLA": (1, 0, False),
    "SST-2": ("label", None, True),
    "MRPC": ("Quality", None, True),
    "STS-B": ("score", "genre", True),
    "RTE": ("label", None, True),
    "WNLI": ("label", None, True),
}


def load(data: Path, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    label, group, header = TASKS[task]
    frame = pd.read_csv(
        data / task / "train.tsv", sep="\t", quoting=3, header=0 if header else None, encoding="utf-8-sig"
    )
    y = frame[label]
    y = y.astype(float) if pd.api.types.is_numeric_dtype(y) else (y == "entailment").astype(float)
    return y.to_numpy(), (frame[group].to_numpy() if group is not None else None)


def orders(rows: int, seed: int) -> dict[str, np.ndarray]:
    steps = int(rows / BATCH * EPOCHS)  # run_classifier.py's num_train_steps
    file = (np.arange(steps * BATCH) % rows).reshape(steps, BATCH)
    rng = np.random.default_rng(seed)
    per_epoch = rows // BATCH * BATCH  # drop_remainder, each epoch reshuffled
    full = np.concatenate([rng.permutation(rows)[:per_epoch] for _ in range(EPOCHS + 1)])[: steps * BATCH]
    return {
        "file order": file,
        "TF buffer 100": buffered_order(rows, BATCH, steps, seed),
        "full shuffle": full.reshape(steps, BATCH),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "glue_data")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"batches of {BATCH}, {EPOCHS} epochs; sd of the batch's mean label across batches; single-group batches")
    for task in TASKS:
        y, group = load(args.data, task)
        line = [f"{task:6s} {len(y):6d} rows"]
        for name, batches in orders(len(y), args.seed).items():
            sd = y[batches].mean(axis=1).std()
            part = f"{name}: sd {sd:.3f}"
            if group is not None:
                single = np.mean([len(set(group[b])) == 1 for b in batches])
                distinct = np.mean([len(set(group[b])) for b in batches])
                part += f", {single:.0%} single-{'genre' if task == 'STS-B' else 'source'} ({distinct:.1f} a batch)"
            if name == "TF buffer 100":
                first = batches.ravel()[: len(y) // BATCH * BATCH]
                counts = np.bincount(first, minlength=len(y))
                part += f", epoch 1: {np.mean(counts > 1):.1%} rows twice, {np.mean(counts == 0):.1%} unseen"
            line.append(part)
        print(" | ".join(line))


if __name__ == "__main__":
    main()
