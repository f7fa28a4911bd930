"""Whether the Hugging Face Hub can be reached: asked once, quickly, so an offline machine fails in
a second with one clear line instead of minutes of retries. Cached files still load offline."""

from __future__ import annotations

import os
import socket
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


def quiet_libraries() -> None:
    """The libraries log every retry and download; glue-bench reports what matters itself."""
    import datasets
    import huggingface_hub
    import transformers

    for library in (datasets, huggingface_hub, transformers):
        library.utils.logging.set_verbosity_error()
