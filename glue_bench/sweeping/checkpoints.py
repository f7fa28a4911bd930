"""Checkpoints of running trials in the artifact store: written every `checkpoint_minutes` of training and when a trial
is stopped, found again when its grid point runs again, deleted when the point is settled.

A trial's checkpoint is one artifact (its record, training/checkpoint.py, as torch.save writes it), linked from the
trial by the user attr `checkpoint` ({"artifact", "step", "fingerprint", "written"}) only once it is whole: a write
cut off never replaces a good one, and the trial's previous checkpoint is removed after the new link. The fingerprint
names what the record belongs to: the grid point, the whole recipe, the model's weights and the rows it trains on, a
distillation's teacher and transfer rows, and the code that wrote it. A record whose fingerprint differs, or that
cannot be read, is left alone: the trial starts from step 0 and says why in one line.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import sys
import time
import uuid
from pathlib import Path

import optuna

from glue_bench import __version__
from glue_bench.errors import first_line
from glue_bench.sweeping import stops
from glue_bench.sweeping.schema import grid_point
from glue_bench.sweeping.storage import artifact_store, ride_out

ATTR = "checkpoint"  # the trial's user attr that links its newest checkpoint
STOP_SECONDS = 8.0  # what a stopped trial may spend writing one: SLURM kills 30 s after its SIGTERM
WRITE_BYTES_PER_SECOND = 50e6  # a first write's speed, assumed until one is measured (a shared network folder)
PACKAGE = Path(__file__).resolve().parent.parent


@functools.cache
def code_version() -> str:
    """glue-bench's version and a hash of its source: a checkpoint written by other code is not resumed."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def fingerprint(point: dict, recipe: dict, inputs: dict) -> str:
    """What a trial's checkpoint belongs to: its grid point, its whole recipe, what it reads (`inputs`: the rows,
    the model's weights, a teacher's and transfer rows'), and the code."""
    record = {"point": point, "recipe": recipe, "inputs": inputs, "code": code_version()}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _say(line: str) -> None:
    print(f"glue-bench: {line}", file=sys.stderr, flush=True)


class ArtifactKeeper:
    """training/checkpoint.Keeper over the artifact store, for the trials of one pack (or one trial). With `minutes`
    0 it keeps nothing and resumes nothing."""

    def __init__(self, trials: list[optuna.Trial], fingerprints: list[str], url: str | None, minutes: float):
        self.trials, self.fingerprints, self.url = trials, fingerprints, url
        self.period = minutes * 60
        self.last = time.monotonic()  # of the last write, or of the start
        self.written: list[str | None] = [None] * len(trials)  # this run's newest artifact per trial
        self.bytes_per_second = WRITE_BYTES_PER_SECOND
        self.resume, self.resumed_from, self.lost_seconds = None, "", 0.0
        if self.period > 0:
            self._find()

    def step(self):
        return stops.deferred()

    def due(self) -> bool:
        return self.period > 0 and time.monotonic() - self.last >= self.period

    def write(self, records: list[dict]) -> None:
        with stops.deferred():  # a stop waits for a whole checkpoint
            self._write(records)

    def stopped(self, records) -> None:
        """At a stop: a checkpoint now, where it fits in the STOP_SECONDS a stop leaves and, once this run has written
        one (its write speed measured), takes less time to write than the training since then (what it saves)."""
        stops.caught()  # the stop is handled from here on: never raised again in the middle of the write
        if self.period <= 0:
            return
        age = time.monotonic() - self.last
        state = records()
        size = sum(t.numel() * t.element_size() for t in _tensors(state))
        seconds = size / self.bytes_per_second
        kept = f"the checkpoint written {age:.0f} s ago is kept" if any(self.written) else "no checkpoint is kept"
        if any(self.written) and seconds >= age:
            _say(
                f"stopped: a checkpoint of {size / 1e6:,.0f} MB would take longer to write than the {age:.0f} s of "
                f"training it saves; {kept}"
            )
            return
        if seconds > STOP_SECONDS:
            _say(
                f"stopped: a checkpoint of {size / 1e6:,.0f} MB would not be written in the {STOP_SECONDS:.0f} s "
                f"a stop leaves; {kept}"
            )
            return
        try:
            self._write(state)
            _say(f"stopped at step {state[0]['step']}: checkpoint written; the same command resumes from it")
        except Exception as e:  # the storage, the disk: the last periodic checkpoint stands
            _say(f"stopped: the checkpoint could not be written ({type(e).__name__}: {first_line(e)})")

    def refused(self, reason: str) -> None:
        """The loop found the records do not continue this run (another batch order or encoder): step 0."""
        _say(f"checkpoint {self.resumed_from} not resumed: {reason}; starting from step 0")
        self.resume, self.resumed_from, self.lost_seconds = None, "", 0.0

    def resumed_attrs(self) -> dict:
        """What a trial records of its start: resumed_from_step (0: from the start), where from, the time lost."""
        if self.resume is None:
            return {"resumed_from_step": 0}
        return {
            "resumed_from_step": self.resume[0]["step"],
            "resumed_from": self.resumed_from,
            "resume_lost_seconds": round(self.lost_seconds, 1),
        }

    def discard(self, point: tuple) -> None:
        """Remove every checkpoint of a grid point that is settled: nothing resumes it any more."""
        try:
            store, trials = artifact_store(self.url), self.trials[0].study.get_trials(deepcopy=False)
            for trial in trials:
                if ATTR in trial.user_attrs and grid_point(trial) == point:
                    _remove(store, trial.user_attrs[ATTR]["artifact"])
        except Exception as e:  # the storage: the files stay, and nothing links them to a point that runs again
            _say(f"the checkpoints of a finished grid point were not removed ({type(e).__name__}: {first_line(e)})")

    def _write(self, records: list[dict]) -> None:
        import torch

        started, size = time.monotonic(), 0
        store = artifact_store(self.url)
        for n, (trial, record) in enumerate(zip(self.trials, records)):
            buffer = io.BytesIO()
            torch.save(record, buffer)
            size += buffer.tell()
            buffer.seek(0)
            artifact = str(uuid.uuid4())
            store.write(artifact, buffer)  # whole before it is linked
            link = {"artifact": artifact, "step": record["step"], "fingerprint": self.fingerprints[n]}
            link["written"] = time.time()
            ride_out(lambda t=trial, link=link: t.set_user_attr(ATTR, link), "linking a checkpoint")
            if self.written[n] is not None:
                _remove(store, self.written[n])
            self.written[n] = artifact
        self.last = time.monotonic()
        self.bytes_per_second = size / max(self.last - started, 1e-3)

    def _find(self) -> None:
        """The records to continue from, one per trial: each grid point's newest checkpoint, among the other trials
        that ran it, whose fingerprint is the trial's own, if it reads; else none (step 0), said in one line."""
        import torch

        study = self.trials[0].study
        others = study.get_trials(deepcopy=False)
        records, sources, lost = [], [], []
        for trial, wanted in zip(self.trials, self.fingerprints):
            point = grid_point(study._storage.get_trial(trial._trial_id))
            found = [t for t in others if t.number != trial.number and ATTR in t.user_attrs and grid_point(t) == point]
            newest = lambda t: (t.user_attrs[ATTR]["written"], t.user_attrs[ATTR]["step"])  # noqa: E731
            ours = [t for t in found if t.user_attrs[ATTR]["fingerprint"] == wanted]
            if found and not ours:
                other = max(found, key=newest)
                _say(
                    f"checkpoint of trial {other.number} at step {other.user_attrs[ATTR]['step']} belongs to another "
                    "recipe, model, data or code version; starting from step 0"
                )
            if not ours:
                return
            source = max(ours, key=newest)
            link = source.user_attrs[ATTR]
            where = f"of trial {source.number} at step {link['step']}"
            try:
                with artifact_store(self.url).open_reader(link["artifact"]) as f:
                    records.append(torch.load(io.BytesIO(f.read()), weights_only=True))
            except Exception as e:  # gone, cut off, not a record: each its own type
                _say(
                    f"checkpoint {where} cannot be read ({type(e).__name__}: {first_line(e, 160)}); starting from step 0"
                )
                return
            sources.append(where)
            ended = source.datetime_complete.timestamp() if source.datetime_complete else time.time()
            lost.append(max(0.0, ended - link["written"]))  # what the stop cost: run after it, then thrown away
        self.resume, self.resumed_from, self.lost_seconds = records, "; ".join(sources), max(lost)


def _tensors(value):
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _remove(store, artifact: str) -> None:
    """Remove an artifact; one already gone (a repeat) is no error."""
    with contextlib.suppress(Exception):
        store.remove(artifact)
