"""The pre-flight: everything a user can get wrong in a sweep, found before anything is written, so that a user error
costs one line, not N failed trials: the data source, every task's splits, every model's config and tokenizer, a
distillation's teacher and transfer rows, and (offline) whatever the Hub would give that the caches lack."""

from __future__ import annotations

from huggingface_hub import hf_hub_download, try_to_load_from_cache

from glue_bench.errors import UserError, first_line
from glue_bench.inputs import data, hub, models
from glue_bench.inputs.tasks import Task, dependents, get_task
from glue_bench.inputs.transfer import load_transfer
from glue_bench.sweeping import prefetch, teacher
from glue_bench.sweeping.sweep_file import StudyPlan, Sweep


def preflight(
    sweep: Sweep, studies: list[StudyPlan], data_option: str | None = None, url: str | None = None
) -> data.DataSource:
    """Check the data source, every task's train and dev splits, every model and the teacher and transfer
    rows of a distillation (a kept teacher is found in storage `url`); return the data source. Every problem
    is found, not only the first: the UserError lists them, one per line."""
    source = data.resolve_source(data_option or sweep.data, "--data" if data_option else f"{sweep.path}: data =")
    problems = []
    offline = not hub.reachable()  # then what the Hub would give must be in the caches: one line says what is not
    if offline and (missing := prefetch.unfetched(prefetch.needs(sweep, studies, source))):
        problems.append(_unfetched_line(sweep, missing, source))
    for name in dict.fromkeys(s.task for s in studies):
        task = get_task(name)
        if offline and source.is_hub:
            continue  # read from the cache just now
        try:
            _check_splits(task, [task.train_split, *task.splits_with_role("dev")], source, sweep)
        except UserError as e:
            problems.append(str(e))
    tasks = [get_task(t) for t in dict.fromkeys(s.task for s in studies)]
    for ref in dict.fromkeys(s.model for s in studies):
        try:
            _check_model(models.resolve(ref), sweep, tasks, offline)
        except UserError as e:
            problems.append(str(e))
    if sweep.recipe.get("teacher"):
        problems += _check_distillation(sweep, [get_task(t) for t in dict.fromkeys(s.task for s in studies)], url)
    if problems:
        raise UserError("\n".join(problems))
    return source


def _check_splits(task: Task, splits, source: data.DataSource, sweep: Sweep) -> None:
    if source.is_hub:
        # Loading one split fetches the task's whole config into the datasets cache once, here, rather than
        # in every worker; offline it fails at once unless the cache has it.
        data.load_split(task, task.splits_with_role("dev")[0], source)
        return
    missing = [s.name for s in splits if not data.available(task, s, source)]
    if missing:
        raise UserError(
            f"{sweep.path}: {task.name} {' and '.join(missing)} not found in {source.location}; "
            f"remove '{task.name}' from tasks, or point data (or --data) at a source that has it"
        )
    # Read and check every split a trial reads (a second for all of GLUE): a damaged file is one line
    # here, not one failed trial per grid point, each settled until --retry-failed.
    for checked in (task, *dependents(task)):
        for split in checked.splits.values():
            if data.available(checked, split, source):
                data.load_split(checked, split, source)


def _check_model(ref: models.ModelRef, sweep: Sweep, tasks: list[Task], offline: bool) -> None:
    """A Hub model's config fetched now (a mistyped id fails here, not in every trial; offline, one the cache lacks
    is in the unfetched line already); then its config and tokenizer must be ones glue-bench can fine-tune on each
    task (models.check: a classification head, padding, a pair format)."""
    if ref.kind not in ("local", "random"):
        if offline and not isinstance(try_to_load_from_cache(ref.location, "config.json"), str):
            return
        if not offline:
            _fetch_config(ref, sweep)
    for task in tasks:
        try:
            models.check(ref, task, sweep.recipe.get("head", "fresh"))  # a head = "checkpoint" of another size too
        except UserError as e:
            raise UserError(f"{sweep.path}: {e}") from None


def _fetch_config(ref: models.ModelRef, sweep: Sweep) -> None:
    try:
        hf_hub_download(ref.location, "config.json")
    except Exception as e:  # not found, private, gated, a network error: each its own type
        raise UserError(
            f"{sweep.path}: model {ref.ref}: cannot fetch {ref.location}/config.json from the Hugging Face Hub "
            f"({type(e).__name__}: {first_line(e, 160)}); check the model id (e.g. google/bert_uncased_L-2_H-128_A-2)"
        ) from None


def _unfetched_line(sweep: Sweep, missing: list[str], source: data.DataSource) -> str:
    """What an offline machine lacks, and the command that fetches it where the Hub can be reached."""
    instead = []
    if any(name.startswith(data.HUB_DATASET) for name in missing):
        instead.append("point GLUE_BENCH_DATA (or --data) at local GLUE files")
    if not all(name.startswith(data.HUB_DATASET) for name in missing):
        instead.append("name a local model folder (package:<module>/<folder>, a path)")
    return (
        f"{sweep.path}: the Hugging Face Hub cannot be reached and this machine's cache lacks {', '.join(missing)}; "
        f"run `glue-bench prefetch {sweep.path}` where the Hub can be reached (with the workers' HF_HOME), or {' or '.join(instead)}"
    )


def _check_distillation(sweep: Sweep, tasks: list[Task], url: str | None) -> list[str]:
    """The teacher of every task (found, its labels the task's) and the transfer file (readable, its columns)."""
    recipe, problems = sweep.recipe, []
    for task in tasks:
        try:
            teacher.resolve(recipe["teacher"], task, url)
            if recipe.get("transfer"):
                load_transfer(task, recipe["transfer"], recipe.get("max_transfer_samples", 0))
        except UserError as e:
            problems.append(f"{sweep.path} [distill]: {e}")
    return problems
