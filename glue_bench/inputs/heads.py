"""What classification head a checkpoint brings, read before any weight loads, and the head a trial trains.

A checkpoint may hold a classifier already (an MNLI or STS-B fine-tune, a folder `export-model` wrote), of the task's
size or of another. The recipe's `head` says what a trial does with it:
  fresh       the head is initialised from the trial's seed whatever the checkpoint holds (every parameter outside
              the base model, as from_pretrained initialises a head the checkpoint lacks); a checkpoint without a
              head loads exactly as before
  checkpoint  the checkpoint's head is trained on; pre-flight refuses a checkpoint whose head has another size
              (or none)
`checkpoint_labels` is the size of the head the checkpoint holds (None: no head), read from the weight files'
headers (safetensors: the JSON header; a .bin is opened memory-mapped), or from the config where no weight file
is at hand (a Hub model not yet downloaded).
"""

from __future__ import annotations

import copy

from glue_bench.errors import UserError
from glue_bench.inputs import weights
from glue_bench.inputs.tasks import Task


def output_keys(config) -> tuple[str, ...]:
    """The state-dict keys of the head's output layer: the parameters whose shape follows the label count (BERT's
    classifier.weight/bias, RoBERTa's and ELECTRA's classifier.out_proj.*), found by building the model twice on
    the meta device (no memory, no init)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    shapes = []
    for labels in (2, 3):
        sized = copy.deepcopy(config)
        sized.num_labels = labels
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(sized)
        shapes.append({k: tuple(v.shape) for k, v in model.state_dict().items()})
    return tuple(k for k in shapes[0] if shapes[0][k] != shapes[1].get(k))


def checkpoint_labels(ref, config) -> int | None:
    """The size of the classification head the checkpoint `ref` holds, None when it holds none."""
    if ref.kind == "random":
        return None
    keys = output_keys(config)
    shapes = weights.shapes(ref, keys)
    if shapes is None:  # no weight file at hand: what the config says it was trained as
        trained_as = " ".join(getattr(config, "architectures", None) or [])
        return config.num_labels if "ForSequenceClassification" in trained_as else None
    found = [shapes[k] for k in keys if k in shapes]
    return found[0][0] if found else None


def check_head(ref, config, task: Task, head: str) -> int | None:
    """The checkpoint's head size (None: none); with head = "checkpoint", a UserError of one line unless the
    checkpoint holds a head of the task's size."""
    labels = checkpoint_labels(ref, config)
    if head == "checkpoint" and labels != task.num_labels:
        holds = "no classification head" if labels is None else f"a head of {labels} label(s)"
        raise UserError(
            f'model {ref.ref}: head = "checkpoint" trains the checkpoint\'s classification head, but it holds '
            f'{holds} and {task.name} needs {task.num_labels}; use head = "fresh" (a new head from the seed)'
        )
    return labels


def fresh_head(model, seed: int) -> None:
    """Initialise every parameter outside the base model from `seed`, with the model's own init (what
    from_pretrained does for a head the checkpoint lacks): transformers' init skips tensors marked initialised."""
    import torch

    base = model.base_model_prefix
    inside = lambda name: name == base or name.startswith(base + ".")  # noqa: E731
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        tensor._is_hf_initialized = inside(name)
    for name, module in model.named_modules():
        module._is_hf_initialized = inside(name)
    torch.manual_seed(seed)
    model.initialize_weights()
