"""The effect of each recorded speed option on dev scores: the same trials with and without it.

Every arm trains the same model from the same initial weights on the same rows with the same seeds; only
the recipe options differ. The table shows each arm's dev score per seed, its mean, how many dev
predictions differ from the default recipe's, and the training time.

    python benchmarks/effect.py --data ../shared/glue_data --task sst2 --max-train-samples 16000 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from speed import ARMS  # noqa: E402

DEFAULT_ARMS = ("glue-bench", "glue-bench+fused", "glue-bench+grouped", "glue-bench+fused+grouped")


def run_arm(arm: str, seed: int, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from glue_bench.sweeping import trial
    from glue_bench.training import metrics
    from glue_bench.training.batches import Packed
    from glue_bench.training.inference import predict
    from glue_bench.training.loop import fine_tune
    from glue_bench.training.recipe import Recipe

    recipe = Recipe(
        batch_size=args.batch_size,
        lr=args.lr,
        epochs=args.epochs,
        seed=seed,
        max_train_samples=args.max_train_samples,
        **ARMS[arm][1],
    )
    prepared = trial.prepare(trial.TrialSpec(args.model, args.task, args.data, recipe))
    cpu = time.process_time()
    result = fine_tune(prepared.model, prepared.task, prepared.train, prepared.dev, {}, recipe, progress=False)
    cpu = time.process_time() - cpu
    predictions = {
        name: predict(prepared.model, Packed(split), 256, torch.device("cpu"), prepared.task.regression)[0].tolist()
        for name, split in prepared.dev.items()
    }
    return {
        "arm": arm,
        "seed": seed,
        "score": metrics.task_score(prepared.task, result.dev),
        "train_loss": result.curve[-1]["train_loss"],
        "train_seconds": result.train_seconds,
        "cpu_seconds": cpu,
        "predictions": predictions,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:L-2_H-128")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-train-samples", type=int, default=0)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        arm, seed = args.worker.rsplit(":", 1)
        print(json.dumps(run_arm(arm, int(seed), args)))
        return 0

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    passthrough = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k in ("model", "task", "data", "batch_size", "lr", "epochs", "max_train_samples", "threads")
    ]
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in args.arms.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", f"{arm}:{seed}", *passthrough],
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode:
                sys.exit(f"{arm} seed {seed} failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{arm} seed {seed}: score {100 * results[-1]['score']:.2f}", file=sys.stderr, flush=True)
    frame = pd.DataFrame(results)
    default = frame[frame["arm"] == args.arms.split(",")[0]].set_index("seed")["predictions"]

    def changed(row) -> int:  # dev predictions that differ from the first arm's, same seed
        return sum(
            a != b for name in row["predictions"] for a, b in zip(row["predictions"][name], default[row["seed"]][name])
        )

    frame["changed"] = frame.apply(changed, axis=1)
    frame["score"] = 100 * frame["score"]
    table = frame.pivot(index="arm", columns="seed", values="score").add_prefix("score seed ")
    by_arm = frame.groupby("arm")
    table["mean score"] = by_arm["score"].mean()
    table["changed predictions"] = by_arm["changed"].apply(lambda c: "/".join(str(v) for v in c))
    table["train loss"] = by_arm["train_loss"].mean()
    table["cpu s"] = by_arm["cpu_seconds"].mean()
    table = table.reindex(args.arms.split(","))
    dev_rows = sum(len(p) for p in results[0]["predictions"].values())
    print(
        f"{args.model} on {args.task} ({args.max_train_samples or 'all'} train rows, {args.epochs} epoch(s), batch "
        f"size {args.batch_size}, lr {args.lr:g}, {args.threads} thread(s)); changed predictions out of {dev_rows}, "
        "per seed, against the first arm"
    )
    print(table.round(4).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
