"""Constraint names from the models' naming convention (store.models.NAMING_CONVENTION), so later migrations can
name what they drop or change. PostgreSQL had named the primary and foreign keys itself (runs_pkey,
runs_host_id_fkey); SQLite had left them unnamed, so there the tables are rebuilt (store.migrate turns foreign
keys off while it runs, so no rows cascade away).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# A copy, not an import: migrations are history and must not change when the models do.
CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
TABLES = ("hosts", "runs", "memory_samples", "fits")
# (table, the referencing column, the convention's name) of each foreign key
FOREIGN_KEYS = [("runs", "host_id", "fk_runs_host_id_hosts"), ("memory_samples", "run_id", "fk_memory_samples_run_id_runs")]


def _postgres_names(inspector) -> list[tuple[str, str, str]]:
    """(table, name now, the convention's name) for each primary and foreign key. A database made before this
    revision has PostgreSQL's own names; one made since (Alembic applies the models' convention to 0001 too)
    already has the convention's."""
    names = [(t, inspector.get_pk_constraint(t)["name"], f"pk_{t}") for t in TABLES]
    for table, column, wanted in FOREIGN_KEYS:
        names += [(table, fk["name"], wanted) for fk in inspector.get_foreign_keys(table)
                  if fk["constrained_columns"] == [column]]
    return names


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table, now, wanted in _postgres_names(sa.inspect(bind)):
            if now != wanted:
                op.execute(f'ALTER TABLE {table} RENAME CONSTRAINT "{now}" TO {wanted}')
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", naming_convention=CONVENTION):
            pass


def downgrade() -> None:
    # The names stay: the older schema never referred to its constraints by name, and renaming them back to
    # PostgreSQL's own would only be guessing what the database had called them.
    pass
