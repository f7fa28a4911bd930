"""Distillation: the student learns a fine-tuned teacher's outputs (Turc et al. 2019's Pre-trained Distillation).

Classification: alpha · CE(labels) + (1 − alpha) · T² · KL(softmax(teacher / T) ‖ softmax(student / T));
regression: alpha · MSE(labels) + (1 − alpha) · MSE(teacher output). The T² keeps the soft term's gradients
the size of the hard term's whatever the temperature (Hinton et al. 2015). The teacher's outputs are computed
before training (sweeping/teacher.py) and arrive here as arrays, row-aligned with the student's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np
import torch
import torch.nn.functional as F

from glue_bench.inputs.tasks import Task
from glue_bench.training import metrics
from glue_bench.training.recipe import Recipe


@dataclass
class Distillation:
    """The teacher's outputs for one student trial: logits [rows, classes], or [rows] for a regression task."""

    train: np.ndarray  # on the trial's train rows (after max_train_samples)
    dev: dict[str, np.ndarray]  # split → on that dev split: for the student's agreement with its teacher
    transfer: datasets.Dataset | None = None  # unlabelled rows added to the train rows, tokenized for the student
    transfer_outputs: np.ndarray | None = None  # on the transfer rows


def loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    labelled: torch.Tensor,
    alpha: float,
    temperature: float,
    regression: bool,
    rows: int | None = None,
    labelled_rows: int | None = None,
) -> torch.Tensor:
    """The distillation loss of one batch: student [rows, classes] (regression [rows, 1]), teacher the same
    shape (or [rows]), labels [rows], labelled [rows] bool (False on transfer rows, which have no label).

    The teacher's term is the mean over the batch's rows, the labels' term the mean over its labelled rows (0 when
    it has none); with alpha = 0 it is not computed at all: the student never sees a label. A micro-batch of a
    batch (gradient accumulation) passes the batch's `rows` and `labelled_rows`: each term is then weighted by the
    micro-batch's share of them, so that the micro-batches' losses sum to the batch's."""
    student = student.float()
    teacher = teacher.float().reshape(student.shape)
    if regression:
        soft = F.mse_loss(student, teacher)
    else:
        soft = temperature**2 * F.kl_div(
            F.log_softmax(student / temperature, dim=-1),
            F.log_softmax(teacher / temperature, dim=-1),
            log_target=True,
            reduction="batchmean",  # the sum over classes, the mean over rows: KL as defined
        )
    soft = soft * (len(student) / (rows or len(student)))
    if alpha == 0:
        return soft
    mine_count = int(labelled.sum())
    if not mine_count:
        return (1 - alpha) * soft
    mine, truth = student[labelled], labels[labelled]
    hard = F.mse_loss(mine.squeeze(-1), truth.float()) if regression else F.cross_entropy(mine, truth.long())
    hard = hard * (mine_count / (labelled_rows or mine_count))
    return alpha * hard + (1 - alpha) * soft


def agreement(student: np.ndarray, teacher: np.ndarray, regression: bool) -> float:
    """How closely the student follows its teacher on a split: the share of rows where their classes agree;
    for a regression task the Pearson correlation of their outputs."""
    if regression:
        return float(np.corrcoef(student, teacher.reshape(-1))[0, 1])
    return float(np.mean(student == teacher.argmax(-1)))


def teacher_predictions(outputs: np.ndarray, regression: bool) -> np.ndarray:
    """The teacher's predicted class per row (its output itself for a regression task)."""
    return outputs.reshape(-1) if regression else outputs.argmax(-1)


def against_teacher(task: Task, distill: Distillation, student: dict[str, np.ndarray], dev: dict) -> dict:
    """The student's agreement with its teacher on each dev split (`dev`: split → its batches.Packed rows), and the
    teacher's own dev metrics."""
    return {
        "agreement": {name: agreement(student[name], distill.dev[name], task.regression) for name in dev},
        "metrics": {
            name: metrics.compute(task, teacher_predictions(distill.dev[name], task.regression), data.labels)
            for name, data in dev.items()
        },
    }


def micro_batch_loss(logits, batch, recipe: Recipe, task: Task, device) -> torch.Tensor:
    """One trial's distillation loss on a micro-batch of a batch (training/distill.py), weighted by its share."""
    targets, labels, labelled, micro, rows = batch
    on = {"device": device, "non_blocking": True}
    return loss(
        logits,
        targets[micro].to(**on),
        labels[micro].to(**on),
        labelled[micro].to(**on),
        recipe.alpha,
        recipe.temperature,
        task.regression,
        rows=len(rows),
        labelled_rows=int(labelled[rows].sum()),
    )
