"""The distillation experiment of sweeps/distill-sst2.toml, summarised: per student, dev accuracy mean ± sd over
seeds and its agreement with the teacher on dev; and the teacher's own dev accuracy.

Agreement is computed here from the dev predictions every trial keeps (the same way for the student trained on
labels alone, which never saw the teacher): the share of SST-2 dev rows where the student's class is the
kept teacher trial's.

    python benchmarks/distill_sst2.py [--storage sqlite:///results/distill-sst2.db]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import optuna

from glue_bench.sweeping.artifacts import download_predictions
from glue_bench.sweeping.kept import kept
from glue_bench.sweeping.runs import latest, runs_table

SWEEPS = {
    "distill-sst2-plain": "labels alone, 8,000 rows",
    "distill-sst2": "distilled, the same 8,000 rows",
    "distill-sst2-transfer": "distilled, + 67,349 unlabelled rows",
}


def dev_classes(row, url: str) -> np.ndarray:
    values = download_predictions(json.loads(row["dev_predictions"])["sst2/validation"], url)
    return np.asarray(values["prediction"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="sqlite:///results/distill-sst2.db")
    url = parser.parse_args().storage
    table = latest(runs_table(url))
    table = table[table["state"] == "COMPLETE"]
    teachers = table[table["sweep"] == "distill-sst2-teacher"]
    study = optuna.load_study(study_name=teachers["study"].iloc[0], storage=url)
    chosen = teachers[teachers["trial"] == kept(study)["trial"]].iloc[0]
    teacher = dev_classes(chosen, url)
    print(
        f"teacher {chosen['model']} (kept trial {chosen['trial']}, bs {chosen['batch_size']:g}, lr {chosen['lr']:g}): "
        f"dev accuracy {100 * chosen['dev/validation/accuracy']:.2f}"
    )
    print(f"{'student':<45} {'seeds':>5} {'dev accuracy':>14} {'agreement':>14}")
    for sweep, what in SWEEPS.items():
        runs = table[table["sweep"] == sweep]
        if runs.empty:
            print(f"{what:<45} (not run)")
            continue
        accuracy = 100 * runs["dev/validation/accuracy"].to_numpy()
        agreement = np.array([100 * np.mean(dev_classes(r, url) == teacher) for _, r in runs.iterrows()])
        print(
            f"{what:<45} {len(runs):>5} {accuracy.mean():>7.2f} ± {accuracy.std(ddof=1):<4.2f} "
            f"{agreement.mean():>7.2f} ± {agreement.std(ddof=1):<4.2f}"
        )


if __name__ == "__main__":
    main()
