"""The disk caches (tokenized splits, a teacher's outputs, kept models) and the one rule for their keys.

A cache key is a hash of a record of every input its value depends on: never a name alone. Each cache builds
its record where it knows its inputs (the task, the columns read, the rows' fingerprint and limit, the
tokenizer's identity, the maximum length, a teacher's weights, the dtype and device of its outputs, …) and
calls `path`; a change of any of them gives another file. VERSION is in every record, so that caches written
by an older version of glue-bench, whose keys may have missed an input, are never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

VERSION = 2  # 1: the keys before every input was in them (glue-bench < 0.2); their files are ignored


def cache_dir() -> Path:
    """GLUE_BENCH_CACHE, else ~/.cache/glue-bench."""
    return Path(os.environ.get("GLUE_BENCH_CACHE", Path.home() / ".cache" / "glue-bench"))


def key(record: dict) -> str:
    """The hash of a record of inputs (JSON with sorted keys: the same inputs in any order, the same key)."""
    text = json.dumps({"cache_version": VERSION, **record}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def path(kind: str, record: dict, suffix: str) -> Path:
    """Where the value of `record` lives in cache `kind` (a folder of the cache, made if missing)."""
    folder = cache_dir() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key(record)}{suffix}"
