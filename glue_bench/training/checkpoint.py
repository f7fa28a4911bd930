"""A fine-tune's state at an optimizer step, one record per trial of a pack: enough to continue it bit for bit on a
CPU. Whoever keeps the records (sweeping/checkpoints.py: the artifact store) implements `Keeper`; the loop only
captures and restores.

A trial's record holds its own part (its weights, its optimizer moments and step counts, its curve so far, the
current epoch's loss sum, the losses not yet looked at for NaN, the last dev predictions, whether it stopped) and
the part a pack shares (the step, the schedule, the gradient scaler, every random generator, the seconds spent,
a hash of the batch order). A pack's trials are their solo runs bit for bit and draw the same random numbers, so any
set of records taken at the same step makes a pack, solo or not. The batch order itself is not stored: every epoch's
batches are drawn from the seed before the first step, so the step says where the run is; the hash makes sure the
rows and the order are the ones the record was taken on.
"""

from __future__ import annotations

import contextlib
import hashlib
import random

import numpy as np
import torch

FORMAT = 1  # a record of another format is not read


class Keeper:
    """What the loop asks of whoever keeps its checkpoints. This one keeps none: a run that is never stopped."""

    resume: list[dict] | None = None  # a record per trial of the pack, in its order, to continue from

    def step(self):
        """Around each optimizer step and each write: a stop waits until it ends (never a record mid-step)."""
        return contextlib.nullcontext()

    def due(self) -> bool:
        """Whether a periodic checkpoint is due now (at an optimizer step's end)."""
        return False

    def write(self, records: list[dict]) -> None:
        """Keep these records (one per trial), replacing the trial's previous ones."""

    def stopped(self, records) -> None:
        """The run is being stopped (Ctrl-C, SIGTERM) at a step's end or in an evaluation: `records()` gives the
        state to keep, if there is time to write it."""

    def refused(self, reason: str) -> None:
        """The records in `resume` do not continue this run (`mismatch` says why): it starts from step 0."""
        self.resume = None


def batch_order_hash(epochs: list[list[np.ndarray]]) -> str:
    """The rows of every batch of every epoch, in order: the same seed, rows and recipe give the same hash."""
    digest = hashlib.sha256()
    for batches in epochs:
        for rows in batches:
            digest.update(np.asarray(rows, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def _random_state(device: torch.device) -> dict:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "numpy": [kind, torch.from_numpy(keys.copy()), position, has_gauss, cached],
        "python": random.getstate(),
    }


def _set_random_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), position, has_gauss, cached))
    random.setstate(state["python"])


def capture(net, optimizer, scheduler, scaler, packed: bool, device: torch.device, shared: dict, own: list[dict]):
    """One record per trial: its slice of the weights and optimizer state plus `own[n]`, and `shared` with the
    schedule, scaler and random generators added. Tensors are copied to the CPU (the run goes on meanwhile)."""
    names = {p: name for name, p in net.named_parameters()}
    weights = net.state_dict()
    common = {
        **shared,
        "format": FORMAT,
        "scheduler": scheduler.state_dict(),
        "group_lr": [group["lr"] for group in optimizer.param_groups],
        "scaler": scaler.state_dict(),
        "random": _random_state(device),
    }
    records = []
    for n, mine in enumerate(own):
        pick = (lambda t, n=n: t[n]) if packed else (lambda t: t)
        moments = {
            names[p]: {key: pick(value).detach().cpu().clone() for key, value in state.items()}
            for p, state in optimizer.state.items()
        }
        trial = {k: pick(v).detach().cpu().clone() for k, v in weights.items()}
        records.append({**common, **mine, "weights": trial, "moments": moments})
    return records


def restore(records: list[dict], net, optimizer, scheduler, scaler, packed: bool, device: torch.device) -> None:
    """Put the records' trials (one per trial of the pack, in its order) into the net and the optimizer, and the
    shared part (schedule, scaler, random generators) back as the first record has it."""
    stack = (lambda ts: torch.stack(ts)) if packed else (lambda ts: ts[0])
    weights = {k: stack([r["weights"][k] for r in records]).to(device) for k in records[0]["weights"]}
    net.load_state_dict(weights, strict=True)
    for name, p in net.named_parameters():
        if name not in records[0]["moments"]:
            continue
        state = optimizer._state(p)  # created where the optimizer keeps it (the step count on the CPU, or not)
        for key in state:
            state[key].copy_(stack([r["moments"][name][key] for r in records]))
    first = records[0]
    scheduler.load_state_dict(first["scheduler"])
    for group, lr in zip(optimizer.param_groups, first["group_lr"]):
        group["lr"] = lr
    scaler.load_state_dict(first["scaler"])
    _set_random_state(first["random"], device)


def mismatch(records: list[dict], expected: dict) -> str | None:
    """Why these records cannot continue this run (another format, step, batch order, encoder), or None."""
    for record in records:
        if record.get("format") != FORMAT:
            return f"format {record.get('format')}, not {FORMAT}"
        for key, value in expected.items():
            if record.get(key) != value:
                return f"its {key} is {record.get(key)!r}, this run's {value!r}"
        if record["step"] != records[0]["step"]:
            return f"the pack's trials were saved at steps {sorted({r['step'] for r in records})}, not one step"
    return None
