"""The Optuna storage, the one system of record: trials, their metrics and curves; predictions as artifacts.

Default: a SQLite file under results/. Many machines: a PostgreSQL URL they share (and a shared folder
for the prediction artifacts).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore

from .errors import UserError

DEFAULT_STORAGE = "sqlite:///results/glue-bench.db"
HEARTBEAT_SECONDS = 30  # a worker's running trial is marked failed after 4 missed heartbeats
GRACE_SECONDS = 120
MAX_RETRIES = 3

optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(url: str | None) -> str:
    return url or os.environ.get("GLUE_BENCH_STORAGE") or DEFAULT_STORAGE


def artifacts_dir(url: str | None) -> Path:
    """Where predictions go: GLUE_BENCH_ARTIFACTS, else beside a SQLite file, else results/artifacts."""
    if folder := os.environ.get("GLUE_BENCH_ARTIFACTS"):
        return Path(folder)
    url = storage_url(url)
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent / "artifacts"
    return Path("results/artifacts")


def artifact_store(url: str | None) -> FileSystemArtifactStore:
    folder = artifacts_dir(url)
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def engine_url(url: str) -> str:
    """The URL SQLAlchemy connects with. SQLAlchemy 2.1 reads postgresql:// as the psycopg (3) driver,
    but the [postgres] extra installs psycopg2: name it where psycopg is not installed."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def open_storage(url: str | None, heartbeat: bool = False, create: bool = True) -> optuna.storages.RDBStorage:
    """An RDB storage; with heartbeat, a killed worker's trial is failed and retried up to 3 times."""
    url = storage_url(url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not create and not path.is_file():
            raise UserError(f"--storage {url}: no such file; run a sweep first or pass the right --storage")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a folder should be, a read-only place
            blocker = next((p for p in path.parents if p.exists()), None)
            why = f"{blocker} is a file, not a folder" if blocker and not blocker.is_dir() else e.strerror
            raise UserError(f"--storage {url}: cannot create the folder {path.parent} ({why}); "
                            "pass a SQLite file in a writable folder (sqlite:///path/to/file.db)") from None
    # SQLite: wait for a writer instead of failing with "database is locked".
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    options = {}
    if heartbeat:
        options = {"heartbeat_interval": HEARTBEAT_SECONDS, "grace_period": GRACE_SECONDS,
                   "failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRIES)}
    try:
        return optuna.storages.RDBStorage(engine_url(url), engine_kwargs=engine, **options)
    except ImportError as e:
        raise UserError(f"--storage {url}: a database driver is missing ({e}); for PostgreSQL: "
                        "pip install 'glue-bench[postgres]'") from None
    except Exception as e:  # sqlalchemy raises ArgumentError, OperationalError, … for a bad or dead URL
        first = str(e).strip().splitlines()[0][:200]
        raise UserError(f"--storage {url}: cannot open the storage ({type(e).__name__}: {first}); check the URL "
                        "(sqlite:///path.db or postgresql://user:pass@host/db) and that the server is up") from None
