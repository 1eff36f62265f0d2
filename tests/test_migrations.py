"""The schema's history: one head, upgrades and downgrades that keep rows, and models that match it exactly."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, text

from calibrate.cli import main
from store import Store, StoreError, migrate
from store.db import make_engine
from store.models import Base


def test_one_linear_history_with_a_single_head():
    assert migrate.heads() == ["0005"] and migrate.head() == "0005"


def test_upgrade_from_empty_matches_the_models(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    assert migrate.current(engine) == "0005"
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert set(inspect(engine).get_table_names()) >= {"hosts", "runs", "memory_samples", "fits", "alembic_version"}


def _insert_run(conn, run_id: int) -> None:
    conn.execute(text(
        "INSERT INTO runs (id, status, source, record_index, model, benchmark, created_at, config, workload, metrics, "
        "metric_notes) VALUES (:id, 'ok', 'imported', 0, 'm', 'serve', CURRENT_TIMESTAMP, '{}', '{}', "
        "'{\"output_tokens_per_s\": 12.5}', '{}')"), {"id": run_id})


def test_a_database_made_by_the_first_migration_keeps_its_rows(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        for i in (1, 2, 3):
            _insert_run(conn, i)
    migrate.upgrade(engine)
    store = Store.open(db_url)
    runs = store.list_runs()
    assert [r.id for r in runs] == [1, 2, 3] and runs[0].metrics == {"output_tokens_per_s": 12.5}
    assert runs[0].labels == {}


def test_downgrade_and_back_up_keeps_rows(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        _insert_run(conn, 7)
        conn.execute(text("UPDATE runs SET labels = '{\"campaign\": \"nov\"}' WHERE id = 7"))
    migrate.downgrade(engine, "0001")
    assert "fits" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT model FROM runs WHERE id = 7")).scalar() == "m"
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 1
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert migrate.current(engine) == "0005"


def test_sqlite_is_created_and_upgraded_on_first_use(tmp_path):
    url = f"sqlite:///{tmp_path}/deep/dir/results.db"
    store = Store.open(url)
    assert store.revision() == "0005" and (tmp_path / "deep/dir/results.db").exists()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000


def test_default_location_and_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("VLLM_PLANNER_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    r = CliRunner().invoke(main, ["runs", "list"])
    assert r.exit_code == 0 and (tmp_path / "data/vllm-planner/results.db").exists()
    monkeypatch.setenv("VLLM_PLANNER_DB", f"sqlite:///{tmp_path}/env.db")
    CliRunner().invoke(main, ["runs", "list"])
    assert (tmp_path / "env.db").exists()


def test_postgres_behind_is_a_clear_error_until_db_upgrade(pg_url):
    db_url = pg_url
    r = CliRunner().invoke(main, ["runs", "list", "--db", db_url])
    assert r.exit_code == 1
    assert "is at schema revision none (empty) but this vllm-planner needs 0005: run `calibrate db upgrade" in r.output
    r = CliRunner().invoke(main, ["db", "current", "--db", db_url])
    assert r.output == "empty (head 0005, behind: run `calibrate db upgrade`)\n"
    r = CliRunner().invoke(main, ["db", "upgrade", "--db", db_url])
    assert r.exit_code == 0 and r.output == "empty -> 0005\n"
    r = CliRunner().invoke(main, ["db", "upgrade", "--db", db_url])
    assert r.output == "already at 0005\n"
    assert CliRunner().invoke(main, ["runs", "list", "--db", db_url]).exit_code == 0


def test_a_newer_schema_than_the_code_knows(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="at schema revision 9999, newer than this vllm-planner knows"):
        Store.open(db_url)


def test_unreachable_and_malformed_databases():
    r = CliRunner().invoke(main, ["runs", "list", "--db", "postgresql+psycopg://u:secret@127.0.0.1:1/x"])
    assert r.exit_code == 1 and r.output.startswith("Error: cannot open the results database "
                                                    "postgresql+psycopg://u:***@127.0.0.1:1/x: ")
    assert "secret" not in r.output and r.output.count("\n") == 1
    r = CliRunner().invoke(main, ["runs", "list", "--db", "not a url"])
    assert r.exit_code == 1 and r.output.startswith("Error: --db 'not a url' is not a database URL")
    r = CliRunner().invoke(main, ["runs", "list", "--db", "mysql://x/y"])
    assert r.exit_code == 1 and "only SQLite and PostgreSQL are supported" in r.output


def test_an_sqlite_database_behind_is_backed_up_before_its_automatic_upgrade(tmp_path):
    db = tmp_path / "results.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate.upgrade(engine, "0003")
    with engine.begin() as conn:
        _insert_run(conn, 7)
    engine.dispose()
    store = Store.open(f"sqlite:///{db}")  # brings it to the head, keeping a copy first
    assert store.revision() == migrate.head()
    backup = tmp_path / f"results.db.before-{migrate.head()}.bak"
    assert backup.exists()
    old = make_engine(f"sqlite:///{backup}")
    assert migrate.current(old) == "0003"
    with old.connect() as conn:
        assert conn.execute(text("SELECT id FROM runs")).scalars().all() == [7]
    assert [r.id for r in store.list_runs()] == [7]


def test_alembic_check_finds_the_migrations_and_the_models_in_agreement(tmp_path):
    from alembic import command
    from alembic.config import Config

    from tests.conftest import ROOT

    db = f"sqlite:///{tmp_path}/results.db"
    migrate.upgrade(make_engine(db))
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", db)
    command.check(cfg)  # raises when the models have changes no migration holds


def _insert_sample(conn, run_id: int) -> None:
    conn.execute(text("INSERT INTO memory_samples (run_id, t_s, device, used_bytes) VALUES (:r, 0.5, 'gpu0', 123)"),
                 {"r": run_id})


def test_memory_samples_survive_every_upgrade_and_downgrade(db_url):
    # SQLite's batch mode rebuilds a table by dropping it; with foreign keys on, dropping `runs` used to delete
    # every memory sample (migration 0004 did, unnoticed).
    engine = make_engine(db_url)
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        _insert_run(conn, 1)
        _insert_sample(conn, 1)
    for revision in ("0002", "0003", "0004", "0005", "0003", "0005"):
        (migrate.upgrade if revision >= (migrate.current(engine) or "") else migrate.downgrade)(engine, revision)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM memory_samples")).scalar() == 1, revision
    store = Store.open(db_url)
    store.delete_runs([1])  # ... and the cascade still works once the migration is over
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM memory_samples")).scalar() == 0


def test_constraints_are_named_by_the_convention_on_every_backend(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    found = inspect(engine)
    assert {t: found.get_pk_constraint(t)["name"] for t in ("hosts", "runs", "memory_samples", "fits")} == {
        "hosts": "pk_hosts", "runs": "pk_runs", "memory_samples": "pk_memory_samples", "fits": "pk_fits"}
    assert [f["name"] for f in found.get_foreign_keys("runs")] == ["fk_runs_host_id_hosts"]
    assert [f["name"] for f in found.get_foreign_keys("memory_samples")] == ["fk_memory_samples_run_id_runs"]
    assert {u["name"] for u in found.get_unique_constraints("hosts")} == {"uq_hosts_fingerprint"}
    # The models name theirs the same way, so the next autogenerated migration names them too.
    runs = Base.metadata.tables["runs"]
    assert {c.name for c in runs.constraints} >= {"pk_runs", "fk_runs_host_id_hosts", "uq_runs_content_record"}


def test_postgres_names_from_before_the_convention_are_renamed(pg_url):
    engine = make_engine(pg_url)
    migrate.upgrade(engine, "0004")
    with engine.begin() as conn:  # what a database made before 0005 had: PostgreSQL's own names
        for table in ("hosts", "runs", "memory_samples", "fits"):
            conn.execute(text(f"ALTER TABLE {table} RENAME CONSTRAINT pk_{table} TO {table}_pkey"))
        conn.execute(text("ALTER TABLE runs RENAME CONSTRAINT fk_runs_host_id_hosts TO runs_host_id_fkey"))
    assert inspect(engine).get_pk_constraint("runs")["name"] == "runs_pkey"
    migrate.upgrade(engine)
    found = inspect(engine)
    assert found.get_pk_constraint("runs")["name"] == "pk_runs"
    assert [f["name"] for f in found.get_foreign_keys("runs")] == ["fk_runs_host_id_hosts"]
