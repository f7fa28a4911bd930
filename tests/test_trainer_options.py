"""The options a Trainer user reaches for, and the paper's recipe, through the loop: gradient accumulation (exact),
fp16 with a gradient scaler, TensorBoard event files, optimizer = "bert" and batch_order = "tf"."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glue_bench.sweeping import trial
from glue_bench.training.batches import Packed, epochs_of_batches
from glue_bench.training.encoder import UnpaddedEncoder
from glue_bench.training.loop import fine_tune, fine_tune_pack
from glue_bench.training.recipe import Recipe
from glue_bench.training.unpadding import unpadded_batch

TINY = {"batch_size": 32, "lr": 1e-3, "epochs": 2, "max_train_samples": 320}
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def _prepared(glue_data, task="sst2", **recipe):
    recipe = Recipe(**{**TINY, **recipe})
    prepared = trial.prepare(trial.TrialSpec("random:L-2_H-128", task, str(glue_data), recipe))
    return prepared, recipe


def _without_dropout(model):
    model.config.update(NO_DROPOUT)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_four_micro_batches_of_8_are_one_batch_of_32(glue_data, dtype, tolerance):
    """One step's loss and every gradient, accumulated over 4 × 8 rows (each micro-batch's mean loss weighted by
    its share, 8/32): the unpadded encoder computes each row alone, so only the order of the sums differs. In
    float64 that is 1e-12 at most; in float32 the sums' order costs up to ~1.3e-6 in relative norm (a LayerNorm
    weight's gradient sums over every token of the batch)."""
    prepared, _ = _prepared(glue_data)
    net = UnpaddedEncoder.from_hf(_without_dropout(prepared.model).to(dtype)).train()
    rows = Packed(prepared.train.select(range(32)))
    labels = torch.from_numpy(rows.labels.astype(np.int64))

    def step(micro_batches):
        net.zero_grad()
        total = 0.0
        for picked in np.array_split(np.arange(32), micro_batches):
            batch = unpadded_batch(rows.input_ids, rows.token_type_ids, rows.offsets, rows.lengths, picked, "cpu")
            loss = net(batch, labels=labels[picked]).loss[0] * (len(picked) / 32)
            loss.backward()
            total += loss.item()
        return total, {n: p.grad.clone() for n, p in net.named_parameters()}

    whole, whole_grads = step(1)
    accumulated, accumulated_grads = step(4)
    assert accumulated == pytest.approx(whole, rel=tolerance)
    for name, grad in whole_grads.items():
        if name.endswith("attention.self.key.bias"):  # its true gradient is 0: both are rounding noise
            assert max(grad.abs().max(), accumulated_grads[name].abs().max()) < 1e-9
            continue
        error = ((accumulated_grads[name] - grad).norm() / grad.norm()).item()
        assert error < tolerance, f"{name}: relative error {error:.2e}"


@pytest.mark.slow
def test_the_loop_with_accumulation_is_the_loop_without(glue_data):
    """Through the loop, dropout off: gradient_accumulation_steps = 4 trains as 1 does (losses to 1e-6, the same dev
    predictions) on a run that learns."""
    runs = {}
    for steps in (1, 4):
        prepared, recipe = _prepared(glue_data, gradient_accumulation_steps=steps, epochs=3, max_train_samples=1000)
        _without_dropout(prepared.model)
        runs[steps] = fine_tune(prepared.model, prepared.task, prepared.train, prepared.dev, {}, recipe, progress=False)
    one, four = runs[1], runs[4]
    np.testing.assert_allclose([e["train_loss"] for e in four.curve], [e["train_loss"] for e in one.curve], rtol=1e-6)
    assert four.dev_predictions == one.dev_predictions
    assert one.dev_classes["validation"] == [0, 1] and one.dev["validation"]["accuracy"] > 0.6  # it learned


@pytest.mark.slow
def test_fp16_trains_with_a_gradient_scaler_and_solo(glue_data):
    """On a CPU as far as it goes: fp16 autocast and the scaler train a model that learns, close to the float32 run
    and not the same; a pack refuses fp16 (one scaler's overflow check would skip every trial's step)."""
    prepared, recipe = _prepared(glue_data, fp16=True, epochs=3, max_train_samples=1000)
    initial = {k: v.clone() for k, v in prepared.model.state_dict().items()}
    args = (prepared.task, prepared.train, prepared.dev, {})
    half = fine_tune(prepared.model, *args, recipe, progress=False)
    prepared.model.load_state_dict(initial)
    full = fine_tune(prepared.model, *args, Recipe(**{**recipe.to_dict(), "fp16": False}), progress=False)
    assert half.dev_classes["validation"] == [0, 1] and half.dev["validation"]["accuracy"] > 0.6
    assert half.curve[-1]["train_loss"] != full.curve[-1]["train_loss"]
    assert abs(half.dev["validation"]["accuracy"] - full.dev["validation"]["accuracy"]) < 0.05
    with pytest.raises(ValueError, match="fp16 trains solo"):
        fine_tune_pack(prepared.model, *args, recipe, [1e-3, 1e-4], progress=False)


def test_tensorboard_gets_loss_learning_rate_and_dev_metrics_per_trial(glue_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    prepared, recipe = _prepared(glue_data, max_train_samples=640)
    folders = [str(tmp_path / "a"), str(tmp_path / "b")]
    args = (prepared.task, prepared.train, prepared.dev, {})
    fine_tune_pack(prepared.model, *args, recipe, [1e-3, 1e-4], progress=False, log_dirs=folders)
    for folder, lr in zip(folders, [1e-3, 1e-4]):
        events = EventAccumulator(folder)
        events.Reload()
        assert set(events.Tags()["scalars"]) == {"train/loss", "train/learning_rate", "dev/validation/accuracy"}
        assert [e.step for e in events.Scalars("dev/validation/accuracy")] == [1, 2]  # one per epoch
        steps = [e.step for e in events.Scalars("train/loss")]
        assert steps == [20, 40]  # 20 steps an epoch, logged every 20 (when the loss is read for NaN anyway)
        rates = [e.value for e in events.Scalars("train/learning_rate")]
        assert rates[0] == pytest.approx(lr * (1 - 20 / 40) / 0.9, rel=1e-6)  # warmup 4 steps, then linear to 0


def test_the_papers_batch_order_and_step_count(glue_data):
    """batch_order "tf": full batches only, int(rows / batch_size * epochs) of them, from the file's order through
    a 100-row buffer; each epoch's boundary at int(rows / batch_size * e)."""
    prepared, recipe = _prepared(glue_data, batch_order="tf", optimizer="bert", max_train_samples=330)
    data = Packed(prepared.train.select(range(330)))
    epochs = epochs_of_batches(data, recipe, torch.Generator().manual_seed(0))
    assert [len(e) for e in epochs] == [10, 10]  # int(330 / 32 * 1) = 10, int(330 / 32 * 2) = 20
    assert all(len(batch) == 32 for e in epochs for batch in e)
    first = epochs[0][0]
    assert first.max() < 100 + 32  # the first batch comes from the first rows of the file
    result = fine_tune(prepared.model, prepared.task, prepared.train, prepared.dev, {}, recipe, progress=False)
    assert result.steps == 20 and len(result.curve) == 2


def test_the_paper_recipe_refuses_length_grouping_and_a_tf_order_needs_a_full_batch(glue_data):
    from glue_bench.errors import UserError

    with pytest.raises(UserError, match="batch_order tf keeps the file's order"):
        Recipe(batch_size=32, lr=1e-4, batch_order="tf", group_by_length=True)
    with pytest.raises(UserError, match="gradient_accumulation_steps must be a whole number in"):
        Recipe(batch_size=8, lr=1e-4, gradient_accumulation_steps=16)
    prepared, recipe = _prepared(glue_data, batch_order="tf", max_train_samples=20, epochs=1)
    with pytest.raises(UserError, match="20 train rows make no full batch of 32"):
        fine_tune(prepared.model, prepared.task, prepared.train, prepared.dev, {}, recipe, progress=False)


def test_a_batch_that_does_not_fit_on_a_gpu_is_accumulated_and_recorded(glue_data, tmp_path, monkeypatch, capsys):
    """A sweep worker whose batch runs out of GPU memory trains it again in twice the micro-batches, until it fits,
    and the trial records the recipe that ran. (A GPU simulated: the fine-tune runs on the CPU, out of memory while
    fewer than 4 micro-batches.)"""
    from glue_bench.sweeping import launcher, studies, worker
    from glue_bench.sweeping import sweep_file as sweeps
    from glue_bench.sweeping.runs import runs_table

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    path = tmp_path / "oom.toml"
    path.write_text(
        f'name = "oom"\nmodels = ["random:L-2_H-128"]\ntasks = ["wnli"]\nepochs = 1\ndata = "{glue_data}"\n'
        f'storage = "{url}"\npack = 1\n[grid]\nbatch_size = [16]\nlr = [1e-4]\n[recipe]\nmax_train_samples = 32\n'
    )
    real = trial.fine_tune_pack
    tried = []

    def small_gpu(model, task, train, dev, to_predict, recipe, lrs, **kwargs):
        tried.append(recipe.gradient_accumulation_steps)
        if recipe.gradient_accumulation_steps < 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, task, train, dev, to_predict, recipe, lrs, device="cpu", **kwargs)

    monkeypatch.setattr(trial, "fine_tune_pack", small_gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    sweep = sweeps.load(path)
    plans = sweep.studies()
    studies.enqueue(sweep, plans, url)
    assert worker.work(launcher.worker_plan(plans, url, str(glue_data), sweep)) == 0
    assert tried == [1, 2, 4]
    row = runs_table(url).iloc[0]
    assert row["state"] == "COMPLETE" and row["gradient_accumulation_steps"] == 4 and row["batch_size"] == 16
    assert "batch size 16 does not fit on the GPU: trying again with 4 micro-batches" in capsys.readouterr().err
