"""NVML, in one place: the NVIDIA GPUs this host has, and how much memory each uses now. `estimator plan --gpu
auto`, the host record of `calibrate run` and its memory sampler all read the GPUs through here (nvidia-ml-py's
pynvml module, imported only when called, so planning never needs it)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass


class NoNvml(Exception):
    """No NVML library or no NVIDIA driver on this host."""


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    memory_total_bytes: int


@dataclass(frozen=True)
class Host:
    devices: tuple[Device, ...]
    driver_version: str
    cuda_version: str  # "12.4"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def session():
    """pynvml, initialised for the block and shut down after it; NoNvml where there is none."""
    try:
        import pynvml
    except ImportError as err:
        raise NoNvml("the nvidia-ml-py package is not installed (pip install nvidia-ml-py)") from err
    try:
        pynvml.nvmlInit()
    except Exception as err:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        raise NoNvml(f"no NVIDIA driver ({err})") from None
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def host() -> Host:
    """The GPUs NVML sees, with the driver and CUDA versions. Raises NoNvml."""
    with session() as nvml:
        cuda = nvml.nvmlSystemGetCudaDriverVersion_v2()
        devices = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            devices.append(Device(i, _text(nvml.nvmlDeviceGetName(handle)),
                                  int(nvml.nvmlDeviceGetMemoryInfo(handle).total)))
        return Host(tuple(devices), _text(nvml.nvmlSystemGetDriverVersion()), f"{cuda // 1000}.{cuda % 1000 // 10}")


class UsedMemory:
    """Memory in use on each GPU, read repeatedly within one NVML session (a sampler's view)."""

    def __enter__(self) -> UsedMemory:
        self._session = session()
        self._nvml = self._session.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._session.__exit__(*exc)

    def read(self) -> list[int]:
        nvml = self._nvml
        return [int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(i)).used)
                for i in range(nvml.nvmlDeviceGetCount())]
