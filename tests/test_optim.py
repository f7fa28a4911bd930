"""training/optim.py: BERT's optimizer against a hand computation, AdamW against torch's, packs against solo runs.

On the CPU by default; GLUE_BENCH_TEST_DEVICE=cuda runs the same checks on a GPU (torch's CUDA kernels).
"""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from glue_bench.training.optim import (
    PackAdamW,
    bert_schedule,
    bert_scheduler,
    bert_steps,
    clip_grad_norm_per_trial,
    no_decay,
)

DEVICE = torch.device(os.environ.get("GLUE_BENCH_TEST_DEVICE", "cpu"))
LRS = [1e-4, 3e-4, 1e-3, 3e-3]
STEPS = 20


NO_DECAY = {"dense.bias", "LayerNorm.weight", "LayerNorm.bias", "classifier.bias"}  # the tiny network's


def _no_decay(w: dict[str, torch.Tensor]) -> set[str]:
    """The biases and LayerNorm parameters among `w` (plain tensors, no modules to read them from)."""
    return NO_DECAY & w.keys()


def _weights(seed: int) -> dict[str, torch.Tensor]:
    """A tiny BERT-named network: dense -> LayerNorm -> classifier."""
    g = torch.Generator().manual_seed(seed)
    weights = {
        "dense.weight": torch.randn(16, 8, generator=g) * 0.3,
        "dense.bias": torch.randn(16, generator=g) * 0.1,
        "LayerNorm.weight": 1 + torch.randn(16, generator=g) * 0.1,
        "LayerNorm.bias": torch.randn(16, generator=g) * 0.1,
        "classifier.weight": torch.randn(3, 16, generator=g) * 0.3,
        "classifier.bias": torch.zeros(3),
    }
    return {k: v.to(DEVICE) for k, v in weights.items()}


def _loss(w: dict[str, torch.Tensor], step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + step)  # the batch of this step, shared by every trial
    x, y = torch.randn(12, 8, generator=g).to(DEVICE), torch.randint(0, 3, (12,), generator=g).to(DEVICE)
    h = F.layer_norm(
        torch.tanh(F.linear(x, w["dense.weight"], w["dense.bias"])), (16,), w["LayerNorm.weight"], w["LayerNorm.bias"]
    )
    return F.cross_entropy(F.linear(h, w["classifier.weight"], w["classifier.bias"]), y) * 5  # large enough to clip


def _leaves(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone().requires_grad_() for k, v in weights.items()}


def _pack(trials: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([t[k] for t in trials]).requires_grad_() for k in trials[0]}


def _torch_adamw(w: dict[str, torch.Tensor], lr: float, fused: bool) -> torch.optim.AdamW:
    groups = [
        {"params": [p for p in w.values() if p.ndim >= 2], "weight_decay": 0.01},
        {"params": [p for p in w.values() if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, **({"fused": True} if fused else {"foreach": True})
    )


def _train_solo(w, optimizer, clip, max_norm=1.0, steps=STEPS):
    scheduler = get_linear_schedule_with_warmup(optimizer, 3, steps)
    for step in range(steps):
        _loss(w, step).backward()
        clip(list(w.values()), max_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def _train_pack(w, optimizer, steps=range(STEPS), max_norm=1.0, scheduler=None, poison=None):
    scheduler = scheduler or get_linear_schedule_with_warmup(optimizer, 3, STEPS)
    trials = len(optimizer.trial_lr)
    for step in steps:
        sum(_loss({k: v[n] for k, v in w.items()}, step) for n in range(trials)).backward()
        if poison is not None:  # a trial's gradients gone NaN, as after an overflow
            for p in w.values():
                p.grad[poison] = float("nan")
        clip_grad_norm_per_trial(w.values(), max_norm, packed=True, stopped=optimizer.stopped)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return scheduler


# (a) "bert": three steps against optimization.py's formulas computed here with Python floats.
@pytest.mark.parametrize("fused", [True, False])
def test_bert_three_steps_by_hand(fused):
    weight, bias, gamma = [[0.5, -0.3], [0.2, 0.8]], [0.1, -0.2], [1.0, 0.9]
    grads = [  # per step: weight, bias, LayerNorm weight
        ([[0.4, -0.2], [0.1, 0.3]], [0.05, -0.5], [0.2, -0.1]),
        ([[-0.1, 0.25], [0.3, -0.4]], [0.2, 0.1], [-0.3, 0.05]),
        ([[0.2, 0.2], [-0.5, 0.1]], [-0.1, 0.3], [0.1, 0.2]),
    ]
    w = {
        "dense.weight": torch.tensor(weight, dtype=torch.float64, device=DEVICE, requires_grad=True),
        "dense.bias": torch.tensor(bias, dtype=torch.float64, device=DEVICE, requires_grad=True),
        "LayerNorm.weight": torch.tensor(gamma, dtype=torch.float64, device=DEVICE, requires_grad=True),
    }
    optimizer = PackAdamW(w.items(), [0.1], variant="bert", weight_decay=0.01, fused=fused, no_decay=_no_decay(w))
    scheduler = bert_scheduler(optimizer, total=10, warmup=2)  # lr factors 0, 1/2, 1 - 2/10
    for g_w, g_b, g_ln in grads:
        for p, g in zip(w.values(), (g_w, g_b, g_ln)):
            p.grad = torch.tensor(g, dtype=torch.float64, device=DEVICE)
        optimizer.step()
        scheduler.step()

    # By hand: m = .9 m + .1 g; v = .999 v + .001 g²; u = m / (sqrt(v) + 1e-6) [+ .01 param]; param -= lr u.
    def by_hand(values: list[float], grads_of_param: list[list[float]], decay: bool) -> list[float]:
        values, m, v = list(values), [0.0] * len(values), [0.0] * len(values)
        for lr, g in zip([0.1 * 0.0, 0.1 * 0.5, 0.1 * 0.8], grads_of_param):
            for i in range(len(values)):
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
                update = m[i] / (math.sqrt(v[i]) + 1e-6) + (0.01 * values[i] if decay else 0.0)
                values[i] -= lr * update
        return values

    flat = [[sum(step[0], []) for step in grads], [step[1] for step in grads], [step[2] for step in grads]]
    expected = [
        by_hand(sum(weight, []), flat[0], decay=True),
        by_hand(bias, flat[1], decay=False),  # "bias" in the name
        by_hand(gamma, flat[2], decay=False),  # "LayerNorm" in the name
    ]
    for p, want in zip(w.values(), expected):
        assert p.detach().flatten().tolist() == pytest.approx(want, rel=1e-12, abs=0)
    # One number written out: the bias's first entry, whose gradients 0.05, 0.2, -0.1 give
    # m = .005, .0245, .01205; v = 2.5e-6, 4.24975e-5, 5.24550025e-5; updates at lr 0, .05, .08.
    u2 = 0.0245 / (math.sqrt(4.24975e-5) + 1e-6)
    u3 = 0.01205 / (math.sqrt(5.24550025e-5) + 1e-6)
    assert w["dense.bias"][0].item() == pytest.approx(0.1 - 0.05 * u2 - 0.08 * u3, rel=1e-12)
    assert optimizer.state[w["dense.weight"]]["step"].tolist() == [3.0]


# (b) "adamw", one trial, plain parameters: bit for bit torch.optim.AdamW, fused and foreach, with clipping.
@pytest.mark.parametrize("fused", [True, False])
def test_adamw_solo_equals_torch(fused):
    theirs, ours = _leaves(_weights(0)), _leaves(_weights(0))
    reference = _torch_adamw(theirs, 1e-2, fused)
    _train_solo(theirs, reference, torch.nn.utils.clip_grad_norm_)
    optimizer = PackAdamW(ours.items(), [1e-2], fused=fused, no_decay=_no_decay(ours))
    _train_solo(ours, optimizer, lambda ps, m: clip_grad_norm_per_trial(ps, m, packed=False))
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(optimizer.state[ours[name]][key], reference.state[theirs[name]][key]), (name, key)


# (c) a pack of 4 learning rates: each trial bit for bit its own torch.optim.AdamW run, clipped on its own.
@pytest.mark.parametrize("fused", [True, False])
def test_pack_equals_four_torch_runs(fused):
    solos = [_leaves(_weights(n)) for n in range(4)]
    norms = []
    for w, lr in zip(solos, LRS):
        clip = lambda ps, m: norms.append(torch.nn.utils.clip_grad_norm_(ps, m))  # noqa: E731
        _train_solo(w, _torch_adamw(w, lr, fused), clip, max_norm=8.0)
    packed = _pack([_weights(n) for n in range(4)])
    _train_pack(
        packed, PackAdamW(packed.items(), LRS, packed=True, fused=fused, no_decay=_no_decay(packed)), max_norm=8.0
    )
    for n, w in enumerate(solos):
        for name in w:
            assert torch.equal(packed[name][n], w[name]), (n, name)
    assert max(norms) > 8.0 > min(norms)  # some steps clipped, some not


def test_pack_of_bert_equals_solo_bert_runs():
    solos = [_leaves(_weights(n)) for n in range(4)]
    for w, lr in zip(solos, LRS):
        optimizer = PackAdamW(w.items(), [lr], variant="bert", no_decay=_no_decay(w))
        _train_solo(w, optimizer, lambda ps, m: clip_grad_norm_per_trial(ps, m, packed=False, eps=0.0))
    packed = _pack([_weights(n) for n in range(4)])
    optimizer = PackAdamW(packed.items(), LRS, variant="bert", packed=True, no_decay=_no_decay(packed))
    scheduler = get_linear_schedule_with_warmup(optimizer, 3, STEPS)
    for step in range(STEPS):
        sum(_loss({k: v[n] for k, v in packed.items()}, step) for n in range(4)).backward()
        clip_grad_norm_per_trial(packed.values(), 1.0, packed=True, eps=0.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    for n, w in enumerate(solos):
        for name in w:
            assert torch.equal(packed[name][n], w[name]), (n, name)


# (d) a trial whose gradients went NaN, stopped a few steps later (the loop looks at the losses every few
# steps): the others exactly as in a pack without it, its own parameters and state frozen from the stop on.
@pytest.mark.parametrize("variant", ["adamw", "bert"])
def test_stopped_trial_is_frozen_and_harmless(variant):
    packed = _pack([_weights(n) for n in range(4)])
    optimizer = PackAdamW(packed.items(), LRS, variant=variant, packed=True, no_decay=_no_decay(packed))
    scheduler = _train_pack(packed, optimizer, steps=range(8))
    _train_pack(packed, optimizer, steps=range(8, 12), scheduler=scheduler, poison=2)  # NaN, not yet seen
    optimizer.stop([False, False, True, False])

    def trial_2(p):  # its parameter and state slices, as bits (NaN == NaN)
        state = optimizer.state[p]
        return [t[2].view(torch.int32).clone() for t in (p, state["exp_avg"], state["exp_avg_sq"])]

    frozen = {name: trial_2(p) for name, p in packed.items()}
    _train_pack(packed, optimizer, steps=range(12, STEPS), scheduler=scheduler, poison=2)

    without = _pack([_weights(n) for n in (0, 1, 3)])
    _train_pack(
        without,
        PackAdamW(without.items(), [LRS[0], LRS[1], LRS[3]], variant=variant, packed=True, no_decay=_no_decay(without)),
    )
    for name, p in packed.items():
        assert torch.equal(p[[0, 1, 3]], without[name]), name
        assert p[2].isnan().all(), name  # the NaN steps did reach trial 2 itself
        assert all(torch.equal(a, b) for a, b in zip(trial_2(p), frozen[name])), name
    assert optimizer.state[packed["dense.weight"]]["step"].tolist() == [20.0, 20.0, 12.0, 20.0]


# (e) the paper's schedule: warmup over int(10% of the steps), then polynomial decay (power 1) from step 0.
def test_bert_schedule_by_hand():
    assert bert_steps(3668, 32, 3.0, 0.1) == (343, 34)  # MRPC: int(114.625 * 3) = 343, int(34.3) = 34
    assert bert_steps(2490, 32, 3.0, 0.1) == (233, 23)  # RTE: int(233.4375)
    assert [bert_schedule(s, total=20, warmup=4) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 0.8, 0.75]
    assert bert_schedule(19, 20, 4) == pytest.approx(0.05) and bert_schedule(20, 20, 4) == bert_schedule(25, 20, 4) == 0
    assert [bert_schedule(s, total=4, warmup=0) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]  # no warmup branch
    w = {"dense.weight": torch.ones(2, 2, device=DEVICE, requires_grad=True)}
    optimizer = PackAdamW(w.items(), [1.0], variant="bert", no_decay=_no_decay(w))
    scheduler = bert_scheduler(optimizer, total=20, warmup=4)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == [0.0, 0.25, 0.5, 0.75, 0.8, 0.75]


def _undecayed(optimizer: PackAdamW, model: torch.nn.Module) -> set[str]:
    """The names of the parameters the optimizer steps with weight decay 0."""
    rest = [group for group in optimizer.param_groups if group["weight_decay"] == 0.0]
    return {name for name, p in model.named_parameters() if any(p is q for g in rest for q in g["params"])}


@pytest.mark.parametrize("variant", ["adamw", "bert"])
def test_no_decay_is_every_norm_and_bias_of_bert(variant):
    """BERT: optimization.py's names (LayerNorm, bias) and the 1-D parameters, in HF's model and in a pack of 3 of
    ours (its stacked LayerNorm found by its type: every parameter there is 2-D or more)."""
    from transformers import BertForSequenceClassification

    from glue_bench.inputs.models import miniature_config
    from glue_bench.training.encoder import UnpaddedEncoder

    hf = BertForSequenceClassification(miniature_config(2, 128))
    for model, packed in ((hf, False), (UnpaddedEncoder.from_hf(hf, 3), True)):
        excluded = no_decay(model)
        by_name = {name for name, _ in model.named_parameters() if "LayerNorm" in name or "bias" in name}
        assert excluded == by_name == {name for name, p in model.named_parameters() if p.ndim - packed == 1}
        assert len(excluded) == 2 * 10 + 2 + 2  # per layer 6 biases, 2 LayerNorms; embeddings' LayerNorm; 2 biases
        optimizer = PackAdamW(
            model.named_parameters(), [1e-3] * (3 if packed else 1), variant, packed=packed, no_decay=excluded
        )
        assert _undecayed(optimizer, model) == excluded


MODERNBERT_NO_DECAY = [  # every norm (LayerNorm without a bias: ModernBERT names them *norm) and the one bias
    "classifier.bias",
    "head.norm.weight",
    "model.embeddings.norm.weight",
    "model.final_norm.weight",
    "model.layers.0.mlp_norm.weight",
    "model.layers.1.attn_norm.weight",  # layer 0's attn_norm is an Identity: no parameter
    "model.layers.1.mlp_norm.weight",
]


@pytest.mark.parametrize("variant", ["adamw", "bert"])
def test_modernbert_norms_take_no_weight_decay(glue_data, variant):
    """ModernBERT's norms are named *norm, which optimization.py's names (LayerNorm, layer_norm, bias) miss: both
    optimizers leave every one of them undecayed, and decay every other parameter."""
    import families
    from transformers import AutoModelForSequenceClassification

    tokenizer = families.tokenizer("modernbert", glue_data)
    model = AutoModelForSequenceClassification.from_config(families.config("modernbert", tokenizer, 2))
    assert sorted(no_decay(model)) == MODERNBERT_NO_DECAY
    optimizer = PackAdamW(model.named_parameters(), [1e-3], variant, no_decay=no_decay(model))
    assert sorted(_undecayed(optimizer, model)) == MODERNBERT_NO_DECAY
    decayed = [g for g in optimizer.param_groups if g["weight_decay"] == 0.01]
    assert sum(len(g["params"]) for g in decayed) == len(list(model.parameters())) - len(MODERNBERT_NO_DECAY) == 11


def test_refuses_inexact_rates_and_misshaped_packs():
    w = torch.zeros(4, 2, 2, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        PackAdamW([("w", w)], torch.tensor(LRS), packed=True, no_decay=set())
    with pytest.raises(ValueError, match="leading trial dimension of 3"):
        PackAdamW([("w", w)], LRS[:3], packed=True, no_decay=set())
    with pytest.raises(ValueError, match="one trial"):
        PackAdamW([("w", w)], LRS, no_decay=set())
    with pytest.raises(ValueError, match=r"not given: \['v'\]"):
        PackAdamW([("w", w)], LRS, packed=True, no_decay={"v"})
