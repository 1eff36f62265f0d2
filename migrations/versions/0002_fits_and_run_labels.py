"""Fits, and labels on runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fits",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("coefficients", sa.JSON(), nullable=False),
        sa.Column("standard_errors", sa.JSON(), nullable=False),
        sa.Column("covariance", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("inputs_hash", sa.String(64), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("software", sa.JSON(), nullable=False),
    )
    op.create_index("ix_fits_inputs_hash", "fits", ["inputs_hash"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("labels")
    op.drop_index("ix_fits_inputs_hash", table_name="fits")
    op.drop_table("fits")
