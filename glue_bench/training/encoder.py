"""An unpadded encoder for sequence classification, for one trial or a pack of trials, top to bottom, in one file.

Unpadded. The Hugging Face model pads every row of a batch to the longest one and runs every layer on the padding
too. This one keeps only the real tokens: embeddings, projections, feed-forward, LayerNorms and dropout all run on
`[tokens, hidden]`. Only attention needs the rows apart: Q/K/V are scattered into `[rows, heads, max_len, head_dim]`
with a key mask, and gathered back. The unpad/re-pad indices are built on the host from the row lengths, so forward
never waits on the device.

A pack. N trials that differ only in the learning rate read the same batches with the same dropout masks (they
share the seed), so they train as one model whose every weight has a leading trial dimension `[N, ...]` and whose
activations are `[N, tokens, hidden]`: each linear layer is one batched product, LayerNorm runs on each trial,
embeddings are gathered per trial, attention runs per trial and row, and each dropout site draws one mask of a
single trial's shape, shared by the pack: exactly the mask each solo run draws. A solo run is a pack of one, whose
blocks run the plain operation on their one trial. On a CPU a pack's trials compute bit for bit what their solo
runs compute (tests/test_packs.py): the batched product sums as the plain one does.

Families. BERT and the families built from its layer run here; their layers are BERT's, they differ only in their
embeddings and their head (FAMILIES):
  bert          word + token type + position embeddings; the tanh pooler on [CLS], dropout, a linear classifier
  roberta       (XLM-R and CamemBERT too) positions counted from padding_idx + 1, one token type; a head on <s>:
                dropout, dense, tanh, dropout, out_proj; no pooler
  electra       embeddings of embedding_size, projected to hidden_size where the two differ; roberta's head with
                GELU for tanh
Module and parameter names are the Hugging Face model's (`bert.encoder.layer.N.attention.self.query`,
`roberta.embeddings...`, `electra.embeddings_project`, `classifier.out_proj`, ...), with the trial dimension in
front: `UnpaddedEncoder.from_hf(model, trials)` to train, `model.to_hf(trial=n)` to save with save_pretrained.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSequenceClassification, PretrainedConfig

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


# ---------------------------------------------------------------------------------------------------------------------
# The batch: only the real tokens, plus the indices to lay them out by row for attention.


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


# ---------------------------------------------------------------------------------------------------------------------
# Stacked parameters: nn.Linear, nn.LayerNorm, nn.Embedding and dropout with a leading trial dimension N.


class Linear(nn.Module):
    """nn.Linear for N trials: weight [N, out, in], bias [N, out]; [N, tokens, in] → [N, tokens, out]."""

    def __init__(self, trials: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(trials, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(trials, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.weight) == 1:  # one trial: nn.Linear's own product
            return F.linear(x[0], self.weight[0], self.bias[0])[None]
        if self.weight.shape[1] == 1:  # a regression head: a plain product takes a matrix-vector kernel, a batched
            # one does not; per trial (one small product each), so that each trial keeps its solo run's last bits
            return torch.stack([F.linear(t, w, b) for t, w, b in zip(x, self.weight, self.bias)])
        return torch.baddbmm(self.bias[:, None, :], x, self.weight.transpose(1, 2))


class LayerNorm(nn.Module):
    """nn.LayerNorm for N trials, each with its own scale and shift [N, hidden]: F.layer_norm on each trial, whose
    fused affine rounds once (a norm then a stacked scale and shift rounds three times: last bits off the solo run)."""

    def __init__(self, trials: int, hidden: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(trials, hidden))
        self.bias = nn.Parameter(torch.empty(trials, hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[-1],)
        if len(self.weight) == 1:  # one trial: no stack
            return F.layer_norm(x[0], shape, self.weight[0], self.bias[0], self.eps)[None]
        return torch.stack([F.layer_norm(t, shape, w, b, self.eps) for t, w, b in zip(x, self.weight, self.bias)])


class Embedding(nn.Module):
    """nn.Embedding for N trials: weight [N, rows, dim]; ids [tokens] → [N, tokens, dim]. The padding row gets no
    gradient, as nn.Embedding's padding_idx says (a text may hold the pad token itself)."""

    def __init__(self, trials: int, num_embeddings: int, dim: int, padding_idx: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(trials, num_embeddings, dim))
        self.padding_idx = padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if len(self.weight) == 1:  # one trial: nn.Embedding's own lookup
            return F.embedding(ids, self.weight[0], self.padding_idx)[None]
        x = self.weight.index_select(1, ids)  # [N, tokens, dim]
        if self.padding_idx is None:
            return x
        return torch.where((ids == self.padding_idx)[None, :, None], x.detach(), x)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout with one mask for the whole pack: x [N, ...] times a mask of one trial's shape [...], each
    element kept with probability 1 - p and scaled by 1 / (1 - p).

    The mask is a uniform draw compared with p, drawn with a single trial's shape whatever N is, so a pack's trials
    see exactly the masks their solo runs draw (one generator, seeded alike). On a CPU it is also ~40% faster
    than F.dropout's bernoulli_.
    """
    if not training or p == 0.0:
        return x
    # drawn in float32 whatever x's dtype: a bf16 uniform has 8 bits, too coarse a grid for keep-with-probability
    keep = torch.empty(x.shape[1:], device=x.device).uniform_().ge_(p).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * keep


class Dropout(nn.Dropout):
    """nn.Dropout (same p, same place in the module tree as HF's) drawing one mask for the pack with `dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


# ---------------------------------------------------------------------------------------------------------------------
# The blocks. Attribute names follow HF's BERT so the state dict keys are the same.


class Embeddings(nn.Module):
    """A family's embeddings: word + token type, then + position (HF's order: float addition is not associative),
    LayerNorm, dropout. RoBERTa's positions count from padding_idx + 1; ELECTRA's width is its embedding_size."""

    def __init__(self, config: PretrainedConfig, family: Family, trials: int):
        super().__init__()
        width = getattr(config, "embedding_size", config.hidden_size)
        # padding_idx: HF's [PAD] row gets no gradient; keep that so training steps match.
        self.word_embeddings = Embedding(trials, config.vocab_size, width, config.pad_token_id)
        self.position_offset = config.pad_token_id + 1 if family.positions_after_padding else 0
        position_padding = config.pad_token_id if family.positions_after_padding else None
        self.position_embeddings = Embedding(trials, config.max_position_embeddings, width, position_padding)
        self.token_type_embeddings = Embedding(trials, config.type_vocab_size, width)
        self.LayerNorm = LayerNorm(trials, width, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, batch: UnpaddedBatch) -> torch.Tensor:
        positions = batch.position_ids + self.position_offset if self.position_offset else batch.position_ids
        x = self.word_embeddings(batch.input_ids) + self.token_type_embeddings(batch.token_type_ids)
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))  # [N, tokens, width]


def attention_math(q, k, v, key_mask: torch.Tensor, probs_dropout: nn.Module, trials: int) -> torch.Tensor:
    """softmax(q kᵀ / √d + mask) v with dropout on the probabilities, one mask for the pack: what SDPA computes.

    q, k, v: [N * rows, heads, max_len, head_dim]. SDPA draws its dropout inside the kernel, per trial and row;
    written out, the probabilities' mask is drawn once with a single trial's shape. On a CPU SDPA with dropout runs
    this same unfused math anyway, plus a "safe softmax" pass (rows with every key masked, which cannot happen
    here: every row has its first token) and a mask conversion in every layer.
    """
    bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~key_mask, float("-inf"))
    scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(q.shape[-1])) + bias.repeat(trials, 1)[:, None, None, :]
    probs = scores.softmax(-1)  # [N * rows, heads, L, L]
    probs = probs_dropout(probs.view(trials, -1, *probs.shape[1:])).view(probs.shape)
    return probs @ v  # [N * rows, heads, max_len, head_dim]


class SelfAttention(nn.Module):
    def __init__(self, config: PretrainedConfig, trials: int):
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = Linear(trials, config.hidden_size, config.hidden_size)
        self.key = Linear(trials, config.hidden_size, config.hidden_size)
        self.value = Linear(trials, config.hidden_size, config.hidden_size)
        self.dropout = Dropout(config.attention_probs_dropout_prob)  # on the attention probabilities

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        trials, _, hidden = x.shape  # x: [N, tokens, hidden]

        def by_row(t: torch.Tensor) -> torch.Tensor:  # [N, tokens, hidden] -> [N * rows, heads, max_len, head_dim]
            padded = t.new_zeros(trials, batch.rows * batch.max_len, hidden).index_copy(1, batch.padded_index, t)
            return padded.view(trials * batch.rows, batch.max_len, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = by_row(self.query(x)), by_row(self.key(x)), by_row(self.value(x))
        # Keys of padding are masked out; queries of padding compute rubbish that is never gathered back.
        if self.training and self.dropout.p > 0:  # one dropout mask for the pack (SDPA's would differ per trial)
            y = attention_math(q, k, v, batch.key_mask, self.dropout, trials)
        else:  # evaluation, or no dropout: SDPA's fused kernels
            mask = batch.key_mask.repeat(trials, 1)[:, None, None, :]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        # y: [N * rows, heads, max_len, head_dim]
        y = y.transpose(1, 2).reshape(trials, batch.rows * batch.max_len, hidden)
        return y.index_select(1, batch.padded_index)  # [N, tokens, hidden]


class ResidualOutput(nn.Module):
    """Projection, dropout, then the residual LayerNorm: HF's BertSelfOutput and BertOutput are both this."""

    def __init__(self, config: PretrainedConfig, in_features: int, trials: int):
        super().__init__()
        self.dense = Linear(trials, in_features, config.hidden_size)
        self.LayerNorm = LayerNorm(trials, config.hidden_size, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)  # [N, tokens, hidden]


class Attention(nn.Module):
    def __init__(self, config: PretrainedConfig, trials: int):
        super().__init__()
        self.self = SelfAttention(config, trials)  # the name HF uses: attention.self.query
        self.output = ResidualOutput(config, config.hidden_size, trials)

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        return self.output(self.self(x, batch), x)


class Intermediate(nn.Module):
    def __init__(self, config: PretrainedConfig, trials: int):
        super().__init__()
        self.dense = Linear(trials, config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # [N, tokens, intermediate]; the exact (erf) GELU, as HF's "gelu"


class Layer(nn.Module):
    def __init__(self, config: PretrainedConfig, trials: int):
        super().__init__()
        self.attention = Attention(config, trials)
        self.intermediate = Intermediate(config, trials)
        self.output = ResidualOutput(config, config.intermediate_size, trials)

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        x = self.attention(x, batch)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, config: PretrainedConfig, trials: int):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config, trials) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, batch)
        return x


class Pooler(nn.Module):
    """BERT's pooler: tanh of a projection of each row's [CLS]."""

    def __init__(self, config: PretrainedConfig, trials: int):
        super().__init__()
        self.dense = Linear(trials, config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        return torch.tanh(self.dense(x.index_select(1, batch.cls_index)))  # [N, rows, hidden]


class Base(nn.Module):
    """The base model (HF's `bert`, `roberta`, `electra`): embeddings (ELECTRA's projected to the hidden size where
    they are narrower), the layers, and BERT's pooler."""

    def __init__(self, config: PretrainedConfig, family: Family, trials: int):
        super().__init__()
        self.embeddings = Embeddings(config, family, trials)
        width = getattr(config, "embedding_size", config.hidden_size)
        if width != config.hidden_size:
            self.embeddings_project = Linear(trials, width, config.hidden_size)
        self.encoder = Encoder(config, trials)
        if family.head == "pooler":
            self.pooler = Pooler(config, trials)

    def forward(self, batch: UnpaddedBatch) -> torch.Tensor:
        x = self.embeddings(batch)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)
        x = self.encoder(x, batch)  # [N, tokens, hidden]
        return self.pooler(x, batch) if hasattr(self, "pooler") else x


class ClassificationHead(nn.Module):
    """RoBERTa's and ELECTRA's head on each row's first token: dropout, dense, tanh (ELECTRA: GELU), dropout,
    out_proj."""

    def __init__(self, config: PretrainedConfig, activation: str, trials: int, dropout_p: float):
        super().__init__()
        self.dense = Linear(trials, config.hidden_size, config.hidden_size)
        self.dropout = Dropout(dropout_p)
        self.out_proj = Linear(trials, config.hidden_size, config.num_labels)
        self.activation = torch.tanh if activation == "tanh" else F.gelu

    def forward(self, x: torch.Tensor, batch: UnpaddedBatch) -> torch.Tensor:
        x = self.dropout(x.index_select(1, batch.cls_index))  # [N, rows, hidden]
        return self.out_proj(self.dropout(self.activation(self.dense(x))))  # [N, rows, num_labels]


@dataclass
class ClassifierOutput:
    logits: torch.Tensor  # [N, rows, num_labels]
    loss: torch.Tensor | None = None  # [N]: each trial's loss, as the HF model computes it


class UnpaddedEncoder(nn.Module):
    """A family's model for sequence classification on unpadded batches, for N trials: same parameters (a trial
    dimension in front), same outputs, no work on padding."""

    def __init__(self, config: PretrainedConfig, trials: int = 1):
        super().__init__()
        if reason := unsupported_reason(config):
            raise ValueError(f"UnpaddedEncoder cannot run this model: {reason}")
        self.config, self.trials = config, trials
        self.num_labels = config.num_labels
        self.family = FAMILIES[config.model_type]
        self.add_module(self.family.base, Base(config, self.family, trials))
        dropout_p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        if self.family.head == "pooler":
            self.dropout = Dropout(dropout_p)
            self.classifier = Linear(trials, config.hidden_size, config.num_labels)
        else:
            self.classifier = ClassificationHead(config, self.family.head, trials, dropout_p)

    @classmethod
    def from_hf(cls, hf_model, trials: int = 1) -> UnpaddedEncoder:
        """N copies of `hf_model` (its config, weights, device, dtype and train/eval mode) stacked as one model."""
        weight = next(hf_model.parameters())
        with torch.device("meta"):  # no init: every weight is overwritten just below
            model = cls(hf_model.config, trials)
        model = model.to_empty(device=weight.device).to(weight.dtype)
        stacked = {k: v.unsqueeze(0).expand(trials, *v.shape) for k, v in hf_model.state_dict().items()}
        model.load_state_dict(stacked, strict=True)
        return model.train(hf_model.training)

    def to_hf(self, into=None, trial: int = 0):
        """Trial `trial`'s weights in an HF model (`into`, or a new one on our device and dtype): save_pretrained."""
        if into is None:
            weight = next(self.parameters())
            into = AutoModelForSequenceClassification.from_config(copy.deepcopy(self.config))
            into = into.to(weight.device, weight.dtype)
        into.load_state_dict({k: v[trial] for k, v in self.state_dict().items()}, strict=True)
        return into

    def trial(self, n: int) -> UnpaddedEncoder:
        """Trial n of the pack alone, its weights views of the pack's (no copy): a solo model, e.g. to evaluate
        trial by trial where a pack's larger working set is slower (a CPU's caches)."""
        with torch.device("meta"):
            solo = UnpaddedEncoder(self.config, 1)
        solo.load_state_dict({k: v[n : n + 1] for k, v in self.state_dict(keep_vars=True).items()}, assign=True)
        return solo.train(self.training)

    def forward(self, batch: UnpaddedBatch, labels: torch.Tensor | None = None) -> ClassifierOutput:
        x = getattr(self, self.family.base)(batch)  # [N, rows, hidden] pooled (BERT), or [N, tokens, hidden]
        # BERT: dropout and a linear classifier on the pooled rows; the others' head picks each row's first token
        pooled = self.family.head == "pooler"
        logits = self.classifier(self.dropout(x)) if pooled else self.classifier(x, batch)  # [N, rows, num_labels]
        return ClassifierOutput(logits, None if labels is None else self.loss(logits, labels))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each trial's loss [N], exactly as HF's model computes it (problem_type guessed the same way)."""
        problem = self.config.problem_type
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"

        def one(trial_logits: torch.Tensor) -> torch.Tensor:  # [rows, num_labels] → a scalar
            if problem == "regression":
                if self.num_labels == 1:
                    return F.mse_loss(trial_logits.squeeze(), labels.squeeze())
                return F.mse_loss(trial_logits, labels)
            if problem == "single_label_classification":
                return F.cross_entropy(trial_logits.view(-1, self.num_labels), labels.view(-1))
            return F.binary_cross_entropy_with_logits(trial_logits, labels)

        return torch.stack([one(trial_logits) for trial_logits in logits])
