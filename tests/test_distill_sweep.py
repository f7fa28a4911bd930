"""Distillation through real sweeps (slow): a teacher sweep with save = "best" and two workers keeps exactly
its best trial's model; a student sweep names it as kept:<sweep>, shares one set of cached teacher outputs, and
its trials record the teacher."""

from __future__ import annotations

import optuna
import pytest

from glue_bench import cli
from glue_bench.sweeping.kept import kept
from glue_bench.sweeping.runs import runs_table

pytestmark = pytest.mark.slow

TEACHER = """# glue-bench sweep teacher.toml
models = ["random:L-2_H-128"]
tasks = ["sst2"]
epochs = 2
seeds = [0]
data = "{data}"
save = "best"
[grid]
batch_size = [32]
lr = [1e-3, 3e-4, 1e-4]
[recipe]
max_train_samples = 1000
"""
STUDENT = """# glue-bench sweep student.toml
models = ["random:L-2_H-128"]
tasks = ["sst2"]
epochs = 2
seeds = [0, 1]
data = "{data}"
[grid]
batch_size = [32]
lr = [1e-3]
[recipe]
max_train_samples = 1000
[distill]
teacher = "kept:teacher"
alpha = 0.5
temperature = 2.0
"""


def test_a_kept_teacher_sweep_then_a_student_sweep(tmp_path, glue_data, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("GLUE_BENCH_CACHE", str(tmp_path / "cache"))  # the workers inherit it
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for name, text in (("teacher", TEACHER), ("student", STUDENT)):
        (tmp_path / f"{name}.toml").write_text(text.replace("{data}", str(glue_data)))
    args = ["--storage", url, "--no-progress", "--workers", "2"]
    assert cli.main(["sweep", str(tmp_path / "teacher.toml"), *args]) == 0
    study = optuna.load_study(study_name="teacher/random:L-2_H-128/sst2", storage=url)
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
    assert kept(study)["trial"] == best.number and kept(study)["value"] == best.value
    assert (
        len([f for f in (tmp_path / "artifacts").rglob("*") if f.is_file() and f.name == kept(study)["artifact"]]) == 1
    )

    assert cli.main(["sweep", str(tmp_path / "student.toml"), *args]) == 0
    table = runs_table(url, sweep="student")
    assert list(table["model"].unique()) == ["random:L-2_H-128 ← teacher"] and len(table) == 2
    assert set(table["state"]) == {"COMPLETE"} and set(table["teacher_weights"]) == {f"kept:{kept(study)['artifact']}"}
    assert (table["alpha"] == 0.5).all() and (table["temperature"] == 2.0).all()
    # Both students see the same teacher outputs: the teacher's dev accuracy from them is its recorded one.
    assert (
        table["teacher/dev/validation/accuracy"].tolist() == [best.user_attrs["metrics"]["validation"]["accuracy"]] * 2
    )
    # Computed once, by one of the two workers: the outputs on the train rows and on the dev split.
    assert len(list((tmp_path / "cache" / "teacher").glob("*.npz"))) == 2
