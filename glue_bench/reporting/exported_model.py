"""`glue-bench export-model`: a study's kept best model as a folder plain transformers opens, with a model card.

The folder holds what save_pretrained wrote when the trial finished (config with id2label in the task's label
names, weights, tokenizer) and a README.md: the recipe, the sweep and grid point, the dev scores, the teacher
of a distilled student, and how to run it; its YAML header is huggingface_hub's ModelCardData (base_model, and a
model-index of the dev results that the Hub's evaluation results and leaderboards read).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
from huggingface_hub import EvalResult, ModelCardData

from glue_bench.errors import UserError, counted
from glue_bench.inputs import models
from glue_bench.inputs.model_names import normalise_model
from glue_bench.inputs.tasks import Task, get_task
from glue_bench.reporting.cells import agreement
from glue_bench.sweeping import kept
from glue_bench.sweeping.runs import runs_table
from glue_bench.sweeping.storage import masked, open_storage
from glue_bench.training.recipe import lr_text


def find_study(url: str | None, model: str, task: Task, sweep: str | None) -> optuna.Study:
    """The one study of `model` on `task` (in `sweep`) that keeps a model."""
    table = runs_table(url, sweep=sweep)
    wanted = normalise_model(model)
    names = sorted(set(table.loc[(table["model"] == wanted) & (table["task"] == task.name), "study"]))
    storage = open_storage(url, create=False)
    studies = [optuna.load_study(study_name=n, storage=storage) for n in names]
    keeping = [s for s in studies if kept.kept(s)]
    where = f"{masked(url)}" + (f", sweep {sweep}" if sweep else "")
    if not keeping:
        if not studies:
            models = ", ".join(sorted(set(table.loc[table["task"] == task.name, "model"]))) or "none"
            raise UserError(f"no {task.name} trials of model {wanted} in {where}; its {task.name} models: {models}")
        raise UserError(
            f'{wanted} on {task.name} in {where} keeps no model: run the sweep with save = "best" '
            "(or glue-bench run --save), then export it"
        )
    if len(keeping) > 1:
        raise UserError(
            f"{wanted} on {task.name}: several studies keep a model ({', '.join(s.study_name for s in keeping)}); "
            "pick one with --sweep NAME"
        )
    return keeping[0]


def export_model(url: str | None, model: str, task_name: str, sweep: str | None, out: str) -> str:
    """Write the kept model of (model, task) to `out`; returns a one-line summary."""
    task = get_task(task_name)
    study = find_study(url, model, task, sweep)
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder; pass a new folder")
    folder, entry = kept.fetch(study, url)  # the weights and the entry that names them, read together
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == entry["trial"])
    shutil.copytree(folder, target, dirs_exist_ok=True)
    (target / "README.md").write_text(model_card(study, trial, task, normalise_model(model)), encoding="utf-8")
    return (
        f"wrote {out}: trial {trial.number} of study {study.study_name} (dev score {100 * entry['value']:.2f}), "
        "with a model card (README.md)"
    )


# our metric names → the Hub's metric ids (the evaluate modules' names) and their display names
HUB_METRICS = {
    "accuracy": ("accuracy", "Accuracy"),
    "f1": ("f1", "F1"),
    "mcc": ("matthews_correlation", "Matthews Correlation"),
    "pearson": ("pearsonr", "Pearson Correlation"),
    "spearman": ("spearmanr", "Spearman Correlation"),
}


def base_model(ref: str) -> str | None:
    """The Hub id the fine-tune started from (a miniature's, or a Hub model's); None for random weights or a local
    folder, which the Hub cannot link to."""
    try:
        resolved = models.resolve(ref)
    except UserError:  # a folder since moved or deleted
        return None
    return resolved.location if resolved.kind in ("miniature", "hub") else None


def card_metadata(trial: optuna.trial.FrozenTrial, task: Task, model: str) -> ModelCardData:
    """The card's YAML header as the Hub reads it: base_model, and a model-index with one result per dev split and
    metric (task, dataset nyu-mll/glue with its config and split, the metric's id and value, a fraction)."""
    results = [
        EvalResult(
            task_type="text-classification",
            task_name="Text Classification",
            dataset_type="nyu-mll/glue",
            dataset_name=f"GLUE {task.name.upper()}",
            dataset_config=task.hub_config,
            dataset_split=task.splits[split].hub or split,
            metric_type=HUB_METRICS.get(name, (name, name))[0],
            metric_name=HUB_METRICS.get(name, (name, name))[1],
            metric_value=value,
        )
        for split, values in trial.user_attrs.get("metrics", {}).items()
        for name, value in values.items()
    ]
    return ModelCardData(
        base_model=base_model(trial.user_attrs.get("model", model)),
        library_name="transformers",
        pipeline_tag="text-classification",
        datasets=["nyu-mll/glue"],
        tags=["glue-bench", "glue", task.name],
        model_name=model,
        eval_results=results or None,
    )


def model_card(study: optuna.Study, trial: optuna.trial.FrozenTrial, task: Task, model: str) -> str:
    attrs, recipe = trial.user_attrs, trial.user_attrs.get("recipe", {})
    complete = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
    labels = "regression: one output, the similarity score" if task.regression else ", ".join(task.names)
    lines = [
        "---",
        card_metadata(trial, task, model).to_yaml(),
        "---",
        "",
        f"# {model} fine-tuned on GLUE {task.name.upper()}",
        "",
        f'Kept by glue-bench (`save = "best"`) from study `{study.study_name}`: trial {trial.number}, the best '
        f"dev score of the study's {counted(complete, 'complete trial')} when it was exported. Labels: {labels}.",
        "",
        "## Dev scores",
        "",
        "| split | metric | value |",
        "|---|---|---|",
        *(
            f"| {split} | {name} | {100 * value:.2f} |"
            for split, values in attrs.get("metrics", {}).items()
            for name, value in values.items()
        ),
        "",
        "## Recipe",
        "",
        f"Grid point: batch size {trial.params.get('batch_size')}, learning rate {lr_text(trial.params['lr'])}, "
        f"seed {trial.params.get('seed')}; data: {attrs.get('data', '?')}. Weights: the checkpoint held "
        f"{attrs.get('checkpoint_dtype', 'unknown (recorded before glue-bench kept it)')}; the parameters were "
        f"trained in {attrs.get('param_dtype', 'unknown')}" + (" (bf16 autocast)" if recipe.get("bf16") else "") + ".",
        "",
        "| field | value |",
        "|---|---|",
        *(f"| {k} | {v!r} |" for k, v in recipe.items() if k not in ("batch_size", "lr", "seed")),
    ]
    if recipe.get("teacher"):
        teacher = attrs.get("teacher", {})
        lines += [
            "",
            "## Distillation",
            "",
            f"Distilled from `{recipe['teacher']}` (alpha {recipe.get('alpha')}, temperature {recipe.get('temperature')}"
            + (f", transfer rows {recipe['transfer']}" if recipe.get("transfer") else "")
            + ").",
            *(
                f"On {split} {agreement(value, task.regression)}; the teacher's own "
                + ", ".join(f"{n} {100 * v:.2f}" for n, v in teacher.get("metrics", {}).get(split, {}).items())
                + "."
                for split, value in teacher.get("agreement", {}).items()
            ),
        ]
    pair = "sentence1, sentence2" if task.is_pair else "sentence"
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        'model = AutoModelForSequenceClassification.from_pretrained("THIS_FOLDER").eval()',
        f"# as glue-bench tokenizes ({pair}): truncated to {recipe.get('max_seq_length', 128)} tokens",
        f"batch = tokenizer({pair}, truncation=True, max_length={recipe.get('max_seq_length', 128)}, "
        'padding=True, return_tensors="pt")',
        "logits = model(**batch).logits"
        + (
            "  # the score: logits[:, 0]" if task.regression else "  # model.config.id2label[int(logits.argmax(-1)[i])]"
        ),
        "```",
        "",
    ]
    return "\n".join(lines)
