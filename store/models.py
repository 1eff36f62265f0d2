"""SQLAlchemy 2 typed models. The schema's history is in migrations/; a test proves the two agree."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Every constraint and index has a name that is the same on every backend (PostgreSQL would otherwise call a
# foreign key runs_host_id_fkey and SQLite leave it unnamed), so a migration can drop or change one by name.
# Migration 0005 gave the existing ones these names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    hostname: Mapped[str] = mapped_column(String(255))
    gpu_name: Mapped[str] = mapped_column(String(128))
    gpu_count: Mapped[int]
    gpu_memory_gib: Mapped[float | None] = mapped_column(Float)
    driver_version: Mapped[str | None] = mapped_column(String(64))
    cuda_version: Mapped[str | None] = mapped_column(String(64))
    vllm_version: Mapped[str | None] = mapped_column(String(64))
    torch_version: Mapped[str | None] = mapped_column(String(64))
    cpu: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    runs: Mapped[list[Run]] = relationship(back_populates="host")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("content_hash", "record_index", name="uq_runs_content_record"),
        Index("ix_runs_model", "model"),
        Index("ix_runs_gpu", "gpu"),
        Index("ix_runs_vllm_version", "vllm_version"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    source_file: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    record_index: Mapped[int]
    model: Mapped[str] = mapped_column(String(1024))
    gpu: Mapped[str | None] = mapped_column(String(128))
    num_gpus: Mapped[int | None]
    benchmark: Mapped[str] = mapped_column(String(16))
    vllm_version: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    config: Mapped[dict] = mapped_column(JSON)
    workload: Mapped[dict] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON)
    metric_notes: Mapped[dict] = mapped_column(JSON)
    prediction: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str | None] = mapped_column(Text)
    labels: Mapped[dict | None] = mapped_column(JSON)
    notes: Mapped[str | None] = mapped_column(Text)

    host: Mapped[Host | None] = relationship(back_populates="runs")
    memory_samples: Mapped[list[MemorySampleRow]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="MemorySampleRow.t_s")


class MemorySampleRow(Base):
    __tablename__ = "memory_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    t_s: Mapped[float] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(32))
    used_bytes: Mapped[int] = mapped_column(BigInteger)

    run: Mapped[Run] = relationship(back_populates="memory_samples")


class Fit(Base):
    __tablename__ = "fits"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    scope: Mapped[dict] = mapped_column(JSON)
    coefficients: Mapped[dict] = mapped_column(JSON)
    standard_errors: Mapped[dict] = mapped_column(JSON)
    covariance: Mapped[dict] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON)
    inputs_hash: Mapped[str] = mapped_column(String(64), index=True)
    run_ids: Mapped[list] = mapped_column(JSON)
    software: Mapped[dict] = mapped_column(JSON)
