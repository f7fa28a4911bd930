"""Identity is never a display name: a distilled student's identity is its student, its teacher's full reference
and weights and its transfer rows' content; the name a report prints is derived from it, unique per identity."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from glue_bench import cli
from glue_bench.errors import UserError
from glue_bench.inputs import weights
from glue_bench.inputs.model_names import display_names, model_identity
from glue_bench.inputs.models import bundled_tokenizer, miniature_config
from glue_bench.inputs.tasks import get_task
from glue_bench.reporting import selection
from glue_bench.sweeping import teacher as teachers
from glue_bench.sweeping.runs import runs_table


def _record(teacher="", weights="", transfer="", rows="", student="L-2_H-128"):
    return {
        "student": student,
        "teacher": teacher,
        "teacher_weights": weights,
        "transfer": transfer,
        "transfer_rows": rows,
    }


def test_two_identities_never_print_the_same_name():
    records = [
        _record(),  # plain
        _record("/a/model", "folder:1"),
        _record("/b/model", "folder:2"),  # the same folder name: each gets its full path
        _record("kept:t/L-12_H-768", "kept:x"),
        _record("kept:t/L-2_H-128", "kept:y"),  # the same sweep: each gets its full reference
        _record("kept:u", "kept:z"),  # unique: stays short
        _record("kept:u", "kept:z", "rows.tsv", "transfer:1:0"),  # + its transfer rows
        _record("kept:v", "kept:w1"),
        _record("kept:v", "kept:w2"),  # one teacher, two versions of its weights: a hash each
        _record("/a/model", "folder:1"),  # the same identity again: the same name
    ]
    names = display_names(records)
    assert names[:7] == [
        "L-2_H-128",
        "L-2_H-128 ← /a/model",
        "L-2_H-128 ← /b/model",
        "L-2_H-128 ← kept:t/L-12_H-768",
        "L-2_H-128 ← kept:t/L-2_H-128",
        "L-2_H-128 ← u",
        "L-2_H-128 ← u + rows",
    ]
    assert names[7].startswith("L-2_H-128 ← kept:v #") and names[8].startswith("L-2_H-128 ← kept:v #")
    assert names[7] != names[8] and names[9] == names[1]
    identities = {model_identity(r["student"], r["teacher"], r["teacher_weights"], r["transfer_rows"]) for r in records}
    assert len(set(names)) == len(identities) == 9


def test_a_trial_not_run_yet_takes_the_name_of_the_model_it_will_be():
    named = display_names([_record("kept:u", "kept:z"), _record("kept:u", "")])  # the second: waiting
    assert named == ["L-2_H-128 ← u", "L-2_H-128 ← u"]


def test_seeds_trained_against_two_versions_of_a_teacher_are_two_configurations():
    rows = [
        {"sweep": "s", "model": "M ← t", "task": "rte", "study": "s/M/rte", "trial": i, "state": "COMPLETE"}
        | {"batch_size": 32, "lr": 1e-4, "seed": seed, "score": score, "dev/validation/accuracy": score}
        | {"teacher": "kept:t", "teacher_weights": weights, "transfer_rows": None}
        for i, (seed, score, weights) in enumerate([(0, 0.5, "kept:a"), (1, 0.7, "kept:a"), (1, 0.9, "kept:b")])
    ]
    configs = selection.configurations(pd.DataFrame(rows))
    assert sorted(zip(configs["teacher_weights"], configs["seeds"], configs["score"].round(3))) == [
        ("kept:a", 2, 0.6),
        ("kept:b", 1, 0.9),
    ]


def _teacher_folder(root, name: str) -> str:
    torch.manual_seed(ord(name[0]))  # other weights
    config = miniature_config(2, 128)
    names = get_task("sst2").names
    config.update(
        {"num_labels": 2, "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    )
    folder = root / name / "model"  # two teachers in folders of the same name
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    bundled_tokenizer().save_pretrained(folder)
    return str(folder)


RUN = ["--task", "sst2", "--batch-size", "32", "--lr", "1e-3", "--epochs", "1", "--max-train-samples", "64"]


def test_students_of_two_teachers_in_folders_of_one_name_are_two_models(glue_data, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    common = ["run", "--model", "random:L-2_H-128", *RUN, "--data", str(glue_data), "--storage", url, "--no-progress"]
    a, b = _teacher_folder(tmp_path, "a"), _teacher_folder(tmp_path, "b")
    for teacher in (a, b):
        assert cli.main([*common, "--teacher", teacher, "--save"]) == 0
    table = runs_table(url)
    assert len(set(table["study"])) == 2  # two studies: the identity's hash is in their names
    assert sorted(table["model"]) == [f"random:L-2_H-128 ← {a}", f"random:L-2_H-128 ← {b}"]
    assert sorted(table["teacher"]) == sorted([a, b]) and table["teacher_weights"].nunique() == 2
    capsys.readouterr()
    assert cli.main(["report", "--storage", url]) == 0
    board = capsys.readouterr().out
    assert f"random:L-2_H-128 ← {a}" in board and f"random:L-2_H-128 ← {b}" in board
    # kept:adhoc/<student> matches both kept students: one line names each, and either name resolves
    with pytest.raises(UserError, match=r"2 sst2 studies of sweep adhoc keep a model: name one of kept:adhoc/") as e:
        teachers.resolve("kept:adhoc/random:L-2_H-128", get_task("sst2"), url)
    candidates = str(e.value).split("name one of ", 1)[1].split(", ")
    resolved = {teachers.resolve(c, get_task("sst2"), url).fingerprint for c in candidates}
    assert len(candidates) == len(resolved) == 2


def test_a_hub_teachers_fingerprint_holds_the_revision_its_cache_holds(monkeypatch, tmp_path):
    snapshot = tmp_path / "models--org--teacher" / "snapshots" / "0123abcd" / "config.json"
    snapshot.parent.mkdir(parents=True)
    snapshot.write_text("{}")
    monkeypatch.setattr(weights, "try_to_load_from_cache", lambda repo, name: str(snapshot))
    assert weights.hub_revision("org/teacher") == "0123abcd"
    monkeypatch.setattr(weights, "try_to_load_from_cache", lambda repo, name: None)
    assert weights.hub_revision("org/teacher") == "unknown"
