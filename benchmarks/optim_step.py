"""Time one optimizer step (and the per-trial clipping) for a pack of 4 BERT-Tiny-shaped trials.

The parameter shapes are random L-2_H-128's (transformers' BertForSequenceClassification, 2 labels): 4.4 M
parameters a trial, 3.9 M of them the word embedding. Arms: training/optim.py's PackAdamW on one pack of 4
([4, ...] parameters; "adamw" fused and foreach, "bert") against 4 separate torch.optim.AdamW (fused, foreach),
each on its own copy; and the per-trial clipping against 4 x clip_grad_norm_. Gradients are random and fixed
(the step's cost does not depend on their values); the arms are interleaved and repeated, medians reported.

    OMP_NUM_THREADS=1 python benchmarks/optim_step.py [--steps 10] [--repeats 3] [--trials 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glue_bench.inputs.models import miniature_config  # noqa: E402
from glue_bench.training.optim import PackAdamW, clip_grad_norm_per_trial  # noqa: E402


def shapes() -> dict[str, torch.Size]:
    from transformers import BertForSequenceClassification

    config = miniature_config(2, 128)
    config.num_labels = 2
    return {name: p.shape for name, p in BertForSequenceClassification(config).named_parameters()}


def with_grads(tensors: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    for p in tensors.values():
        p.requires_grad_()
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return tensors


def timed(arms: dict, steps: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU milliseconds of each arm's call, the arms interleaved `repeats` times."""
    for call in arms.values():  # warm-up: the state is allocated on the first step
        call()
    wall, cpu = {name: [] for name in arms}, {name: [] for name in arms}
    for _ in range(repeats):
        for name, call in arms.items():
            for _ in range(steps):
                w, c = time.perf_counter(), time.process_time()
                call()
                wall[name].append(time.perf_counter() - w)
                cpu[name].append(time.process_time() - c)
    return {name: (statistics.median(wall[name]) * 1000, statistics.median(cpu[name]) * 1000) for name in arms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes, n = shapes(), args.trials
    lrs = [1e-4 * (k + 1) for k in range(n)]
    print(f"{sum(s.numel() for s in sizes.values()):,} parameters a trial, {n} trials, torch {torch.__version__}")

    def torch_arm(fused: bool):
        models = [with_grads({k: torch.randn(s) for k, s in sizes.items()}, k) for k in range(n)]
        optimizers = []
        for w, lr in zip(models, lrs):
            groups = [
                {"params": [p for p in w.values() if p.ndim >= 2], "weight_decay": 0.01},
                {"params": [p for p in w.values() if p.ndim < 2], "weight_decay": 0.0},
            ]
            optimizers.append(torch.optim.AdamW(groups, lr=lr, **({"fused": True} if fused else {"foreach": True})))
        return lambda: [o.step() for o in optimizers]

    def pack_arm(variant: str, fused: bool):
        w = with_grads({k: torch.randn(n, *s) for k, s in sizes.items()}, 0)
        no_decay = {name for name, p in w.items() if p.ndim == 2}  # [N, hidden]: the biases and LayerNorms
        optimizer = PackAdamW(w.items(), lrs, variant=variant, packed=True, fused=fused, no_decay=no_decay)
        return optimizer.step

    arms = {
        f"{n} x torch AdamW fused": torch_arm(fused=True),
        f"{n} x torch AdamW foreach": torch_arm(fused=False),
        f"PackAdamW adamw fused, pack of {n}": pack_arm("adamw", fused=True),
        f"PackAdamW adamw foreach, pack of {n}": pack_arm("adamw", fused=False),
        f"PackAdamW bert fused, pack of {n}": pack_arm("bert", fused=True),
        f"PackAdamW bert foreach, pack of {n}": pack_arm("bert", fused=False),
    }

    # Clipping: the per-trial norm and scale (max_norm below the norm: every trial multiplies).
    models = [with_grads({k: torch.randn(s) for k, s in sizes.items()}, k) for k in range(n)]
    packed = with_grads({k: torch.randn(n, *s) for k, s in sizes.items()}, 0)
    clips = {
        f"{n} x clip_grad_norm_": lambda: [torch.nn.utils.clip_grad_norm_(w.values(), 1e-3) for w in models],
        f"clip_grad_norm_per_trial, pack of {n}": lambda: clip_grad_norm_per_trial(packed.values(), 1e-3, packed=True),
    }
    print(f"{'arm':40s} {'wall ms':>8s} {'CPU ms':>8s}  (medians of {args.repeats} x {args.steps} calls, interleaved)")
    for name, (wall, cpu) in timed(arms | clips, args.steps, args.repeats).items():
        print(f"{name:40s} {wall:8.1f} {cpu:8.1f}")


if __name__ == "__main__":
    main()
