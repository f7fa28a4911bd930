"""Which models the unpadded encoder (training/encoder.py) runs, and what sets each family apart.

BERT and the families built from its layer differ only in their embeddings and their head; `FAMILIES` says how,
and `unsupported_reason` why a config is not one the encoder computes exactly as the Hugging Face model does. No
torch here: a worker sizes its packs, and the dry run names the encoder, without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PretrainedConfig

PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")


@dataclass(frozen=True)
class Family:
    base: str  # the base model's attribute in the HF model, and so its state-dict prefix
    positions_after_padding: bool  # RoBERTa numbers a row's positions from padding_idx + 1
    head: str  # "pooler": BERT's pooled [CLS] then a linear classifier; else the activation of a head on token 0


FAMILIES = {
    "bert": Family("bert", False, "pooler"),
    "roberta": Family("roberta", True, "tanh"),
    "xlm-roberta": Family("roberta", True, "tanh"),
    "camembert": Family("roberta", True, "tanh"),
    "electra": Family("electra", False, "gelu"),
}


def unsupported_reason(config: PretrainedConfig) -> str | None:
    """Why this module cannot stand in for the HF model of `config`, or None when it can."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        return f"model_type is {model_type!r}, not one of {', '.join(FAMILIES)}"
    # transformers 5 reads only absolute positions for these families; an old checkpoint trained with relative
    # ones is not ours to reinterpret.
    position = getattr(config, "position_embedding_type", "absolute")
    if position != "absolute":
        return f"position_embedding_type is {position!r}, not 'absolute'"
    if config.hidden_act != "gelu":  # HF's "gelu" is the exact erf GELU, F.gelu; others are different functions
        return f"hidden_act is {config.hidden_act!r}, not 'gelu'"
    if config.is_decoder or getattr(config, "add_cross_attention", False):
        return "a decoder (causal mask / cross-attention) is not an encoder for classification"
    if config.hidden_size % config.num_attention_heads:
        return f"hidden_size {config.hidden_size} is not a multiple of {config.num_attention_heads} heads"
    if config.problem_type not in PROBLEM_TYPES:
        return f"problem_type {config.problem_type!r} is unknown"
    return None


def supports(config: PretrainedConfig) -> bool:
    """True when `UnpaddedEncoder` computes exactly what HF's model for sequence classification does for `config`."""
    return unsupported_reason(config) is None
