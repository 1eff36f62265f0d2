"""The bundled GPU catalog, name matching (nvidia-smi names included), NVML detection and custom devices."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources

from estimator.errors import PlannerError
from estimator.validate import positive_number

SCHEMA_VERSION = 1
GIB = 1024**3
# Words that vendors put before the model name; dropped before matching so "NVIDIA GeForce RTX 4090",
# "RTX 4090" and "rtx-4090" are one key. Digits are kept, so "H20" never matches "H200".
_VENDOR_WORDS = re.compile(r"\b(nvidia|tesla|geforce|amd|instinct|radeon)\b")


@dataclass(frozen=True)
class Interconnect:
    kind: str  # nvlink | xgmi | pcie
    generation: int
    bandwidth_gbs: float  # bidirectional GB/s per GPU


@dataclass(frozen=True)
class GpuSpec:
    name: str
    vendor: str
    memory_gib: float  # as the driver reports it: what vLLM multiplies by gpu_memory_utilization
    memory_bandwidth_gbs: float | None
    bf16_tflops: float | None
    fp16_tflops: float | None
    fp8_tflops: float | None
    arch: str  # CUDA compute capability ("9.0") or AMD gfx target
    interconnect: Interconnect
    source: str = "catalog"  # catalog | detected | custom
    compute_units: int | None = None  # SMs (NVIDIA) or CUs (AMD); None where unknown (a custom device)

    @property
    def memory_bytes(self) -> int:
        return int(round(self.memory_gib * GIB))

    @property
    def supports_bf16(self) -> bool:
        return self.bf16_tflops is not None

    @property
    def supports_fp8(self) -> bool:
        return self.fp8_tflops is not None

    @property
    def compute_capability(self) -> float | None:
        try:
            return float(self.arch)
        except ValueError:
            return None

    def to_dict(self) -> dict:
        return asdict(self)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", _VENDOR_WORDS.sub("", name.lower()))


@lru_cache(maxsize=1)
def _raw_catalog() -> dict:
    return json.loads(resources.files("estimator").joinpath("data/gpus.json").read_text())


@lru_cache(maxsize=1)
def _catalog() -> tuple[dict[str, GpuSpec], dict[str, str]]:
    raw = _raw_catalog()
    specs: dict[str, GpuSpec] = {}
    keys: dict[str, str] = {}
    for g in raw["gpus"]:
        spec = GpuSpec(
            name=g["name"], vendor=g["vendor"], memory_gib=g["memory_gib"],
            memory_bandwidth_gbs=g["memory_bandwidth_gbs"], bf16_tflops=g["bf16_tflops"],
            fp16_tflops=g["fp16_tflops"], fp8_tflops=g["fp8_tflops"], arch=g["arch"],
            interconnect=Interconnect(**g["interconnect"]), compute_units=g["compute_units"],
        )
        specs[spec.name] = spec
        for alias in [spec.name, *g["aliases"]]:
            k = _key(alias)
            if k in keys and keys[k] != spec.name:
                raise RuntimeError(f"gpus.json: alias {alias!r} names both {keys[k]} and {spec.name}")
            keys[k] = spec.name
    return specs, keys


# vLLM's CPU backend as a device, so the loop also runs where no GPU exists. Its speed figures are named defaults
# that calibration corrects through the efficiency coefficients:
CPU_MEMORY_BANDWIDTH_GBS = 20.0  # practical streaming bandwidth of a dual-channel DDR4/DDR5 host
CPU_TFLOPS_PER_CORE = 0.192  # one AVX-512 core at 3 GHz: 2 FMA units x 16 fp32 lanes x 2 FLOP x 3e9


def cpu_device(memory_gib: float | None = None) -> GpuSpec:
    """The host CPU as vLLM's CPU backend sees it: all of its memory, its cores' vector FLOP/s."""
    import os

    if memory_gib is None:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    tflops = cores * CPU_TFLOPS_PER_CORE
    return GpuSpec("cpu", "cpu", round(memory_gib, 2), CPU_MEMORY_BANDWIDTH_GBS, tflops, tflops, None, "cpu",
                   Interconnect("pcie", 0, CPU_MEMORY_BANDWIDTH_GBS), "catalog")


def catalog() -> list[GpuSpec]:
    return list(_catalog()[0].values())


def lookup(name: str) -> GpuSpec:
    """The catalog GPU for a name or alias, case- and punctuation-insensitive; else an error with suggestions."""
    if name.strip().lower() == "cpu":
        return cpu_device()
    specs, keys = _catalog()
    hit = keys.get(_key(name))
    if hit:
        return specs[hit]
    names = list(specs)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.3) or difflib.get_close_matches(
        _key(name), [_key(n) for n in names], n=3, cutoff=0.3)
    close = [n for n in names if n in close or _key(n) in close][:3]
    hint = f"closest known: {', '.join(close)}; " if close else ""
    raise PlannerError(f"unknown GPU {name!r}: {hint}use one of the names in `estimator gpus`, or "
                       "--gpu-memory-gib for a custom device")


_PARENTHETICAL = re.compile(r"\([^)]*\)")
_MEMORY_TOKEN = re.compile(r"\b(\d+)\s*GB\b", re.IGNORECASE)


def resolve_written(name: str) -> GpuSpec:
    """The catalog GPU for a name as people write it in reports ("H100 80GB (form factor not stated)",
    "RTX 5090 32GB", "NVIDIA A100-SXM4-80GB"): the exact lookup first, then without remarks in parentheses,
    then without a memory size, which must then agree with the catalog part's nominal size. Anything else is
    refused, never guessed."""
    try:
        return lookup(name)
    except PlannerError as err:
        refusal = err
    bare = _PARENTHETICAL.sub(" ", name).strip()
    candidates = [bare] if bare and bare != name else []
    sizes = [int(m) for m in _MEMORY_TOKEN.findall(bare)]
    if len(sizes) == 1:
        candidates.append(_MEMORY_TOKEN.sub(" ", bare).strip())
    for candidate in candidates:
        hit = _catalog()[1].get(_key(candidate))
        if hit is None:
            continue
        spec = _catalog()[0][hit]
        if candidate is not bare and sizes and abs(_nominal_gb(spec) - sizes[0]) > 0.1 * sizes[0]:
            # the same part in the size written ("A100 SXM 40GB": A100-SXM4-80GB's sibling A100-SXM4-40GB)
            sibling = _catalog()[0].get(_MEMORY_TOKEN.sub(f"{sizes[0]}GB", spec.name)) \
                if _MEMORY_TOKEN.search(spec.name) else None
            if sibling is not None and abs(_nominal_gb(sibling) - sizes[0]) <= 0.1 * sizes[0]:
                return sibling
            raise PlannerError(f"GPU {name!r}: {spec.name} has {_nominal_gb(spec):g} GB, not {sizes[0]} GB; "
                               "name the part exactly (see `estimator gpus`)")
        return spec
    raise refusal


def canonical_name(name: str) -> str:
    """The catalog's name for a GPU as written anywhere (nvidia-smi, reports, the CLI); "cpu" stays "cpu"."""
    return "cpu" if name.strip().lower() == "cpu" else resolve_written(name).name


def _nominal_gb(spec: GpuSpec) -> float:
    raw = next(g for g in _raw_catalog()["gpus"] if g["name"] == spec.name)
    return float(raw.get("memory_nominal_gb") or spec.memory_gib * GIB / 1e9)


# A sanity bound for a custom device's memory: the largest accelerators hold a few hundred GiB; CPU hosts a few TiB.
MAX_DEVICE_GIB = 65536.0


def custom(memory_gib: float, like: GpuSpec | None = None) -> GpuSpec:
    """A device given only by its memory; speed fields come from ``like`` when a GPU was also named."""
    memory_gib = positive_number("--gpu-memory-gib", memory_gib)
    if memory_gib > MAX_DEVICE_GIB:
        raise PlannerError(f"--gpu-memory-gib {memory_gib:g} is more than any device has (at most {MAX_DEVICE_GIB:g}); "
                           "give the memory of one GPU in GiB")
    if like is not None and like.vendor == "cpu":
        return cpu_device(memory_gib)
    base = like or GpuSpec("custom", "unknown", memory_gib, None, None, None, None, "unknown",
                           Interconnect("pcie", 4, 64.0))
    return GpuSpec(base.name if like else "custom", base.vendor, float(memory_gib), base.memory_bandwidth_gbs,
                   base.bf16_tflops, base.fp16_tflops, base.fp8_tflops, base.arch, base.interconnect, "custom",
                   base.compute_units)


def detect() -> tuple[GpuSpec, int]:
    """The local GPUs through NVML: (spec of GPU 0 with its exact memory, number of GPUs)."""
    from estimator import nvml

    try:
        found = nvml.host()
    except nvml.NoNvml as err:
        raise PlannerError(f"--gpu auto found {err}; name the GPU with --gpu NAME or give --gpu-memory-gib") from None
    if not found.devices:
        raise PlannerError("--gpu auto found no NVIDIA GPU; name one with --gpu NAME")
    count, name, total = len(found.devices), found.devices[0].name, found.devices[0].memory_total_bytes
    try:
        known = lookup(name)
    except PlannerError:
        known = None
    spec = custom(total / GIB, like=known)
    return dataclasses.replace(spec, name=known.name if known else name, source="detected"), count
