"""A checkpoint's weight files: where they are (its folder, the Hub's cache), what their headers say without loading
a tensor (the dtypes, the shapes), and what identifies them (a fingerprint of the weights a model starts from)."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def dtype_names(dtypes) -> str:
    """Floating dtypes as one text: "float32", or "bfloat16+float32" for a mix."""
    names = sorted({str(d).removeprefix("torch.") for d in dtypes if "float" in str(d)})
    return "+".join(names) or "none"


def checkpoint_dtype(ref) -> str:
    """The floating dtype(s) a checkpoint's weight files hold, read from their headers (no weights are loaded);
    its config's dtype where no weight file can be found; "none" for random weights."""
    if ref.kind == "random":
        return "none"
    files = [f for name in WEIGHT_FILES if (f := weight_file(ref, name))]
    for file in files:
        if file.name.endswith(".index.json"):  # shards: every shard's header
            shards = sorted(set(json.loads(file.read_text())["weight_map"].values()))
            found = [weight_file(ref, shard) for shard in shards]
            if all(found):
                return dtype_names(d for shard in found for d in _file_dtypes(shard))
        else:
            return dtype_names(_file_dtypes(file))
    config = weight_file(ref, "config.json")
    values = json.loads(config.read_text()) if config else {}
    return str(values.get("dtype") or values.get("torch_dtype") or "unknown")


def weight_file(ref, name: str) -> Path | None:
    if ref.kind == "local":
        path = Path(ref.location, name)
        return path if path.is_file() else None
    found = try_to_load_from_cache(ref.location, name)
    return Path(found) if isinstance(found, str) else None


def _file_dtypes(path: Path) -> list[str]:
    if path.suffix == ".safetensors":  # 8 bytes of header length, then the JSON header
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        return [SAFETENSORS_DTYPES.get(v["dtype"], v["dtype"]) for k, v in header.items() if k != "__metadata__"]
    import torch

    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    return [str(t.dtype) for t in state.values()]


@functools.cache
def folder_fingerprint(folder: str) -> str:
    """A hash of the folder's files: a model fine-tuned again in the same folder is another model (a teacher's
    outputs, a checkpoint of a trial that starts from it)."""
    digest = hashlib.sha1()
    for file in sorted(Path(folder).iterdir()):
        if file.is_file():
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return f"folder:{digest.hexdigest()[:16]}"


def hub_revision(repo: str) -> str:
    """The commit of the Hub model `repo` that the local cache holds ("unknown" when the cache cannot say)."""
    found = try_to_load_from_cache(repo, "config.json")
    parts = Path(found).parts if isinstance(found, str) else ()
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else "unknown"


def weights_fingerprint(ref) -> str:
    """What identifies a model's starting weights: a folder's (or a package's) files, a Hub model's revision in the
    cache, or the random architecture (its weights come from the trial's seed)."""
    if ref.kind == "random":
        return f"random:{ref.ref}"
    if ref.kind == "local":
        return folder_fingerprint(ref.location)
    return f"hub:{ref.location}@{hub_revision(ref.location)}"


def shapes(ref, keys: tuple[str, ...]) -> dict[str, tuple[int, ...]] | None:
    """The shapes of `keys` in the checkpoint's weight files (headers only), None when no weight file is found."""
    for name in WEIGHT_FILES:
        file = weight_file(ref, name)
        if file is None:
            continue
        if file.name.endswith(".index.json"):  # shards: the ones that hold the keys
            weight_map = json.loads(file.read_text())["weight_map"]
            shards = [weight_file(ref, shard) for shard in sorted({weight_map[k] for k in keys if k in weight_map})]
            if not all(shards):
                continue
            return {k: v for shard in shards for k, v in _file_shapes(shard).items() if k in keys}
        return {k: v for k, v in _file_shapes(file).items() if k in keys}
    return None


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if path.suffix == ".safetensors":  # 8 bytes of header length, then the JSON header: no tensor is read
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    import torch

    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)  # mapped, not read
    return {k: tuple(t.shape) for k, t in state.items()}
