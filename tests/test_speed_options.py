"""The recorded speed option fused_adamw: what it changes, exactly (the encoder option: tests/test_train.py)."""

from __future__ import annotations

import pytest
import torch

from glue_bench.sweeping import trial
from glue_bench.training.loop import _optimizer, fine_tune
from glue_bench.training.recipe import Recipe

TINY = {"batch_size": 16, "lr": 1e-4, "epochs": 2, "max_train_samples": 96}  # tests/test_train.py's tiny runs


def test_fused_adamw_is_the_default_and_foreach_an_option_on_a_cpu():
    model = torch.nn.Linear(3, 1)
    default = _optimizer(model, Recipe(batch_size=8, lr=1e-4), [1e-4], False, torch.device("cpu"))
    foreach = _optimizer(model, Recipe(batch_size=8, lr=1e-4, fused_adamw=False), [1e-4], False, torch.device("cpu"))
    assert default.fused is True and foreach.fused is False


def test_fused_adamw_changes_the_last_bits_only(glue_data):
    """On a tiny RTE run (the default fast encoder): the same dev metrics and losses (to 1e-6), other weights."""
    runs = {}
    for fused in (False, True):
        recipe = Recipe(**TINY, fused_adamw=fused)
        prepared = trial.prepare(trial.TrialSpec("random:L-2_H-128", "rte", str(glue_data), recipe))
        result = fine_tune(prepared.model, prepared.task, prepared.train, prepared.dev, {}, recipe, progress=False)
        runs[fused] = (result, [p.detach().clone() for p in prepared.model.parameters()])
    (foreach, foreach_weights), (fused, fused_weights) = runs[False], runs[True]
    assert fused.encoder == foreach.encoder == "fast"
    assert fused.dev == foreach.dev
    assert [e["train_loss"] for e in fused.curve] == pytest.approx([e["train_loss"] for e in foreach.curve], abs=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(foreach_weights, fused_weights))
    assert max((a - b).abs().max().item() for a, b in zip(foreach_weights, fused_weights)) < 1e-5
