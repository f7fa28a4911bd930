"""A checkpoint saved in half precision is fine-tuned in float32, and every trial records both dtypes.

transformers 5 loads a bf16 checkpoint in bf16 unless told otherwise; AdamW on bf16 weights rounds most small
updates away. The same weights, rounded to bf16 once, saved as a bf16 folder and as an fp32 folder, hold the same
values, so their fine-tunes must be the same fine-tune: identical losses and dev predictions.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertModel

from glue_bench import cli
from glue_bench.inputs import models, weights
from glue_bench.inputs.models import bundled_tokenizer, miniature_config
from glue_bench.sweeping.runs import runs_table

RUN = [
    "--task",
    "sst2",
    "--batch-size",
    "32",
    "--lr",
    "1e-3",
    "--epochs",
    "3",
    "--max-train-samples",
    "1000",
]  # learns: both classes predicted


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    """A random L-2_H-128 encoder (no head: fine-tuning makes one, seeded), its weights rounded to bf16 once, saved
    in bf16, in fp16 and in fp32 (the fp16 folder rounds again: other values, here to check what is recorded)."""
    torch.manual_seed(0)
    rounded = BertModel(miniature_config(2, 128)).to(torch.bfloat16).state_dict()
    root = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        encoder = BertModel(miniature_config(2, 128))
        encoder.load_state_dict(rounded)  # each copy from the bf16-rounded values, not from the last copy
        encoder.to(dtype).save_pretrained(root / name)
        bundled_tokenizer().save_pretrained(root / name)
        out[name] = str(root / name)
    return out


def test_the_checkpoint_dtype_is_read_from_the_weight_files(folders):
    assert [weights.checkpoint_dtype(models.resolve(folders[n])) for n in ("bf16", "fp16", "fp32")] == [
        "bfloat16",
        "float16",
        "float32",
    ]
    assert weights.checkpoint_dtype(models.resolve("random:L-2_H-128")) == "none"


def test_a_bf16_checkpoint_trains_as_its_float32_copy_and_both_dtypes_are_recorded(
    folders, sst2_without_test, tmp_path
):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for name in ("bf16", "fp32"):
        assert (
            cli.main(["run", "--model", folders[name], *RUN, "--data", str(sst2_without_test), "--storage", url]) == 0
        )
    table = runs_table(url)
    table = table.set_index("student" if "student" in table else "model")
    bf16, fp32 = table.loc[folders["bf16"]], table.loc[folders["fp32"]]
    # the same values, trained in float32 both times: the same losses, the same dev predictions and score
    assert [e["train_loss"] for e in json.loads(bf16["curve"])] == [e["train_loss"] for e in json.loads(fp32["curve"])]
    assert bf16["score"] == fp32["score"]
    from glue_bench.sweeping.artifacts import download_predictions

    dev = [download_predictions(json.loads(r["dev_predictions"])["sst2/validation"], url) for r in (bf16, fp32)]
    assert dev[0]["prediction"] == dev[1]["prediction"]
    assert len(set(dev[0]["prediction"])) == 2  # not a collapsed run: both classes predicted
    assert (bf16["checkpoint_dtype"], fp32["checkpoint_dtype"]) == ("bfloat16", "float32")
    assert bf16["param_dtype"] == fp32["param_dtype"] == "float32"


def test_a_teacher_is_loaded_in_float32_too(folders):
    from glue_bench.inputs.tasks import get_task

    model, _ = models.load(models.resolve(folders["fp16"]), get_task("sst2"), seed=0)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
