"""The three data layouts give the same uniform rows with the same label ids, on the real GLUE files."""

from __future__ import annotations

import re

import numpy as np
import pytest

from glue_bench.inputs import data
from glue_bench.inputs.tasks import registry


def _pairs_in_both(glue_data, glue_hub):
    tsv, hub = data.resolve_source(str(glue_data)), data.resolve_source(str(glue_hub))
    for task in registry().values():
        for split in task.splits.values():
            if data.available(task, split, tsv) and data.available(task, split, hub):
                yield task, split, tsv, hub


def test_every_split_present_in_both_layouts_is_compared(glue_data, glue_hub):
    compared = {(t.name, s.name) for t, s, _, _ in _pairs_in_both(glue_data, glue_hub)}
    # ../shared has these in both layouts (MNLI and QQP only as Hub parquet, QNLI without train).
    assert compared == {
        ("ax", "test"),
        ("cola", "train"),
        ("cola", "validation"),
        ("cola", "test"),
        ("mrpc", "train"),
        ("mrpc", "validation"),
        ("mrpc", "test"),
        ("qnli", "validation"),
        ("qnli", "test"),
        ("rte", "train"),
        ("rte", "validation"),
        ("rte", "test"),
        ("sst2", "train"),
        ("sst2", "validation"),
        ("sst2", "test"),
        ("stsb", "train"),
        ("stsb", "validation"),
        ("stsb", "test"),
        ("wnli", "train"),
        ("wnli", "validation"),
        ("wnli", "test"),
    }


def test_tsv_and_hub_layouts_give_the_same_rows(glue_data, glue_hub):
    for task, split, tsv, hub in _pairs_in_both(glue_data, glue_hub):
        a, b = data.load_split(task, split, tsv).to_pandas(), data.load_split(task, split, hub).to_pandas()
        where = f"{task.name} {split.name}"
        assert len(a) == len(b) == split.rows, where
        assert list(a.columns) == list(b.columns) == data.UNIFORM_COLUMNS, where
        np.testing.assert_array_equal(a["label"].to_numpy(), b["label"].to_numpy(), err_msg=where)
        if task.name == "mrpc":
            # The Hub's MRPC text is re-tokenized ("brother , whom" for "brother, whom"), and its train/dev
            # idx is the row of Microsoft's msr_paraphrase_train.txt, which both splits were cut from.
            # Comparable: labels (above), row order, and the text with whitespace removed.
            def squeeze(text):
                return re.sub(r"\s+", "", text)

            for column in ("text_a", "text_b"):
                same = (a[column].map(squeeze) == b[column].map(squeeze)).mean()
                assert same > 0.999, f"{where} {column}: only {same:.4f} of rows agree without whitespace"
            if split.role == "test":
                np.testing.assert_array_equal(a["idx"], b["idx"], err_msg=where)
            continue
        np.testing.assert_array_equal(a["idx"].to_numpy(), b["idx"].to_numpy(), err_msg=where)
        assert (a["text_a"] == b["text_a"]).all(), where
        assert (a["text_b"].fillna("") == b["text_b"].fillna("")).all(), where


def test_label_ids_and_known_rows(glue_data, glue_hub):
    """Spot checks against rows read by eye in the original files."""
    tsv = data.resolve_source(str(glue_data))
    tasks = registry()
    rte_dev = data.load_split(tasks["rte"], tasks["rte"].splits["validation"], tsv)
    assert rte_dev[0]["text_b"] == "Christopher Reeve had an accident."
    assert rte_dev[0]["label"] == 1  # not_entailment
    cola_train = data.load_split(tasks["cola"], tasks["cola"].splits["train"], tsv)
    assert cola_train[0]["text_a"] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert cola_train[0]["text_b"] is None and cola_train[0]["label"] == 1 and cola_train[0]["idx"] == 0
    stsb_dev = data.load_split(tasks["stsb"], tasks["stsb"].splits["validation"], tsv)
    assert stsb_dev[0]["label"] == pytest.approx(5.0) and stsb_dev[1]["label"] == pytest.approx(4.75)
    sst_test = data.load_split(tasks["sst2"], tasks["sst2"].splits["test"], tsv)
    assert sst_test[0]["label"] == -1 and sst_test[1820]["idx"] == 1820


def test_mnli_and_qqp_dev_from_the_hub_layout(glue_hub):
    """Real MNLI/QQP dev rows: the Hub's label ids (MNLI entailment 0, neutral 1, contradiction 2)."""
    hub, tasks = data.resolve_source(str(glue_hub)), registry()
    matched = data.load_split(tasks["mnli"], tasks["mnli"].splits["validation_matched"], hub).to_pandas()
    assert len(matched) == 9815 and matched["label"].value_counts().to_dict() == {0: 3479, 2: 3213, 1: 3123}
    mismatched = data.load_split(tasks["mnli"], tasks["mnli"].splits["validation_mismatched"], hub)
    assert len(mismatched) == 9832
    qqp = data.load_split(tasks["qqp"], tasks["qqp"].splits["validation"], hub).to_pandas()
    assert len(qqp) == 40430 and sorted(qqp["label"].unique()) == [0, 1]


def test_ax_diagnostic_keeps_its_categories(glue_data):
    task = registry()["ax"]
    full = data.load_split(task, task.splits["diagnostic"], data.resolve_source(str(glue_data))).to_pandas()
    assert len(full) == 1104
    assert full.loc[0, "text_a"] == "The cat sat on the mat."
    assert full.loc[0, "label"] == 2 and full.loc[0, "Logic"] == "Negation"  # contradiction


def test_row_count_mismatch_is_reported(glue_data, tmp_path):
    folder = tmp_path / "RTE"
    folder.mkdir()
    lines = (glue_data / "RTE" / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "dev.tsv").write_text("".join(lines[:-7]), encoding="utf-8")
    task = registry()["rte"]
    with pytest.raises(data.UserError, match=r"dev.tsv: 270 rows, but rte validation has 277"):
        data.load_split(task, task.splits["validation"], data.resolve_source(str(tmp_path)))


def test_label_ids_match_the_hub_parquet_files_own_classlabel_names(glue_hub):
    """Our label id i is the Hub's id i for every task: by name where our labels are words (MNLI:
    entailment 0, neutral 1, contradiction 2; WNLI: not_entailment 0), by number where the GLUE server
    takes numbers (CoLA, SST-2, MRPC, QQP, WNLI: "0", "1")."""
    import json

    import pyarrow.parquet as pq

    checked = 0
    for task in registry().values():
        for path in sorted((glue_hub / task.hub_config).glob("*.parquet")):
            feature = json.loads(pq.read_schema(path).metadata[b"huggingface"])["info"]["features"]["label"]
            if task.regression:
                assert feature["_type"] == "Value", path
                continue
            names = feature["names"]
            if all(label.isdigit() for label in task.labels):
                assert list(task.labels) == [str(i) for i in range(len(names))], path
            else:
                assert list(task.labels) == names, path
            checked += 1
    assert checked >= 20  # every labelled split of the ten configs
