"""Samples used memory while vLLM runs: per GPU through NVML, else the resident memory of the server's process
group (the CPU backend keeps its KV cache in host memory)."""

from __future__ import annotations

import os
import threading
import time

from estimator import nvml
from store.records import MemorySample

INTERVAL_S = 0.5


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in a process group (Linux /proc)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            with open(f"/proc/{entry}/statm", encoding="utf-8") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


class MemorySampler:
    def __init__(self, pgid: int | None, start: float | None = None):
        self.pgid = pgid
        self.start = start or time.monotonic()
        self.samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._nvml = None

    def __enter__(self) -> MemorySampler:
        try:
            self._nvml = nvml.UsedMemory().__enter__()
        except nvml.NoNvml:  # no NVIDIA driver: sample host memory instead
            self._nvml = None
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._nvml is not None:
            self._nvml.__exit__(None, None, None)

    def sample(self) -> None:
        t = round(time.monotonic() - self.start, 3)
        if self._nvml is not None:
            for i, used in enumerate(self._nvml.read()):
                self.samples.append(MemorySample(t, f"cuda:{i}", used))
        elif self.pgid is not None:
            self.samples.append(MemorySample(t, "cpu", _group_rss(self.pgid)))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(INTERVAL_S)

    def since(self, t0: float) -> tuple[MemorySample, ...]:
        return tuple(s for s in self.samples if s.t_s >= t0)
