"""The task and model registries: strict loading, did-you-mean, and computed model sizes."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT, SHARED

from glue_bench.errors import UserError
from glue_bench.inputs import models
from glue_bench.inputs.tasks import get_task, load_task_file, registry


def test_all_glue_tasks_are_registered_with_their_release_sizes():
    tasks = registry()
    assert sorted(tasks) == ["ax", "cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli"]
    assert [s.rows for s in tasks["mnli"].splits.values()] == [392702, 9815, 9832, 9796, 9847]
    assert [s.submission for s in tasks["mnli"].splits_with_role("test")] == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    assert tasks["ax"].predicted_by == "mnli" and tasks["ax"].train_split is None
    assert tasks["stsb"].regression and tasks["stsb"].num_labels == 1
    assert tasks["rte"].labels == ("entailment", "not_entailment")
    assert sorted(s.submission for t in tasks.values() for s in t.splits_with_role("test")) == sorted(
        [
            "CoLA.tsv",
            "SST-2.tsv",
            "MRPC.tsv",
            "STS-B.tsv",
            "QQP.tsv",
            "MNLI-m.tsv",
            "MNLI-mm.tsv",
            "QNLI.tsv",
            "RTE.tsv",
            "WNLI.tsv",
            "AX.tsv",
        ]
    )


def test_task_names_are_forgiving_and_suggest():
    assert get_task("SST-2").name == "sst2" and get_task("STS-B").name == "stsb"
    with pytest.raises(UserError, match="unknown task 'cola2': did you mean 'cola'"):
        get_task("cola2")


def _write(tmp_path, text):
    path = tmp_path / "mytask.toml"
    path.write_text(text)
    return path


GOOD = (ROOT / "tasks" / "rte.toml").read_text().replace('name = "rte"', 'name = "mytask"')


def test_a_users_task_file_loads(tmp_path):
    task = load_task_file(_write(tmp_path, GOOD))
    assert task.name == "mytask" and task.splits["validation"].rows == 277


@pytest.mark.parametrize(
    "change, message",
    [
        (("regression = false", "regresion = false"), r"unknown key 'regresion' \(did you mean 'regression'\?\)"),
        (("regression = false\n", ""), "missing required key 'regression'"),
        (("rows = 277", 'rows = "277"'), r"\[splits.validation\]: key 'rows' must be int"),
        (("header = true", "header = 1"), "key 'header' must be bool"),
        (('metrics = ["accuracy"]', 'metrics = ["acc"]'), "unknown metric 'acc'"),
        (('role = "dev"', 'role = "eval"'), "role must be one of train, dev, test"),
        (('name = "mytask"', 'name = "other"'), "must match the file name"),
    ],
)
def test_task_file_errors_name_file_and_key(tmp_path, change, message):
    path = _write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(UserError, match=message) as error:
        load_task_file(path)
    assert str(path) in str(error.value)


def test_miniature_names_and_hub_ids():
    assert models.resolve("bert-tiny") == models.ModelRef(
        "L-2_H-128", "miniature", "google/bert_uncased_L-2_H-128_A-2", 2, 128
    )
    assert models.resolve("bert-medium").location == "google/bert_uncased_L-8_H-512_A-8"
    assert models.resolve("L-12_H-768").location == "google/bert_uncased_L-12_H-768_A-12"
    assert models.resolve("random:bert-mini").ref == "random:L-4_H-256"
    assert models.resolve("prajjwal1/bert-tiny").kind == "hub"
    assert len(models.all_miniatures()) == 24
    with pytest.raises(UserError, match="unknown model 'bert-tinyy': did you mean 'bert-tiny'"):
        models.resolve("bert-tinyy")
    with pytest.raises(UserError, match="unknown model 'L-3_H-128'"):
        models.resolve("L-3_H-128")


def test_parameter_counts_are_computed():
    # By hand for L-2_H-128: embeddings 30522·128 + 512·128 + 2·128 + LayerNorm 256 = 3,972,864;
    # a layer: attention 4·(128·128 + 128) + 256 + feed-forward (128·512 + 512 + 512·128 + 128) + 256
    # = 198,272, two of them; pooler 128·128 + 128 = 16,512. Total 4,385,920.
    assert models.parameter_count(2, 128) == 4_385_920
    assert models.parameter_count(12, 768) == 109_482_240  # bert-base-uncased, as published


def test_the_parameter_formula_matches_a_real_model_for_all_24():
    import torch
    from transformers import BertModel

    for layers, hidden in models.all_miniatures():
        with torch.device("meta"):
            counted = sum(p.numel() for p in BertModel(models.miniature_config(layers, hidden)).parameters())
        assert models.parameter_count(layers, hidden) == counted, (layers, hidden)


def test_bundled_vocabulary_tokenizes_like_bert_base_uncased():
    reference_dir = SHARED / "models" / "bert-base-uncased"
    if not reference_dir.is_dir():
        pytest.skip(f"{reference_dir} not found")
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(reference_dir))
    ours = models.bundled_tokenizer()
    for a, b in [("Hello World, unaffable!", None), ("The cat sat.", "Did it? Café naïve 1999")]:
        assert ours(a, b)["input_ids"] == reference(a, b)["input_ids"]
        assert ours(a, b)["token_type_ids"] == reference(a, b)["token_type_ids"]
    assert len(ours) == 30522


def test_a_wheel_ships_the_tasks_and_the_vocabulary(tmp_path):
    """A plain (non-editable) install must find the task files: build the wheel and look inside."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("glue_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.startswith("glue_bench/task_files/")) == sorted(
        f"glue_bench/task_files/{t}.toml" for t in registry()
    )
    assert "glue_bench/vocab/vocab.txt" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    script = (
        "from glue_bench.inputs import shipped, tasks; from glue_bench.reporting import references; "
        "print(shipped.task_dir(), len(tasks.registry()), shipped.reference_dir(), len(references.paper()), "
        "len(references.dev_reference()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
    )
    assert out.stdout.split() == [
        str(target / "glue_bench" / "task_files"),
        "10",
        str(target / "glue_bench" / "reference"),
        "4",
        "27",
    ]
