"""An unpadded BERT encoder for sequence classification, top to bottom, in one file.

The Hugging Face model pads every row of a batch to the longest one and runs every layer on the padding too.
This one keeps only the real tokens: embeddings, projections, feed-forward, LayerNorms and dropout all run on
`[tokens, hidden]`. Only attention needs the rows apart: Q/K/V are scattered into `[rows, heads, max_len, head_dim]`
for `scaled_dot_product_attention` with a key mask, and gathered back. The unpad/re-pad indices are built on the
host from the row lengths, so forward never waits on the device.

The module tree and parameter names are those of `BertForSequenceClassification` (`bert.embeddings...`,
`bert.encoder.layer.N.attention.self.query...`, `bert.pooler.dense`, `classifier`), so state dicts move both ways
unchanged: `UnpaddedBert.from_hf(model)` to train, `model.to_hf()` to save with `save_pretrained`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")


def unsupported_reason(config) -> str | None:
    """Why this module cannot stand in for the HF model of `config`, or None when it can."""
    if getattr(config, "model_type", None) != "bert":
        return f"model_type is {getattr(config, 'model_type', None)!r}, not 'bert'"
    # transformers 5 dropped relative positions from BERT (it reads absolute ones whatever the config says); an old
    # checkpoint trained with them is not ours to reinterpret.
    position = getattr(config, "position_embedding_type", "absolute")
    if position != "absolute":
        return f"position_embedding_type is {position!r}, not 'absolute'"
    if config.hidden_act != "gelu":  # HF's "gelu" is the exact erf GELU, F.gelu; others are different functions
        return f"hidden_act is {config.hidden_act!r}, not 'gelu'"
    if config.is_decoder or config.add_cross_attention:
        return "a decoder (causal mask / cross-attention) is not an encoder for classification"
    if config.hidden_size % config.num_attention_heads:
        return f"hidden_size {config.hidden_size} is not a multiple of {config.num_attention_heads} heads"
    if config.problem_type not in PROBLEM_TYPES:
        return f"problem_type {config.problem_type!r} is unknown"
    return None


def supports(config) -> bool:
    """True when `UnpaddedBert` computes exactly what HF's BertForSequenceClassification does for `config`."""
    return unsupported_reason(config) is None


# ---------------------------------------------------------------------------------------------------------------------
# The batch: only the real tokens, plus the indices to lay them out by row for attention.


@dataclass
class UnpaddedBatch:
    input_ids: torch.Tensor  # [tokens] the real tokens of all rows, row after row
    token_type_ids: torch.Tensor  # [tokens]
    position_ids: torch.Tensor  # [tokens] 0..length-1 within each row
    padded_index: torch.Tensor  # [tokens] where each token sits in the [rows * max_len] padded layout
    cls_index: torch.Tensor  # [rows] where each row's first token ([CLS]) sits in [tokens]
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
    arrays = {
        "input_ids": np.asarray(input_ids_flat)[source],
        # one segment for a tokenizer that gives no token types (RoBERTa's)
        "token_type_ids": np.zeros(len(source))
        if token_type_ids_flat is None
        else np.asarray(token_type_ids_flat)[source],
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
    ids, types = input_ids.cpu().numpy()[mask], token_type_ids.cpu().numpy()[mask]  # [tokens] each
    return unpadded_batch(ids, types, offsets, lengths, np.arange(len(lengths)), input_ids.device)


# ---------------------------------------------------------------------------------------------------------------------
# The blocks. Attribute names follow HF's BERT so the state dict keys are the same.


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        # padding_idx: HF's [PAD] row gets no gradient; keep that so training steps match.
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, batch: UnpaddedBatch) -> torch.Tensor:
        # Summed in HF's order (word + type, then + position): float addition is not associative.
        x = self.word_embeddings(batch.input_ids) + self.token_type_embeddings(batch.token_type_ids)  # [tokens, hidden]
        x = x + self.position_embeddings(batch.position_ids)
        return self.dropout(self.LayerNorm(x))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout: each element kept with probability 1 - p, then scaled by 1 / (1 - p).

    On a CPU, drawing a uniform tensor and comparing it is ~40% faster than F.dropout's bernoulli_ (dropout is
    ~8% of a BERT-Tiny step); the masks are the same distribution, drawn from the same seeded generator. A GPU
    keeps its fused dropout kernel.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    keep = torch.empty_like(x).uniform_().ge_(p).mul_(1.0 / (1.0 - p))  # [x's shape]: 0 or 1 / (1 - p)
    return x * keep


class Dropout(nn.Dropout):
    """nn.Dropout (same p, same place in the module tree as HF's) drawing its mask with `dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention_math(q, k, v, key_mask: torch.Tensor, probs_dropout: nn.Module) -> torch.Tensor:
    """softmax(q kᵀ / √d + mask) v with dropout on the probabilities: what SDPA computes, without its CPU extras.

    On a CPU, SDPA with dropout (training) runs this same unfused math and adds a "safe softmax" pass (finding
    rows with every key masked, which cannot happen here: every row has its [CLS]) and a mask conversion in
    every layer; written out, a BERT-Tiny step is a few % faster. Without dropout SDPA's fused CPU kernel is
    the faster one. q, k, v: [rows, heads, max_len, head_dim].
    """
    bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~key_mask, float("-inf"))
    scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(q.shape[-1])) + bias[:, None, None, :]  # [rows, heads, L, L]
    return probs_dropout(scores.softmax(-1)) @ v  # [rows, heads, max_len, head_dim]


class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(config.attention_probs_dropout_prob)  # on the attention probabilities (SDPA's on a GPU)

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        hidden = x.shape[1]  # x: [tokens, hidden]

        def by_row(t: torch.Tensor) -> torch.Tensor:  # [tokens, hidden] -> [rows, heads, max_len, head_dim]
            padded = t.new_zeros(batch.rows * batch.max_len, hidden).index_copy(0, batch.padded_index, t)
            return padded.view(batch.rows, batch.max_len, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = by_row(self.query(x)), by_row(self.key(x)), by_row(self.value(x))
        # Keys of padding are masked out; queries of padding compute rubbish that is never gathered back.
        dropout_p = self.dropout.p if self.training else 0.0
        if q.device.type == "cpu" and dropout_p > 0:  # where SDPA would run its unfused math anyway
            y = attention_math(q, k, v, batch.key_mask, self.dropout)
        else:  # a GPU, or no dropout (evaluation): SDPA's fused kernels
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=batch.key_mask[:, None, None, :], dropout_p=dropout_p)
        # y: [rows, heads, max_len, head_dim]
        y = y.transpose(1, 2).reshape(batch.rows * batch.max_len, hidden)
        return y.index_select(0, batch.padded_index)  # [tokens, hidden]


class ResidualOutput(nn.Module):
    """Projection, dropout, then the residual LayerNorm: HF's BertSelfOutput and BertOutput are both this."""

    def __init__(self, config: BertConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)  # [tokens, hidden]


class Attention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = SelfAttention(config)  # the name HF uses: attention.self.query
        self.output = ResidualOutput(config, config.hidden_size)

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        return self.output(self.self(x, batch), x)


class Intermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # [tokens, intermediate]; the exact (erf) GELU, as HF's "gelu"


class Layer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = ResidualOutput(config, config.intermediate_size)

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        x = self.attention(x, batch)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, batch)
        return x


class Pooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        return torch.tanh(self.dense(x.index_select(0, batch.cls_index)))  # [rows, hidden]: the [CLS] tokens only


class Bert(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)

    def forward(self, batch: UnpaddedBatch) -> torch.Tensor:
        return self.pooler(self.encoder(self.embeddings(batch), batch), batch)  # [rows, hidden]


@dataclass
class ClassifierOutput:
    logits: torch.Tensor  # [rows, num_labels]
    loss: torch.Tensor | None = None


class UnpaddedBert(nn.Module):
    """BertForSequenceClassification on unpadded batches: same parameters, same outputs, no work on padding."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if reason := unsupported_reason(config):
            raise ValueError(f"UnpaddedBert cannot run this model: {reason}")
        self.config = config
        self.num_labels = config.num_labels
        self.bert = Bert(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module):
        # HF's BERT init: N(0, initializer_range) matrices, zero biases, zero [PAD] row, LayerNorms at identity.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_hf(cls, hf_model: BertForSequenceClassification) -> UnpaddedBert:
        """A copy of `hf_model`: its config, weights, device, dtype and train/eval mode (the weights are not shared)."""
        weight = hf_model.classifier.weight
        with torch.device("meta"):  # no random init: every weight is overwritten just below
            model = cls(hf_model.config)
        model = model.to_empty(device=weight.device).to(weight.dtype)
        model.load_state_dict(hf_model.state_dict(), strict=True)
        return model.train(hf_model.training)

    def to_hf(self, into: BertForSequenceClassification | None = None) -> BertForSequenceClassification:
        """Our weights in an HF model (`into`, or a new one on our device and dtype), e.g. to `save_pretrained`."""
        if into is None:
            weight = self.classifier.weight
            into = BertForSequenceClassification(copy.deepcopy(self.config)).to(weight.device, weight.dtype)
        into.load_state_dict(self.state_dict(), strict=True)
        return into

    def forward(self, batch: UnpaddedBatch, labels: torch.Tensor | None = None) -> ClassifierOutput:
        pooled = self.bert(batch)  # [rows, hidden]
        logits = self.classifier(self.dropout(pooled))  # [rows, num_labels]
        return ClassifierOutput(logits, None if labels is None else self.loss(logits, labels))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss exactly as BertForSequenceClassification computes it (problem_type guessed the same way)."""
        problem = self.config.problem_type
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        if problem == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze())
            return F.mse_loss(logits, labels)
        if problem == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels)
