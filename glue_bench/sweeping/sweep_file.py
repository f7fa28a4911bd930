"""Sweep files (sweeps/*.toml) → a checked plan of Optuna studies, one per (sweep, model, task).

A sweep file names models, tasks, the grid (batch sizes × learning rates × seeds), epochs, the data source,
recipe overrides, the storage, whether to keep each study's best model (`save`) and a distillation's teacher
(`[distill]`); see sweeps/cpu-smoke.toml and sweeps/distill-sst2.toml. Loading is strict: an unknown key, a
wrong type or a bad value is a UserError naming the file and the key. `preflight` then checks that every
model, every task's data and any teacher and transfer file can be had, before anything is written, so a user
error costs one line, not N failed trials. studies.enqueue then puts every grid point that has no trial yet into its study, once.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from glue_bench.errors import UserError, did_you_mean, first_line, unknown_key, unknown_keys
from glue_bench.inputs import data, hub, models
from glue_bench.inputs.tasks import Task, dependents, get_task
from glue_bench.sweeping.storage import storage_url
from glue_bench.sweeping.trial import study_name
from glue_bench.training.recipe import Recipe

GRID_KEYS = ("batch_size", "lr")
DISTILL_KEYS = ("teacher", "temperature", "alpha", "transfer", "max_transfer_samples")  # the [distill] table
SET_ELSEWHERE = {
    "batch_size": "[grid]",
    "lr": "[grid]",
    "seed": "seeds",
    "epochs": "epochs",
    **dict.fromkeys(DISTILL_KEYS, "[distill]"),
}
RECIPE_KEYS = tuple(f.name for f in fields(Recipe) if f.name not in SET_ELSEWHERE)
TOP_KEYS = (
    "name",
    "models",
    "tasks",
    "grid",
    "epochs",
    "seeds",
    "data",
    "storage",
    "save",
    "pack",
    "tensorboard",
    "recipe",
    "distill",
)
KINDS = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a string"}  # in errors
SAVE_CHOICES = ("none", "best")  # save = "best": keep each study's best model (sweeping/kept.py)


@dataclass(frozen=True)
class StudyPlan:
    """One (sweep, model, task): an Optuna study holding one trial per grid point."""

    name: str
    model: str  # the normalised model reference
    task: str
    covers: tuple[str, ...] = ()  # tasks predicted by this task's model (MNLI → AX)


@dataclass(frozen=True)
class Sweep:
    name: str
    path: str
    models: tuple[str, ...]  # normalised references (bert-tiny → L-2_H-128)
    tasks: tuple[str, ...]  # tasks to train, in file order
    covered: dict[str, str]  # tasks never trained, predicted by another one's model: {"ax": "mnli"}
    batch_sizes: tuple[int, ...]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    epochs: int
    data: str | None
    storage: str | None
    recipe: dict  # overrides of Recipe defaults (not batch_size, lr, seed, epochs), [distill]'s included
    save: str = "none"  # "best": keep each study's best model in the artifact store
    pack: str | int = "auto"  # learning rates trained at once by a worker: "auto" or a number (1: solo)
    tensorboard: bool = False  # TensorBoard event files per trial under the artifacts folder

    def grid(self) -> list[dict]:
        """Every grid point as Optuna params, in a stable order."""
        return [{"batch_size": b, "lr": lr, "seed": s} for b in self.batch_sizes for lr in self.lrs for s in self.seeds]

    def base_recipe(self) -> dict:
        """The recipe every trial shares; a trial adds its grid point. Recorded on each study."""
        return {**self.recipe, "epochs": self.epochs}

    def recipe_for(self, point: dict) -> Recipe:
        return Recipe(**self.base_recipe(), **point)

    def studies(self) -> list[StudyPlan]:
        return [
            StudyPlan(
                study_name(self.name, model, task),
                model,
                task,
                tuple(t for t, by in self.covered.items() if by == task),
            )
            for model in self.models
            for task in self.tasks
        ]


# --- loading a sweep file --------------------------------------------------------------------------


def _number(value, integer: bool) -> bool:
    kinds = (int,) if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)


def _positive_list(table: dict, key: str, where: str, integer: bool, required: bool = True) -> tuple:
    if key not in table:
        if required:
            raise UserError(f"{where}: missing required key '{key}'")
        return ()
    values = table[key]
    kind = "whole numbers" if integer else "numbers"
    if not isinstance(values, list) or not values or not all(_number(v, integer) and v > 0 for v in values):
        raise UserError(f"{where}: '{key}' must be a non-empty list of positive {kind}, got {values!r}")
    if len(set(values)) != len(values):
        raise UserError(f"{where}: '{key}' lists a value twice: {values!r}")
    return tuple(values)


def _strings(table: dict, key: str, where: str) -> list[str]:
    values = table.get(key)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise UserError(f"{where}: '{key}' must be a non-empty list of strings, got {values!r}")
    return values


def _recipe_overrides(table, where: str, section: str = "recipe", keys: tuple[str, ...] = RECIPE_KEYS) -> dict:
    where = f"{where} [{section}]"
    if not isinstance(table, dict):
        raise UserError(f"{where}: must be a table")
    types = {f.name: f.type for f in fields(Recipe)}
    for key, value in table.items():
        if key in SET_ELSEWHERE and key not in keys:
            raise UserError(f"{where}: '{key}' is set by the sweep's {SET_ELSEWHERE[key]}, not in [{section}]")
        if key not in keys:
            raise unknown_key(key, keys, where)
        kind = types[key]
        if kind in ("bool", "str"):
            ok = isinstance(value, bool if kind == "bool" else str)
        else:
            ok = _number(value, integer=kind == "int")
        if not ok:
            raise UserError(f"{where}: '{key}' must be {KINDS[kind]}, got {value!r}")
    return dict(table)


def _models(values: list[str], where: str) -> tuple[str, ...]:
    refs = []
    for value in values:
        try:
            refs.append(models.resolve(value).ref)
        except UserError as e:
            raise UserError(f"{where}: models: {e}") from None
    if len(set(refs)) != len(refs):
        raise UserError(f"{where}: models: a model is listed twice ({', '.join(values)})")
    return tuple(refs)


def _tasks(values: list[str], where: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """(tasks to train, tasks covered by another task's model). AX is never trained: MNLI's model predicts it."""
    try:
        tasks = [get_task(v) for v in values]
    except UserError as e:
        raise UserError(f"{where}: tasks: {e}") from None
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: tasks: a task is listed twice ({', '.join(values)})")
    covered = {t.name: t.predicted_by for t in tasks if t.predicted_by}
    for task, by in covered.items():
        if by not in names:
            raise UserError(
                f"{where}: tasks: '{task}' has no training data; the '{by}' model predicts it: add '{by}' to tasks"
            )
    trained = tuple(n for n in names if n not in covered)
    if not trained:
        raise UserError(f"{where}: tasks: nothing to train")
    return trained, covered


def load(path: str | Path) -> Sweep:
    """Parse and check a sweep file. Every problem names the file and the key."""
    file = Path(path)
    if not file.is_file():
        shipped = ", ".join(sorted(str(p) for p in Path("sweeps").glob("*.toml"))) or "none here"
        raise UserError(f"{path}: no such sweep file (shipped sweeps: {shipped})")
    where = str(file)
    try:
        table = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{where}: cannot read the sweep file ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where}: not valid TOML ({e})") from None
    unknown = [(key, TOP_KEYS, where) for key in table if key not in TOP_KEYS]  # all of them, in one error
    for section, keys in (("grid", GRID_KEYS), ("recipe", RECIPE_KEYS), ("distill", DISTILL_KEYS)):
        if isinstance(table.get(section), dict):
            unknown += [(k, keys, f"{where} [{section}]") for k in table[section] if k not in {*keys, *SET_ELSEWHERE}]
    if unknown:
        raise unknown_keys(unknown)
    for key in ("models", "tasks", "grid"):
        if key not in table:
            raise UserError(f"{where}: missing required key '{key}'")

    name = table.get("name", file.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        raise UserError(
            f"{where}: 'name' must be letters, digits, '.', '-' or '_' (it names the studies), got {name!r}"
        )
    grid = table["grid"]
    if not isinstance(grid, dict):
        raise UserError(f"{where}: 'grid' must be a table: [grid] batch_size = [...] lr = [...]")
    batch_sizes = _positive_list(grid, "batch_size", f"{where} [grid]", integer=True)
    lrs = _positive_list(grid, "lr", f"{where} [grid]", integer=False)
    epochs = table.get("epochs", Recipe.epochs)
    if not _number(epochs, integer=True) or epochs <= 0:
        raise UserError(f"{where}: 'epochs' must be a positive whole number, got {epochs!r}")
    seeds = table.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(_number(s, integer=True) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise UserError(f"{where}: 'seeds' must be a list of distinct whole numbers >= 0, got {seeds!r}")
    for key in ("data", "storage"):
        if key in table and (not isinstance(table[key], str) or not table[key].strip()):
            raise UserError(f"{where}: '{key}' must be a non-empty string, got {table[key]!r}")
    recipe = _recipe_overrides(table.get("recipe", {}), where)
    if "distill" in table:
        distill = _recipe_overrides(table["distill"], where, "distill", DISTILL_KEYS)
        if not str(distill.get("teacher", "")).strip():
            raise UserError(f"{where} [distill]: 'teacher' must name the teacher (a folder, a Hub id or kept:<sweep>)")
        recipe.update(distill)
    save = table.get("save", "none")
    if save not in SAVE_CHOICES:
        raise UserError(f"{where}: 'save' must be one of {', '.join(map(repr, SAVE_CHOICES))}, got {save!r}")
    pack = check_pack(table.get("pack", "auto"), where)
    tensorboard = table.get("tensorboard", False)
    if not isinstance(tensorboard, bool):
        raise UserError(f"{where}: 'tensorboard' must be true or false, got {tensorboard!r}")
    tasks, covered = _tasks(_strings(table, "tasks", where), where)
    sweep = Sweep(
        name=name,
        path=where,
        models=_models(_strings(table, "models", where), where),
        tasks=tasks,
        covered=covered,
        batch_sizes=batch_sizes,
        lrs=tuple(float(v) for v in lrs),
        seeds=tuple(seeds),
        epochs=epochs,
        data=table.get("data"),
        storage=table.get("storage"),
        recipe=recipe,
        save=save,
        pack=pack,
        tensorboard=tensorboard,
    )
    try:
        for point in sweep.grid():
            sweep.recipe_for(point)  # the Recipe's own checks (warmup_ratio in [0, 1), …)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    return sweep


# pack = "auto" on a CPU: how many learning rates train at once. benchmarks/README.md ("Packs on a CPU") measured
# packs of 4 at about a solo run's examples/s per trial there: the work a pack shares is small on a CPU.
AUTO_CPU_PACK = 1


def pack_size(wanted: str | int, learning_rates: int, device: str, packable: bool) -> int:
    """How many trials of a study train at once: `pack` (a number, or "auto": every learning rate of a (batch
    size, seed) on a GPU, AUTO_CPU_PACK on a CPU), at most the grid's learning rates; 1 where a pack cannot run
    (`packable` False: the HF model, `encoder = "hf"` or a family the unpadded encoder does not cover; fp16)."""
    if not packable:
        return 1
    size = (learning_rates if device == "cuda" else AUTO_CPU_PACK) if wanted == "auto" else int(wanted)
    return max(1, min(size, learning_rates))


def check_pack(value, where: str) -> str | int:
    """`pack`: "auto" or a whole number >= 1 (1: every trial alone)."""
    if value == "auto" or _number(value, integer=True) and value >= 1:
        return value
    raise UserError(f"{where}: 'pack' must be \"auto\" or a whole number >= 1 (1: solo), got {value!r}")


def select(sweep: Sweep, only: list[str] | None) -> list[StudyPlan]:
    """The sweep's studies, or those whose model or task is named in --only (comma-separated, repeatable)."""
    studies = sweep.studies()
    names = [n.strip() for item in only or [] for n in item.split(",") if n.strip()]
    if not names:
        return studies
    tasks, refs = set(), set()
    for name in names:
        key = name.lower().replace("-", "")
        if key in sweep.tasks or key in sweep.covered:
            tasks.add(sweep.covered.get(key, key))
            continue
        try:
            ref = models.resolve(name).ref
        except UserError:
            ref = None
        if ref not in sweep.models:
            choices = list(sweep.tasks) + list(sweep.covered) + list(sweep.models)
            raise UserError(
                f"--only {name}: not a task or model of sweep {sweep.name}; {did_you_mean(name, choices)}it has {', '.join(choices)}"
            )
        refs.add(ref)
    return [s for s in studies if (not tasks or s.task in tasks) and (not refs or s.model in refs)]


def resolve_storage(sweep: Sweep, cli_storage: str | None) -> str:
    """--storage, else the sweep file's storage, else GLUE_BENCH_STORAGE, else the default."""
    return storage_url(cli_storage or sweep.storage)


# --- pre-flight: everything a user can get wrong, before any trial starts ------------------------------


def preflight(
    sweep: Sweep, studies: list[StudyPlan], data_option: str | None = None, url: str | None = None
) -> data.DataSource:
    """Check the data source, every task's train and dev splits, every model and the teacher and transfer
    rows of a distillation (a kept teacher is found in storage `url`); return the data source. Every problem
    is found, not only the first: the UserError lists them, one per line."""
    from glue_bench.sweeping import prefetch

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
    if ref.kind == "random":
        return
    if ref.kind != "local":
        from huggingface_hub import try_to_load_from_cache

        if offline and not isinstance(try_to_load_from_cache(ref.location, "config.json"), str):
            return
        if not offline:
            _fetch_config(ref, sweep)
    for task in tasks:
        try:
            models.check(ref, task)
        except UserError as e:
            raise UserError(f"{sweep.path}: {e}") from None


def _fetch_config(ref: models.ModelRef, sweep: Sweep) -> None:
    from huggingface_hub import hf_hub_download

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
    from glue_bench.inputs.transfer import load_transfer
    from glue_bench.sweeping import teacher

    recipe, problems = sweep.recipe, []
    for task in tasks:
        try:
            teacher.resolve(recipe["teacher"], task, url)
            if recipe.get("transfer"):
                load_transfer(task, recipe["transfer"], recipe.get("max_transfer_samples", 0))
        except UserError as e:
            problems.append(f"{sweep.path} [distill]: {e}")
    return problems
