"""The baseline: the Hugging Face `Trainer` set up as `run_glue.py` sets it up, with glue-bench's recipe.

As `run_glue.py` does by default, rows are padded to `max_length` (128) when they are tokenized
(`pad_to_max_length=True`); with `dynamic=True` they are not, and `DataCollatorWithPadding` pads each batch
to its longest row (run_glue.py's `--pad_to_max_length False`). The recipe is glue-bench's (AdamW, weight
decay 0.01 except biases and LayerNorm, warmup over 10% of the steps, linear decay, clipping at 1.0); the
optimizer is the Trainer's default (`adamw_torch_fused`). Logging, saving and evaluation during training
are off and there is no progress bar, so the timing is the training itself.

Run alone it is one run_glue.py-style fine-tune (train, then evaluate on the dev splits), which is how the
grid benchmark runs the Trainer once per configuration:

    python benchmarks/run_glue_style.py --task wnli --data ../shared/glue_data --batch-size 32 --lr 1e-4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator

from glue_bench.inputs import data, models
from glue_bench.inputs.tasks import Task, get_task
from glue_bench.training import metrics


def tokenized(task: Task, split, tokenizer, max_length: int, dynamic: bool):
    """One split tokenized as run_glue.py does: padded to `max_length` unless `dynamic`."""
    pair = task.is_pair

    def encode(batch):
        out = tokenizer(
            batch["text_a"],
            batch["text_b"] if pair else None,
            truncation=True,
            max_length=max_length,
            padding=False if dynamic else "max_length",
        )
        return {**out, "labels": batch["label"]}

    return split.map(encode, batched=True, remove_columns=split.column_names)


def trainer(model, tokenizer, train, recipe_args: dict, dynamic: bool, output_dir: str, max_steps: int = -1) -> Trainer:
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=recipe_args["batch_size"],
        learning_rate=recipe_args["lr"],
        num_train_epochs=recipe_args["epochs"],
        max_steps=max_steps,
        weight_decay=0.01,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        seed=recipe_args["seed"],
        use_cpu=not torch.cuda.is_available(),
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        bf16=recipe_args.get("bf16", False),
        tf32=recipe_args.get("tf32") or None,
    )
    collator = DataCollatorWithPadding(tokenizer) if dynamic else default_data_collator
    return Trainer(model=model, args=args, train_dataset=train, data_collator=collator)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:L-2_H-128")
    parser.add_argument("--task", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dynamic", action="store_true", help="DataCollatorWithPadding instead of padding to 128")
    parser.add_argument("--max-train-samples", type=int, default=0, help="train on the first N rows (0: all)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (TrainingArguments(bf16=True)): a GPU")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    task, source = get_task(args.task), data.resolve_source(args.data)
    model, tokenizer = models.load(models.resolve(args.model), task, args.seed)
    train = data.load_split(task, task.train_split, source)
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    train = tokenized(task, train, tokenizer, 128, args.dynamic)
    recipe = {"batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs, "seed": args.seed, "bf16": args.bf16}
    with tempfile.TemporaryDirectory() as out:
        hf = trainer(model, tokenizer, train, recipe, args.dynamic, out)
        hf.args.per_device_eval_batch_size = 8  # run_glue.py's default
        result = hf.train()
        dev = {}
        for split in task.splits_with_role("dev"):
            rows = tokenized(task, data.load_split(task, split, source), tokenizer, 128, args.dynamic)
            logits = hf.predict(rows).predictions
            preds = logits.squeeze(-1) if task.regression else np.argmax(logits, -1)
            dev[split.name] = metrics.compute(task, preds, np.asarray(rows["labels"]))
    print(
        json.dumps(
            {
                "score": metrics.task_score(task, dev),
                "dev": dev,
                "train_seconds": result.metrics["train_runtime"],
                "wall_seconds": time.perf_counter() - started,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
