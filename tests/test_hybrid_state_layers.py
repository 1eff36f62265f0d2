"""Hybrid models: linear-attention (Gated DeltaNet) layers keep a fixed state per request, not KV per token.

vLLM's own KV sizing agrees on blocks, tokens and groups (tests/test_kv_against_vllm.py); these tests check by hand
what that comparison takes as given: the state's size, the block size vLLM aligns to it, and the search's use of it.
"""

import json
from pathlib import Path

import pytest

from estimator.architecture import from_config
from estimator.errors import PlannerError
from estimator.model_source import catalog_configs
from estimator.plan import PlanRequest, make_plan, plan_with_search
from estimator.speculative import served, speculative_settings
from estimator.workload import Workload
from tests.conftest import run_in_vllm

NEXT = "Qwen/Qwen3-Next-80B-A3B-Instruct"


def arch():
    return from_config(catalog_configs()[NEXT], NEXT)


def test_every_fourth_layer_is_full_attention_and_the_rest_keep_a_state():
    a = arch()
    kinds = [layer.kind for layer in a.attention]
    assert kinds.count("full") == 12 and kinds.count("mamba") == 36
    assert [i for i, k in enumerate(kinds) if k == "full"] == list(range(3, 48, 4))
    assert a.attention_layer.kind == "full" and a.kv_bytes_per_token(2) == 12 * 2 * 2 * 256 * 2


def test_the_state_is_the_convolution_window_and_one_matrix_per_value_head():
    # conv: (2 x 16 key heads x 128 + 32 value heads x 128) channels x (kernel 4 - 1); temporal: 32 x 128 x 128
    state = arch().state_layers[0]
    assert state.state_bytes(2) == ((2 * 16 * 128 + 32 * 128) * 3 + 32 * 128 * 128) * 2 == 1_097_728
    assert state.state_bytes(2, tp=4) == 1_097_728 // 4
    assert state.bytes_per_token(2) == 0


@pytest.mark.parametrize("flags,block", [
    (dict(gpu="H100", tensor_parallel_size=4), 272),  # 274,432 B state / (16 x 1,024 B per token) -> 17 x 16
    (dict(gpu="H100", tensor_parallel_size=2), 544),  # 548,864 / (16 x 1,024) = 33.5 -> 34 x 16
    (dict(gpu="H200", tensor_parallel_size=2, kv_cache_dtype="fp8"), 1072),  # 548,864 / (16 x 512) -> 67 x 16
    (dict(gpu="H100", tensor_parallel_size=4, block_size=512), 512),  # already holds the state: kept
])
def test_the_block_grows_until_its_attention_page_holds_one_state(flags, block):
    plan = make_plan(PlanRequest(model=NEXT, max_model_len=32768, **flags))
    assert plan.config.block_size == block
    assert plan.memory.bytes_per_block == 12 * block * plan.arch.attention_layer.bytes_per_token(
        plan.config.kv_dtype_bytes, plan.config.tensor_parallel_size)
    # a request: its attention blocks plus 2 state blocks in each of the 3 state groups (prefix caching on)
    assert plan.memory.blocks_per_request == -(-32768 // block) + 3 * 2
    if "block_size" not in flags:
        assert any("linear-attention state" in d for d in plan.config.defaults)


def test_the_search_sizes_the_block_for_each_kv_dtype():
    plan = plan_with_search(PlanRequest(model=NEXT, gpu="H200", num_gpus=2),
                            Workload(input_len=2000, output_len=500, concurrency=64))
    best = plan.search["best"]
    kv_bytes = 1 if best["kv_cache_dtype"].startswith("fp8") else 2
    tp = best["tensor_parallel_size"]
    state = arch().state_layers[0].state_bytes(2, tp)
    per_token = max(1, 2 // tp) * 256 * 2 * kv_bytes
    assert plan.config.block_size == 16 * -(-state // (16 * per_token))
    assert plan.memory.fits


def test_layer_types_that_are_neither_kind_are_refused():
    config = dict(catalog_configs()[NEXT], layer_types=["sliding_attention"] * 48)
    with pytest.raises(PlannerError, match="expected full_attention or linear_attention per layer"):
        from_config(config, "bad")


GRANITE = str(Path(__file__).parent / "fixtures" / "models" / "granite-hybrid")


def granite():
    return from_config(json.loads((Path(GRANITE) / "config.json").read_text()), GRANITE)


def test_granite_hybrid_layers_follow_layer_types():
    a = granite()
    assert [i for i, layer in enumerate(a.attention) if layer.kind == "full"] == [5, 15, 25, 35]
    assert len(a.state_layers) == 36 and a.num_experts == 64 and a.experts_per_token == 6
    # Mamba2 mixer: in_proj to z, x (2 x 3072), B and C (2 x 128) and dt (48 heads), conv over x, B, C with a bias;
    # the B and C rows are their own tensors, as they split over TP only where it divides the groups
    names = {t.name.removeprefix("model.layers.0.mamba."): t for t in a.tensors if t.layer == 0}
    assert (names["in_proj"].rows, names["in_proj"].cols) == (2 * 3072 + 48, 1536)
    assert (names["in_proj.B+C"].rows, names["in_proj.B+C"].shard) == (256, "groups")
    assert (names["conv1d"].rows + names["conv1d.B+C"].rows, names["conv1d"].cols) == (3072 + 256, 5)
    # one group of B and C: every rank holds all of it (in_proj and conv1d alike), whatever the TP size
    from estimator.memory import shard_fraction

    assert [shard_fraction(names["in_proj.B+C"], a, tp) for tp in (1, 2, 4)] == [1.0, 1.0, 1.0]
    assert shard_fraction(names["in_proj"], a, 4) == 0.25


@pytest.mark.vllm
def test_state_shapes_match_vllms_calculator(vllm_py):
    """Per TP rank, including Mamba2's single B/C group copied to every rank, against vLLM's own calculator; with
    speculative decoding each convolution window is one column wider per draft token (num_spec)."""
    granite_config = json.loads((Path(GRANITE) / "config.json").read_text())
    next_config = catalog_configs()[NEXT]
    cases, ours = [], []
    for tp, num_spec in ((1, 0), (2, 0), (4, 0), (1, 3), (2, 1)):
        drafting = speculative_settings({"method": "ngram", "num_speculative_tokens": num_spec}) if num_spec else ()
        cases.append(dict(granite_config, kind="mamba2", tp=tp, num_spec=num_spec))
        ours.append(served(granite(), drafting).state_layers[0].state_shapes(tp))
        cases.append(dict(next_config, kind="gdn", tp=tp, num_spec=num_spec))
        ours.append(served(arch(), drafting).state_layers[0].state_shapes(tp))
    reference = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_state_reference.py", cases)
    for mine, theirs in zip(ours, reference, strict=True):
        conv, temporal = theirs  # vLLM keeps the convolution window as one (channels, window) tensor
        assert sum(rows for rows, _ in mine[:-1]) == conv[0] and {cols for _, cols in mine[:-1]} == {conv[1]}
        assert list(mine[-1]) == [temporal[0], temporal[1] * temporal[2]]


NANO = "nvidia/NVIDIA-Nemotron-Nano-9B-v2"


def nano():
    return from_config(catalog_configs()[NANO], NANO)


def test_nemotron_h_builds_one_mixer_per_pattern_letter():
    a = nano()
    pattern = catalog_configs()[NANO]["hybrid_override_pattern"]
    assert [layer.kind for layer in a.attention] == [{"M": "mamba", "*": "full", "-": "none"}[k] for k in pattern]
    assert len(a.state_layers) == 27 and a.kv_bytes_per_token(2) == 4 * 8 * 128 * 2 * 2
    # Mamba2 with 128 heads of 80 (inner 10240), 8 groups of state 128: in_proj to z, x, B, C and dt
    names = {t.name.removeprefix("model.layers.0.mixer."): t for t in a.tensors if t.layer == 0}
    assert names["in_proj"].rows + names["in_proj.B+C"].rows == 2 * 10240 + 2 * 8 * 128 + 128
    assert names["in_proj"].cols == 4480
    # 8 groups: TP 2, 4 and 8 split them; TP 16 could not (one whole group per rank)
    from estimator.memory import shard_fraction

    assert [shard_fraction(names["in_proj.B+C"], a, tp) for tp in (2, 8, 16)] == [1 / 2, 1 / 8, 1 / 8]
    # the MLP layer: relu2 with no gate, up then down
    mlp = {t.name.rsplit(".", 1)[-1]: (t.rows, t.cols) for t in a.tensors if t.layer == 1 and t.kind == "linear"}
    assert mlp == {"up_proj": (15680, 4480), "down_proj": (4480, 15680)}


def test_nemotron_h_keeps_its_ssm_state_in_float32():
    # conv window (x, B, C: 10240 + 2 x 8 x 128 channels, 3 wide) in bf16, the SSM state 128 x 80 x 128 in fp32
    state = nano().state_layers[0]
    assert state.state_bytes(2) == (10240 + 2048) * 3 * 2 + 128 * 80 * 128 * 4 == 5_316_608
    # the attention page (8 KV heads x 128 x K and V x 2 bytes = 4096 bytes a token) must hold it: 1298 tokens,
    # rounded up to the kernel's 16
    assert make_plan(PlanRequest(model=NANO, gpu="A10G", max_model_len=32768)).config.block_size == 1312
    halved = dict(catalog_configs()[NANO], mamba_ssm_cache_dtype="bfloat16")
    assert from_config(halved, "n").state_layers[0].state_bytes(2) == (10240 + 2048) * 3 * 2 + 128 * 80 * 128 * 2


def test_nemotron_h_routed_experts_by_hand():
    # A Nemotron-3-style MoE layer ("E"): sigmoid router with its bias, 8 non-gated experts of 96 through a
    # 32-wide latent projection, one shared expert of 64.
    raw = dict(catalog_configs()[NANO], hybrid_override_pattern="M*E", num_hidden_layers=3, n_routed_experts=8,
               num_experts_per_tok=2, moe_intermediate_size=96, n_shared_experts=1,
               moe_shared_expert_intermediate_size=64, moe_latent_size=32)
    a = from_config(raw, "moe")
    layer = {t.name.split(".mixer.", 1)[-1]: t for t in a.tensors if t.layer == 2}
    assert {k: (t.rows, t.cols, t.copies) for k, t in layer.items() if k != "model.layers.2.norm"} == {
        "gate": (8, 4480, 1), "gate.e_score_correction_bias": (8, 1, 1), "fc1_latent_proj": (32, 4480, 1),
        "fc2_latent_proj": (4480, 32, 1), "experts.up_proj": (96, 32, 8), "experts.down_proj": (32, 96, 8),
        "shared_experts.up_proj": (64, 4480, 1), "shared_experts.down_proj": (4480, 64, 1)}
    assert (a.num_experts, a.experts_per_token, a.moe_intermediate_size) == (8, 2, 96)
    assert a.active_params == a.num_params - 6 * 2 * 96 * 32


@pytest.mark.parametrize("pattern", ["M*", "M*X", None])
def test_a_pattern_that_does_not_spell_the_layers_is_refused(pattern):
    raw = dict(catalog_configs()[NANO], hybrid_override_pattern=pattern, num_hidden_layers=3)
    with pytest.raises(PlannerError, match="hybrid_override_pattern"):
        from_config(raw, "n")


@pytest.mark.vllm
def test_nemotron_h_state_shapes_and_dtypes_match_vllm(vllm_py):
    config = catalog_configs()[NANO]
    reference = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_state_reference.py",
                            [dict(config, kind="nemotron_h", tp=tp) for tp in (1, 2, 4, 8)])
    for tp, theirs in zip((1, 2, 4, 8), reference, strict=True):
        mine = nano().state_layers[0]
        conv, temporal = theirs["shapes"]
        shapes = mine.state_shapes(tp)
        assert sum(rows for rows, _ in shapes[:-1]) == conv[0] and {cols for _, cols in shapes[:-1]} == {conv[1]}
        assert list(shapes[-1]) == [temporal[0], temporal[1] * temporal[2]]
        assert mine.state_dtypes(2) == [theirs["dtype_bytes"][0]] * 2 + [theirs["dtype_bytes"][1]]


def test_nemotron_h_layers_without_attention_join_no_kv_cache_group():
    from estimator.memory import kv_cache_groups

    a = nano()
    grouped = sorted(i for _, layers in kv_cache_groups(a) for i in layers)
    assert grouped == [i for i, layer in enumerate(a.attention) if layer.kind in ("mamba", "full")]
    assert {spec for spec, _ in kv_cache_groups(a)} == {("mamba", None), ("full", None)}


QWEN35 = Path(__file__).parent / "fixtures" / "models" / "qwen3.5-moe"


@pytest.mark.vllm
@pytest.mark.parametrize("ssm_dtype", ["float32", "bfloat16", None])
def test_qwen35_keeps_its_state_in_the_dtype_its_config_names_as_vllm_does(vllm_py, ssm_dtype):
    config = json.loads((QWEN35 / "config.json").read_text())
    text = {k: v for k, v in config["text_config"].items() if k != "mamba_ssm_dtype"}
    if ssm_dtype:
        text["mamba_ssm_dtype"] = ssm_dtype
    mine = from_config(dict(config, text_config=text), "q").state_layers[0]
    cases = [dict(text, kind="qwen3_5", tp=tp) for tp in (1, 2, 4)]
    for tp, theirs in zip((1, 2, 4), run_in_vllm(vllm_py, Path(__file__).parent / "vllm_state_reference.py", cases),
                          strict=True):
        conv, temporal = theirs["shapes"]
        shapes = mine.state_shapes(tp)
        assert sum(rows for rows, _ in shapes[:-1]) == conv[0] and list(shapes[-1]) == [temporal[0],
                                                                                       temporal[1] * temporal[2]]
        assert mine.state_dtypes(2) == theirs["dtype_bytes"]
    # one request's state per rank at TP 1: the convolution window in bf16, 32 value heads of 128 x 128
    assert mine.state_bytes(2) == (2 * 2048 + 4096) * 3 * 2 + 32 * 128 * 128 * (4 if ssm_dtype == "float32" else 2)


def test_qwen35_refuses_a_state_dtype_it_does_not_know():
    config = json.loads((QWEN35 / "config.json").read_text())
    config["text_config"]["mamba_ssm_dtype"] = "float8"
    with pytest.raises(PlannerError) as err:
        from_config(config, "acme/q")
    assert str(err.value) == ("config.json of acme/q has mamba_ssm_dtype='float8'; expected one of float32, "
                              "bfloat16, float16 (fix the config.json)")


KIMI_LINEAR = Path(__file__).parent / "fixtures" / "models" / "kimi-linear"


@pytest.mark.vllm
def test_kimi_delta_attentions_state_is_the_one_vllm_sizes(vllm_py):
    """Per TP rank and with draft tokens, against vLLM's own KimiLinearForCausalLM: the convolution window over q,
    k and v in the model dtype, one float32 [head_dim x head_dim] matrix per head."""
    config = json.loads((KIMI_LINEAR / "config.json").read_text())
    a = from_config(config, "kimi-linear")
    layers = [i for i, layer in enumerate(a.attention) if layer.kind == "mamba"]
    assert [i + 1 for i in layers] == config["linear_attn_config"]["kda_layers"]
    assert {a.attention[i].kind for i in set(range(a.num_layers)) - set(layers)} == {"mla"}
    cases = [dict(config, kind="kimi_linear", tp=tp, num_spec=num_spec) for tp, num_spec in ((1, 0), (2, 0), (4, 1))]
    theirs = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_state_reference.py", cases)
    for case, answer in zip(cases, theirs, strict=True):
        drafting = speculative_settings({"method": "ngram", "num_speculative_tokens": case["num_spec"]}) \
            if case["num_spec"] else ()
        mine = served(a, drafting).state_layers[0]
        conv, recurrent = answer["shapes"]
        shapes = mine.state_shapes(case["tp"])
        assert [list(s) for s in shapes] == [conv, [recurrent[0], recurrent[1] * recurrent[2]]]
        assert mine.state_dtypes(2) == answer["dtype_bytes"] == [2, 4]
    # one request's state at TP 1: 3 x 32 x 128 channels x 3 window columns in bf16, 32 heads of 128 x 128 in fp32
    assert a.state_layers[0].state_bytes(2) == 3 * 4096 * 3 * 2 + 32 * 128 * 128 * 4


LFM2 = Path(__file__).parent / "fixtures" / "models" / "lfm2"


@pytest.mark.vllm
@pytest.mark.parametrize("name,kind", [("lfm2", "lfm2"), ("lfm2-moe", "lfm2_moe")])
def test_lfm2s_convolution_state_is_the_one_vllm_sizes(vllm_py, name, kind):
    """Per TP rank, against vLLM's own Lfm2ForCausalLM and Lfm2MoeForCausalLM: the window of conv_L_cache - 1
    columns over conv_dim channels (LFM2-MoE: the hidden width) in the model dtype, not widened for draft tokens
    (the models pass none to the calculator)."""
    config = json.loads((LFM2.parent / name / "config.json").read_text())
    a = from_config(config, name)
    assert [i for i, layer in enumerate(a.attention) if layer.kind == "full"] == [
        i for i, t in enumerate(config["layer_types"]) if t == "full_attention"]
    cases = [dict(config, kind=kind, tp=tp, num_spec=num_spec) for tp, num_spec in ((1, 0), (2, 0), (4, 3))]
    theirs = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_state_reference.py", cases)
    for case, answer in zip(cases, theirs, strict=True):
        drafting = speculative_settings({"method": "ngram", "num_speculative_tokens": case["num_spec"]}) \
            if case["num_spec"] else ()
        mine = served(a, drafting).state_layers[0]
        assert [list(s) for s in mine.state_shapes(case["tp"])] == answer["shapes"]
        assert mine.state_dtypes(2) == answer["dtype_bytes"] == [2]
    assert a.state_layers[0].state_bytes(2) == 2048 * 2 * 2


JAMBA = Path(__file__).parent / "fixtures" / "models" / "jamba"


@pytest.mark.vllm
def test_jambas_mamba_state_is_the_one_vllm_sizes(vllm_py):
    """Per TP rank, against vLLM's own JambaForCausalLM: the convolution window (mamba_d_conv - 1 columns) over the
    expanded width and one [expanded width x mamba_d_state] SSM state, both in the model dtype; an attention layer
    every eighth from the fifth."""
    config = json.loads((JAMBA / "config.json").read_text())
    a = from_config(config, "jamba")
    assert [i for i, layer in enumerate(a.attention) if layer.kind == "full"] == [4, 12, 20, 28]
    cases = [dict(config, kind="jamba", tp=tp) for tp in (1, 2, 4)]
    theirs = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_state_reference.py", cases)
    for case, answer in zip(cases, theirs, strict=True):
        mine = a.state_layers[0]
        assert [list(s) for s in mine.state_shapes(case["tp"])] == answer["shapes"]
        assert mine.state_dtypes(2) == answer["dtype_bytes"] == [2, 2]
    assert a.state_layers[0].state_bytes(2) == (8192 * 3 + 8192 * 16) * 2


def test_jambas_mamba_projections_stay_unquantized_and_count_as_matmuls():
    """vLLM's MambaMixer builds its four projections without the quant_config, so an FP8 Jamba keeps them in the
    model dtype; the speed model still counts them as the matmuls they are."""
    from estimator.memory import tensor_bytes
    from estimator.performance import weight_split
    from estimator.quantization import from_config as scheme

    a = from_config(json.loads((JAMBA / "config.json").read_text()), "jamba")
    mamba = [t for t in a.tensors if t.layer == 0 and t.name.split(".")[-1] in ("in_proj", "x_proj", "dt_proj",
                                                                                  "out_proj")]
    assert len(mamba) == 4 and {t.kind for t in mamba} == {"unquantized"}
    fp8 = scheme({"quant_method": "fp8", "activation_scheme": "dynamic"})
    assert all(tensor_bytes(t, 2, fp8) == t.numel * 2 for t in mamba)
    matmuls = [t for t in a.tensors if t.kind in ("linear", "expert", "router", "unquantized")]
    assert weight_split(a, 1, 1, 2, None)[2] == 2 * sum(t.active_numel for t in matmuls)
