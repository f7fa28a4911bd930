"""Models as trials record and reports show them: a distilled student's name and identity, names made unique
per identity, a miniature's shape and paper name, models in order of size."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections import Counter
from pathlib import Path

from glue_bench.errors import UserError
from glue_bench.inputs.models import NAMED, SHAPE, all_miniatures, parameter_count, resolve

DISTILLED = " ← "  # a distilled student's name: "L-2_H-128 ← teacher", its own row in every report
KEPT = "kept:"  # a teacher that is the kept best model of a study in the same storage: kept:<sweep>[/<model>]


def teacher_label(teacher: str) -> str:
    """A teacher as a student's short name shows it: a sweep's kept model by the sweep's name, a folder by its own."""
    if teacher.startswith(KEPT):
        return teacher.removeprefix(KEPT).split("/", 1)[0]
    if teacher.startswith("/"):
        return Path(teacher).name
    return teacher


def student_name(model: str, teacher: str | None, transfer: str | None = None) -> str:
    """A trial's model by its short name: the model itself, or a distilled student with its teacher and the
    transfer rows it learned on besides the train rows ("L-4_H-256 ← teacher + sentences"). Short names may
    coincide (two folders named model): display_names makes the names a report prints unique."""
    if not isinstance(teacher, str) or not teacher:
        return model
    rows = f" + {Path(transfer).stem}" if isinstance(transfer, str) and transfer else ""
    return f"{model}{DISTILLED}{teacher_label(teacher)}{rows}"


def _text(value) -> str:
    return value if isinstance(value, str) else ""  # a NaN or None from a table: absent


def model_identity(student: str, teacher=None, teacher_weights=None, transfer_rows=None) -> str:
    """What makes a trial's model another model: the student's reference and, for a distilled student, the
    teacher's full reference, its weights' fingerprint and the transfer rows' content hash. It is never shown
    and never parsed: display_names derives the names reports print from it."""
    if not _text(teacher):
        return student
    return json.dumps([student, teacher, _text(teacher_weights), _text(transfer_rows)])


def display_names(records: list[dict]) -> list[str]:
    """The name each record's model is shown by, unique per identity among `records` (every trial of a storage):
    records hold student, teacher, teacher_weights, transfer (the file) and transfer_rows (its content hash).

    Plain models by their reference. A distilled student by its short name (student_name) where no other identity
    shares it; else with the teacher's and the transfer file's full references; else with a short hash of its
    identity ("L-2_H-128 ← kept:t/L-12_H-768 #3f2a91c0"): two different models never print the same name."""
    identities = [
        model_identity(r["student"], r.get("teacher"), r.get("teacher_weights"), r.get("transfer_rows"))
        for r in records
    ]
    first = {}
    for identity, record in zip(identities, records):
        first.setdefault(identity, record)
    names: dict[str, str] = {i: r["student"] for i, r in first.items() if not _text(r.get("teacher"))}
    # A trial that has not run yet knows its teacher but not the teacher's weights: it takes the name of the one
    # model it will be, where there is one, and does not make the others longer.
    waiting = {i for i, r in first.items() if i not in names and not _text(r.get("teacher_weights"))}
    for level in range(3):
        candidates = {i: _distilled_label(r, i, level) for i, r in first.items() if i not in names and i not in waiting}
        counts = Counter(candidates.values())
        taken = set(names.values())
        names |= {i: n for i, n in candidates.items() if level == 2 or counts[n] == 1 and n not in taken}
    for i in waiting:
        record, fields = first[i], ("student", "teacher", "transfer")
        same = {n for j, n in names.items() if all(_text(first[j].get(f)) == _text(record.get(f)) for f in fields)}
        short = _distilled_label(record, i, 0)
        names[i] = (
            same.pop() if len(same) == 1 else short if short not in names.values() else _distilled_label(record, i, 2)
        )
    return [names[i] for i in identities]


def _distilled_label(record: dict, identity: str, level: int) -> str:
    if level == 0:
        return student_name(record["student"], record["teacher"], _text(record.get("transfer")))
    rows = f" + {record['transfer']}" if _text(record.get("transfer")) else ""
    label = f"{record['student']}{DISTILLED}{record['teacher']}{rows}"
    return label if level == 1 else f"{label} #{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def student_of(name: str) -> str:
    """The student's own reference in a distilled student's name (the name itself otherwise)."""
    return str(name).split(DISTILLED, 1)[0]


def model_shape(ref: str) -> tuple[int, int] | None:
    """(layers, hidden) of a miniature reference (L-2_H-128, random:L-2_H-128, a distilled one); None for any other."""
    match = SHAPE.match(student_of(ref).removeprefix("random:"))
    return (int(match[1]), int(match[2])) if match else None


def by_size(refs) -> list[str]:
    """Model references, smallest first (by parameter count; references of no known shape last)."""

    def key(ref):
        shape = model_shape(ref)
        return (parameter_count(*shape) if shape and shape in all_miniatures() else math.inf, str(ref))

    return sorted(set(refs), key=key)


def normalise_model(ref: str) -> str:
    """A model as trials record it (bert-tiny → L-2_H-128; "bert-mini <- x" → "L-4_H-256 ← x", as a shell
    types the arrow); a folder that is gone stays as typed."""
    student, arrow, teacher = str(ref).replace(" <- ", DISTILLED).partition(DISTILLED)
    with contextlib.suppress(UserError):
        student = resolve(student).ref
    return f"{student}{arrow}{teacher.strip()}" if arrow else student


def model_label(ref: str) -> str:
    """L-2_H-128 (bert-tiny): a recorded reference with its paper name, where it has one."""
    names = {v: k for k, v in NAMED.items()}
    return f"{ref} ({names[ref]})" if ref in names else str(ref)
