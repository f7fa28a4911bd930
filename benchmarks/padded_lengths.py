"""Tokens a training step processes per example, per task and batch size, for the sweep's cost model.

With dynamic padding a batch is as long as its longest row, so the tokens per example of a random batch of
B rows is the expected maximum of B row lengths. This computes it exactly from each task's length
distribution (tokenized with the miniatures' uncased vocabulary, max length 128): E[max of B] =
sum over l >= 1 of 1 - F(l - 1)^B, with F the fraction of rows of at most l tokens. The train split is
used where the data has it, else the dev splits (same distribution; QQP, MNLI, QNLI train are not in
../shared); mean_length is its tokens per row, the real tokens the unpadded encoder trains on, and
eval_mean_length that of the dev and test splits a trial evaluates. Writes results/padded-lengths.csv, which
ships with the package.

    python benchmarks/padded_lengths.py --data ../shared/glue_data --fallback ../shared/glue_hub
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent.parent / "results" / "padded-lengths.csv"
BATCH_SIZES = (8, 16, 32, 64, 128)


def split_lengths(task, split, source, tokenizer, max_length: int) -> np.ndarray:
    from glue_bench.inputs import data

    rows = data.load_split(task, split, source)
    encoded = tokenizer(
        list(rows["text_a"]), list(rows["text_b"]) if task.is_pair else None, truncation=True, max_length=max_length
    )
    return np.array([len(ids) for ids in encoded["input_ids"]])


def lengths(task, source, tokenizer, max_length: int) -> tuple[np.ndarray, str]:
    from glue_bench.inputs import data

    splits = [task.train_split] if task.train_split and data.available(task, task.train_split, source) else []
    splits = splits or [s for s in task.splits_with_role("dev") if data.available(task, s, source)]
    out = [split_lengths(task, split, source, tokenizer, max_length) for split in splits]
    return np.concatenate(out), "+".join(s.name for s in splits)


def eval_mean_length(task, sources, tokenizer, max_length: int) -> float:
    """Tokens per row of the splits a trial evaluates (dev every epoch, test once: in SST-2 whole sentences,
    twice the train split's phrases), from the first source that has each; the train mean if none has one."""
    from glue_bench.inputs import data

    out = []
    for split in task.splits.values():
        source = next((s for s in sources if data.available(task, split, s)), None)
        if split.role in ("dev", "test") and source is not None:
            out.append(split_lengths(task, split, source, tokenizer, max_length))
    return float(np.concatenate(out).mean())


def expected_max(values: np.ndarray, batch_size: int) -> float:
    """E[max of batch_size draws] from the empirical distribution of `values` (positive integers)."""
    counts = np.bincount(values)
    below = np.cumsum(counts) / len(values)  # below[l] = F(l) = P(length <= l)
    return float(np.sum(1 - below[:-1] ** batch_size))  # sum over l = 1 … max of P(max >= l)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a glue_data or Hub-parquet folder")
    parser.add_argument("--fallback", help="another folder for tasks the first lacks (glue_hub: MNLI, QQP)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    from glue_bench.inputs import data, models
    from glue_bench.inputs.tasks import registry

    tokenizer = models.bundled_tokenizer()
    sources = [data.resolve_source(args.data)] + ([data.resolve_source(args.fallback)] if args.fallback else [])
    rows = []
    for task in registry().values():
        if task.train_split is None:  # AX: predicted, never trained
            continue
        source = next(
            (
                s
                for s in sources
                if any(
                    data.available(task, split, s) for split in task.splits.values() if split.role in ("train", "dev")
                )
            ),
            None,
        )
        if source is None:
            print(f"{task.name}: no train or dev split in {args.data} or {args.fallback}; skipped")
            continue
        values, used = lengths(task, source, tokenizer, args.max_length)
        evaluated = eval_mean_length(task, sources, tokenizer, args.max_length)
        for batch_size in BATCH_SIZES:
            rows.append(
                {
                    "task": task.name,
                    "batch_size": batch_size,
                    "mean_length": round(values.mean(), 2),
                    "padded_length": round(expected_max(values, batch_size), 2),
                    "eval_mean_length": round(evaluated, 2),
                    "rows": len(values),
                    "split": used,
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    print(frame.pivot(index="task", columns="batch_size", values="padded_length").to_string())
    print(f"wrote {len(frame)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
