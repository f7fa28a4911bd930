"""A checkpoint that holds a classifier: the recipe's `head` says what a trial trains (inputs/heads.py).

fresh: a classifier from the trial's seed whatever the checkpoint holds (of the task's size or not); checkpoint: the
checkpoint's own, refused in pre-flight (one line, exit 2, nothing queued) when its size is not the task's. Every
trial records the checkpoint's head size (`checkpoint_labels`) beside the recipe's `head`.
"""

from __future__ import annotations

import shutil

import families
import pandas as pd
import pytest
import torch

from glue_bench import cli
from glue_bench.inputs import heads, models
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping.runs import runs_table

RUN = ["--batch-size", "16", "--lr", "1e-3", "--epochs", "1", "--max-train-samples", "64", "--no-progress"]


@pytest.fixture(scope="module")
def folders(glue_data, tmp_path_factory) -> dict[str, str]:
    """Tiny random models saved with a head: a 1-label (STS-B-style) ELECTRA and a 2-label BERT; and the BERT's
    encoder alone (no head)."""
    root = tmp_path_factory.mktemp("heads")
    out = {
        "electra-1": families.build("electra", root / "electra-1", glue_data, num_labels=1),
        "bert-2": families.build("bert", root / "bert-2", glue_data, num_labels=2),
    }
    with_head = models.load(models.resolve(str(out["bert-2"])), get_task("sst2"), seed=0)[0]
    with_head.bert.save_pretrained(root / "bert-none")
    shutil.copy(out["bert-2"] / "tokenizer.json", root / "bert-none")
    shutil.copy(out["bert-2"] / "tokenizer_config.json", root / "bert-none")
    out["bert-none"] = root / "bert-none"
    return {k: str(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def sst2_stsb(glue_data, tmp_path_factory):
    """SST-2's and STS-B's train and dev files only (links): no test split to predict."""
    folder = tmp_path_factory.mktemp("sst2-stsb")
    for task in ("SST-2", "STS-B"):
        (folder / task).mkdir()
        for name in ("train.tsv", "dev.tsv"):
            (folder / task / name).symlink_to(glue_data / task / name)
    return str(folder)


def labels_of(folder: str) -> int | None:
    ref = models.resolve(folder)
    return heads.checkpoint_labels(ref, models.check(ref, get_task("sst2")))


def test_the_checkpoints_head_is_read_from_the_weight_files_header(folders, tmp_path):
    assert [labels_of(folders[n]) for n in ("electra-1", "bert-2", "bert-none")] == [1, 2, None]
    assert heads.output_keys(models.check(models.resolve(folders["electra-1"]), get_task("sst2"))) == (
        "classifier.out_proj.weight",
        "classifier.out_proj.bias",
    )
    assert labels_of("random:L-2_H-128") is None
    # No weight is read: the file cut right after its header gives the same answer.
    cut = tmp_path / "cut"
    shutil.copytree(folders["electra-1"], cut)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: 8 + int.from_bytes(data[:8], "little")])
    assert labels_of(str(cut)) == 1


def classifier(model) -> torch.Tensor:
    return model.classifier.weight.detach().clone()


def test_fresh_heads_follow_the_seed_and_checkpoint_heads_are_the_checkpoints(folders):
    """A checkpoint whose head has the task's size (2 labels, SST-2): fresh gives seeds 0 and 1 different
    classifiers at step 0 (before: the same, the checkpoint's), each one of them what the encoder alone (no head)
    loads with that seed; checkpoint keeps the saved one."""
    sst2, ref = get_task("sst2"), models.resolve(folders["bert-2"])
    saved = classifier(models.load(ref, sst2, seed=0)[0])  # as the checkpoint is
    fresh = [classifier(models.load(ref, sst2, seed=s, head="fresh")[0]) for s in (0, 1)]
    assert not torch.equal(fresh[0], fresh[1])
    assert not torch.equal(fresh[0], saved) and not torch.equal(fresh[1], saved)
    headless = models.resolve(folders["bert-none"])
    assert all(torch.equal(fresh[s], classifier(models.load(headless, sst2, seed=s, head="fresh")[0])) for s in (0, 1))
    kept = [classifier(models.load(ref, sst2, seed=s, head="checkpoint")[0]) for s in (0, 1)]
    assert torch.equal(kept[0], saved) and torch.equal(kept[1], saved)
    # the encoder is the checkpoint's either way
    a = models.load(ref, sst2, seed=0, head="fresh")[0].bert.state_dict()
    b = models.load(ref, sst2, seed=1, head="checkpoint")[0].bert.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_head_of_another_size_runs_fresh_and_records_it(folders, sst2_stsb, tmp_path):
    """A 1-label ELECTRA on SST-2 (2 classes) and a 2-label BERT on STS-B (regression): exit 0, the trial records
    the checkpoint's head size and the head it trained. Before: from_pretrained's traceback (mismatched sizes)."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for folder, task in ((folders["electra-1"], "sst2"), (folders["bert-2"], "stsb")):
        argv = ["run", "--model", folder, "--task", task, *RUN, "--data", sst2_stsb, "--storage", url]
        assert cli.main(argv) == 0
    table = runs_table(url).set_index("task")
    assert table.loc["sst2", "checkpoint_labels"] == 1 and table.loc["stsb", "checkpoint_labels"] == 2
    assert table.loc["sst2", "head"] == table.loc["stsb", "head"] == "fresh"
    assert (table["state"] == "COMPLETE").all()
    # A model without a head (random weights) beside them: its checkpoint_labels is empty, and the column stays
    # whole numbers in the export (pandas' Int64), not 1.0 and 2.0.
    argv = ["run", "--model", "random:L-2_H-128", "--task", "sst2", *RUN, "--data", sst2_stsb, "--storage", url]
    assert cli.main(argv) == 0
    out = tmp_path / "runs.csv"
    assert cli.main(["export", "--storage", url, "--out", str(out)]) == 0
    exported = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("model")
    assert exported["checkpoint_labels"].to_dict() == {
        folders["electra-1"]: "1",
        folders["bert-2"]: "2",
        "random:L-2_H-128": "",
    }
    assert runs_table(url)["checkpoint_labels"].dtype == "Int64"


def test_a_checkpoint_head_of_another_size_is_refused_before_anything_is_queued(folders, sst2_stsb, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for folder, task, holds in ((folders["electra-1"], "sst2", "1 label"), (folders["bert-none"], "sst2", "no")):
        argv = ["run", "--model", folder, "--task", task, *RUN, "--head", "checkpoint", "--data", sst2_stsb]
        capsys.readouterr()
        assert cli.main([*argv, "--storage", url]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"holds {'a head of ' if holds != 'no' else ''}{holds}" in err and 'use head = "fresh"' in err, err
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        f'models = ["{folders["electra-1"]}"]\ntasks = ["sst2"]\nepochs = 1\nseeds = [0]\nstorage = "{url}"\n'
        f'data = "{sst2_stsb}"\n[grid]\nbatch_size = [16]\nlr = [1e-3]\n[recipe]\nhead = "checkpoint"\n'
    )
    capsys.readouterr()
    assert cli.main(["sweep", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a head of 1 label(s) and sst2 needs 2" in err, err
    import optuna

    assert optuna.get_all_study_summaries(url) == []  # nothing queued, no study made
    # the same checkpoint with its head's size (2 labels on SST-2) trains its own head
    argv = ["run", "--model", folders["bert-2"], "--task", "sst2", *RUN, "--head", "checkpoint"]
    assert cli.main([*argv, "--data", sst2_stsb, "--storage", url]) == 0
    row = runs_table(url).iloc[0]
    assert (row["checkpoint_labels"], row["head"], row["state"]) == (2, "checkpoint", "COMPLETE")
