"""The Optuna storage, the one system of record: trials, their metrics and curves; predictions as artifacts.

Default: a SQLite file under results/. Many machines: a PostgreSQL URL they share (and a shared folder
for the prediction artifacts).

What `ride_out` repeats, and why each is right when repeated after a partial success (the storage may have
done part of the work, or all of it and failed to say so):
  opening the storage, loading studies, reading trials and the kept model (a worker, the launcher's progress)
      they only read; opening creates Optuna's tables only where they are missing.
  looking for a trial to run (worker._take)
      studies.fail_stale fails only trials that are still RUNNING with a stale heartbeat, then
      studies.queue_retries queues a retry only for a grid point with no complete, running or waiting trial,
      so a retry lost between the two is queued by the repeat, and never twice; taking a trial is one
      conditional WAITING -> RUNNING update, which one worker wins (if its answer is lost, the repeat passes
      that trial by: it has one heartbeat, goes stale and is retried after the grace period; never run twice).
  starting a trial (its grid point, its worker and recipe attributes)
      an attribute written again gets the same value; a parameter already set is kept (Optuna ignores the
      duplicate), and it is the same grid point's.
  recording a finished trial (recording.complete), a failure (recording.fail), an interrupt
      each reads the trial's state first and does only what is left: results written again are the same
      values; COMPLETE or FAIL is told only to a RUNNING trial; a trial declared dead meanwhile gets its result
      recorded once for its grid point; the kept model is swapped only if it is not the kept one already.
      Artifacts (predictions, a kept model) are written to the artifact store before, outside ride_out,
      under ids fixed once, so a repeat never uploads them again.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore

from glue_bench.errors import UserError, first_line

DEFAULT_STORAGE = "sqlite:///results/glue-bench.db"
# A sweep worker records a heartbeat every HEARTBEAT_SECONDS; a running trial whose last heartbeat is
# older than GRACE_SECONDS belongs to a dead worker: it is marked failed and retried (MAX_RETRIES times,
# studies.queue_retries).
# Env GLUE_BENCH_HEARTBEAT_SECONDS / GLUE_BENCH_GRACE_SECONDS change them (tests use 1 s / 4 s).
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
MAX_RETRIES = 3
PLAN_LOCK_KEY = 0x676C7565  # PostgreSQL advisory lock id of sweep planning: any fixed number ("glue")
# A storage that stops answering (a database restart, a network blip) is waited for, with backoff, for up
# to RIDE_OUT_SECONDS before a worker or launcher gives up (env GLUE_BENCH_STORAGE_RETRY_SECONDS).
RIDE_OUT_SECONDS = 300


class StorageUnreachable(UserError):
    """The storage cannot be reached now: one line and exit 2 for a command, a wait for a running sweep."""


# What a storage that is down or restarting raises: Optuna wraps SQLAlchemy errors raised while it commits.
STORAGE_ERRORS = (
    StorageUnreachable,
    optuna.exceptions.StorageInternalError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(url: str | None) -> str:
    return url or os.environ.get("GLUE_BENCH_STORAGE") or DEFAULT_STORAGE


def masked(url: str | None) -> str:
    """A storage URL as glue-bench prints it: the password hidden (postgresql://glue:***@host/db), so that
    logs, CI output and error messages never hold it."""
    url = storage_url(url)
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: hide whatever sits between user: and @
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


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


def ride_out_seconds() -> float:
    text = os.environ.get("GLUE_BENCH_STORAGE_RETRY_SECONDS", str(RIDE_OUT_SECONDS))
    try:
        return max(0.0, float(text))
    except ValueError:
        raise UserError(f"GLUE_BENCH_STORAGE_RETRY_SECONDS={text}: must be a number of seconds") from None


def ride_out(call, doing: str, seconds: float | None = None):
    """call(), retried with backoff (1, 2, 4 … 30 s) while the storage is unreachable, for up to `seconds`
    in all (default: ride_out_seconds()); one line each time it waits. Then the storage's error is raised."""
    seconds = ride_out_seconds() if seconds is None else seconds
    deadline, delay = time.monotonic() + seconds, 1.0
    while True:
        try:
            return call()
        except STORAGE_ERRORS as e:
            if time.monotonic() + delay > deadline:
                raise
            print(
                f"glue-bench: the storage did not answer while {doing} ({type(e).__name__}: {first_line(e, 120)}); "
                f"trying again in {delay:.0f}s, for up to {seconds:.0f}s in all",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
            delay = min(2 * delay, 30.0)


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds, from the environment or the defaults."""
    values = []
    for name, default in (
        ("GLUE_BENCH_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS),
        ("GLUE_BENCH_GRACE_SECONDS", GRACE_SECONDS),
    ):
        text = os.environ.get(name, str(default))
        if not text.isdigit() or int(text) <= 0:
            raise UserError(f"{name}={text}: must be a positive whole number of seconds")
        values.append(int(text))
    interval, grace = values
    if grace <= interval:
        raise UserError(f"GLUE_BENCH_GRACE_SECONDS ({grace}) must be longer than the heartbeat interval ({interval})")
    return interval, grace


def _serialize_sqlite(engine) -> None:
    """Every SQLite transaction takes the write lock when it begins (BEGIN IMMEDIATE).

    pysqlite's default (deferred) transactions read first and lock later: two workers can both read a
    waiting trial and both take it, and a reader that tries to write while another writes gets
    "database is locked" at once, without waiting for the timeout. Immediate transactions queue up
    (up to the connect timeout) and make Optuna's read-check-write steps atomic, as row locks do in
    PostgreSQL. This is SQLAlchemy's documented recipe for pysqlite.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # drop connections opened before the listeners existed


def engine_url(url: str) -> str:
    """The URL SQLAlchemy connects with. SQLAlchemy 2.1 reads postgresql:// as the psycopg (3) driver,
    but the [postgres] extra installs psycopg2: name it where psycopg is not installed."""
    if (
        url.startswith("postgresql://")
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def storage_exists(url: str | None) -> bool:
    """Whether the storage holds Optuna's tables; found without creating or writing anything."""
    url = storage_url(url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return False
    if url.startswith("sqlite") and url.endswith(":memory:"):
        return False
    try:
        engine = sqlalchemy.create_engine(engine_url(url), poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as connection:
                return sqlalchemy.inspect(connection).has_table("studies")
        finally:
            engine.dispose()
    except ImportError as e:
        raise UserError(
            f"--storage {masked(url)}: a database driver is missing ({e}); for PostgreSQL: pip install 'glue-bench[postgres]'"
        ) from None
    except Exception as e:  # a bad URL, a dead server
        raise (StorageUnreachable if isinstance(e, STORAGE_ERRORS) else UserError)(
            f"--storage {masked(url)}: cannot open the storage ({type(e).__name__}: {first_line(e)}); check the URL "
            "(sqlite:///path.db or postgresql://user:pass@host/db) and that the server is up"
        ) from None


def open_storage(url: str | None, heartbeat: bool = False, create: bool = True) -> optuna.storages.RDBStorage:
    """An RDB storage; with heartbeat, workers record one while they run a trial (a killed worker's trial goes
    stale: studies.fail_stale). create=False: a command that only reads refuses a storage that does not exist,
    rather than make an empty one."""
    url = storage_url(url)
    if not create and not storage_exists(url):
        missing = url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file()
        what = "no such file" if missing else "holds no glue-bench results (no Optuna tables)"
        raise UserError(f"--storage {masked(url)}: {what}; run a sweep first or pass the right --storage")
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a folder should be, a read-only place
            blocker = next((p for p in path.parents if p.exists()), None)
            why = f"{blocker} is a file, not a folder" if blocker and not blocker.is_dir() else e.strerror
            raise UserError(
                f"--storage {masked(url)}: cannot create the folder {path.parent} ({why}); "
                "pass a SQLite file in a writable folder (sqlite:///path/to/file.db)"
            ) from None
    # SQLite: wait for a writer instead of failing with "database is locked".
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    interval, grace = heartbeat_settings() if heartbeat else (None, None)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for attempt in range(3):
                try:
                    storage = optuna.storages.RDBStorage(
                        engine_url(url),
                        engine_kwargs=engine,
                        heartbeat_interval=interval,
                        grace_period=grace,
                    )
                    break
                except (
                    sqlalchemy.exc.IntegrityError,
                    sqlalchemy.exc.OperationalError,
                    sqlalchemy.exc.ProgrammingError,
                ) as e:
                    # Another process made the same new tables at the same moment: they are there now. (PostgreSQL
                    # may say so as DuplicateObject, a ProgrammingError: the tasks of a SLURM array start together.)
                    racing = isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)
                    if not racing or attempt == 2:
                        raise
                    time.sleep(1)
    except ImportError as e:
        raise UserError(
            f"--storage {masked(url)}: a database driver is missing ({e}); for PostgreSQL: pip install 'glue-bench[postgres]'"
        ) from None
    except Exception as e:  # sqlalchemy raises ArgumentError, OperationalError, … for a bad or dead URL
        down = isinstance(e, STORAGE_ERRORS)  # a server that does not answer, rather than a bad URL
        raise (StorageUnreachable if down else UserError)(
            f"--storage {masked(url)}: cannot open the storage ({type(e).__name__}: {first_line(e)}); check the URL "
            "(sqlite:///path.db or postgresql://user:pass@host/db) and that the server is up"
        ) from None
    if url.startswith("sqlite"):
        _serialize_sqlite(storage.engine)
    return storage


@contextmanager
def plan_lock(url: str | None):
    """Held while a sweep creates its studies and enqueues its grid, by one process on any machine at a time.

    Optuna's enqueue_trial is not idempotent: two launchers that both see a grid point missing would
    both enqueue it. Under this lock, "look at the trials, enqueue what is missing" is one atomic step.
    SQLite: an advisory file lock beside the database (SQLite is one machine's storage anyway);
    PostgreSQL: a session advisory lock on the server.
    """
    url = storage_url(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///") + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif url.startswith(("postgresql", "postgres")):
        engine = sqlalchemy.create_engine(engine_url(url), poolclass=sqlalchemy.pool.NullPool)
        try:
            connection = engine.connect()
        except Exception as e:  # a dead server, a bad password, a missing driver
            down = isinstance(e, STORAGE_ERRORS)
            raise (StorageUnreachable if down else UserError)(
                f"--storage {masked(url)}: cannot connect ({type(e).__name__}: {first_line(e)}); check the URL "
                "and that the server is up"
            ) from None
        try:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({PLAN_LOCK_KEY})")
            yield
        finally:
            connection.close()  # ends the session, which releases its advisory lock
            engine.dispose()
    else:
        raise UserError(
            f"--storage {masked(url)}: sweeps need a SQLite file (sqlite:///path.db) or PostgreSQL "
            "(postgresql://user:pass@host/db), so that workers can share it safely"
        )


def existing_studies(url: str, storage=None, missing_ok: bool = False) -> tuple:
    """(the storage, the names of its studies). A storage that does not exist is refused (one line), or with
    missing_ok (a dry run, which plans a sweep not run yet) is (None, empty): nothing has run. A storage that
    does not answer is not an empty one: StorageUnreachable goes on up."""
    if storage is None:
        if missing_ok and not storage_exists(url):
            return None, set()
        storage = open_storage(url, create=False)
    return storage, set(optuna.get_all_study_names(storage))
