"""The Recipe: every option of a fine-tune that can change its result, checked, and recorded whole in every trial.

Its own module, free of torch, so that commands that only read results (report, check, export) can compare
recipes without loading the training stack. The defaults are the paper's BERT recipe.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from glue_bench.errors import UserError

GRID_FIELDS = ("batch_size", "lr", "seed")  # what a sweep's grid varies; the rest is the shared recipe
ENCODERS = ("fast", "hf")


@dataclass(frozen=True)
class Recipe:
    """Everything that can change a result. Recorded whole in every trial."""

    batch_size: int
    lr: float
    epochs: int = 4
    seed: int = 0
    max_seq_length: int = 128
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0  # 0: no clipping
    max_train_samples: int = 0  # 0: the whole train split; else its first N rows (quick checks, CI)
    group_by_length: bool = False  # batches of similar length: faster, changes the batch order
    bf16: bool = False  # bf16 autocast on a GPU
    tf32: bool = False  # TF32 matrix products on a GPU
    eval_batch_size: int = 256
    # Speed options that change results (each measured in benchmarks/README.md):
    fused_adamw: bool = True  # the fused AdamW kernel; False: foreach on a CPU (a GPU always uses fused)
    encoder: str = "fast"  # "fast": glue-bench's unpadded BERT where it applies; "hf": the Hugging Face model
    # Distillation (training/distill.py): the student learns a fine-tuned teacher's outputs on the transfer rows.
    teacher: str = ""  # a model reference of the teacher; "": no distillation
    temperature: float = 1.0  # softens both distributions of the KL term
    alpha: float = 0.0  # weight of the labels' loss; 0: the teacher alone, as in the paper
    transfer: str = ""  # a file of unlabelled rows added to the train rows ("": the train rows only)
    max_transfer_samples: int = 0  # 0: every transfer row; else the first N

    def __post_init__(self):
        positive = {
            "batch_size": self.batch_size,
            "lr": self.lr,
            "epochs": self.epochs,
            "max_seq_length": self.max_seq_length,
            "eval_batch_size": self.eval_batch_size,
        }
        for name, value in positive.items():
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not value > 0
                or not math.isfinite(value)
            ):
                raise UserError(f"{name} must be a positive number, got {value!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.weight_decay < 0 or self.max_grad_norm < 0 or self.max_train_samples < 0:
            raise UserError("weight_decay, max_grad_norm and max_train_samples must be >= 0")
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise UserError(f"temperature must be a positive number, got {self.temperature!r}")
        if not 0 <= self.alpha <= 1:
            raise UserError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.max_transfer_samples < 0:
            raise UserError(f"max_transfer_samples must be >= 0, got {self.max_transfer_samples!r}")
        if self.transfer and not self.teacher:
            raise UserError("transfer rows need a teacher to label them: set teacher as well")
        if self.encoder not in ENCODERS:
            raise UserError(f"encoder must be one of {', '.join(map(repr, ENCODERS))}, got {self.encoder!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def shared_fields() -> tuple[str, ...]:
    """The recipe fields a grid point does not set: every one of them must agree for trials to be compared."""
    return tuple(f.name for f in fields(Recipe) if f.name not in GRID_FIELDS)


def defaults() -> dict:
    """Each shared field's default in this version of the code."""
    return {f.name: f.default for f in fields(Recipe) if f.name not in GRID_FIELDS}


def lr_text(value: float) -> str:
    """A learning rate in the shortest scientific form, as every view prints it: 1e-4, 3e-5, 2.5e-5."""
    mantissa, exponent = f"{value:.15e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
