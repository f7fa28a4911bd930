"""A tokenized split as flat arrays, and the batches a recipe draws from it: the one place that decides which rows
a step trains on (the Trainer's shuffle, length grouping, run_classifier.py's buffered file order; the first
max_train_samples rows; a distilled student's transfer rows after the train rows)."""

from __future__ import annotations

import math

import datasets
import numpy as np
import torch

from glue_bench.training.distill import Distillation
from glue_bench.training.recipe import Recipe
from glue_bench.training.tf_order import buffered_order


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


def epochs_of_batches(data: Packed, recipe: Recipe, generator: torch.Generator) -> list[list[np.ndarray]]:
    """Each epoch's batches (arrays of row numbers).

    batch_order "shuffle": every epoch a new permutation of the rows (the last batch may be short); with
    group_by_length, rows of similar length together in mega-batches of 50 batches, as the HF Trainer does.
    batch_order "tf": run_classifier.py's stream (tf_order.py): the file repeated through a 100-row shuffle buffer,
    full batches only, int(rows / batch_size * epochs) of them; epoch e ends at batch int(rows / batch_size * e).
    """
    size = recipe.batch_size
    if recipe.batch_order == "tf":
        per_epoch = len(data) / size
        stream = buffered_order(len(data), size, int(per_epoch * recipe.epochs), recipe.seed)
        ends = [0] + [int(per_epoch * e) for e in range(1, recipe.epochs + 1)]
        return [list(stream[ends[e] : ends[e + 1]]) for e in range(recipe.epochs)]
    out = []
    for _ in range(recipe.epochs):
        order = torch.randperm(len(data), generator=generator).numpy()
        if recipe.group_by_length:  # sort within mega-batches of 50 batches, as the HF Trainer's length grouping does
            chunks = np.array_split(order, max(1, math.ceil(len(order) / (50 * size))))
            order = np.concatenate([chunk[np.argsort(-data.lengths[chunk], kind="stable")] for chunk in chunks])
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        if recipe.group_by_length:  # shuffle batch order so long batches are not all at the start
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        out.append(batches)
    return out


def training_rows(train: datasets.Dataset, recipe: Recipe) -> datasets.Dataset:
    """The train rows a recipe trains on: the first max_train_samples rows, or all of them."""
    if recipe.max_train_samples:
        return train.select(range(min(recipe.max_train_samples, len(train))))
    return train


def with_transfer(train: datasets.Dataset, distill: Distillation | None) -> tuple[Packed, np.ndarray]:
    """The rows the student trains on (the train rows, then any transfer rows) and which ones have a label."""
    if distill is None or distill.transfer is None:  # load_transfer refuses a file without rows
        return Packed(train), np.ones(len(train), dtype=bool)
    columns = [c for c in ("input_ids", "token_type_ids", "label", "idx") if c in train.column_names]
    transfer = distill.transfer.select_columns(columns).cast(train.select_columns(columns).features)
    rows = datasets.concatenate_datasets([train.select_columns(columns), transfer])
    return Packed(rows), np.arange(len(rows)) < len(train)
