"""A batch for the unpadded encoder (training/encoder.py): only the real tokens of its rows, plus the indices that lay
them out by row for attention. The indices are built on the host from the row lengths, so forward never waits on
the device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class UnpaddedBatch:
    input_ids: torch.Tensor  # [tokens] the real tokens of all rows, row after row
    token_type_ids: torch.Tensor  # [tokens] (zeros where the tokenizer gives none)
    position_ids: torch.Tensor  # [tokens] 0..length-1 within each row
    padded_index: torch.Tensor  # [tokens] where each token sits in the [rows * max_len] padded layout
    cls_index: torch.Tensor  # [rows] where each row's first token ([CLS], <s>) sits in [tokens]
    key_mask: torch.Tensor  # [rows, max_len] bool, True for real tokens
    max_len: int  # the longest row (a host int: shapes must not need a device sync)
    rows: int


def unpadded_batch(
    input_ids_flat: np.ndarray,
    token_type_ids_flat: np.ndarray | None,
    offsets: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    device,
) -> UnpaddedBatch:
    """The rows `rows` of a split stored flat (as `loop.Packed` stores it): row r is `flat[offsets[r]:][:lengths[r]]`."""
    lengths = np.asarray(lengths)[rows].astype(np.int64)  # [rows]
    if len(lengths) == 0 or lengths.min() < 1:
        raise ValueError("every row needs at least one token (its [CLS])")
    n, max_len = len(lengths), int(lengths.max())
    starts = np.cumsum(lengths) - lengths  # [rows] first token of each row in [tokens]
    position = np.arange(lengths.sum()) - np.repeat(starts, lengths)  # [tokens]
    source = np.repeat(np.asarray(offsets)[rows], lengths) + position  # [tokens] index into the flat arrays
    types = np.zeros(len(source)) if token_type_ids_flat is None else np.asarray(token_type_ids_flat)[source]
    arrays = {
        "input_ids": np.asarray(input_ids_flat)[source],
        "token_type_ids": types,
        "position_ids": position,
        "padded_index": np.repeat(np.arange(n), lengths) * max_len + position,
        "cls_index": starts,
        "key_mask": np.arange(max_len)[None, :] < lengths[:, None],
    }
    # int64 ids and indices (what embeddings and index_select take), the mask as bool
    tensors = {
        k: torch.from_numpy(np.ascontiguousarray(v, np.bool_ if k == "key_mask" else np.int64))
        for k, v in arrays.items()
    }
    tensors = {k: v.to(device, non_blocking=True) for k, v in tensors.items()}
    return UnpaddedBatch(**tensors, max_len=max_len, rows=n)


def unpadded_from_padded(input_ids, token_type_ids, attention_mask) -> UnpaddedBatch:
    """The same batch from a right-padded one (tests, one-off use: it reads the mask on the host)."""
    mask = attention_mask.bool().cpu().numpy()  # [rows, len]
    lengths = mask.sum(1)
    if not (mask == (np.arange(mask.shape[1])[None, :] < lengths[:, None])).all():
        raise ValueError("attention_mask must be right padding: ones then zeros in every row")
    offsets = np.cumsum(lengths) - lengths
    ids = input_ids.cpu().numpy()[mask]  # [tokens]
    types = None if token_type_ids is None else token_type_ids.cpu().numpy()[mask]
    return unpadded_batch(ids, types, offsets, lengths, np.arange(len(lengths)), input_ids.device)
