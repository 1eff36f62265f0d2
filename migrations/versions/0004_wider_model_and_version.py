"""Wider text columns for what sources write: a model given as a deep local path, a vLLM version with a remark
("0.20.0rc1.dev (custom gfx908 image ..., ROCm 7.2.1)"). PostgreSQL refused them at 255 and 64 characters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("model", type_=sa.String(1024), existing_type=sa.String(255), existing_nullable=False)
        batch.alter_column("vllm_version", type_=sa.String(255), existing_type=sa.String(64), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("vllm_version", type_=sa.String(64), existing_type=sa.String(255), existing_nullable=True)
        batch.alter_column("model", type_=sa.String(255), existing_type=sa.String(1024), existing_nullable=False)
