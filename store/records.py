"""The data objects that leave the store: plain frozen dataclasses with to_dict/from_dict and a schema version.
Database rows never leave `store/`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "interrupted", "running")
SOURCES = ("measured", "imported")
BENCHMARKS = ("serve", "throughput", "startup")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _from(cls, data: dict):
    """The fields of ``cls`` in a stored dict, after checking the format it was written in: a newer one may mean
    things this version cannot read, an older one is read as it is (every change so far only added fields)."""
    from store.errors import StoreError

    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise StoreError(f"a {cls.__name__} written in format {version!r}, newer than this vllm-planner reads "
                         f"({SCHEMA_VERSION}); upgrade vllm-planner")
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in known and k != "schema_version"}


@dataclass(frozen=True)
class HostRecord:
    """The machine a run was measured on: its GPUs and software."""

    hostname: str
    gpu_name: str  # "cpu" where no GPU is used
    gpu_count: int
    gpu_memory_gib: float | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    vllm_version: str | None = None
    torch_version: str | None = None
    cpu: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def fingerprint(self) -> str:
        facts = {k: v for k, v in asdict(self).items() if k != "schema_version"}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HostRecord:
        return cls(**_from(cls, data))


@dataclass(frozen=True)
class MemorySample:
    t_s: float  # seconds since the run started
    device: str  # "cuda:0", ... or "cpu"
    used_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """One measured point: the configuration, the workload, what was measured and what was predicted."""

    model: str
    benchmark: str  # serve | throughput | startup (a start that is itself the measurement)
    config: dict = field(default_factory=dict)  # `vllm serve` flags by estimator name; "argv" when known
    workload: dict = field(default_factory=dict)  # input_len, output_len, concurrency, request_rate, num_prompts
    metrics: dict = field(default_factory=dict)  # normalised names, see calibrate/importers.py
    metric_notes: dict = field(default_factory=dict)  # how each metric was derived from the source's fields
    prediction: dict | None = None  # the estimator's prediction for this configuration and workload
    gpu: str | None = None
    num_gpus: int | None = None
    status: str = "ok"
    source: str = "imported"
    source_file: str | None = None
    content_hash: str | None = None  # of the source file: importing it again adds nothing
    record_index: int = 0  # the record's position within its source file
    vllm_version: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    log_tail: str | None = None
    labels: dict = field(default_factory=dict)
    notes: str | None = None  # what the source says about the run (the public corpus' notes column)
    host: HostRecord | None = None
    memory_samples: tuple[MemorySample, ...] = ()
    id: int | None = None  # assigned by the store
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["started_at"], d["finished_at"] = _iso(self.started_at), _iso(self.finished_at)
        d["host"] = self.host.to_dict() if self.host else None
        d["memory_samples"] = [s.to_dict() for s in self.memory_samples]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        d = _from(cls, data)
        d["started_at"], d["finished_at"] = _parse_time(d.get("started_at")), _parse_time(d.get("finished_at"))
        d["host"] = HostRecord.from_dict(d["host"]) if d.get("host") else None
        d["memory_samples"] = tuple(MemorySample(**s) for s in d.get("memory_samples") or ())
        return cls(**d)


@dataclass(frozen=True)
class FitRecord:
    """A fitted coefficient set with its provenance."""

    name: str
    coefficients: dict
    standard_errors: dict = field(default_factory=dict)
    covariance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # error figures: MAPE, bias, coverage, cross-validation
    scope: dict = field(default_factory=dict)  # gpu, model, vllm_version filters the fit applies to
    inputs_hash: str = ""
    run_ids: tuple[int, ...] = ()
    software: dict = field(default_factory=dict)
    created_at: datetime | None = None
    id: int | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["created_at"] = _iso(self.created_at)
        d["run_ids"] = list(self.run_ids)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> FitRecord:
        d = _from(cls, data)
        d["created_at"] = _parse_time(d.get("created_at"))
        d["run_ids"] = tuple(d.get("run_ids") or ())
        return cls(**d)
