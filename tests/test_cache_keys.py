"""Every cache key is built from everything its value depends on (inputs/cache.py).

The case that went wrong: a sweep's `[distill] transfer` applies to all its tasks, and one transfer file can hold
the columns of several (`sentence`, `sentence1`, `sentence2`); the key of its tokenization named the file but not
the task, so RTE's students trained on SST-2's single sentences and its teacher's outputs on them were cached under
RTE's key.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from glue_bench.inputs import cache, data
from glue_bench.inputs.models import bundled_tokenizer, miniature_config
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping import teacher as teachers
from glue_bench.sweeping import trial
from glue_bench.training.recipe import Recipe


def _teacher_folder(root: Path, task: str) -> str:
    """A random L-2_H-128 classifier labelled as `task`'s (a teacher's labels are checked against the task's)."""
    torch.manual_seed(0)
    config = miniature_config(2, 128)
    names = get_task(task).names
    config.update(
        {"num_labels": 2, "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    )
    folder = root / f"teacher-{task}"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    bundled_tokenizer().save_pretrained(folder)
    return str(folder)


def _transfer_file(path: Path, glue_data: Path) -> Path:
    """Real rows: SST-2's sentences beside RTE's sentence pairs, one file for both tasks."""

    def rows(file):
        with open(file, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:20]

    sst2, rte = rows(glue_data / "SST-2" / "dev.tsv"), rows(glue_data / "RTE" / "dev.tsv")
    lines = ["sentence\tsentence1\tsentence2"]
    lines += [f"{a['sentence']}\t{b['sentence1']}\t{b['sentence2']}" for a, b in zip(sst2, rte)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_one_transfer_file_used_by_two_tasks_gives_each_task_its_own_text(glue_data, tmp_path):
    transfer = _transfer_file(tmp_path / "rows.tsv", glue_data)
    prepared = {}
    for task in ("sst2", "rte"):  # in one process, as one worker runs a sweep's studies one after another
        recipe = Recipe(
            batch_size=16,
            lr=1e-4,
            epochs=1,
            max_train_samples=32,
            teacher=_teacher_folder(tmp_path, task),
            transfer=str(transfer),
        )
        prepared[task] = trial.prepare(trial.TrialSpec("random:L-2_H-128", task, str(glue_data), recipe))
    tokenizer = bundled_tokenizer()
    sst2, rte = prepared["sst2"].distill.transfer, prepared["rte"].distill.transfer
    assert set(np.concatenate(sst2["token_type_ids"])) == {0}  # one sentence
    assert set(np.concatenate(rte["token_type_ids"])) == {0, 1}  # sentence pairs
    first = tokenizer.decode(rte[0]["input_ids"])
    with open(transfer, encoding="utf-8") as f:
        row = f.read().splitlines()[1].split("\t")
    assert first == tokenizer.decode(tokenizer(row[1], row[2])["input_ids"])  # RTE's pair, not SST-2's sentence
    # The teacher's outputs on RTE's transfer rows are its outputs on the pairs, computed now, not SST-2's cached.
    from glue_bench.training.batches import Packed
    from glue_bench.training.inference import outputs

    model, _ = teachers.models.load(teachers.models.resolve(prepared["rte"].spec.recipe.teacher), get_task("rte"), 0)
    expected = outputs(model, Packed(rte), 64, torch.device("cpu"))[0]
    np.testing.assert_allclose(prepared["rte"].distill.transfer_outputs, expected, rtol=1e-5, atol=1e-5)


def test_a_change_of_any_input_of_the_tokenization_key_gives_a_new_key(glue_data, monkeypatch):
    keys = []
    monkeypatch.setattr(cache, "path", lambda kind, record, suffix: keys.append(cache.key(record)) or Path("/nope"))
    import datasets

    split = datasets.Dataset.from_dict({"text_a": ["a b"], "text_b": [None], "label": [0], "idx": [0]})
    monkeypatch.setattr(datasets.Dataset, "map", lambda self, *a, **k: self)
    sst2, rte = get_task("sst2"), get_task("rte")
    source = data.resolve_source(str(glue_data))
    base = data.rows_record(sst2, sst2.splits["train"], source)
    other_tokenizer = bundled_tokenizer()
    other_tokenizer.add_tokens(["glue-bench-new-token"])
    variants = [
        (base, bundled_tokenizer(), 128),
        (base, bundled_tokenizer(), 64),  # max length
        (base, other_tokenizer, 128),  # tokenizer
        (data.rows_record(sst2, sst2.splits["validation"], source), bundled_tokenizer(), 128),  # split
        (data.rows_record(rte, rte.splits["train"], source), bundled_tokenizer(), 128),  # task and its columns
        ({**base, "first": 500}, bundled_tokenizer(), 128),  # row limit
    ]
    for rows, tokenizer, length in variants:
        data.tokenize(split, tokenizer, length, rows)
    assert len(keys) == len(set(keys)) == len(variants)
    data.tokenize(split, bundled_tokenizer(), 128, dict(reversed(list(base.items()))))  # same inputs, any order
    assert keys[-1] == keys[0]


def test_a_change_of_any_input_of_the_teacher_outputs_key_gives_a_new_key(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(
        teachers.Outputs, "_compute", lambda self, raw, rows, device, autocast: (np.arange(2), np.zeros((2, 2)))
    )
    task = get_task("sst2")

    def outputs_on(fingerprint="folder:a", rows=None, length=128, bf16=False, cuda=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        teacher = teachers.Teacher("t", "t", fingerprint)
        before = set(cache.cache_dir().joinpath("teacher").glob("*.npz"))
        teachers.Outputs(teacher, task, length, 64, bf16).on(rows or {"rows": 1}, lambda: None, np.arange(2))
        written.append(set(cache.cache_dir().joinpath("teacher").glob("*.npz")) - before)

    outputs_on()
    outputs_on(fingerprint="folder:b")  # the teacher's weights
    outputs_on(rows={"rows": 2})  # the rows (task, columns, source, limit)
    outputs_on(length=64)  # the maximum length
    outputs_on(bf16=True, cuda=True)  # bf16 autocast on a GPU: other outputs
    outputs_on(cuda=True)  # float32 on a GPU: another device
    outputs_on(bf16=True)  # bf16 asked on a CPU: no autocast there, the float32 outputs again
    assert [len(w) for w in written] == [1, 1, 1, 1, 1, 1, 0]


@pytest.mark.parametrize("limit", [0, 5])
def test_a_transfer_files_key_is_its_content(tmp_path, limit):
    from glue_bench.inputs.transfer import fingerprint

    path = tmp_path / "rows.tsv"
    path.write_text("sentence\na\n")
    before = fingerprint(str(path), limit)
    path.write_text("sentence\nb\n")
    assert fingerprint(str(path), limit) != before
