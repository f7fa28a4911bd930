"""Where a training step's time goes, per op, in one commit's loop against another's: torch.profiler over the same
steps of the solo default (fine_tune, the default recipe) of random L-2_H-128 on the first rows of SST-2, 1 thread.

Each tree (a checkout of glue-bench: `git worktree add /tmp/wt-old 1ed5b7e`, or `git archive 1ed5b7e | tar -x -C
/tmp/wt-old`) runs in its own process with PYTHONPATH set to it: a warm-up run of 10 steps, then `--steps` steps
(one epoch, no dev or test splits) under the profiler. The table gives each op's self CPU milliseconds and calls per
step in every tree, ordered by the largest difference; "all ops" is the profiled call's self CPU time per step
(the optimizer's and the model's set-up are in it once: the same for every tree, and small against 50 steps).

    python benchmarks/profile_step.py --data ../shared/glue_data --tree 1ed5b7e=/tmp/wt-old --tree today=/tmp/wt-base \
        --tree fixed=.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def profile(args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    torch.set_num_threads(1)
    import glue_bench
    from glue_bench.sweeping import trial
    from glue_bench.training.loop import fine_tune
    from glue_bench.training.recipe import Recipe

    def run(steps: int):
        recipe = Recipe(
            batch_size=args.batch_size, lr=1e-4, epochs=1, seed=0, max_train_samples=steps * args.batch_size
        )
        prepared = trial.prepare(trial.TrialSpec(args.model, "sst2", args.data, recipe))
        return lambda: fine_tune(prepared.model, prepared.task, prepared.train, {}, {}, recipe, "cpu", False)

    run(10)()  # warm-up: the first steps allocate and initialise what later ones reuse
    train = run(args.steps)
    with profiler(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        train()
        wall = time.perf_counter() - started
    ops = {
        e.key: {"self_ms": e.self_cpu_time_total / 1000 / args.steps, "calls": e.count / args.steps}
        for e in prof.key_averages()
    }
    return {
        "tree": os.path.dirname(os.path.dirname(glue_bench.__file__)),
        "wall_ms": 1000 * wall / args.steps,
        "ops": ops,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="random:L-2_H-128")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--tree", action="append", default=[], help="LABEL=PATH of a glue-bench checkout (repeat)")
    parser.add_argument("--top", type=int, default=15, help="ops shown (largest differences)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(profile(args)))
        return 0
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": "."}
    results = {}
    for label, path in trees.items():
        env = {
            **os.environ,
            "PYTHONPATH": os.path.abspath(path),
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        passthrough = ["--data", args.data, "--model", args.model, "--batch-size", str(args.batch_size)]
        out = subprocess.run(
            [sys.executable, __file__, "--worker", *passthrough, "--steps", str(args.steps)],
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            sys.exit(f"{label} failed:\n{out.stderr[-3000:]}")
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    import torch
    import transformers

    labels = list(results)
    print(
        f"{args.model}, SST-2, batch {args.batch_size}, {args.steps} steps of fine_tune (default recipe), 1 thread; "
        f"torch {torch.__version__}, transformers {transformers.__version__}; per step"
    )
    names = set().union(*(r["ops"] for r in results.values()))

    def cell(label: str, name: str) -> tuple[float, float]:
        op = results[label]["ops"].get(name, {"self_ms": 0.0, "calls": 0.0})
        return op["self_ms"], op["calls"]

    spread = {n: max(cell(a, n)[0] for a in labels) - min(cell(a, n)[0] for a in labels) for n in names}
    header = " | ".join(f"{a} ms | {a} calls" for a in labels)
    print(f"| op | {header} |\n|---|" + "---:|" * (2 * len(labels)))
    for name in sorted(names, key=spread.get, reverse=True)[: args.top]:
        print(f"| `{name}` | " + " | ".join(f"{cell(a, name)[0]:.2f} | {cell(a, name)[1]:.0f}" for a in labels) + " |")
    totals = [sum(op["self_ms"] for op in results[a]["ops"].values()) for a in labels]
    calls = [sum(op["calls"] for op in results[a]["ops"].values()) for a in labels]
    print("| all ops | " + " | ".join(f"{t:.2f} | {c:.0f}" for t, c in zip(totals, calls)) + " |")
    print("| wall ms a step (profiled) | " + " | ".join(f"{results[a]['wall_ms']:.1f} | " for a in labels) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
