"""The Recipe: every option of a fine-tune that can change its result, checked, and recorded whole in every trial.

Its own module, free of torch, so that commands that only read results (report, check, export) can compare
recipes without loading the training stack. The defaults are the Hugging Face Trainer's optimizer and loop (torch's
AdamW, a new shuffle every epoch) with run_classifier.py's weight decay 0.01 and 10% warmup (TrainingArguments' own
defaults are 0 and 0); optimizer = "bert" and batch_order = "tf" are the paper's own recipe."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields

from glue_bench.errors import UserError

GRID_FIELDS = ("batch_size", "lr", "seed")  # what a sweep's grid varies; the rest is the shared recipe
ENCODERS = ("fast", "hf")
OPTIMIZERS = ("adamw", "bert")  # training/optim.py
BATCH_ORDERS = ("shuffle", "tf")  # training/loop.epochs_of_batches, training/tf_order.py
HEADS = ("fresh", "checkpoint")  # inputs/heads.py


def described(default, help: str, **more):
    """A Recipe field with its one-line help, the one place that says what the field means: `glue-bench run
    --help` shows it beside the field's option (cli/parsing.add_fields makes one per field). `more`: choices=(...) for a field that takes one of a few names, metavar="FILE"
    for what --help calls a text field's value."""
    return field(default=default, metadata={"help": help, **more})


REQUIRED = MISSING  # described(REQUIRED, ...): a field without a default


@dataclass(frozen=True)
class Recipe:
    """Everything that can change a result. Recorded whole in every trial."""

    batch_size: int = described(REQUIRED, "train examples per optimizer step")
    lr: float = described(REQUIRED, "the peak learning rate, reached after the warmup, then decayed linearly to 0")
    epochs: int = described(4, "passes over the train rows")
    seed: int = described(0, "the head's initialisation (head = fresh), the batch order, dropout")
    max_seq_length: int = described(128, "tokens per row, at most (longer rows are cut)")
    weight_decay: float = described(
        0.01, "the decoupled weight decay (not on biases and normalisation layers' weights)"
    )
    warmup_ratio: float = described(0.1, "the share of the steps over which the learning rate rises from 0, in [0, 1)")
    max_grad_norm: float = described(1.0, "clip the gradients' global norm to this; 0: no clipping")
    max_train_samples: int = described(0, "train on the first N rows only (quick checks, CI); 0: every row")
    group_by_length: bool = described(False, "batches of rows of similar length: faster, changes the batch order")
    bf16: bool = described(False, "bf16 autocast on a GPU (float32 master weights; changes results)")
    tf32: bool = described(False, "TF32 matrix products on a GPU (changes results)")
    eval_batch_size: int = described(256, "rows per batch when scoring the dev and test splits (memory and speed)")
    # Speed options that change results (each measured in benchmarks/README.md):
    fused_adamw: bool = described(
        True, "the fused AdamW kernel; off: the foreach kernel on a CPU (other last bits, slower); a GPU always fuses"
    )
    encoder: str = described(
        "fast",
        "fast: glue-bench's unpadded BERT encoder where it applies; hf: the Hugging Face model (same initial weights)",
        choices=ENCODERS,
    )
    # The paper's recipe (google-research/bert) against the Hugging Face Trainer's (the defaults):
    optimizer: str = described(
        "adamw",
        "adamw: torch's AdamW with a linear warmup then decay (the Hugging Face Trainer's); bert: google-research/"
        "bert's AdamWeightDecayOptimizer (no bias correction, eps 1e-6), its schedule and clipping (the paper's)",
        choices=OPTIMIZERS,
    )
    batch_order: str = described(
        "shuffle",
        "shuffle: a new permutation of the train rows every epoch (the Trainer's); tf: run_classifier.py's file "
        "order through a 100-row shuffle buffer, epochs blending, full batches only (the paper's)",
        choices=BATCH_ORDERS,
    )
    gradient_accumulation_steps: int = described(
        1, "micro-batches per batch (the batch size stays the batch's): less memory, the same sums"
    )
    fp16: bool = described(False, "fp16 autocast with a gradient scaler, for GPUs without bf16 (V100, T4)")
    # Distillation (training/distill.py): the student learns a fine-tuned teacher's outputs on the transfer rows.
    teacher: str = described(
        "",
        "distil: a model fine-tuned on the task (a folder, a Hub id, kept:SWEEP[/MODEL]) whose outputs the student "
        "learns; empty: no distillation",
        metavar="REF",
    )
    temperature: float = described(1.0, "with a teacher: the softmax temperature of both distributions")
    alpha: float = described(0.0, "with a teacher: the weight of the labels' loss, in [0, 1]; 0: the teacher alone")
    transfer: str = described(
        "",
        "with a teacher: a file of unlabelled rows (tsv, csv, jsonl, parquet) the teacher labels, added to the "
        "train rows",
        metavar="FILE",
    )
    max_transfer_samples: int = described(0, "the first N transfer rows only; 0: every one")
    head: str = described(
        "fresh",
        "fresh: a classifier initialised from the seed whatever the checkpoint holds; checkpoint: train the "
        "checkpoint's own classifier (it must have the task's label count)",
        choices=HEADS,
    )

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
        allowed_values = (
            ("encoder", ENCODERS),
            ("optimizer", OPTIMIZERS),
            ("batch_order", BATCH_ORDERS),
            ("head", HEADS),
        )
        for name, allowed in allowed_values:
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")
        if self.batch_order == "tf" and self.group_by_length:
            raise UserError("batch_order tf keeps the file's order: it cannot also group rows by length")
        steps = self.gradient_accumulation_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.batch_size:
            raise UserError(f"gradient_accumulation_steps must be a whole number in [1, batch_size], got {steps!r}")
        if self.fp16 and self.bf16:
            raise UserError("fp16 and bf16 are two kinds of autocast: choose one")

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


def field_help() -> dict[str, str]:
    """Each field's one-line help, in field order ("" for a field that has none: tests/test_cli.py refuses it)."""
    return {f.name: f.metadata.get("help", "") for f in fields(Recipe)}
