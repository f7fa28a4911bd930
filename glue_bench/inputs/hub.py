"""Whether the Hugging Face Hub can be reached: asked once, quickly, so an offline machine fails in
a second with one clear line instead of minutes of retries. Cached files still load offline."""

from __future__ import annotations

import os
import socket
import sys
from functools import cache
from urllib.parse import urlparse


@cache
def reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def quiet_libraries(progress: bool = True) -> None:
    """The libraries log every retry and download; glue-bench reports what matters itself. Through their
    environment variables, read when they are imported, so that a command that never loads them stays fast."""
    for variable in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "HF_HUB_VERBOSITY"):
        os.environ.setdefault(variable, "error")
    progress = progress and sys.stderr.isatty()  # bars in a log file are one endless line of carriage returns
    if not progress:  # tokenization's and downloads' bars too
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("datasets", "huggingface_hub", "transformers"):  # those already imported
        if name in sys.modules:
            sys.modules[name].utils.logging.set_verbosity_error()
    if not progress and "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
