"""`glue-bench export-model`: a study's kept best model as a folder plain transformers opens, with a model card.

The folder holds what save_pretrained wrote when the trial finished (config with id2label in the task's label
names, weights, tokenizer) and a README.md: the recipe, the sweep and grid point, the dev scores, the teacher
of a distilled student, and how to run it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna

from glue_bench.errors import UserError, counted
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


def model_card(study: optuna.Study, trial: optuna.trial.FrozenTrial, task: Task, model: str) -> str:
    attrs, recipe = trial.user_attrs, trial.user_attrs.get("recipe", {})
    complete = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
    labels = "regression: one output, the similarity score" if task.regression else ", ".join(task.names)
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "datasets: [nyu-mll/glue]",
        "tags: [glue-bench, glue, " + task.name + "]",
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
