"""Open a folder written by `glue-bench export-model` with plain transformers (no glue-bench code in the forward
pass), predict the task's test split, and compare with the test predictions its trial recorded.

    glue-bench export-model --model M --task sst2 --storage URL --out DIR
    python benchmarks/exported_predictions.py --dir DIR --storage URL --data ../shared/glue_data
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from glue_bench.inputs import data
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping.artifacts import download_predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="a folder written by glue-bench export-model")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    card = Path(args.dir, "README.md").read_text(encoding="utf-8")
    study_name, number = re.search(r"from study `(.+)`: trial (\d+)", card).groups()
    trial = optuna.load_study(study_name=study_name, storage=args.storage).trials[int(number)]
    task, max_length = get_task(trial.user_attrs["task"]), trial.user_attrs["recipe"]["max_seq_length"]
    tokenizer = AutoTokenizer.from_pretrained(args.dir)
    model = AutoModelForSequenceClassification.from_pretrained(args.dir).eval()
    started = time.perf_counter()
    for split in task.splits_with_role("test"):
        rows = data.load_split(task, split, data.resolve_source(args.data))
        texts = [rows["text_a"]] + ([rows["text_b"]] if task.is_pair else [])
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(rows), 128):
                batch = tokenizer(
                    *[t[start : start + 128] for t in texts],
                    truncation=True,
                    max_length=max_length,
                    padding=True,
                    return_tensors="pt",
                )
                logits = model(**batch).logits
                outputs += (logits[:, 0] if task.regression else logits.argmax(-1)).tolist()
        key = f"{task.name}/{split.name}"
        recorded = download_predictions(trial.user_attrs["predictions"][key], args.storage)
        same_rows = recorded["idx"] == rows["idx"]
        if task.regression:
            gap = float(np.max(np.abs(np.subtract(outputs, recorded["prediction"]))))
            print(f"{key}: {len(outputs)} rows, same row order {same_rows}, largest difference {gap:.2e}")
        else:
            equal = int(np.sum(np.equal(outputs, recorded["prediction"])))
            print(f"{key}: {equal} of {len(outputs)} predictions equal the recorded ones (same row order {same_rows})")
    print(f"{time.perf_counter() - started:.1f}s with plain transformers ({model.config.model_type}, {args.dir})")


if __name__ == "__main__":
    main()
