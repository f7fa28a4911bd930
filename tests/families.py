"""Tiny random models of every encoder family, with real tokenizers built here, offline, in seconds.

WordPiece tokenizers (BERT, DistilBERT, ELECTRA) take the shipped uncased vocabulary; a byte-level BPE (RoBERTa,
MPNet, ModernBERT) and a Unigram model (XLM-R, CamemBERT, ALBERT, DeBERTa-v2) are trained with the `tokenizers`
library on a few thousand real GLUE sentences; each family's tokenizer class then wraps them with its own special
tokens and pair format. Models: 2 layers, hidden 64, random weights. Nothing is committed: every folder is built
in a test's temporary directory.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from glue_bench.inputs.models import bundled_tokenizer

FAMILIES = (
    "bert",
    "roberta",
    "xlm-roberta",
    "camembert",
    "distilbert",
    "electra",
    "albert",
    "deberta-v2",
    "mpnet",
    "modernbert",
)
FAST = ("bert", "roberta", "xlm-roberta", "camembert", "electra")  # training/encoder.py's families
ROBERTA_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>"}
ROBERTA_SPECIALS |= {"unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}
BERT_SPECIALS = {"cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]", "pad_token": "[PAD]"}
BERT_SPECIALS |= {"mask_token": "[MASK]"}


@cache
def sentences(glue_data: Path) -> tuple[str, ...]:
    """3,000 real sentences: SST-2's and RTE's first train rows."""
    out = []
    for file, columns in (("SST-2/train.tsv", ("sentence",)), ("RTE/train.tsv", ("sentence1", "sentence2"))):
        with open(glue_data / file, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:1000]
        out += [row[c] for row in rows for c in columns]
    return tuple(out)


def _bpe(glue_data: Path, specials: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(sentences(glue_data), trainer)
    return tokenizer


def _unigram(glue_data: Path, specials: list[str], unk: str) -> Tokenizer:
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=2000, special_tokens=specials, unk_token=unk)
    tokenizer.train_from_iterator(sentences(glue_data), trainer)
    return tokenizer


def _template(tokenizer: Tokenizer, first: str, last: str, between: str, types: bool) -> None:
    """The pair format: `first A last` and `first A last (between) B last`, B's segment 1 where types say so."""
    b = ":1" if types else ""
    pair = f"{first} $A {last} " + (f"{between} " if between else "") + f"$B{b} {last}{b}"
    tokens = {t for t in (first, last, between) if t}
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}", pair=pair, special_tokens=[(t, tokenizer.token_to_id(t)) for t in tokens]
    )


def tokenizer(family: str, glue_data: Path):
    """The family's tokenizer: its own class, special tokens and pair format."""
    if family in ("bert", "distilbert", "electra"):
        base = bundled_tokenizer()
        cls = {"bert": transformers.BertTokenizerFast, "distilbert": transformers.DistilBertTokenizerFast}
        cls = cls.get(family, transformers.ElectraTokenizerFast)
        return cls(tokenizer_object=base.backend_tokenizer, **BERT_SPECIALS)
    if family == "roberta":
        bpe = _bpe(glue_data, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        bpe.post_processor = processors.RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", 0))
        return transformers.RobertaTokenizerFast(tokenizer_object=bpe, **ROBERTA_SPECIALS)
    if family == "mpnet":  # MPNet's is WordPiece, lower-cased, with RoBERTa's special tokens
        vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])}
        vocab |= {
            t: len(vocab) + i
            for i, t in enumerate(sorted(bundled_tokenizer().get_vocab(), key=bundled_tokenizer().get_vocab().get))
        }
        return transformers.MPNetTokenizerFast(vocab=vocab, **ROBERTA_SPECIALS)
    if family == "modernbert":
        bpe = _bpe(glue_data, ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"])
        _template(bpe, "[CLS]", "[SEP]", "", types=False)
        return transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, **BERT_SPECIALS)
    if family in ("xlm-roberta", "camembert"):
        unigram = _unigram(glue_data, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>")
        _template(unigram, "<s>", "</s>", "</s>", types=False)
        cls = transformers.XLMRobertaTokenizerFast if family == "xlm-roberta" else transformers.CamembertTokenizerFast
        return cls(tokenizer_object=unigram, **ROBERTA_SPECIALS)
    unigram = _unigram(glue_data, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[UNK]")  # albert, deberta-v2
    _template(unigram, "[CLS]", "[SEP]", "", types=True)
    cls = transformers.AlbertTokenizerFast if family == "albert" else transformers.DebertaV2TokenizerFast
    return cls(tokenizer_object=unigram, **BERT_SPECIALS)


def config(family: str, tok, num_labels: int, **overrides):
    """A tiny config of the family: 2 layers, hidden 64, the tokenizer's vocabulary and padding token."""
    common = {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "num_labels": num_labels}
    small = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
    if family == "distilbert":
        return transformers.DistilBertConfig(dim=64, n_layers=2, n_heads=2, hidden_dim=128, **common, **overrides)
    if family == "electra":  # embeddings narrower than the layers: the projection the unpadded encoder must run
        return transformers.ElectraConfig(embedding_size=32, **small, **common, **overrides)
    if family == "albert":
        return transformers.AlbertConfig(embedding_size=32, **small, **common, **overrides)
    if family in ("roberta", "xlm-roberta", "camembert", "mpnet"):  # positions after padding_idx: 512 + 2
        cls = transformers.AutoConfig.for_model(family).__class__
        extra = {} if family == "mpnet" else {"type_vocab_size": 1}
        return cls(max_position_embeddings=514, **small, **extra, **common, **overrides)
    if family == "modernbert":
        ids = {f"{name}_token_id": tok.convert_tokens_to_ids(t) for name, t in (("cls", "[CLS]"), ("sep", "[SEP]"))}
        ids |= {"bos_token_id": ids["cls_token_id"], "eos_token_id": ids["sep_token_id"]}
        return transformers.ModernBertConfig(
            **small, max_position_embeddings=512, global_attn_every_n_layers=2, **ids, **common, **overrides
        )
    cls = transformers.AutoConfig.for_model(family).__class__  # bert, deberta-v2
    return cls(**small, max_position_embeddings=512, **common, **overrides)


def build(family: str, folder: Path, glue_data: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """A tiny random model of the family and its tokenizer, saved as a folder from_pretrained opens."""
    tok = tokenizer(family, glue_data)
    torch.manual_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_config(config(family, tok, num_labels))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
