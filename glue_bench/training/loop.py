"""The fine-tune loop: the recipe, top to bottom, in one function, for one trial or a pack of trials.

The default recipe is the Hugging Face Trainer's: AdamW (weight decay 0.01 except biases and LayerNorm), linear
warmup over 10% of the steps then linear decay to 0, gradient clipping at 1.0, a new shuffle every epoch; the
recipe's `optimizer = "bert"` and `batch_order = "tf"` are google-research/bert's (training/optim.py,
training/tf_order.py). Batches are as long as their longest row; dev metrics on every dev split after every epoch,
predictions for the test splits at the end. A model of a family built from BERT's layer runs as glue-bench's
unpadded encoder (training/encoder.py: no work on padding) unless the recipe says "hf".

A pack: the trials of one study that differ only in the learning rate train at once, as one stacked model
(encoder.py), each with its own loss, clipping and optimizer step (optim.py): every trial's arithmetic is its solo
run's. A trial whose loss goes NaN stops (its updates stop; the others go on) and its result says so.
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

from glue_bench.errors import UserError
from glue_bench.inputs.tasks import Task
from glue_bench.training import families, metrics
from glue_bench.training.batches import Packed, epochs_of_batches, training_rows, with_transfer
from glue_bench.training.checkpoint import Keeper, batch_order_hash, capture, mismatch, restore
from glue_bench.training.distill import Distillation, against_teacher, micro_batch_loss
from glue_bench.training.encoder import UnpaddedEncoder
from glue_bench.training.inference import autocast, forward, predict
from glue_bench.training.optim import PackAdamW, bert_scheduler, clip_grad_norm_per_trial, no_decay
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
    train_seconds: float = 0.0  # a pack's trials each count their share of its time
    eval_seconds: float = 0.0
    train_examples: int = 0  # examples processed (epochs × rows)
    steps: int = 0
    device: str = ""
    encoder: str = ""  # the encoder that ran: "fast" (glue-bench's unpadded encoder) or "hf" (the model as given)
    extra_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # labelled splits of other tasks
    dev_classes: dict[str, list[int]] = field(default_factory=dict)  # split → classes predicted (last epoch)
    # split → {"idx": […], "prediction": […], "label": […]}: the last epoch's dev predictions, kept so that
    # a report can resample dev rows (bootstrap intervals) without running the model again
    dev_predictions: dict[str, dict[str, list]] = field(default_factory=dict)
    # with a teacher: {"agreement": split → the student's agreement with it, "metrics": split → its own metrics}
    teacher: dict[str, dict] = field(default_factory=dict)
    pack_size: int = 1  # how many trials trained together (1: solo)
    diverged: Diverged | None = None  # a trial of a pack whose loss went NaN: it stopped there
    trained_model: object = None  # () → the HF model holding this trial's trained weights (save_pretrained)


def _optimizer(net, recipe: Recipe, lrs: list[float], packed: bool, device: torch.device) -> PackAdamW:
    """The recipe's optimizer ("adamw" or "bert") over the net's parameters, one learning rate per trial. A GPU always
    uses the fused kernel, as every recorded GPU trial did whatever its fused_adamw says."""
    fused = device.type == "cuda" or recipe.fused_adamw
    params = net.named_parameters()
    return PackAdamW(params, lrs, recipe.optimizer, recipe.weight_decay, packed, fused, no_decay=no_decay(net))


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
    log_dir: str | None = None,
) -> FineTuneResult:
    """One trial: fine_tune_pack with the recipe's learning rate alone. A NaN loss raises Diverged."""
    (result,) = fine_tune_pack(
        model, task, train, dev, to_predict, recipe, [recipe.lr], device, progress, distill, [log_dir]
    )
    if result.diverged is not None:
        raise result.diverged
    return result


def fine_tune_pack(
    model,
    task: Task,
    train: datasets.Dataset,
    dev: dict[str, datasets.Dataset],
    to_predict: dict[str, tuple[Task, datasets.Dataset]],
    recipe: Recipe,
    lrs: list[float],
    device: str = "auto",
    progress: bool = True,
    distill: Distillation | None = None,
    log_dirs: list[str | None] | None = None,
    keeper: Keeper | None = None,
) -> list[FineTuneResult]:
    """Fine-tune `model` on the tokenized `train` split at each learning rate of `lrs` at once (a pack; one rate: a
    solo run); evaluate `dev` every epoch; predict `to_predict`. Returns one result per learning rate.

    `to_predict` maps "task/split" to (task, split): the test splits, and the splits of tasks predicted by this
    task's model (AX from MNLI); those with labels are also scored. The first trial's trained weights end up in
    `model` (the HF model) whichever encoder ran; each result's trained_model() gives its own. With `distill`, the
    loss is training/distill.py's: the student learns the teacher's outputs on the train rows and any transfer
    rows. log_dirs: a TensorBoard folder per trial (or None): loss and learning rate per logging step, dev metrics
    per epoch. keeper: where checkpoints go, and the records to continue from (training/checkpoint.py).
    """
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = recipe.tf32
        torch.backends.cudnn.allow_tf32 = recipe.tf32
    trials = len(lrs)
    if trials > 1 and recipe.fp16:  # the gradient scaler skips a step for all when one trial's gradients overflow
        raise ValueError("fp16 trains solo: its gradient scaler's overflow check is one for every trial of a pack")
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)

    train_data, labelled = with_transfer(training_rows(train, recipe), distill)
    dev_data = {name: Packed(split) for name, split in dev.items()}
    labels = torch.from_numpy(train_data.labels.astype(np.float32 if task.regression else np.int64))
    if distill is not None:
        teacher_outputs = [distill.train] + ([] if distill.transfer is None else [distill.transfer_outputs])
        targets = torch.from_numpy(np.concatenate(teacher_outputs).astype(np.float32))
        labelled = torch.from_numpy(labelled)

    model.to(device)
    # The unpadded encoder starts from the HF model's weights (its seeded head included), one copy per trial.
    fast = recipe.encoder == "fast" and families.supports(model.config)
    if trials > 1 and not fast:
        raise ValueError(f"a pack of {trials} trials needs the unpadded encoder; {model.config.model_type} runs solo")
    net = UnpaddedEncoder.from_hf(model, trials) if fast else model
    optimizer = _optimizer(net, recipe, lrs, fast, device)
    epochs = epochs_of_batches(train_data, recipe, generator)
    order = batch_order_hash(epochs)  # a record taken on other rows or another order is never resumed
    total_steps = sum(len(batches) for batches in epochs)
    if total_steps == 0:  # batch_order "tf" drops a partial batch: fewer rows than a batch make none
        raise UserError(f"{len(train_data)} train rows make no full batch of {recipe.batch_size} (batch_order tf)")
    if recipe.optimizer == "bert":  # optimization.py: warmup int(total * p), the decay counted from step 0
        scheduler = bert_scheduler(optimizer, total_steps, int(total_steps * recipe.warmup_ratio))
    else:
        scheduler = get_linear_schedule_with_warmup(
            optimizer, math.ceil(total_steps * recipe.warmup_ratio), total_steps
        )
    scaler = torch.amp.GradScaler(device.type, enabled=recipe.fp16)  # fp16's gradients, scaled to stay above 0
    clip_eps = 0.0 if recipe.optimizer == "bert" else 1e-6  # tf.clip_by_global_norm's scale, or torch's
    writers = _tensorboard(log_dirs or [None] * trials)

    curves: list[list[dict]] = [[] for _ in range(trials)]
    train_seconds, eval_seconds, step, training_since = 0.0, 0.0, 0, None
    diverged: list[Diverged | None] = [None] * trials
    unchecked = []  # [N] losses of the steps since the last look, kept on the device
    loss_sum = torch.zeros(trials, device=device)
    dev_predictions = {}  # split → [N, rows]: the last evaluated epoch's
    keeper = keeper or Keeper()
    if keeper.resume is not None and (why := mismatch(keeper.resume, {"batch_order": order, "fast": fast})):
        keeper.refused(why)
    if keeper.resume is not None:  # where a stopped run was: every later step is the uninterrupted run's
        resume = keeper.resume
        restore(resume, net, optimizer, scheduler, scaler, fast, device)
        step, (train_seconds, eval_seconds) = resume[0]["step"], resume[0]["seconds"]
        curves = [r["curve"] for r in resume]
        loss_sum = torch.tensor([r["loss_sum"] for r in resume], device=device)
        unchecked = [torch.tensor(losses, device=device) for losses in zip(*(r["unchecked"] for r in resume))]
        diverged = [Diverged(*r["diverged"]) if r["diverged"] else None for r in resume]
        optimizer.stop([d is not None for d in diverged])
        dev_predictions = {k: np.stack([r["dev"][k].numpy() for r in resume]) for k in resume[0]["dev"]}

    def records() -> list[dict]:  # the state at this step's end (or in an evaluation), one record per trial
        seconds = train_seconds + (time.perf_counter() - training_since if training_since else 0.0)
        shared = {"step": step, "seconds": [seconds, eval_seconds], "batch_order": order, "fast": fast}
        own = [
            {
                "curve": curves[n],
                "loss_sum": loss_sum[n].item(),
                "unchecked": [losses[n].item() for losses in unchecked],
                "diverged": [diverged[n].step, diverged[n].loss] if diverged[n] else None,
                "dev": {k: torch.from_numpy(np.ascontiguousarray(v[n])) for k, v in dev_predictions.items()},
            }
            for n in range(trials)
        ]
        return capture(net, optimizer, scheduler, scaler, fast, device, shared, own)

    # A bar on a terminal; in a log (SLURM, CI) one line per epoch instead of a bar's carriage returns.
    terminal = progress and sys.stderr.isatty()
    rates = ", ".join(f"{lr:g}" for lr in lrs)
    bar = tqdm(
        total=total_steps,
        initial=step,
        desc=f"{task.name} bs={recipe.batch_size} lr={rates}",
        unit="step",
        disable=not terminal,
    )
    try:
        for epoch, batches in enumerate(epochs, 1):
            if len(curves[0]) >= epoch:  # trained and evaluated before the stop this run resumes from
                continue
            first = step - sum(len(b) for b in epochs[: epoch - 1])  # its batches trained before the stop
            if first == 0:
                loss_sum = torch.zeros(trials, device=device)
            net.train()
            training_since = time.perf_counter()
            for rows in batches[first:]:
                with keeper.step():  # a stop waits for the step's end: a checkpoint is never taken mid-step
                    loss = torch.zeros(trials, device=device)
                    # Gradient accumulation: micro-batches of the batch, each loss weighted by its share of the
                    # batch's rows (of its labelled rows, for a distilled student's labels term), so that the
                    # gradients sum to the whole batch's: exactly, per row, as the unpadded encoder computes each
                    # row alone.
                    for micro in np.array_split(rows, min(recipe.gradient_accumulation_steps, len(rows))):
                        share = len(micro) / len(rows)  # 1 for a whole batch: no multiply-by-one (and its backward)
                        with autocast(device, recipe.bf16, recipe.fp16):
                            if distill is None:
                                on = labels[micro].to(device, non_blocking=True)
                                part = forward(net, train_data, micro, device, on).loss
                                part = part if share == 1 else part * share
                            else:
                                logits = forward(net, train_data, micro, device).logits  # [N, rows, labels]
                                batch = (targets, labels, labelled, micro, rows)
                                part = torch.stack(
                                    [micro_batch_loss(logits[n], batch, recipe, task, device) for n in range(trials)]
                                )
                        scaler.scale(part.sum()).backward()  # each trial's graph is its own: the sum keeps them apart
                        loss += part.detach().float()
                    if recipe.max_grad_norm > 0:  # 0: no clipping, as in the Hugging Face Trainer
                        scaler.unscale_(optimizer)
                        clip_grad_norm_per_trial(
                            net.parameters(), recipe.max_grad_norm, fast, optimizer.stopped, clip_eps
                        )
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    loss_sum += loss
                    unchecked.append(loss)
                    step += 1
                    if step % NAN_CHECK_EVERY == 0 or step == total_steps:
                        losses = torch.stack(unchecked).cpu()  # [steps, N]
                        unchecked.clear()
                        for n in range(trials):
                            bad = torch.nonzero(~torch.isfinite(losses[:, n])).flatten()
                            if diverged[n] is None and len(bad):  # the first NaN/inf step, not the one that looked
                                diverged[n] = Diverged(step - len(losses) + 1 + int(bad[0]), losses[bad[0], n].item())
                                optimizer.stop([i == n for i in range(trials)])
                            if writers[n] is not None:
                                writers[n].add_scalar("train/loss", losses[-1, n].item(), step)
                                writers[n].add_scalar("train/learning_rate", lrs[n] * scheduler.get_last_lr()[0], step)
                        bar.set_postfix(loss=" ".join(f"{v:.4f}" for v in losses[-1].tolist()), refresh=False)
                bar.update()
                if all(d is not None for d in diverged):
                    break
                if keeper.due():
                    keeper.write(records())
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_seconds += time.perf_counter() - training_since
            training_since = None
            if all(d is not None for d in diverged):
                break

            started = time.perf_counter()
            dev_predictions = {
                name: predict(net, data, recipe.eval_batch_size, device, task.regression, recipe.bf16, recipe.fp16)
                for name, data in dev_data.items()
            }  # split → [N, rows]
            eval_seconds += time.perf_counter() - started
            for n in range(trials):
                epoch_dev = {
                    name: metrics.compute(task, p[n], dev_data[name].labels) for name, p in dev_predictions.items()
                }
                curves[n].append(
                    {
                        "epoch": epoch,
                        "train_loss": loss_sum[n].item() / max(len(batches), 1),
                        "dev": epoch_dev,
                        "train_seconds": round(train_seconds / trials, 3),
                    }
                )
                for name, values in epoch_dev.items():
                    for metric, value in values.items():
                        if writers[n] is not None:
                            writers[n].add_scalar(f"dev/{name}/{metric}", value, epoch)
            if progress and not terminal:
                _say_epoch(task, recipe, epoch, curves, len(train_data) * epoch * trials / train_seconds)

        started = time.perf_counter()
        predictions, extra = [{} for _ in range(trials)], [{} for _ in range(trials)]
        for key, (other, split) in to_predict.items() if not all(d is not None for d in diverged) else ():
            data = Packed(split)
            values = predict(
                net, data, recipe.eval_batch_size, device, other.regression, recipe.bf16, recipe.fp16
            )  # [N, rows]
            for n in range(trials):
                predictions[n][key] = {"idx": data.idx.tolist(), "prediction": values[n].tolist()}
                if (data.labels >= 0).all() and len(data):  # a labelled split of another task (AX's diagnostic)
                    extra[n][key] = metrics.compute(other, values[n], data.labels)
        eval_seconds += time.perf_counter() - started
    except (KeyboardInterrupt, SystemExit):
        keeper.stopped(records)  # a stop lands only between steps or in an evaluation: the state is whole
        raise
    bar.close()
    for writer in writers:
        if writer is not None:
            writer.close()
    if all(d is not None for d in diverged):  # nothing to evaluate: every trial stopped
        return [_stopped(d, trials, step) for d in diverged]
    if fast:  # the first trial's weights into the caller's HF model, left in eval mode as predict leaves it
        net.to_hf(into=model, trial=0).eval()

    def trained(n: int):
        return model if n == 0 or not fast else net.to_hf(trial=n).eval()

    results = []
    for n in range(trials):
        last = {name: p[n] for name, p in dev_predictions.items()}
        # The classes predicted on each dev split: a collapsed run (one class everywhere) is then a fact, not
        # inferred from its metric value (a model near chance can hit the majority count by accident).
        classes = {} if task.regression else {name: np.unique(p).astype(int).tolist() for name, p in last.items()}
        results.append(
            FineTuneResult(
                dev=curves[n][-1]["dev"],
                teacher={} if distill is None else against_teacher(task, distill, last, dev_data),
                dev_classes=classes,
                dev_predictions={
                    name: {
                        "idx": dev_data[name].idx.tolist(),
                        "prediction": values.tolist(),
                        "label": dev_data[name].labels.tolist(),
                    }
                    for name, values in last.items()
                },
                curve=curves[n],
                predictions=predictions[n],
                train_seconds=train_seconds / trials,
                eval_seconds=eval_seconds / trials,
                train_examples=len(train_data) * recipe.epochs,
                steps=step,
                device=str(device),
                encoder="fast" if fast else "hf",
                extra_metrics=extra[n],
                pack_size=trials,
                diverged=diverged[n],
                trained_model=lambda n=n: trained(n),
            )
        )
    return results


def _stopped(diverged: Diverged, trials: int, steps: int) -> FineTuneResult:
    return FineTuneResult(dev={}, curve=[], predictions={}, steps=steps, pack_size=trials, diverged=diverged)


def _tensorboard(log_dirs: list[str | None]) -> list:
    """A SummaryWriter per trial that has a folder (torch.utils.tensorboard needs the tensorboard package)."""
    if not any(log_dirs):
        return [None] * len(log_dirs)
    from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (the optional tensorboard extra: a run that asks)

    return [SummaryWriter(folder) if folder else None for folder in log_dirs]


def _say_epoch(task: Task, recipe: Recipe, epoch: int, curves: list[list[dict]], examples_per_second: float) -> None:
    """One line per epoch in a log (SLURM, CI), in place of a progress bar: each trial's loss and dev scores."""
    dev = "; ".join(
        ", ".join(f"{name} {100 * metrics.split_score(task, values):.2f}" for name, values in c[-1]["dev"].items())
        for c in curves
    )
    losses = " ".join(f"{c[-1]['train_loss']:.4f}" for c in curves)
    print(
        f"{task.name} epoch {epoch}/{recipe.epochs}: train loss {losses}, dev {dev}, {examples_per_second:.0f} examples/s",
        file=sys.stderr,
        flush=True,
    )
