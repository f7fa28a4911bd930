"""The fine-tune loop: the BERT recipe, top to bottom, in one function.

AdamW (weight decay 0.01 except biases and LayerNorm), linear warmup over 10% of the steps then linear
decay to 0, gradient clipping at 1.0, dynamic padding (each batch padded to its longest row), dev
metrics on every dev split after every epoch, predictions for the test splits at the end. A BERT model
runs as glue-bench's unpadded encoder (training/encoder.py: no work on padding) unless the recipe says "hf".
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from glue_bench.inputs.tasks import Task
from glue_bench.training import encoder, metrics
from glue_bench.training.distill import Distillation, agreement, teacher_predictions
from glue_bench.training.distill import loss as distill_loss
from glue_bench.training.encoder import UnpaddedBert, unpadded_batch
from glue_bench.training.recipe import Recipe

NAN_CHECK_EVERY = 20  # steps between looks at the loss: looking costs a host sync on a GPU


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}")
        self.step = step


@dataclass
class FineTuneResult:
    dev: dict[str, dict[str, float]]  # split → metric → value, after the last epoch
    curve: list[dict]  # one entry per epoch: train loss, dev metrics, seconds
    predictions: dict[str, dict[str, list]]  # "task/split" → {"idx": […], "prediction": […]}
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    train_examples: int = 0  # examples processed (epochs × rows)
    steps: int = 0
    device: str = ""
    encoder: str = ""  # the encoder that ran: "fast" (glue-bench's unpadded BERT) or "hf" (the model as given)
    extra_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # labelled splits of other tasks
    dev_classes: dict[str, list[int]] = field(default_factory=dict)  # split → classes predicted (last epoch)
    # split → {"idx": […], "prediction": […], "label": […]}: the last epoch's dev predictions, kept so that
    # a report can resample dev rows (bootstrap intervals) without running the model again
    dev_predictions: dict[str, dict[str, list]] = field(default_factory=dict)
    # with a teacher: {"agreement": split → the student's agreement with it, "metrics": split → its own metrics}
    teacher: dict[str, dict] = field(default_factory=dict)


class Packed:
    """A tokenized split as flat arrays, so a padded batch is two numpy gathers, not a Python loop."""

    def __init__(self, split: datasets.Dataset):
        table = split.with_format("arrow")[:]  # a pyarrow Table, row selection applied
        ids = table.column("input_ids").combine_chunks()
        offsets = ids.offsets.to_numpy()
        self.offsets = offsets[:-1].astype(np.int64)
        self.lengths = np.diff(offsets).astype(np.int64)
        self.input_ids = ids.values.to_numpy().astype(np.int64)
        # token type ids where the tokenizer gives them (BERT's segments); None for RoBERTa, DistilBERT, …
        types = table.column("token_type_ids").combine_chunks() if "token_type_ids" in table.column_names else None
        self.token_type_ids = None if types is None else types.values.to_numpy().astype(np.int64)
        self.labels = table.column("label").to_numpy()
        self.idx = table.column("idx").to_numpy()

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, rows: np.ndarray, device, pad_id: int = 0) -> dict[str, torch.Tensor]:
        """The rows right-padded with pad_id (the model's own: RoBERTa's is 1) and their attention mask."""
        lengths = self.lengths[rows]
        positions = np.arange(lengths.max())
        mask = positions[None, :] < lengths[:, None]
        gather = np.where(mask, self.offsets[rows, None] + positions[None, :], 0)
        batch = {"input_ids": np.where(mask, self.input_ids[gather], pad_id), "attention_mask": mask.astype(np.int64)}
        if self.token_type_ids is not None:
            batch["token_type_ids"] = np.where(mask, self.token_type_ids[gather], 0)
        return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


def _batches(data: Packed, batch_size: int, generator: torch.Generator, group_by_length: bool) -> list[np.ndarray]:
    order = torch.randperm(len(data), generator=generator).numpy()
    if group_by_length:  # sort within mega-batches of 50 batches, as the HF Trainer's length grouping does
        mega = 50 * batch_size
        order = np.concatenate(
            [
                chunk[np.argsort(-data.lengths[chunk], kind="stable")]
                for chunk in np.array_split(order, max(1, math.ceil(len(order) / mega)))
            ]
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:  # shuffle batch order so long batches are not all at the start
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def _optimizer(model, recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    # Decay matrices only: biases and LayerNorm weights are the 1-D parameters.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # A GPU always uses fused, as every recorded GPU trial did whatever its fused_adamw says.
    fast = {"fused": True} if device.type == "cuda" or recipe.fused_adamw else {"foreach": True}
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.999), eps=1e-8, **fast)


def _clip_gradients(model, max_norm: float, device: torch.device) -> None:
    """torch.nn.utils.clip_grad_norm_, exactly, minus its multiply-by-one on a CPU.

    clip_grad_norm_ scales every gradient by min(max_norm / (norm + 1e-6), 1) even when that is 1 (most steps
    of fine-tuning: the norm is rarely above 1), to avoid a device sync. On a CPU the sync is free and the
    skipped pass (a read and a write of every gradient) is ~3% of a BERT-Tiny step.
    """
    parameters = [p for p in model.parameters() if p.grad is not None]
    if device.type != "cpu":
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters], 2.0)
    if (max_norm / (norm + 1e-6)).item() < 1.0:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)


def _forward(model, data: Packed, rows: np.ndarray, device: torch.device, labels: torch.Tensor | None = None):
    """The rows `rows` of `data` through either model (ours takes an unpadded batch): its logits and loss."""
    if isinstance(model, UnpaddedBert):
        batch = unpadded_batch(data.input_ids, data.token_type_ids, data.offsets, data.lengths, rows, device)
        return model(batch, labels=labels)
    return model(**data.batch(rows, device), labels=labels)


@torch.inference_mode()
def outputs(model, data: Packed, batch_size: int, device: torch.device, bf16: bool) -> np.ndarray:
    """Either model's logits [rows, labels] in the split's row order. Rows are batched by length so little is padded."""
    model.eval()
    order = np.argsort(data.lengths, kind="stable")
    chunks = []
    for start in range(0, len(order), batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            chunks.append(_forward(model, data, order[start : start + batch_size], device).logits.float())
    result = torch.cat(chunks).cpu().numpy() if chunks else np.zeros((0, 1), dtype=np.float32)
    logits = np.empty_like(result)
    logits[order] = result
    return logits


def predict(model, data: Packed, batch_size: int, device: torch.device, regression: bool, bf16: bool) -> np.ndarray:
    """Either model's predictions in the split's row order: its classes, or a regression task's scores."""
    logits = outputs(model, data, batch_size, device, bf16)
    return logits[:, 0] if regression else logits.argmax(-1)


def training_rows(train: datasets.Dataset, recipe: Recipe) -> datasets.Dataset:
    """The train rows a recipe trains on: the first max_train_samples rows, or all of them."""
    if recipe.max_train_samples:
        return train.select(range(min(recipe.max_train_samples, len(train))))
    return train


def _with_transfer(train: datasets.Dataset, distill: Distillation | None) -> tuple[Packed, np.ndarray]:
    """The rows the student trains on (the train rows, then any transfer rows) and which ones have a label."""
    if distill is None or distill.transfer is None:  # load_transfer refuses a file without rows
        return Packed(train), np.ones(len(train), dtype=bool)
    columns = [c for c in ("input_ids", "token_type_ids", "label", "idx") if c in train.column_names]
    transfer = distill.transfer.select_columns(columns).cast(train.select_columns(columns).features)
    rows = datasets.concatenate_datasets([train.select_columns(columns), transfer])
    return Packed(rows), np.arange(len(rows)) < len(train)


def fine_tune(
    model,
    task: Task,
    train: datasets.Dataset,
    dev: dict[str, datasets.Dataset],
    to_predict: dict[str, tuple[Task, datasets.Dataset]],
    recipe: Recipe,
    device: str = "auto",
    progress: bool = True,
    distill: Distillation | None = None,
) -> FineTuneResult:
    """Fine-tune `model` on the tokenized `train` split; evaluate `dev` every epoch; predict `to_predict`.

    `to_predict` maps "task/split" to (task, split): the test splits, and the splits of tasks predicted
    by this task's model (AX from MNLI); those with labels are also scored. The trained weights end up in
    `model` (the HF model) whichever encoder ran. With `distill`, the loss is training/distill.py's: the
    student learns the teacher's outputs on the train rows and any transfer rows.
    """
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = recipe.tf32
        torch.backends.cudnn.allow_tf32 = recipe.tf32
    bf16 = recipe.bf16 and device.type == "cuda"
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)

    train_data, labelled = _with_transfer(training_rows(train, recipe), distill)
    dev_data = {name: Packed(split) for name, split in dev.items()}
    labels = torch.from_numpy(train_data.labels.astype(np.float32 if task.regression else np.int64))
    if distill is not None:
        with_transfer = [distill.train] + ([] if distill.transfer is None else [distill.transfer_outputs])
        targets = torch.from_numpy(np.concatenate(with_transfer).astype(np.float32))
        labelled = torch.from_numpy(labelled)

    model.to(device)
    # The unpadded encoder starts from the HF model's weights (its seeded head included); they go back at the end.
    fast = recipe.encoder == "fast" and encoder.supports(model.config)
    net = UnpaddedBert.from_hf(model) if fast else model
    optimizer = _optimizer(net, recipe, device)
    steps_per_epoch = math.ceil(len(train_data) / recipe.batch_size)
    total_steps = steps_per_epoch * recipe.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(total_steps * recipe.warmup_ratio), total_steps)

    curve, train_seconds, eval_seconds, step = [], 0.0, 0.0, 0
    unchecked = []  # losses of the steps since the last look, kept on the device
    # A bar on a terminal; in a log (SLURM, CI) one line per epoch instead of a bar's carriage returns.
    terminal = progress and sys.stderr.isatty()
    bar = tqdm(
        total=total_steps,
        desc=f"{task.name} bs={recipe.batch_size} lr={recipe.lr:g}",
        unit="step",
        disable=not terminal,
        leave=False,
    )
    for epoch in range(1, recipe.epochs + 1):
        net.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for rows in _batches(train_data, recipe.batch_size, generator, recipe.group_by_length):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                if distill is None:
                    loss = _forward(net, train_data, rows, device, labels[rows].to(device, non_blocking=True)).loss
                else:
                    logits = _forward(net, train_data, rows, device).logits
                    on = {"device": device, "non_blocking": True}
                    loss = distill_loss(
                        logits,
                        targets[rows].to(**on),
                        labels[rows].to(**on),
                        labelled[rows].to(**on),
                        recipe.alpha,
                        recipe.temperature,
                        task.regression,
                    )
            loss.backward()
            if recipe.max_grad_norm > 0:  # 0: no clipping, as in the Hugging Face Trainer
                _clip_gradients(net, recipe.max_grad_norm, device)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            unchecked.append(loss.detach())
            step += 1
            if step % NAN_CHECK_EVERY == 0 or step == total_steps:
                losses = torch.stack(unchecked).float().cpu()
                unchecked.clear()
                bad = torch.nonzero(~torch.isfinite(losses)).flatten()
                if len(bad):  # name the first step whose loss was NaN/inf, not the step that looked
                    bar.close()
                    raise Diverged(step - len(losses) + 1 + int(bad[0]), losses[bad[0]].item())
                bar.set_postfix(loss=f"{losses[-1].item():.4f}", refresh=False)
            bar.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - started

        started = time.perf_counter()
        dev_predictions = {
            name: predict(net, data, recipe.eval_batch_size, device, task.regression, bf16)
            for name, data in dev_data.items()
        }
        epoch_dev = {name: metrics.compute(task, dev_predictions[name], dev_data[name].labels) for name in dev_data}
        eval_seconds += time.perf_counter() - started
        curve.append(
            {
                "epoch": epoch,
                "train_loss": loss_sum.item() / steps_per_epoch,
                "dev": epoch_dev,
                "train_seconds": round(train_seconds, 3),
            }
        )
        if progress and not terminal:
            dev_text = ", ".join(
                f"{name} {100 * metrics.split_score(task, values):.2f}" for name, values in epoch_dev.items()
            )
            print(
                f"{task.name} epoch {epoch}/{recipe.epochs}: train loss {curve[-1]['train_loss']:.4f}, dev {dev_text}, "
                f"{len(train_data) * epoch / train_seconds:.0f} examples/s",
                file=sys.stderr,
                flush=True,
            )
    bar.close()

    started = time.perf_counter()
    predictions, extra = {}, {}
    for key, (other, split) in to_predict.items():
        data = Packed(split)
        values = predict(net, data, recipe.eval_batch_size, device, other.regression, bf16)
        predictions[key] = {"idx": data.idx.tolist(), "prediction": values.tolist()}
        if (data.labels >= 0).all() and len(data):  # a labelled split of another task (AX's diagnostic)
            extra[key] = metrics.compute(other, values, data.labels)
    eval_seconds += time.perf_counter() - started
    if fast:  # the trained weights into the caller's HF model, left in eval mode as predict leaves it
        net.to_hf(into=model).eval()
    # The classes predicted on each dev split: a collapsed run (one class everywhere) is then a fact, not
    # inferred from its metric value (a model near chance can hit the majority count by accident).
    classes = (
        {} if task.regression else {name: np.unique(p).astype(int).tolist() for name, p in dev_predictions.items()}
    )
    return FineTuneResult(
        dev=curve[-1]["dev"],
        teacher={} if distill is None else _against_teacher(task, distill, dev_predictions, dev_data),
        dev_classes=classes,
        dev_predictions={
            name: {
                "idx": dev_data[name].idx.tolist(),
                "prediction": values.tolist(),
                "label": dev_data[name].labels.tolist(),
            }
            for name, values in dev_predictions.items()
        },
        curve=curve,
        predictions=predictions,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        train_examples=len(train_data) * recipe.epochs,
        steps=step,
        device=str(device),
        encoder="fast" if fast else "hf",
        extra_metrics=extra,
    )


def _against_teacher(task: Task, distill: Distillation, student: dict[str, np.ndarray], dev: dict[str, Packed]) -> dict:
    """The student's agreement with its teacher on each dev split, and the teacher's own dev metrics."""
    return {
        "agreement": {name: agreement(student[name], distill.dev[name], task.regression) for name in dev},
        "metrics": {
            name: metrics.compute(task, teacher_predictions(distill.dev[name], task.regression), data.labels)
            for name, data in dev.items()
        },
    }
