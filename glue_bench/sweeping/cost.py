"""The dry run's estimate: how many examples and tokens a sweep processes, and how long that takes.

A trial trains on epochs × train rows examples, evaluates every dev split after every epoch, and predicts the
test splits (and the splits of the tasks its model covers: AX for MNLI) once at the end. The unpadded encoder
computes on a batch's real tokens, not its padding, so work is counted in real tokens: each task's tokens per
train row and per evaluated row (results/padded-lengths.csv, benchmarks/padded_lengths.py). A trial takes

    TRIAL_SECONDS + steps × per_step + per_token × (train tokens + EVAL_COST × evaluated tokens)

a study's first trial `study_seconds` more (its splits read and tokenized), a sweep STARTUP_SECONDS more; the
workers of a sweep run trials side by side. A model's per_step and per_token on a kind of device come from, in
this order: the storage's completed trials of the model (their examples per second, the same task first), the
speed benchmark's table of its architecture (results/throughput.csv, benchmarks/throughput.py: rows of one
length, so no padding), else a FLOP count. The constants were fitted on real sweeps on real GLUE rows
(benchmarks/cost_check.py; benchmarks/README.md has estimated against measured wall time per run).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from glue_bench.errors import UserError
from glue_bench.inputs import model_names, models
from glue_bench.inputs.shipped import reference_dir
from glue_bench.inputs.tasks import Task, get_task
from glue_bench.inputs.transfer import load_transfer
from glue_bench.sweeping import sweep_file
from glue_bench.sweeping.schema import point_key
from glue_bench.sweeping.sweep_file import pack_size
from glue_bench.training import families
from glue_bench.training.recipe import Recipe

TOKENS_PER_EXAMPLE = 40  # a task missing from results/padded-lengths.csv: GLUE rows average 11-67 tokens
EFFECTIVE_FLOPS = {"cpu": 2e10, "cuda": 2e13}  # training FLOP/s small BERTs reach (rough: 1 CPU core, one GPU)
ASSUMED_GPU = "NVIDIA A100"  # the GPU whose effective FLOP/s the guess assumes, until one is measured
MAX_STEPS_PER_SECOND = {"cpu": math.inf, "cuda": 100.0}  # a small model on a GPU is bound by kernel launches
# Fitted on 9 real sweeps (3 models × 3 tasks) by benchmarks/cost_check.py --fit (benchmarks/cost-check.csv):
REAL_ROWS = 1.38  # real GLUE batches (attention over their padding; a shared CPU) over the benchmark's rows, per token
EVAL_COST = 0.373  # seconds per evaluated token over seconds per trained token (a forward pass, no optimizer)
TRIAL_SECONDS = 0.3  # per trial: the model built, the results recorded
TOKENIZE_SECONDS_PER_ROW = 6e-5  # per study, in its first trial: every split of the task read and tokenized
STARTUP_SECONDS = 15.1  # per sweep: the pre-flight, then a worker's start (imports, its first model)


@dataclass(frozen=True)
class Speed:
    """Seconds one model takes on one kind of device: per training step and per real training token."""

    per_step: float
    per_token: float
    source: str  # measured, benchmark or estimated


@cache
def _reference_table(name: str) -> pd.DataFrame:
    path = reference_dir() / name
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else pd.DataFrame()


def _lengths(task: str) -> pd.DataFrame:
    table = _reference_table("padded-lengths.csv")
    return table[table["task"] == task] if len(table) else table


def train_length(task: str) -> float:
    """Real tokens per train row of `task` (results/padded-lengths.csv), else TOKENS_PER_EXAMPLE."""
    rows = _lengths(task)
    return float(rows["mean_length"].iloc[0]) if len(rows) else float(TOKENS_PER_EXAMPLE)


def eval_length(task: str) -> float:
    """Real tokens per dev and test row of `task`: SST-2's are whole sentences, twice its train phrases."""
    rows = _lengths(task)
    return float(rows["eval_mean_length"].iloc[0]) if len(rows) else float(TOKENS_PER_EXAMPLE)


def padded_length(task: str, batch_size: int) -> float:
    """Tokens per training example of `task` at `batch_size` were it padded to each batch's longest row (the
    Hugging Face model, `encoder = "hf"`; results/padded-lengths.csv), else TOKENS_PER_EXAMPLE."""
    rows = _lengths(task)
    if not len(rows):
        return float(TOKENS_PER_EXAMPLE)
    return float(np.interp(batch_size, rows["batch_size"], rows["padded_length"]))


def benchmark_speed(architecture: str, device: str) -> Speed | None:
    """From results/throughput.csv (benchmarks/throughput.py): the seconds of a step of this architecture
    (L-6_H-384) on this kind of device, fitted as a fixed cost per step plus a cost per token over the measured
    batch sizes, times REAL_ROWS. None if the table has no row for them."""
    table = _reference_table("throughput.csv")
    rows = table[(table["device"] == device) & (table["model"] == architecture)] if len(table) else table
    if not len(rows):
        return None
    tokens = rows["batch_size"] * rows["length"]
    if len(rows) >= 2 and tokens.nunique() >= 2:
        per_token, per_step = np.polyfit(tokens, rows["seconds_per_step"], 1)
    else:
        per_token, per_step = float((rows["seconds_per_step"] / tokens).mean()), 0.0
    if per_token <= 0 or per_step < 0:  # a noisy fit: proportional to the tokens instead
        per_token, per_step = float((rows["seconds_per_step"] / tokens).mean()), 0.0
    return Speed(REAL_ROWS * per_step, REAL_ROWS * per_token, "benchmark")


def flop_speed(layers: int, hidden: int, device: str) -> Speed:
    """6 FLOPs per encoder parameter (12·L·H²) per token at EFFECTIVE_FLOPS; on a GPU a floor per step."""
    return Speed(1 / MAX_STEPS_PER_SECOND[device], 6 * 12 * layers * hidden**2 / EFFECTIVE_FLOPS[device], "estimated")


def measured_speed(runs: pd.DataFrame, model: str, task: str) -> Speed | None:
    """The median examples per second of the storage's completed trials of this model (this task's if any),
    as seconds per token of the task they trained on."""
    if runs.empty or "examples_per_second" not in runs:
        return None
    done = runs[(runs["state"] == "COMPLETE") & (runs["model"] == model)].dropna(subset=["examples_per_second"])
    same_task = done[done["task"] == task]
    chosen = same_task if len(same_task) else done
    if not len(chosen):
        return None
    seconds_per_token = 1 / (chosen["examples_per_second"] * chosen["task"].map(train_length))
    return Speed(0.0, float(seconds_per_token.median()), "measured")


def shape(ref: models.ModelRef) -> tuple[int, int]:
    """(layers, hidden) of a model: the miniatures' own, a local folder's config.json, else BERT-Base's."""
    if ref.layers:
        return ref.layers, ref.hidden
    config = Path(ref.location, "config.json")
    if ref.kind == "local" and config.is_file():
        values = json.loads(config.read_text())
        return values.get("num_hidden_layers", 12), values.get("hidden_size", 768)
    return 12, 768


def model_speed(ref: models.ModelRef, task: str, device: str, runs: pd.DataFrame) -> Speed:
    layers, hidden = shape(ref)
    return (
        measured_speed(runs, ref.ref, task)
        or benchmark_speed(models.miniature_name(layers, hidden), device)
        or flop_speed(layers, hidden, device)
    )


def train_rows(task: Task, recipe: Recipe, transfer: int = 0) -> int:
    """The rows a trial trains on in an epoch: the first max_train_samples train rows, and a distilled student's
    `transfer` rows besides."""
    rows = task.train_split.rows
    return (min(rows, recipe.max_train_samples) if recipe.max_train_samples else rows) + transfer


def trial_examples(task: Task, recipe: Recipe, covered: list[Task], transfer: int = 0) -> tuple[int, int]:
    """(training examples, evaluated examples) of one trial, from the tasks' row counts."""
    train, evaluated = trial_tokens(task, recipe, covered, per_row=lambda name, role: 1.0, transfer=transfer)
    return round(train), round(evaluated)


def trial_tokens(task: Task, recipe: Recipe, covered: list[Task], per_row=None, transfer: int = 0):
    """(real training tokens, real evaluated tokens) of one trial: every epoch's train (and transfer) rows, the dev
    splits every epoch, the test splits once, the covered tasks' splits (AX: MNLI's kind of rows) once."""
    if per_row is None:  # the Hugging Face model computes on the padding too; evaluation is sorted by length

        def per_row(name, role):
            if role == "eval":
                return eval_length(name)
            return padded_length(name, recipe.batch_size) if recipe.encoder == "hf" else train_length(name)

    train = recipe.epochs * train_rows(task, recipe, transfer)
    dev = sum(s.rows for s in task.splits_with_role("dev"))
    once = sum(s.rows for s in task.splits_with_role("test"))
    other = sum(s.rows for t in covered for s in t.splits.values() if s.role in ("dev", "test"))
    evaluated = (recipe.epochs * dev + once + other) * per_row(task.name, "eval")
    return train * per_row(task.name, "train"), evaluated


def trial_steps(task: Task, recipe: Recipe, transfer: int = 0) -> int:
    return recipe.epochs * math.ceil(train_rows(task, recipe, transfer) / recipe.batch_size)


def trial_seconds(task: Task, recipe: Recipe, covered: list[Task], speed: Speed, transfer: int = 0) -> float:
    train, evaluated = trial_tokens(task, recipe, covered, transfer=transfer)
    steps = trial_steps(task, recipe, transfer)
    return TRIAL_SECONDS + steps * speed.per_step + speed.per_token * (train + EVAL_COST * evaluated)


def pack_seconds(task: Task, recipes: list[Recipe], covered: list[Task], speed: Speed, transfer: int = 0) -> float:
    """A pack of trials (training/loop.fine_tune_pack: the learning rates of one batch size and seed at once): the
    per-step cost once for the pack, every trial's tokens."""
    solo = [trial_seconds(task, recipe, covered, speed, transfer) for recipe in recipes]
    shared = (len(recipes) - 1) * trial_steps(task, recipes[0], transfer) * speed.per_step
    return sum(solo) - shared


def transfer_rows(task: Task, recipe: Recipe) -> int:
    """A distilled student's transfer rows (its transfer file's, the first max_transfer_samples); 0 without one,
    or where the file cannot be read (the pre-flight says so)."""
    if not recipe.transfer:
        return 0
    try:
        return len(load_transfer(task, recipe.transfer, recipe.max_transfer_samples))
    except UserError:
        return 0


def teacher_seconds(task: Task, recipe: Recipe, transfer: int, speed: Speed) -> float:
    """The teacher's outputs on the train rows, the transfer rows and the dev splits: computed once for a task (the
    cache shares them with every student trial), a forward pass at the teacher's speed."""
    train = train_rows(task, recipe, transfer) * train_length(task.name)
    dev = sum(s.rows for s in task.splits_with_role("dev")) * eval_length(task.name)
    return TRIAL_SECONDS + speed.per_token * EVAL_COST * (train + dev)


def teacher_shape(teacher: str, task: str, runs: pd.DataFrame, folder: Path | None = None) -> models.ModelRef | None:
    """The teacher's model, to time its outputs: a reference resolved; for a kept model (kept:<sweep>[/<model>]) the
    model named, else the one the storage's trials of that sweep and task trained, else the one model of that sweep's
    file in `folder` (the sweeps beside this one); None where none says (then BERT-Base's size is assumed)."""
    if not teacher.startswith(model_names.KEPT):
        try:
            return models.resolve(teacher)
        except UserError:
            return None
    sweep, _, model = teacher.removeprefix(model_names.KEPT).partition("/")
    if not model and len(runs) and "sweep" in runs:
        found = runs[(runs["sweep"] == sweep) & (runs["task"] == task)]["student"].dropna()
        model = found.iloc[0] if len(found) else ""
    if not model and folder is not None and (folder / f"{sweep}.toml").is_file():
        try:
            named = sweep_file.load(folder / f"{sweep}.toml").models
        except UserError:
            named = ()
        model = named[0] if len(named) == 1 else ""
    try:
        return models.resolve(model) if model else None
    except UserError:
        return None


def encoder_of(ref: models.ModelRef, task: Task, recipe: Recipe) -> str:
    """The encoder a trial will run: "fast" (the unpadded encoder: a pack can run), "hf (<model_type>)" (a family
    the unpadded encoder does not cover: slower, solo), "hf", or "?" for a model not here to look at."""
    if recipe.encoder == "hf":
        return "hf"
    try:
        config = models.check(ref, task)
    except UserError:  # not here (the pre-flight says so): a miniature is a BERT
        return "fast" if ref.layers else "?"
    return "fast" if families.supports(config) else f"hf ({config.model_type})"


def study_seconds(task: Task, covered: list[Task]) -> float:
    """Once per study: every split of the task (and of those it covers) read and tokenized."""
    return TOKENIZE_SECONDS_PER_ROW * sum(s.rows for t in (task, *covered) for s in t.splits.values())


def estimate(sweep, statuses, runs: pd.DataFrame, device: str, stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per study: trials left, examples and tokens to process and the estimated seconds, on `device`.
    `stored`: every trial in the storage (a kept teacher's model is found there)."""
    rows, taught = [], set()  # the tasks whose teacher outputs are counted: once for a task (the cache shares them)
    for status in statuses:
        plan = status.plan
        task, ref = get_task(plan.task), models.resolve(plan.model)
        covered = [get_task(t) for t in plan.covers]
        left = [p for p in sweep.grid() if status.states[point_key(p)] in ("pending", "waiting", "running")]
        speed = model_speed(ref, plan.task, device, runs)
        ran = encoder_of(ref, task, sweep.recipe_for(sweep.grid()[0]))
        fp16 = sweep.recipe_for(sweep.grid()[0]).fp16
        size = pack_size(sweep.pack, len(sweep.lrs), device, ran == "fast" and not fp16)
        train = evals = tokens = 0
        seconds = study_seconds(task, covered) if left else 0.0
        first = sweep.recipe_for(sweep.grid()[0])
        transfer = transfer_rows(task, first)
        if first.teacher and left and task.name not in taught:
            taught.add(task.name)
            ref = teacher_shape(first.teacher, task.name, runs if stored is None else stored, Path(sweep.path).parent)
            teacher_speed = model_speed(ref, plan.task, device, pd.DataFrame()) if ref else flop_speed(12, 768, device)
            seconds += teacher_seconds(task, first, transfer, teacher_speed)
        for point in left:
            recipe = sweep.recipe_for(point)
            t, e = trial_examples(task, recipe, covered, transfer)
            train, evals = train + t, evals + e
            tokens += round(trial_tokens(task, recipe, covered, transfer=transfer)[0])
        rows_of = {}  # (batch size, seed) → its learning rates' recipes: the trials a pack may join
        for point in left:
            rows_of.setdefault((point["batch_size"], point["seed"]), []).append(sweep.recipe_for(point))
        for recipes in rows_of.values():
            for start in range(0, len(recipes), size):
                seconds += pack_seconds(task, recipes[start : start + size], covered, speed, transfer)
        rows.append(
            {
                "model": plan.model,
                "task": plan.task,
                "encoder": ran,
                "pack": size,
                "trials": len(sweep.grid()),
                "to run": len(left),
                "train examples": train,
                "eval examples": evals,
                "train tokens": tokens,
                "speed": speed.source,
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows)


def device_text(device: str) -> str:
    """What the time is of: a CPU core, or a GPU named, measured or guessed from FLOPs."""
    if device == "cpu":
        return "CPU time at 1 thread per trial"
    table = _reference_table("throughput.csv")
    measured = table[table["device"] == device] if len(table) else table
    if len(measured):
        return f"GPU time on one {measured['gpu'].iloc[0]} (measured; the speed column names any FLOP estimate)"
    return (
        f"GPU time on one {ASSUMED_GPU} (a FLOP estimate at {EFFECTIVE_FLOPS[device]:.0e} FLOP/s, until "
        "benchmarks/throughput.py has run on a GPU)"
    )
