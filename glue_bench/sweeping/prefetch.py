"""`glue-bench prefetch SWEEP`: everything a sweep reads from the Hugging Face Hub, fetched into the local caches.

Cluster nodes often have no internet; a login node does. Run there with the workers' HF_HOME (and
HF_DATASETS_CACHE / HF_HUB_CACHE where set): every GLUE config the sweep's tasks read is fetched by the
loaders' own calls (`datasets.load_dataset` of nyu-mll/glue in inputs/data.py, then every split read back and
its rows checked) and every Hub model (and Hub teacher) by `models.load` (`from_pretrained` of the tokenizer
and the model), so an offline worker finds exactly the files it asks for. Local folders, packaged models and
random weights need nothing; they are read once here, as a worker reads them, so a damaged file shows now.
The same list of needs tells the pre-flight what an offline machine lacks (`unfetched`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, try_to_load_from_cache

from glue_bench.errors import UserError
from glue_bench.inputs import data, hub, model_names, models
from glue_bench.inputs.tasks import Task, dependents, get_task
from glue_bench.sweeping.sweep_file import StudyPlan, Sweep


@dataclass(frozen=True)
class Need:
    """One dataset config or one model a sweep reads."""

    kind: str  # "data" or "model"
    name: str  # nyu-mll/glue/cola, cola (a local folder), L-2_H-128, package:…
    on_hub: bool  # fetched from the Hub (else local: a folder, a package, random weights)
    tasks: tuple[Task, ...]  # data: the task and the tasks its model predicts (MNLI → AX); model: the first task
    ref: models.ModelRef | None = None


def needs(sweep: Sweep, studies: list[StudyPlan], source: data.DataSource) -> list[Need]:
    """Every dataset config and model the studies read, in sweep order: the data of each task (with the tasks
    its model predicts), each model, and a Hub teacher (a kept: teacher lives in the storage)."""
    tasks = [get_task(name) for name in dict.fromkeys(s.task for s in studies)]
    found = []
    for task in tasks:
        for read in (task, *dependents(task)):
            name = f"{data.HUB_DATASET}/{read.hub_config}" if source.is_hub else read.name
            found.append(Need("data", name, source.is_hub, (read,)))
    refs = [models.resolve(ref) for ref in dict.fromkeys(s.model for s in studies)]
    teacher = str(sweep.recipe.get("teacher", ""))
    if teacher and not teacher.startswith(model_names.KEPT):
        refs.append(models.resolve(teacher))
    for ref in refs:
        found.append(Need("model", ref.ref, ref.kind in ("hub", "miniature"), tuple(tasks[:1]), ref))
    return found


def unfetched(found: list[Need]) -> list[str]:
    """The Hub needs this machine's caches lack, with the Hub unreachable (the pre-flight's prefetch line)."""
    missing = []
    for need in found:
        if need.on_hub and not _cached(need):
            missing.append(need.name if need.kind == "data" else f"{need.name} ({need.ref.location})")
    return missing


def _cached(need: Need) -> bool:
    if need.kind == "model":
        return isinstance(try_to_load_from_cache(need.ref.location, "config.json"), str)
    try:
        _read_every_split(need, data.DataSource("hub"))  # offline: the datasets cache only, at once
    except UserError:
        return False
    return True


def _read_every_split(need: Need, source: data.DataSource) -> None:
    """Every split the trials read, as they read it (row counts checked)."""
    for task in need.tasks:
        for split in task.splits.values():
            if source.is_hub and not split.hub:
                continue
            if source.is_hub or data.available(task, split, source):
                data.load_split(task, split, source)


@dataclass(frozen=True)
class Fetched:
    need: Need
    how: str  # "fetched", "cached" (the Hub unreachable, all in the cache), "local"
    where: str
    size: int  # bytes on disk


def prefetch(sweep: Sweep, studies: list[StudyPlan], data_option: str | None = None) -> list[Fetched]:
    """Fetch every Hub need of the studies (the Hub must be reachable unless the caches hold them all) and
    read every local one; what each is, where it lies and its size on disk."""
    source = data.resolve_source(data_option or sweep.data, "--data" if data_option else f"{sweep.path}: data =")
    found = needs(sweep, studies, source)
    online = hub.reachable()
    if not online and (missing := unfetched(found)):
        raise UserError(
            f"prefetch {sweep.path}: the Hugging Face Hub cannot be reached from here and the local cache lacks "
            f"{', '.join(missing)}; run it on a machine that reaches the Hub (a cluster's login node) with the "
            "workers' HF_HOME"
        )
    done = []
    for need in found:
        how = ("fetched" if online else "cached") if need.on_hub else "local"
        if need.kind == "data":
            done.append(Fetched(need, how, *_data(need, source, online)))
        else:
            if need.ref.kind != "random":  # random weights: nothing to fetch or read
                models.load(need.ref, need.tasks[0], seed=0)  # the loader's own calls: tokenizer and weights
            done.append(Fetched(need, how, *_model_files(need.ref)))
    return done


def _data(need: Need, source: data.DataSource, online: bool) -> tuple[str, int]:
    (task,) = need.tasks
    if not source.is_hub:
        _read_every_split(need, source)
        folders = [f for d in (task.glue_dir, task.hub_config) if (f := Path(source.location, d)).is_dir()]
        files = [p for folder in folders for p in folder.iterdir() if p.is_file()]
        return ", ".join(map(str, folders)), sum(p.stat().st_size for p in files)
    import datasets

    if not online:
        datasets.config.HF_HUB_OFFLINE = True  # as the loader does: the cache only, no retries
    fetched = datasets.load_dataset(data.HUB_DATASET, task.hub_config)  # every split, into the datasets cache
    files = {Path(f["filename"]) for split in fetched.values() for f in split.cache_files}
    _read_every_split(need, source)  # read back as a trial reads it: the rows checked
    return str(min(files).parent) if files else "", sum(f.stat().st_size for f in files)


def _model_files(ref: models.ModelRef) -> tuple[str, int]:
    if ref.kind == "random":
        return "random weights, the bundled vocabulary", 0
    if ref.kind == "local":
        folder = Path(ref.location)
    else:
        folder = Path(try_to_load_from_cache(ref.location, "config.json")).parent  # the snapshot's folder
    return str(folder), sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())  # links: their blobs


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def render(sweep: Sweep, done: list[Fetched]) -> str:
    """The report: one line per dataset config and model, then the total and where the caches are."""
    import datasets

    lines = [f"prefetch {sweep.path}:"]
    width = max(len(f.need.name) for f in done)
    for f in done:
        lines.append(f"  {f.need.kind:<5}  {f.need.name:<{width}}  {f.how:<7}  {megabytes(f.size):>10}  {f.where}")
    on_hub = [f for f in done if f.need.on_hub]
    lines.append(
        f"{len(on_hub)} from the Hub ({megabytes(sum(f.size for f in on_hub))}), {len(done) - len(on_hub)} local; "
        f"caches: datasets {datasets.config.HF_DATASETS_CACHE}, models {constants.HF_HUB_CACHE}. Workers with the "
        f"same HF_HOME read them offline (HF_HUB_OFFLINE=1)"
    )
    return "\n".join(lines)
