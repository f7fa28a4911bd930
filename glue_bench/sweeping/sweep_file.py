"""Sweep files (sweeps/*.toml) → a checked plan of Optuna studies, one per (sweep, model, task).

A sweep file names models, tasks, the grid (batch sizes × learning rates × seeds), epochs, the data source,
recipe overrides, the storage, whether to keep each study's best model (`save`) and a distillation's teacher
(`[distill]`); see sweeps/cpu-smoke.toml and sweeps/distill-sst2.toml. Loading is strict: an unknown key, a
wrong type or a bad value is a UserError naming the file and the key. preflight.py then checks that every
model, every task's data and any teacher and transfer file can be had, before anything is written, and
studies.enqueue puts every grid point that has no trial yet into its study, once.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from glue_bench.errors import UserError, did_you_mean, unknown_key, unknown_keys
from glue_bench.inputs import models
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping.schema import study_name
from glue_bench.sweeping.storage import storage_url
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
    "checkpoint_minutes",
    "recipe",
    "distill",
)
KINDS = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a string"}  # in errors
CHECKPOINT_MINUTES = 30.0  # a running trial's checkpoint every half hour of training, and whenever it is stopped
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
    checkpoint_minutes: float = CHECKPOINT_MINUTES  # a running trial's checkpoint every this many minutes (0: none)

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
    checkpoint_minutes = check_checkpoint_minutes(table.get("checkpoint_minutes", CHECKPOINT_MINUTES), where)
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
        checkpoint_minutes=checkpoint_minutes,
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


def check_checkpoint_minutes(value, where: str) -> float:
    """`checkpoint_minutes`: a number >= 0 (0: no checkpoints, a stopped trial starts again from step 0)."""
    if _number(value, integer=False) and value >= 0:
        return float(value)
    raise UserError(f"{where}: 'checkpoint_minutes' must be a number of minutes >= 0 (0: none), got {value!r}")


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
