"""Alembic, configured in code from the migrations shipped in the package (no alembic.ini needed)."""

from __future__ import annotations

import contextlib
import os
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from store.errors import StoreError


def config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(config()).get_current_head()


def heads() -> list[str]:
    return list(ScriptDirectory.from_config(config()).get_heads())


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _sqlite_lock(engine: Engine):
    """Serialise migrations of one SQLite file across processes (first use by several importers at once)."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: SQLite's own locking has to do
        yield
        return
    with open(os.path.expanduser(path) + ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _migrating(engine: Engine):
    """A connection in a transaction for Alembic. On SQLite, foreign keys are off while it runs: batch mode
    rebuilds a table by dropping it, and with them on, that drop cascades (a rebuilt ``runs`` deleted every memory
    sample). Integrity is checked before the transaction commits."""
    sqlite = engine.dialect.name == "sqlite"
    with _sqlite_lock(engine), engine.connect() as conn:
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys = OFF")  # only takes effect outside a transaction
            conn.commit()
        try:
            with conn.begin():
                yield conn
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise StoreError("the migration would leave rows pointing at rows that do not exist, so "
                                     "nothing was changed; report it with the database's `calibrate db current`")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
                conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with _migrating(engine) as conn:
        command.upgrade(config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with _migrating(engine) as conn:
        command.downgrade(config(conn), revision)
