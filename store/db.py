"""Where the data lives and how to connect: --db URL, else VLLM_PLANNER_DB, else an SQLite file in the user's
data directory. SQLite runs with WAL, a busy timeout and foreign keys, so several processes on a host can write."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from estimator.paths import data_dir
from estimator.redact import mask_secrets
from store.errors import StoreError

ENV_VAR = "VLLM_PLANNER_DB"
SQLITE_BUSY_TIMEOUT_MS = 60_000  # writers wait for each other instead of failing with "database is locked"


def default_path() -> Path:
    return data_dir() / "results.db"


def resolve_url(url: str | None) -> tuple[str, bool]:
    """(URL, whether it is the default SQLite file)."""
    if url is not None and not url.strip():
        raise StoreError("--db is empty; give a database URL (sqlite:///PATH or postgresql+psycopg://...) or leave "
                         "it out for the default SQLite file")
    if url:
        return url, False
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR], False
    return f"sqlite:///{default_path()}", True


def describe(url: str) -> str:
    """The URL with any password hidden (user:pw@, ?password=, a libpq key=value string), for messages."""
    try:
        url = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        pass
    return mask_secrets(url)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"--db {describe(url)!r} is not a database URL; use sqlite:///PATH or "
                         "postgresql+psycopg://USER:PASSWORD@HOST/DB") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, poolclass=NullPool,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
        except ModuleNotFoundError:
            raise StoreError("PostgreSQL needs psycopg: pip install 'vllm-planner[postgres]'") from None
    raise StoreError(f"--db {describe(url)}: only SQLite and PostgreSQL are supported")
