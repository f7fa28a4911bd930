"""Train speed, side by side: glue-bench's loop against the Hugging Face Trainer set up as run_glue.py.

Every arm trains the same model (same initial weights) on the same rows (the first steps × batch-size rows
of the task's train split) for the same number of steps, one epoch, with the same recipe and the same
number of threads. Each arm runs in its own process (clean peak memory, no warm caches shared); the arms
are interleaved and repeated (the order rotates every round) and the table shows the median, because the
machine may be shared.

    python benchmarks/speed.py --data ../shared/glue_data --task sst2 --batch-size 32 --steps 150 \
        --threads 1 --repeats 3

Arms: glue-bench (the default recipe: unpadded encoder, fused AdamW), glue-bench+<options> (recorded Recipe
options: +hf the Hugging Face model, +foreach the foreach AdamW, +grouped length-grouped batches), glue-bench-pack4
(4 learning rates trained at once as one pack: its examples/s counts every trial's examples, so it compares per
trial with a solo arm),
trainer-128 (run_glue.py's default: rows padded to 128 at tokenization), trainer-dynamic
(DataCollatorWithPadding). examples/s is train examples over the wall time of the whole training call
(optimizer set-up included, tokenization and model loading excluded); cpu ms/step is the process's CPU
time per step, which other processes' load disturbs much less than the wall time. After training, each arm
evaluates the task's first dev split once with its own evaluation path, batches of 256 (glue-bench sorts rows
by length, the Trainer pads them in order): eval examples/s (untimed in the train columns). matmul GFLOP/s is the useful work of training (the matrix
products over the real tokens, forward and backward, the same count for every arm) over each arm's train time,
and "of peak" divides it by this machine's measured float32 matrix-multiply rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ARMS = {  # name → (loop, Recipe options)
    "glue-bench": ("glue-bench", {}),  # the default recipe: the unpadded encoder, fused AdamW
    "glue-bench+hf": ("glue-bench", {"encoder": "hf"}),  # the Hugging Face model in our loop
    "glue-bench+foreach": ("glue-bench", {"fused_adamw": False}),
    "glue-bench+hf+foreach": ("glue-bench", {"encoder": "hf", "fused_adamw": False}),  # the default until now
    "glue-bench+grouped": ("glue-bench", {"group_by_length": True}),
    # a pack (training/loop.fine_tune_pack): 4 learning rates trained at once; its examples/s counts every trial's
    "glue-bench-pack4": ("glue-bench", {"pack": 4}),
    "glue-bench+bf16": ("glue-bench", {"bf16": True}),  # GPU only (on a CPU the option does nothing)
    "glue-bench+bf16+tf32": ("glue-bench", {"bf16": True, "tf32": True}),  # GPU only
    "trainer-128": ("trainer", {"dynamic": False}),
    "trainer-dynamic": ("trainer", {"dynamic": True}),
    "trainer-dynamic+bf16": ("trainer", {"dynamic": True, "bf16": True}),  # GPU only
}
DEFAULT_ARMS = ("glue-bench", "glue-bench+hf", "glue-bench+hf+foreach", "trainer-128", "trainer-dynamic")
BASELINE = "trainer-128"


def _reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):  # Linux: "5" resets the process's peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_mib() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(train) -> dict:
    import torch

    _reset_peak_memory()
    cpu, wall = _cpu_seconds(), time.perf_counter()
    train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - wall, "cpu_seconds": _cpu_seconds() - cpu, "peak_mib": _peak_memory_mib()}


def matmul_flops(lengths, config) -> float:
    """FLOPs of one forward pass's matrix products over the real tokens of rows of these lengths (no padding):
    Q, K, V and output projections, the feed-forward block, and attention's two products per row."""
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    tokens, squares = sum(lengths), sum(n * n for n in lengths)
    per_layer = tokens * (4 * 2 * hidden * hidden + 2 * 2 * hidden * inner) + 2 * 2 * squares * hidden
    return layers * per_layer


def matmul_peak(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """This machine's float32 matrix-multiply FLOP/s with `threads` threads: the best of `repeats` n×n products."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def run_arm(arm: str, args) -> dict:
    """One arm in this process: load and tokenize (untimed), then train (timed)."""
    import torch

    torch.set_num_threads(args.threads)
    from glue_bench.inputs import data, models
    from glue_bench.inputs.tasks import get_task
    from glue_bench.sweeping import trial
    from glue_bench.training import families
    from glue_bench.training.batches import Packed
    from glue_bench.training.encoder import UnpaddedEncoder
    from glue_bench.training.inference import predict
    from glue_bench.training.loop import fine_tune_pack
    from glue_bench.training.recipe import Recipe

    loop, options = ARMS[arm]
    rows = args.steps * args.batch_size
    if loop == "glue-bench":
        options = dict(options)
        trials = options.pop("pack", 1)
        recipe = Recipe(
            batch_size=args.batch_size, lr=args.lr, epochs=1, seed=args.seed, max_train_samples=rows, **options
        )
        prepared = trial.prepare(trial.TrialSpec(args.model, args.task, args.data, recipe))
        lrs = [args.lr * 0.5**n for n in range(trials)]  # a pack: learning rates a factor 2 apart
        measured = _timed(
            lambda: fine_tune_pack(prepared.model, prepared.task, prepared.train, {}, {}, recipe, lrs, progress=False)
        )
        # Evaluation as the loop runs it (its encoder, batches sorted by length) on the first dev split.
        dev = Packed(prepared.dev[prepared.task.splits_with_role("dev")[0].name])
        model = prepared.model
        fast = recipe.encoder == "fast" and families.supports(model.config)
        net = UnpaddedEncoder.from_hf(model, trials) if fast else model
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        timed = _timed(lambda: predict(net, dev, recipe.eval_batch_size, device, prepared.task.regression))
        measured["eval_seconds"], measured["eval_examples"] = timed["seconds"], trials * len(dev)
        lengths = [len(ids) for ids in prepared.train.select(range(rows))["input_ids"]]
        # forward + backward (2x), for every trial of a pack
        measured["train_flops"] = trials * 3 * matmul_flops(lengths, prepared.model.config)
        rows *= trials  # every trial's examples: examples/s per trial-equivalent, against a solo run's
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        import run_glue_style

        task = get_task(args.task)
        model, tokenizer = models.load(models.resolve(args.model), task, args.seed)
        split = data.load_split(task, task.train_split, data.resolve_source(args.data))
        train = run_glue_style.tokenized(
            task, split.select(range(min(rows, len(split)))), tokenizer, 128, options["dynamic"]
        )
        recipe = {
            "batch_size": args.batch_size,
            "lr": args.lr,
            "epochs": 1,
            "seed": args.seed,
            "bf16": options.get("bf16", False),
        }
        dev_split = task.splits_with_role("dev")[0]
        dev = run_glue_style.tokenized(
            task, data.load_split(task, dev_split, data.resolve_source(args.data)), tokenizer, 128, options["dynamic"]
        )
        with tempfile.TemporaryDirectory() as out:
            hf = run_glue_style.trainer(model, tokenizer, train, recipe, options["dynamic"], out)
            hf.args.per_device_eval_batch_size = 256  # glue-bench's eval batch size (run_glue.py's default is 8)
            measured = _timed(hf.train)
            assert hf.state.global_step == args.steps, hf.state.global_step
            measured["eval_seconds"], measured["eval_examples"] = _timed(lambda: hf.predict(dev))["seconds"], len(dev)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"arm": arm, "examples": rows, "steps": args.steps, "threads": args.threads, "device": device, **measured}


def summarize(results: list[dict], peak_flops: float) -> pd.DataFrame:
    frame = pd.DataFrame(results)
    frame["examples_per_second"] = frame["examples"] / frame["seconds"]
    frame["cpu_ms_per_step"] = 1000 * frame["cpu_seconds"] / frame["steps"]
    frame["eval_examples_per_second"] = frame["eval_examples"] / frame["eval_seconds"]
    # The useful work: the matrix products of the rows' real tokens, the same for every solo arm (the same rows),
    # N times that for a pack of N; the Trainer's arms did a solo arm's.
    solo = frame["train_flops"].min() if "train_flops" in frame else float("nan")
    useful = frame["train_flops"].fillna(solo) if "train_flops" in frame else solo
    frame["matmul_gflops"] = useful / frame["seconds"] / 1e9
    table = frame.groupby("arm", sort=False).agg(
        examples_per_second=("examples_per_second", "median"),
        slowest=("examples_per_second", "min"),
        fastest=("examples_per_second", "max"),
        cpu_ms_per_step=("cpu_ms_per_step", "median"),
        eval_examples_per_second=("eval_examples_per_second", "median"),
        peak_mib=("peak_mib", "median"),
        matmul_gflops=("matmul_gflops", "median"),
        runs=("seconds", "size"),
    )
    table["of peak"] = table["matmul_gflops"] * 1e9 / peak_flops
    for base in (BASELINE, "trainer-dynamic"):
        if base in table.index:
            table[f"× {base}"] = table["examples_per_second"] / table.loc[base, "examples_per_second"]
            table[f"eval × {base}"] = table["eval_examples_per_second"] / table.loc[base, "eval_examples_per_second"]
    return table.round(2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:L-2_H-128")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--raw", help="also write every single run to this CSV file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # run one arm in this process, print JSON
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_arm(args.worker, args)))
        return 0

    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    passthrough = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k in ("model", "task", "data", "batch_size", "lr", "seed", "steps", "threads")
    ]
    results = []
    for round_ in range(args.repeats):
        order = arms[round_ % len(arms) :] + arms[: round_ % len(arms)]  # rotate: no arm always runs first
        for arm in order:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", arm, *passthrough], env=env, capture_output=True, text=True
            )
            if out.returncode:
                sys.exit(f"{arm} failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"round {round_ + 1} {arm}: {r['examples'] / r['seconds']:.0f} examples/s, "
                f"{r['peak_mib']:.0f} MiB peak",
                file=sys.stderr,
                flush=True,
            )
    if args.raw:
        pd.DataFrame(results).to_csv(args.raw, index=False)
    first = results[0]
    peak = matmul_peak(args.threads) if first["device"] == "cpu" else float("nan")
    print(
        f"{args.model} on {args.task}, batch size {args.batch_size}, {args.steps} steps, "
        f"{first['threads']} thread(s), {first['device']}; median of {args.repeats} interleaved runs; "
        f"matmul peak {peak / 1e9:.1f} GFLOP/s (1024x1024 float32 products, {args.threads} thread(s))"
    )
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(summarize(results, peak).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
