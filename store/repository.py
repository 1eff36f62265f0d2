"""The store's library API: open (and migrate) a database, write runs and fits, read them back as records."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic.util import CommandError
from sqlalchemy import delete, event, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, selectinload

from estimator.redact import mask_known
from store import migrate
from store.db import describe, make_engine, resolve_url
from store.errors import StoreError
from store.models import Fit, Host, MemorySampleRow, Run
from store.records import FitRecord, HostRecord, MemorySample, RunRecord

RUN_FILTERS = ("model", "gpu", "vllm_version", "status", "benchmark", "source_file")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _immediate_transactions(engine: Engine) -> None:
    """SQLite: take the write lock when a transaction begins, so concurrent writers queue on the busy timeout
    instead of failing when a read would upgrade to a write (pysqlite's deferred BEGIN)."""

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# Text columns have lengths (PostgreSQL enforces them, SQLite does not): one rule, read from the models.
TEXT_LIMITS = {name: Run.__table__.c[name].type.length for name in ("model", "gpu", "vllm_version", "benchmark",
                                                                     "status")}
DELETE_CHUNK = 900  # ids per DELETE ... IN (...): under SQLite's oldest limit of 999 bound variables


def check_fits(record: RunRecord, index: int) -> None:
    """Refuse a record whose text is longer than its column or whose integers overflow one."""
    for name, limit in TEXT_LIMITS.items():
        value = getattr(record, name)
        if isinstance(value, str) and len(value) > limit:
            raise StoreError(f"record {index}: {name} is {len(value)} characters long, more than the {limit} the "
                             "results database holds; shorten it")
    if record.num_gpus is not None and not 0 < record.num_gpus <= 2**31 - 1:
        raise StoreError(f"record {index}: num_gpus {record.num_gpus} is out of range")


def _driver_reason(err: Exception, url: str) -> str:
    """The first line of what the database driver said, with the URL's passwords hidden."""
    return mask_known(str(getattr(err, "orig", err)).strip().splitlines()[0], url)


def _connection_error(url: str, err: Exception) -> StoreError:
    reason = _driver_reason(err, url)
    return StoreError(f"cannot open the results database {describe(url)}: {reason}; check --db or "
                      "VLLM_PLANNER_DB")


class Store:
    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url

    # --- opening -------------------------------------------------------------------------------------------

    @classmethod
    def connect(cls, url: str | None = None) -> Store:
        """A store on the database, whatever its schema revision (for `calibrate db`)."""
        url, _ = resolve_url(url)
        engine = make_engine(url)
        if engine.dialect.name == "sqlite":
            _immediate_transactions(engine)
        return cls(engine, url)

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Connect; an SQLite file is created and brought to the current schema on first use, a PostgreSQL
        database that is behind is an error telling the user to run `calibrate db upgrade`."""
        store = cls.connect(url)
        engine, url = store.engine, store.url
        try:
            revision = migrate.current(engine)
        except DatabaseError as err:
            raise _connection_error(url, err) from None
        if revision == migrate.head():
            return store
        store._check_known(revision)
        if engine.dialect.name == "sqlite":
            if revision is not None:  # a database with data in it: keep a copy of it as it was
                store.backup_sqlite(f"before-{migrate.head()}")
            store.upgrade()
            return store
        raise StoreError(f"the results database {describe(url)} is at schema revision {revision or 'none (empty)'} "
                         f"but this vllm-planner needs {migrate.head()}: run `calibrate db upgrade --db URL`")

    def backup_sqlite(self, tag: str) -> str | None:
        """Copy an SQLite database file beside itself (FILE.TAG.bak) with SQLite's online backup, so an automatic
        upgrade can be undone by hand. Returns the copy's path."""
        import sqlite3

        path = self.engine.url.database
        if not path or path == ":memory:":
            return None
        target = f"{path}.{tag}.bak"
        with sqlite3.connect(path) as source, sqlite3.connect(target) as copy:
            source.backup(copy)
        return target

    def _check_known(self, revision: str | None) -> None:
        if revision is None:
            return
        from alembic.script import ScriptDirectory

        try:
            ScriptDirectory.from_config(migrate.config()).get_revision(revision)
        except CommandError:
            raise StoreError(f"the results database {describe(self.url)} is at schema revision {revision}, newer "
                             f"than this vllm-planner knows (head {migrate.head()}): upgrade vllm-planner") from None

    def upgrade(self) -> tuple[str | None, str]:
        before = self.revision()
        self._check_known(before)
        try:
            migrate.upgrade(self.engine)
        except DatabaseError as err:
            raise _connection_error(self.url, err) from None
        return before, self.revision()

    def revision(self) -> str | None:
        try:
            return migrate.current(self.engine)
        except DatabaseError as err:
            raise _connection_error(self.url, err) from None

    # --- writing -------------------------------------------------------------------------------------------

    def _host_id(self, session: Session, host: HostRecord | None) -> int | None:
        if host is None:
            return None
        fingerprint = host.fingerprint
        found = session.scalar(select(Host.id).where(Host.fingerprint == fingerprint))
        if found:
            return found
        try:
            with session.begin_nested():
                row = Host(fingerprint=fingerprint, created_at=_now(),
                           **{k: v for k, v in host.to_dict().items() if k != "schema_version"})
                session.add(row)
            return row.id
        except IntegrityError:  # another process registered the same host meanwhile
            return session.scalar(select(Host.id).where(Host.fingerprint == fingerprint))

    @staticmethod
    def _row(record: RunRecord, host_id: int | None) -> Run:
        return Run(**Store._values(record, host_id),
                   memory_samples=[MemorySampleRow(t_s=s.t_s, device=s.device, used_bytes=s.used_bytes)
                                   for s in record.memory_samples])

    @staticmethod
    def _values(record: RunRecord, host_id: int | None) -> dict:
        """A run's columns (one rule for the ORM row and the bulk insert)."""
        return dict(
            host_id=host_id, status=record.status, source=record.source, source_file=record.source_file,
            content_hash=record.content_hash, record_index=record.record_index, model=record.model, gpu=record.gpu,
            num_gpus=record.num_gpus, benchmark=record.benchmark, vllm_version=record.vllm_version,
            started_at=record.started_at, finished_at=record.finished_at, created_at=_now(), config=record.config,
            workload=record.workload, metrics=record.metrics, metric_notes=record.metric_notes,
            prediction=record.prediction, error=record.error, log_tail=record.log_tail, labels=record.labels or None,
            notes=record.notes)

    def has_content(self, content_hash: str) -> bool:
        """Whether a file with this content was imported before."""
        try:
            with Session(self.engine) as session:
                return session.scalar(select(Run.id).where(Run.content_hash == content_hash).limit(1)) is not None
        except OperationalError as err:
            raise _connection_error(self.url, err) from None

    def run_ids_from(self, source_file: str, other_than: str | None = None) -> list[int]:
        """Ids of the runs imported from a file (path as given), except those with content hash ``other_than``."""
        query = select(Run.id).where(Run.source_file == source_file).order_by(Run.id)
        if other_than:
            query = query.where((Run.content_hash != other_than) | Run.content_hash.is_(None))
        with Session(self.engine) as session:
            return list(session.scalars(query))

    def import_batches(self, batches, content_hash: str | None) -> int:
        """Store the batches of records of one source file in one transaction: all of the file or nothing, with
        memory bounded by a batch (each is inserted and let go before the next is read; an error raised while
        reading one rolls the whole file back). Returns how many were added: 0 when a file with this content
        hash was imported before (also by a concurrent process). A record the database cannot hold is refused,
        naming the field."""
        added = 0
        try:
            with Session(self.engine) as session, session.begin():
                if content_hash and session.scalar(select(Run.id).where(Run.content_hash == content_hash).limit(1)):
                    return 0
                for batch in batches:
                    for record in batch:
                        check_fits(record, record.record_index)
                    plain = [r for r in batch if r.host is None and not r.memory_samples]
                    if plain:
                        session.execute(insert(Run), [self._values(r, None) for r in plain])
                    for record in batch:
                        if record.host is not None or record.memory_samples:
                            session.add(self._row(record, self._host_id(session, record.host)))
                    session.flush()
                    session.expunge_all()
                    added += len(batch)
            return added
        except IntegrityError:
            return 0
        except OperationalError as err:
            raise _connection_error(self.url, err) from None
        except DatabaseError as err:  # PostgreSQL is stricter than SQLite: nothing of the file was kept
            raise StoreError(f"the database refused these runs ({_driver_reason(err, self.url)}); nothing of them "
                             "was stored") from None

    def add_run(self, record: RunRecord) -> int:
        with Session(self.engine) as session, session.begin():
            row = self._row(record, self._host_id(session, record.host))
            session.add(row)
            session.flush()
            return row.id

    def update_run(self, run_id: int, *, memory_samples: tuple[MemorySample, ...] = (), **fields) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(Run, run_id)
            if row is None:
                raise StoreError(f"run {run_id} does not exist")
            for key, value in fields.items():
                setattr(row, key, value)
            for s in memory_samples:
                row.memory_samples.append(MemorySampleRow(t_s=s.t_s, device=s.device, used_bytes=s.used_bytes))

    def delete_runs(self, run_ids: list[int]) -> int:
        """Delete runs (their memory samples cascade), in one transaction, in chunks the driver can bind."""
        ids = sorted(set(run_ids))
        deleted = 0
        with Session(self.engine) as session, session.begin():
            for start in range(0, len(ids), DELETE_CHUNK):
                chunk = ids[start:start + DELETE_CHUNK]
                deleted += session.execute(delete(Run).where(Run.id.in_(chunk))).rowcount
        return deleted

    def add_fit(self, fit: FitRecord) -> int:
        with Session(self.engine) as session, session.begin():
            row = Fit(name=fit.name, created_at=fit.created_at or _now(), scope=fit.scope,
                      coefficients=fit.coefficients, standard_errors=fit.standard_errors, covariance=fit.covariance,
                      metrics=fit.metrics, inputs_hash=fit.inputs_hash, run_ids=list(fit.run_ids),
                      software=fit.software)
            session.add(row)
            session.flush()
            return row.id

    # --- reading -------------------------------------------------------------------------------------------

    @staticmethod
    def _record(row: Run) -> RunRecord:
        host = row.host
        return RunRecord(
            id=row.id, model=row.model, benchmark=row.benchmark, config=row.config or {}, workload=row.workload or {},
            metrics=row.metrics or {}, metric_notes=row.metric_notes or {}, prediction=row.prediction, gpu=row.gpu,
            num_gpus=row.num_gpus, status=row.status, source=row.source, source_file=row.source_file,
            content_hash=row.content_hash, record_index=row.record_index, vllm_version=row.vllm_version,
            started_at=row.started_at, finished_at=row.finished_at, error=row.error, log_tail=row.log_tail,
            labels=row.labels or {}, notes=row.notes,
            host=HostRecord.from_dict({c: getattr(host, c) for c in HostRecord.__dataclass_fields__
                                       if hasattr(host, c)}) if host else None,
            memory_samples=tuple(MemorySample(s.t_s, s.device, s.used_bytes) for s in row.memory_samples))

    def list_runs(self, *, since: datetime | None = None, until: datetime | None = None,
                  labels: dict | None = None, ids: list[int] | None = None, **filters) -> list[RunRecord]:
        unknown = set(filters) - set(RUN_FILTERS)
        if unknown:
            raise StoreError(f"unknown run filter {', '.join(sorted(unknown))}")
        query = select(Run).options(selectinload(Run.host), selectinload(Run.memory_samples)).order_by(Run.id)
        for key, value in filters.items():
            if value is not None:
                query = query.where(getattr(Run, key) == value)
        when = func.coalesce(Run.started_at, Run.created_at)
        if since:
            query = query.where(when >= since)
        if until:
            query = query.where(when < until)
        if ids:
            query = query.where(Run.id.in_(ids))
        try:
            with Session(self.engine) as session:
                rows = session.scalars(query).all()
                records = [self._record(r) for r in rows]
        except OperationalError as err:
            raise _connection_error(self.url, err) from None
        if labels:
            records = [r for r in records if all(str(r.labels.get(k)) == str(v) for k, v in labels.items())]
        return records

    def get_run(self, run_id: int) -> RunRecord:
        runs = self.list_runs(ids=[run_id])
        if not runs:
            raise StoreError(f"run {run_id} does not exist (see `calibrate runs list`)")
        return runs[0]

    @staticmethod
    def _fit_record(r: Fit) -> FitRecord:
        return FitRecord(id=r.id, name=r.name, coefficients=r.coefficients, standard_errors=r.standard_errors,
                         covariance=r.covariance, metrics=r.metrics, scope=r.scope, inputs_hash=r.inputs_hash,
                         run_ids=tuple(r.run_ids), software=r.software, created_at=r.created_at)

    def list_fits(self) -> list[FitRecord]:
        with Session(self.engine) as session:
            return [self._fit_record(r) for r in session.scalars(select(Fit).order_by(Fit.id)).all()]

    def get_fit(self, fit_id: int) -> FitRecord:
        """One fit by id; a StoreError naming the id when there is none."""
        with Session(self.engine) as session:
            row = session.get(Fit, fit_id)
            if row is None:
                raise StoreError(f"fit {fit_id} does not exist; see `calibrate fit`")
            return self._fit_record(row)

    def find_fit_by_hash(self, inputs_hash: str) -> FitRecord | None:
        """The fit made from exactly these inputs before, if any (fits are not repeated)."""
        with Session(self.engine) as session:
            row = session.scalars(select(Fit).where(Fit.inputs_hash == inputs_hash).order_by(Fit.id).limit(1)).first()
            return self._fit_record(row) if row is not None else None

    def latest_fit(self, gpus: set[str] | None = None) -> FitRecord | None:
        """The newest fit whose scope covers one of ``gpus`` (any GPU when its scope names none; any fit when
        ``gpus`` is None)."""
        fits = [f for f in self.list_fits() if gpus is None or f.scope.get("gpu") in (None, *gpus)]
        return max(fits, key=lambda f: f.id) if fits else None
