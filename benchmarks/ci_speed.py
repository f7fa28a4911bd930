"""How long `glue-bench report --ci` and `glue-bench compare` take on a paper-sized storage.

Writes 720 synthetic trials (the shape of sweeps/paper-headline.toml: 4 miniatures × 9 GLUE tasks × 5 batch
sizes × 4 learning rates, one seed) straight into a fresh SQLite storage, each with dev-prediction
artifacts of the real dev sizes (QQP's 40,430 rows, MNLI's two splits, …) and the metrics those predictions
score, then times the two commands, each in a fresh interpreter as a user runs them:

    python benchmarks/ci_speed.py [--out /tmp/ci-speed] [--seeds 1]

Synthetic: labels drawn once per task (shared by every model, as real dev rows are), predictions right with a
probability that grows with the model's size, STS-B as label plus noise. Nothing here trains.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glue_bench.inputs.tasks import get_task  # noqa: E402
from glue_bench.sweeping.schema import grid_distributions, study_name  # noqa: E402
from glue_bench.sweeping.storage import artifact_store, open_storage  # noqa: E402  # noqa: E402
from glue_bench.training import metrics  # noqa: E402
from glue_bench.training.recipe import Recipe  # noqa: E402

MODELS = ["L-2_H-128", "L-4_H-256", "L-4_H-512", "L-8_H-512"]
BATCH_SIZES = [8, 16, 32, 64, 128]
LRS = [3e-4, 1e-4, 5e-5, 3e-5]
SWEEP = "ci-speed"


def write_storage(url: str, seeds: int) -> int:
    storage = open_storage(url)
    store = artifact_store(url)
    rng = np.random.default_rng(1)
    count = 0
    for name in metrics.GLUE_TASKS:
        task = get_task(name)
        splits = task.splits_with_role("dev")
        labels = {
            s.name: (
                np.round(rng.uniform(0, 5, s.rows), 2) if task.regression else rng.integers(0, len(task.labels), s.rows)
            )
            for s in splits
        }
        for m, model in enumerate(MODELS):
            study = optuna.create_study(
                storage=storage, study_name=study_name(SWEEP, model, name), direction="maximize"
            )
            for key, value in {"sweep": SWEEP, "model": model, "task": name}.items():
                study.set_user_attr(key, value)
            trials = []
            for bs in BATCH_SIZES:
                for lr in LRS:
                    for seed in range(seeds):
                        quality = 0.55 + 0.08 * m + rng.normal(0, 0.02)
                        dev_metrics, ids, classes = {}, {}, {}
                        for s in splits:
                            y = labels[s.name]
                            if task.regression:
                                p = np.round(y + rng.normal(0, 2.5 * (1 - quality), len(y)), 3)
                            else:
                                right = rng.random(len(y)) < quality
                                p = np.where(right, y, rng.integers(0, len(task.labels), len(y)))
                                classes[s.name] = np.unique(p).astype(int).tolist()
                            dev_metrics[s.name] = metrics.compute(task, p, y)
                            artifact = str(uuid.uuid4())
                            body = {"idx": list(range(len(y))), "prediction": p.tolist(), "label": y.tolist()}
                            store.write(artifact, io.BytesIO(json.dumps(body).encode()))
                            ids[f"{name}/{s.name}"] = artifact
                        recipe = Recipe(batch_size=bs, lr=lr, seed=seed)
                        attrs = {
                            "model": model,
                            "task": name,
                            "data": "synthetic",
                            "recipe": recipe.to_dict(),
                            "metrics": dev_metrics,
                            "extra_metrics": {},
                            "predicted_classes": classes,
                            "predictions": {},
                            "dev_predictions": ids,
                        }
                        trials.append(
                            optuna.trial.create_trial(
                                params={"batch_size": bs, "lr": lr, "seed": seed},
                                distributions=grid_distributions(BATCH_SIZES, LRS, list(range(seeds))),
                                value=metrics.task_score(task, dev_metrics),
                                user_attrs=attrs,
                            )
                        )
            study.add_trials(trials)
            count += len(trials)
    return count


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "glue_bench.cli", *argv], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/glue-bench-ci-speed", help="a folder for the storage (emptied)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per grid point (720 × seeds trials)")
    args = parser.parse_args()
    folder = Path(args.out)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'runs.db'}"
    started = time.perf_counter()
    count = write_storage(url, args.seeds)
    print(f"wrote {count} synthetic trials with dev-prediction artifacts in {time.perf_counter() - started:.1f}s")
    seconds, text = timed(["report", "--ci", "--storage", url])
    print(text.splitlines()[4] if len(text.splitlines()) > 4 else text)
    print(f"glue-bench report --ci: {seconds:.2f}s")
    seconds, text = timed(["compare", MODELS[0], MODELS[1], "--storage", url])
    print("\n".join(text.splitlines()[4:16]))
    print(f"glue-bench compare {MODELS[0]} {MODELS[1]}: {seconds:.2f}s")


if __name__ == "__main__":
    main()
