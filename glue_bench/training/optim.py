"""The optimizer of a fine-tune, for one trial or for a pack of trials that differ only in the learning rate.

A pack stacks its N trials' parameters with a leading trial dimension [N, ...]; a solo run is N = 1 with the
plain parameters. Each trial keeps its own arithmetic, in two variants:

- "adamw": torch.optim.AdamW (the Hugging Face Trainer's optimizer).
- "bert": google-research/bert's AdamWeightDecayOptimizer (optimization.py), the optimizer behind the
  paper's scores: no bias correction, epsilon 1e-6, the weight decay added to the update
  (`update += wd * param; param -= lr * update`).

Both decay every parameter but the biases and the normalisation layers' weights (`no_decay`), found by what they
are: a parameter of a normalisation module (by its type), or a module's `bias`. optimization.py excludes by name
(LayerNorm, layer_norm, bias), which picks the same parameters in BERT but none of ModernBERT's norms (`*norm`).

Both run each trial's slices through torch's own functional adam (fused or foreach) with that trial's
learning rate, so an "adamw" trial of a pack steps bit for bit as its solo torch.optim.AdamW run does.

A param group's "lr" is the shared schedule's factor (1.0 before any scheduler), so any torch scheduler
(transformers' get_linear_schedule_with_warmup, or bert_scheduler here) drives every trial at once; trial n
steps with lr[n] * factor, the same double product torch's LambdaLR gives its solo run. A stopped trial
(its loss went NaN) is skipped whole: its parameters and state no longer change, and since every trial is
stepped and clipped on its own slices, its NaN gradients never meet another trial's numbers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from functools import partial

import torch
from torch import nn
from torch.optim.adam import adam
from torch.optim.lr_scheduler import LambdaLR

VARIANTS = ("adamw", "bert")
BETAS = (0.9, 0.999)
EPS = {"adamw": 1e-8, "bert": 1e-6}
# torch's normalisation layers; HF's own (DebertaLayerNorm, T5LayerNorm, LlamaRMSNorm...) and the unpadded encoder's
# stacked LayerNorm are *Norm classes of their own, found by their class's name
NORMS = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.modules.batchnorm._NormBase)


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, NORMS) or type(module).__name__.endswith("Norm")


def no_decay(model: nn.Module) -> set[str]:
    """The names of the parameters that take no weight decay: every normalisation layer's parameters and every
    module's bias, by what the module is, whatever its parameters are called."""
    excluded = set()
    for name, _ in model.named_parameters():  # each parameter once, as the optimizer is given them
        owner, _, attribute = name.rpartition(".")
        if attribute == "bias" or is_norm(model.get_submodule(owner)):
            excluded.add(name)
    return excluded


class PackAdamW(torch.optim.Optimizer):
    """AdamW ("adamw", torch's) or BERT's AdamWeightDecayOptimizer ("bert") for N trials at once.

    `named_parameters`: (name, parameter) pairs, each parameter plain (packed=False, one trial) or [N, ...]
    (packed=True); `no_decay`: the names of those that take no weight decay (`no_decay(model)`). `lr`: the N trials' learning rates, Python floats or a float64 tensor (a float32 rate is
    not the solo run's rate). `fused` picks torch's fused kernel or its foreach path, as torch.optim.AdamW's
    own flag does.
    """

    def __init__(
        self,
        named_parameters: Iterable[tuple[str, torch.Tensor]],
        lr: Sequence[float] | torch.Tensor,
        variant: str = "adamw",
        weight_decay: float = 0.01,
        packed: bool = False,
        fused: bool = True,
        *,
        no_decay: Collection[str],
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if isinstance(lr, torch.Tensor) and lr.dtype != torch.float64:
            raise TypeError(f"lr: Python floats or a float64 tensor, got a {lr.dtype} tensor")
        self.trial_lr = [float(rate) for rate in lr]
        if not packed and len(self.trial_lr) != 1:
            raise ValueError(f"plain parameters are one trial, got {len(self.trial_lr)} learning rates")
        named = list(named_parameters)
        if unknown := set(no_decay) - {name for name, _ in named}:
            raise ValueError(f"no_decay names parameters that are not given: {sorted(unknown)}")
        named = [(name, p) for name, p in named if p.requires_grad]
        if packed and any(p.ndim == 0 or p.shape[0] != len(self.trial_lr) for _, p in named):
            raise ValueError(f"packed parameters need a leading trial dimension of {len(self.trial_lr)}")
        self.variant, self.packed, self.fused = variant, packed, fused
        self.stopped = [False] * len(self.trial_lr)
        decay = [p for name, p in named if name not in no_decay]
        rest = [p for name, p in named if name in no_decay]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
        super().__init__([g for g in groups if g["params"]], {"lr": 1.0})

    def stop(self, trials: Sequence[bool] | torch.Tensor) -> None:
        """Stop the trials marked True (for good): from now on step() leaves their slices and state alone."""
        self.stopped = [was or bool(now) for was, now in zip(self.stopped, trials, strict=True)]

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            # One step counter per trial; where torch.optim.AdamW keeps it (on the device only when fused).
            on = p.device if self.fused else "cpu"
            state["step"] = torch.zeros(len(self.trial_lr), dtype=torch.float32, device=on)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state(p) for p in params]
            for n, rate in enumerate(self.trial_lr):
                if self.stopped[n]:
                    continue
                # a trial's slices; a pack of one is its tensors whole (same elements: no 4 selects a parameter)
                pick = (lambda t, n=n: t[n]) if self.packed and len(self.trial_lr) > 1 else (lambda t: t)
                steps = [s["step"][n] for s in states]
                if self.variant == "bert":
                    # optimization.py's step, param - lr * (m / (sqrt(v) + eps) + wd * param), is AdamW's decoupled
                    # step param * (1 - lr * wd) - lr * m / (sqrt(v) + eps) without the bias corrections
                    # 1 - beta ** t, which are exactly 1 at t = inf: torch's kernels run it at an infinite step.
                    torch._foreach_add_(steps, 1)
                    steps = [torch.full((), math.inf, device=steps[0].device)] * len(steps)
                adam(
                    [pick(p) for p in params],
                    [pick(p.grad) for p in params],
                    [pick(s["exp_avg"]) for s in states],
                    [pick(s["exp_avg_sq"]) for s in states],
                    [],
                    steps,
                    foreach=not self.fused,
                    fused=self.fused,
                    decoupled_weight_decay=True,
                    amsgrad=False,
                    beta1=BETAS[0],
                    beta2=BETAS[1],
                    lr=rate * group["lr"],  # the trial's rate times the schedule's factor, as LambdaLR's product
                    weight_decay=group["weight_decay"],
                    eps=EPS[self.variant],
                    maximize=False,
                )
        return loss


def clip_grad_norm_per_trial(
    parameters: Iterable[torch.Tensor],
    max_norm: float,
    packed: bool,
    stopped: Sequence[bool] | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Clip each trial's gradients to its own global norm; return the N norms (NaN for a stopped trial).

    Per trial, exactly torch.nn.utils.clip_grad_norm_: the norm over all its gradients' slices, then every slice
    times min(max_norm / (norm + eps), 1). eps=0 gives tf.clip_by_global_norm's scale, max_norm / max(norm,
    max_norm). A stopped trial's gradients are neither read nor scaled. On a CPU a trial whose scale is 1 (most
    steps of fine-tuning) skips the multiply-by-one, as the loop's _clip_gradients does.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    trials = grads[0].shape[0] if packed else 1
    stopped = [False] * trials if stopped is None else [bool(s) for s in stopped]
    norms = []
    for n in range(trials):
        if stopped[n]:
            norms.append(torch.full((), float("nan"), device=grads[0].device))
            continue
        slices = [g[n] for g in grads] if packed and trials > 1 else grads  # a pack of one: its tensors whole
        norm = torch.nn.utils.get_total_norm(slices, 2.0)
        scale = torch.clamp(max_norm / (norm + eps), max=1.0)
        if grads[0].device.type != "cpu" or scale.item() < 1.0:
            torch._foreach_mul_(slices, scale)
        norms.append(norm)
    return torch.stack(norms)


def bert_steps(train_rows: int, batch_size: int, epochs: float, warmup_proportion: float) -> tuple[int, int]:
    """run_classifier.py's step counts (lines 843-845): total = int(rows / batch * epochs), warmup = int(total * p)."""
    total = int(train_rows / batch_size * epochs)
    return total, int(total * warmup_proportion)


def bert_schedule(step: int, total: int, warmup: int) -> float:
    """optimization.py's learning-rate factor for the update at global step `step` (0 for the first update).

    polynomial_decay(power 1, end 0) from step 0 over `total` steps: 1 - min(step, total) / total; and while
    step < warmup, step / warmup instead. The warmup does not delay the decay: the factor climbs to
    (warmup - 1) / warmup, then drops to 1 - warmup / total (0.9 with a 10% warmup); it never reaches 1.
    """
    if step < warmup:
        return step / warmup
    return 1.0 - min(step, total) / total


def bert_scheduler(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> LambdaLR:
    """bert_schedule as a torch scheduler: call its step() after each optimizer.step(), as for any LambdaLR."""
    return LambdaLR(optimizer, partial(bert_schedule, total=total, warmup=warmup))
