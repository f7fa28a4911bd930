"""export-model's model card as the Hub reads it: huggingface_hub parses its YAML header (base_model, and a
model-index whose results the Hub's evaluation results widget and leaderboards show)."""

from __future__ import annotations

import optuna
from huggingface_hub import ModelCard, metadata_load
from optuna.distributions import CategoricalDistribution

from glue_bench.inputs.tasks import get_task
from glue_bench.reporting.exported_model import model_card


def _card(tmp_path, model: str, task: str, metrics: dict) -> tuple:
    """The card of a trial of `model` on `task` with these dev metrics, written and read back by huggingface_hub."""
    study = optuna.create_study(study_name=f"s/{model}/{task}", direction="maximize")
    point = {"batch_size": 32, "lr": 1e-4, "seed": 0}
    trial = optuna.trial.create_trial(
        params=point,
        distributions={k: CategoricalDistribution([v]) for k, v in point.items()},
        value=0.5,
        user_attrs={"model": model, "metrics": metrics, "recipe": {**point, "epochs": 3}, "data": "glue_data"},
    )
    study.add_trial(trial)
    path = tmp_path / "README.md"
    path.write_text(model_card(study, study.trials[0], get_task(task), model), encoding="utf-8")
    return ModelCard.load(path), metadata_load(path)


def test_the_card_gives_the_hub_its_base_model_and_every_dev_result(tmp_path):
    card, meta = _card(
        tmp_path,
        "L-2_H-128",
        "mnli",
        {"validation_matched": {"accuracy": 0.7125}, "validation_mismatched": {"accuracy": 0.7231}},
    )
    assert card.data.base_model == meta["base_model"] == "google/bert_uncased_L-2_H-128_A-2"
    assert meta["datasets"] == ["nyu-mll/glue"] and meta["pipeline_tag"] == "text-classification"
    got = [
        (r.task_type, r.dataset_type, r.dataset_config, r.dataset_split, r.metric_type, r.metric_value)
        for r in card.data.eval_results
    ]
    assert got == [
        ("text-classification", "nyu-mll/glue", "mnli", "validation_matched", "accuracy", 0.7125),
        ("text-classification", "nyu-mll/glue", "mnli", "validation_mismatched", "accuracy", 0.7231),
    ]
    (index,) = meta["model-index"]
    assert index["name"] == "L-2_H-128"
    assert index["results"][0] == {
        "task": {"type": "text-classification", "name": "Text Classification"},
        "dataset": {"name": "GLUE MNLI", "type": "nyu-mll/glue", "config": "mnli", "split": "validation_matched"},
        "metrics": [{"type": "accuracy", "value": 0.7125, "name": "Accuracy"}],
    }
    assert (
        "# L-2_H-128 fine-tuned on GLUE MNLI" in card.text and "| validation_matched | accuracy | 71.25 |" in card.text
    )


def test_each_metric_is_named_by_its_hub_id_and_a_model_off_the_hub_has_no_base_model(tmp_path):
    _, meta = _card(tmp_path, "random:L-2_H-128", "stsb", {"validation": {"pearson": 0.8812, "spearman": 0.8790}})
    assert "base_model" not in meta  # random weights: nothing on the Hub to link to
    metrics = [m for r in meta["model-index"][0]["results"] for m in r["metrics"]]
    assert metrics == [
        {"type": "pearsonr", "value": 0.8812, "name": "Pearson Correlation"},
        {"type": "spearmanr", "value": 0.879, "name": "Spearman Correlation"},
    ]
    _, meta = _card(tmp_path, "google/electra-small-discriminator", "cola", {"validation": {"mcc": 0.31}})
    assert meta["base_model"] == "google/electra-small-discriminator"
    assert meta["model-index"][0]["results"][0]["metrics"][0]["type"] == "matthews_correlation"
