"""What this host is: its GPUs (through NVML) or its CPU, and the software vLLM runs with."""

from __future__ import annotations

import os
import platform
import socket
import subprocess

from estimator import nvml
from estimator.gpus import GIB
from store.records import HostRecord


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_gpus() -> list[dict]:
    """[{name, memory_gib, driver, cuda}] of the NVIDIA GPUs NVML sees (empty without a driver)."""
    try:
        found = nvml.host()
    except nvml.NoNvml:  # no NVML library, or no driver: this host has no NVIDIA GPU for us
        return []
    return [{"name": d.name, "memory_gib": d.memory_total_bytes / GIB, "driver": found.driver_version,
             "cuda": found.cuda_version} for d in found.devices]


def vllm_version(vllm_command: list[str]) -> str | None:
    try:
        out = subprocess.run([*vllm_command, "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return lines[-1] if out.returncode == 0 and lines else None


def vllm_python(vllm_command: list[str]) -> str | None:
    """The Python interpreter that runs vLLM: given directly (python -c ...), or on the vllm script's shebang."""
    import shutil

    if len(vllm_command) > 1 and vllm_command[1] == "-c":
        return vllm_command[0]
    script = shutil.which(vllm_command[0]) if vllm_command else None
    try:
        with open(script or "", "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return None
    return first[2:].split()[0] if first.startswith("#!") and "python" in first else None


def torch_version(vllm_command: list[str]) -> str | None:
    python = vllm_python(vllm_command)
    if not python:
        return None
    try:
        out = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True,
                             timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def probe(vllm_command: list[str]) -> HostRecord:
    gpus = nvidia_gpus()
    common = dict(hostname=os.environ.get("VLLM_PLANNER_HOSTNAME") or socket.gethostname(), cpu=_cpu_name(),
                  vllm_version=vllm_version(vllm_command), torch_version=torch_version(vllm_command))
    if gpus:
        return HostRecord(gpu_name=gpus[0]["name"], gpu_count=len(gpus), gpu_memory_gib=round(gpus[0]["memory_gib"], 2),
                          driver_version=gpus[0]["driver"], cuda_version=gpus[0]["cuda"], **common)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return HostRecord(gpu_name="cpu", gpu_count=1, gpu_memory_gib=round(memory, 2), **common)
