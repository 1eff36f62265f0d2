"""vllm-planner's results store (SQLAlchemy 2 + Alembic). Rows never leave this package: callers get records."""

from store.errors import StoreError
from store.records import FitRecord, HostRecord, MemorySample, RunRecord
from store.repository import Store

__all__ = ["Store", "StoreError", "RunRecord", "HostRecord", "FitRecord", "MemorySample"]
