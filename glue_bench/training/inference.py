"""Either model's outputs on a tokenized split: glue-bench's unpadded encoder or the Hugging Face model, one batch
(`forward`) or a whole split sorted by length (`outputs`, `predict`), with the recipe's autocast."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from glue_bench.training import encoder
from glue_bench.training.batches import Packed
from glue_bench.training.encoder import UnpaddedEncoder
from glue_bench.training.unpadding import unpadded_batch


def forward(net, data: Packed, rows: np.ndarray, device: torch.device, labels: torch.Tensor | None = None):
    """The rows `rows` of `data` through either model: logits [N, rows, labels] and each trial's loss [N].

    Ours takes an unpadded batch; the HF model a padded one, with the inputs its forward takes (token type ids only
    where it has them) and its own pad id."""
    if isinstance(net, UnpaddedEncoder):
        batch = unpadded_batch(data.input_ids, data.token_type_ids, data.offsets, data.lengths, rows, device)
        return net(batch, labels=labels)
    inputs = data.batch(rows, device, net.config.pad_token_id or 0)
    accepted = inspect.signature(net.forward).parameters
    out = net(**{k: v for k, v in inputs.items() if k in accepted}, labels=labels)
    return encoder.ClassifierOutput(out.logits[None], None if out.loss is None else out.loss[None])


def autocast(device: torch.device, bf16: bool, fp16: bool):
    """bf16 autocast on a GPU; fp16 autocast on any device (for GPUs without bf16, with a gradient scaler; on a
    CPU, slowly, for tests); else nothing."""
    if fp16:
        return torch.autocast(device.type, dtype=torch.float16)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


@torch.inference_mode()
def outputs(net, data: Packed, batch_size: int, device: torch.device, bf16=False, fp16=False) -> np.ndarray:
    """Either model's logits [N, rows, labels] in the split's row order (N: the pack's trials; 1 for the HF model).
    Rows are batched by length so little is padded."""
    trials = getattr(net, "trials", 1)
    if trials > 1 and device.type == "cpu":  # a pack on a CPU: trial by trial, the same arithmetic in a working
        # set a solo run's size, which the caches hold (a pack's evaluation measured 0.8x a solo run's per trial)
        return np.concatenate([outputs(net.trial(n), data, batch_size, device, bf16, fp16) for n in range(trials)])
    net.eval()
    order = np.argsort(data.lengths, kind="stable")
    chunks = []
    for start in range(0, len(order), batch_size):
        with autocast(device, bf16, fp16):
            chunks.append(forward(net, data, order[start : start + batch_size], device).logits.float())
    result = torch.cat(chunks, dim=1).cpu().numpy() if chunks else np.zeros((trials, 0, 1), dtype=np.float32)
    logits = np.empty_like(result)
    logits[:, order] = result
    return logits


def predict(net, data: Packed, batch_size: int, device, regression: bool, bf16=False, fp16=False) -> np.ndarray:
    """Either model's predictions [N, rows] in the split's row order: its classes, or a regression task's scores."""
    logits = outputs(net, data, batch_size, device, bf16, fp16)
    return logits[..., 0] if regression else logits.argmax(-1)
