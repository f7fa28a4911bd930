"""An unpadded encoder for sequence classification, for one trial or a pack of trials, top to bottom, in one file.

Unpadded. The Hugging Face model pads every row of a batch to the longest one and runs every layer on the padding
too. This one keeps only the real tokens: embeddings, projections, feed-forward, LayerNorms and dropout all run on
`[tokens, hidden]`. Only attention needs the rows apart: Q/K/V are scattered into `[rows, heads, max_len, head_dim]`
with a key mask, and gathered back, by the indices of the batch (unpadding.py).

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
  roberta       (XLM-R and CamemBERT too) positions counted from padding_idx + 1 over non-pad tokens, one token
                type; a head on <s>: dropout, dense, tanh, dropout, out_proj; no pooler
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

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSequenceClassification, PretrainedConfig

from glue_bench.training.families import FAMILIES, Family, unsupported_reason
from glue_bench.training.unpadding import UnpaddedBatch

# ---------------------------------------------------------------------------------------------------------------------
# Stacked parameters: nn.Linear, nn.LayerNorm, nn.Embedding and dropout with a leading trial dimension N.


def solo(t: torch.Tensor) -> torch.Tensor:
    """A one-trial pack's tensor [1, ...] as the solo run's [...]: a view whose backward is a view too. Indexing
    (`t[0]`) is a select, whose backward allocates zeros of the whole stacked tensor and copies the gradient into
    them, every step, for every parameter (3.9 M floats for BERT's word embeddings): a third of a BERT-Tiny step
    (benchmarks/README.md, issue 28)."""
    return t.squeeze(0)


class Linear(nn.Module):
    """nn.Linear for N trials: weight [N, out, in], bias [N, out]; [N, tokens, in] → [N, tokens, out]."""

    def __init__(self, trials: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(trials, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(trials, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.weight) == 1:  # one trial: nn.Linear's own product, on views (see solo)
            return F.linear(solo(x), solo(self.weight), solo(self.bias)).unsqueeze(0)
        out, inp = self.weight.shape[1:]
        # Per trial (each trial's own plain product: its solo run's last bits) where the batched product sums in
        # another order: a regression head (a plain product takes a matrix-vector kernel, a batched one does not),
        # and tiny products (a head's few rows of a micro-batch): below 400 multiply-adds ATen's CPU bmm runs its own
        # loop instead of BLAS, which the plain product always calls
        if out == 1 or x.shape[1] * out * inp < 400:
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
        if len(self.weight) == 1:  # one trial: no stack, views (see solo)
            return F.layer_norm(solo(x), shape, solo(self.weight), solo(self.bias), self.eps).unsqueeze(0)
        return torch.stack([F.layer_norm(t, shape, w, b, self.eps) for t, w, b in zip(x, self.weight, self.bias)])


class Embedding(nn.Module):
    """nn.Embedding for N trials: weight [N, rows, dim]; ids [tokens] → [N, tokens, dim]. The padding row gets no
    gradient, as nn.Embedding's padding_idx says (a text may hold the pad token itself)."""

    def __init__(self, trials: int, num_embeddings: int, dim: int, padding_idx: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(trials, num_embeddings, dim))
        self.padding_idx = padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if len(self.weight) == 1:  # one trial: nn.Embedding's own lookup, on a view (see solo)
            return F.embedding(ids, solo(self.weight), self.padding_idx).unsqueeze(0)
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
        self.position_padding = config.pad_token_id if family.positions_after_padding else None
        self.position_embeddings = Embedding(trials, config.max_position_embeddings, width, self.position_padding)
        self.token_type_embeddings = Embedding(trials, config.type_vocab_size, width)
        self.LayerNorm = LayerNorm(trials, width, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, batch: UnpaddedBatch) -> torch.Tensor:
        x = self.word_embeddings(batch.input_ids) + self.token_type_embeddings(batch.token_type_ids)
        x = x + self.position_embeddings(self.positions(batch))
        return self.dropout(self.LayerNorm(x))  # [N, tokens, width]

    def positions(self, batch: UnpaddedBatch) -> torch.Tensor:
        """BERT's: each token's index in its row. RoBERTa's, as HF's create_position_ids_from_input_ids counts them:
        padding_idx + the running count of the row's non-pad tokens, and padding_idx for a pad token (a text may
        hold it), so a token after one sits a position earlier than its index. On the device, no host sync."""
        if self.position_padding is None:
            return batch.position_ids
        real = batch.input_ids.ne(self.position_padding).long()  # [tokens]
        count = real.cumsum(0)  # over the rows one after another: less the count before each token's row start
        row_start = torch.arange(len(real), device=real.device) - batch.position_ids
        return (count - (count - real)[row_start]) * real + self.position_padding


def attention_math(q, k, v, key_mask: torch.Tensor, probs_dropout: nn.Module, trials: int) -> torch.Tensor:
    """softmax(q kᵀ / √d + mask) v with dropout on the probabilities, one mask for the pack: what SDPA computes.

    q, k, v: [N * rows, heads, max_len, head_dim]. SDPA draws its dropout inside the kernel, per trial and row;
    written out, the probabilities' mask is drawn once with a single trial's shape. On a CPU SDPA with dropout runs
    this same unfused math anyway, plus a "safe softmax" pass (rows with every key masked, which cannot happen
    here: every row has its first token) and a mask conversion in every layer.
    """
    bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~key_mask, float("-inf"))
    bias = bias if trials == 1 else bias.repeat(trials, 1)  # [N * rows, max_len]
    scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(q.shape[-1])) + bias[:, None, None, :]
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
            mask = (batch.key_mask if trials == 1 else batch.key_mask.repeat(trials, 1))[:, None, None, :]
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

        if len(logits) == 1:  # a solo run: no per-trial select and stack (see solo)
            return one(solo(logits)).unsqueeze(0)
        return torch.stack([one(trial_logits) for trial_logits in logits])
