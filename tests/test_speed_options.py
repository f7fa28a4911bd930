"""The recorded speed options of the recipe: what each one changes, exactly."""

from __future__ import annotations

import numpy as np
import torch

from glue_bench import trial
from glue_bench.train import Packed, Recipe, _clip_grad_norm, _optimizer, fine_tune


def _embedding_rows_changed(glue_data, **options):
    """(token ids in the training rows, which word-embedding rows a tiny fine-tune changed)."""
    recipe = Recipe(batch_size=16, lr=1e-3, epochs=1, max_train_samples=32, warmup_ratio=0, **options)  # lr > 0 at every step
    prepared = trial.prepare(trial.TrialSpec("random:L-2_H-128", "rte", str(glue_data), recipe))
    before = prepared.model.get_input_embeddings().weight.detach().clone()
    fine_tune(prepared.model, prepared.task, prepared.train, {}, {}, recipe, progress=False)
    after = prepared.model.get_input_embeddings().weight.detach()
    used = np.unique(Packed(prepared.train.select(range(32))).input_ids)
    return used, np.flatnonzero((after != before).any(dim=1).numpy())


def test_sparse_embeddings_update_only_the_rows_the_batches_use(glue_data):
    used, changed = _embedding_rows_changed(glue_data, sparse_embeddings=True)
    assert changed.tolist() == used.tolist()  # lazy Adam, no weight decay on the other rows
    used, changed = _embedding_rows_changed(glue_data)
    assert changed.tolist() == list(range(1, 30522))  # the default: weight decay moves every row but [PAD]'s zeros


def test_clipping_a_sparse_gradient_matches_clipping_its_dense_twin():
    torch.manual_seed(0)
    sparse_model = torch.nn.Sequential(torch.nn.Embedding(10, 3, sparse=True), torch.nn.Linear(3, 1))
    dense_model = torch.nn.Sequential(torch.nn.Embedding(10, 3), torch.nn.Linear(3, 1))
    dense_model.load_state_dict(sparse_model.state_dict())
    rows = torch.tensor([[1, 4, 4, 7]])
    for model in (sparse_model, dense_model):
        (100 * model(rows).sum()).backward()  # a norm far above 1: clipping scales every gradient
    assert sparse_model[0].weight.grad.is_sparse
    _clip_grad_norm(sparse_model, 1.0)
    torch.nn.utils.clip_grad_norm_(dense_model.parameters(), 1.0)
    torch.testing.assert_close(sparse_model[0].weight.grad.to_dense(), dense_model[0].weight.grad)
    torch.testing.assert_close(sparse_model[1].weight.grad, dense_model[1].weight.grad)
    total = torch.cat([p.grad.flatten() for p in dense_model.parameters()]).norm()
    assert abs(total.item() - 1.0) < 1e-5


def test_fused_adamw_is_an_option_on_a_cpu():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 3), torch.nn.Linear(3, 1))
    model.get_input_embeddings = lambda: model[0]
    default = _optimizer(model, Recipe(batch_size=8, lr=1e-4), torch.device("cpu"))
    fused = _optimizer(model, Recipe(batch_size=8, lr=1e-4, fused_adamw=True), torch.device("cpu"))
    assert default.defaults["foreach"] is True and not default.defaults["fused"]
    assert fused.defaults["fused"] is True
