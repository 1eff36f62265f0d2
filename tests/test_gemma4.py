"""Gemma 4 by hand: the rules its test models (tests/fixtures/models/gemma-4-*) exercise. vLLM's own parameter
counts, rope tables, KV sizing and parser are checked in test_parameters_against_vllm, test_rope_tables,
test_kv_against_vllm and test_serve_args_against_vllm."""

import json
from pathlib import Path

import pytest

from estimator.architecture import from_config
from estimator.errors import PlannerError
from estimator.gemma4 import global_dims
from estimator.inventory import Config
from estimator.memory import group_pages, kv_cache_groups
from estimator.plan import PlanRequest, make_plan
from tests.conftest import tensor_weights, write_config

FIXTURES = Path(__file__).parent / "fixtures" / "models"


def raw(name: str) -> dict:
    return json.loads((FIXTURES / name / "config.json").read_text())


def arch(name: str):
    return from_config(raw(name), name)


def test_global_layers_values_are_keys_in_the_checkpoint_but_vllm_still_allocates_v():
    dense = arch("gemma-4-dense")
    allocated = sum(t.numel for t in dense.tensors if t.kind != "derived")
    # 10 global layers (every sixth of 60) x 4 KV heads x 512 x 5,376 hidden
    assert allocated - dense.num_params == 10 * 4 * 512 * 5376
    v = [t for t in dense.tensors if t.name == "model.layers.5.self_attn.v_proj"]
    assert len(v) == 1 and not v[0].in_checkpoint and (v[0].rows, v[0].cols) == (4 * 512, 5376)
    assert next(t for t in dense.tensors if t.name == "model.layers.4.self_attn.v_proj").in_checkpoint
    plan = make_plan(PlanRequest(model=str(FIXTURES / "gemma-4-dense"), gpu="H200", max_model_len=8192))
    # bf16 on one GPU: every allocated parameter (the vocabulary is a multiple of 64 already) and the two rope
    # tables, 131,072 positions of 512 and of 256
    assert tensor_weights(plan) == allocated * 2 + 131072 * (512 + 256) * 2


def test_layers_sharing_kv_keep_no_cache_and_the_wide_mlp_doubles():
    e = arch("gemma-4-e")
    shared = [i for i, a in enumerate(e.attention) if a.shares_kv]
    assert shared == list(range(15, 35))
    assert sorted(i for _, layers in kv_cache_groups(e) for i in layers) == list(range(15))
    # 15 own caches: one KV head of 256 on 13 sliding layers, of 512 on the 2 global ones (5, 11), K and V, bf16
    assert e.kv_bytes_per_token(2) == 13 * 1 * 256 * 2 * 2 + 2 * 1 * 512 * 2 * 2
    gate = {t.name: t for t in e.tensors}
    assert gate["model.layers.14.mlp.gate_proj"].rows == 6144 and gate["model.layers.15.mlp.gate_proj"].rows == 12288
    assert "model.layers.15.self_attn.k_proj" not in gate and "model.layers.14.self_attn.k_proj" in gate


def test_per_layer_embeddings_are_a_vocabulary_table_as_wide_as_all_layers_inputs():
    e = {t.name: t for t in arch("gemma-4-e").tensors}
    table = e["model.embed_tokens_per_layer"]
    assert (table.rows, table.cols, table.shard, table.place) == (262144, 256 * 35, "vocab", "every")
    assert (e["model.per_layer_model_projection"].rows, e["model.per_layer_model_projection"].cols) == (256 * 35, 1536)
    assert e["model.layers.0.per_layer_input_gate"].rows == 256
    assert "model.embed_tokens_per_layer" not in {t.name for t in arch("gemma-4-dense").tensors}


def test_the_widest_page_sets_the_block_and_narrower_layers_hold_more_tokens():
    # dense at TP 1: sliding layers keep 16 heads x 256 (16,384 B a token), global ones 4 x 512 (8,192 B)
    plan = make_plan(PlanRequest(model=str(FIXTURES / "gemma-4-dense"), gpu="H200", max_model_len=8192))
    page, sizes = group_pages(plan.arch, plan.config, 1)
    kinds = [spec[0] for spec, _ in kv_cache_groups(plan.arch)]
    assert page == 16 * 16384
    assert {k: s for k, s in zip(kinds, sizes, strict=True)} == {"sliding": 16, "full": 32}
    # the small one the other way round: one KV head of 256 against one of 512
    small = make_plan(PlanRequest(model=str(FIXTURES / "gemma-4-e"), gpu="L4", max_model_len=8192))
    page, sizes = group_pages(small.arch, small.config, 1)
    kinds = [spec[0] for spec, _ in kv_cache_groups(small.arch)]
    assert page == 16 * 2048 and {k: s for k, s in zip(kinds, sizes, strict=True)} == {"sliding": 32, "full": 16}


def test_the_rope_tables_of_both_layer_types():
    # proportional rope on the global layers keeps all 512 of the head in its table; the sliding layers' 256
    assert arch("gemma-4-dense").rope_tables == ((131072 * 512, None), (131072 * 256, None))


def test_the_global_layers_dims_without_a_per_layer_config():
    text = {k: v for k, v in raw("gemma-4-dense")["text_config"].items() if k != "per_layer_config"}
    assert global_dims(Config(text, "m"), 16) == (512, 16)  # defaults: 512 wide, num_global_key_value_heads absent
    assert global_dims(Config(dict(text, global_head_dim=384, num_global_key_value_heads=2), "m"), 16) == (384, 2)
    # the global KV heads apply only where values are keys
    unkeyed = dict(text, attention_k_eq_v=False, num_global_key_value_heads=2)
    assert global_dims(Config(unkeyed, "m"), 16) == (512, 16)


@pytest.mark.parametrize("change,message", [
    (dict(layer_types=["sliding_attention", "chunked"]), "has layer_types ['chunked', 'sliding_attention'] for 60 "
                                                          "layers; expected sliding_attention or full_attention"),
    (dict(num_kv_shared_layers=60), "shares the KV cache of all 60 layers (num_kv_shared_layers=60)"),
    (dict(per_layer_config={"5": 512}), "has per_layer_config={'5': 512}; expected an object per layer"),
])
def test_configs_it_cannot_read_are_refused(change, message):
    config = raw("gemma-4-dense")
    config["text_config"].update(change)
    with pytest.raises(PlannerError) as err:
        from_config(config, "acme/g4")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_without_its_towers_the_plan_does_not_warn_of_their_pass():
    model = str(FIXTURES / "gemma-4-e")
    full = make_plan(PlanRequest(model=model, gpu="L4", max_model_len=8192))
    text = make_plan(PlanRequest(model=model, gpu="L4", max_model_len=8192, language_model_only=True))
    audio_kept = make_plan(PlanRequest(model=model, gpu="L4", max_model_len=8192,
                                       limit_mm_per_prompt='{"image": 0, "video": 0}'))
    warning = "the vision encoder's profiling activations are not modelled"
    assert any(warning in w for w in full.warnings) and not any(warning in w for w in text.warnings)
    # the vision and audio towers (475,728,160 parameters, bf16) go only when every modality is limited to 0
    tower = 475_728_160 * 2 / 2**30
    assert (tensor_weights(full) - tensor_weights(text)) / 2**30 == pytest.approx(tower, abs=1e-9)
    assert audio_kept.memory.per_gpu.weights_gib == full.memory.per_gpu.weights_gib


def test_global_layers_kv_heads_replicate_over_tp_on_their_own():
    # at TP 8 the 16 sliding KV heads split 2 per GPU; the global layers' 4 are replicated, one per GPU
    from estimator.memory import shard_fraction

    dense = arch("gemma-4-dense")
    names = {t.name: t for t in dense.tensors}
    assert shard_fraction(names["model.layers.0.self_attn.k_proj"], dense, 8) == 2 / 16
    assert shard_fraction(names["model.layers.5.self_attn.k_proj"], dense, 8) == 1 / 4
    # the per-layer embedding table pads its own 262,144 rows (a multiple of 64 already)
    e = arch("gemma-4-e")
    table = next(t for t in e.tensors if t.name == "model.embed_tokens_per_layer")
    assert shard_fraction(table, e, 2) == 0.5


def test_kv_sharing_models_are_not_split_over_pipeline_stages_and_their_tables_are_on_every_stage():
    model = str(FIXTURES / "gemma-4-e")
    with pytest.raises(PlannerError) as err:
        make_plan(PlanRequest(model=model, gpu="L4", pipeline_parallel_size=2, num_gpus=2))
    assert str(err.value) == ("--pipeline-parallel-size 2: this model's last layers read earlier layers' KV caches "
                              "(KV sharing), which vLLM keeps within one pipeline stage; use --tensor-parallel-size "
                              "instead")
    from estimator.memory import stage_tensors

    e = arch("gemma-4-e")
    every = {"model.embed_tokens", "model.norm", "model.embed_tokens_per_layer", "model.per_layer_model_projection",
             "model.per_layer_projection_norm"}
    for stage in (0, 1):  # gemma4.py builds these whatever the pipeline rank
        assert every <= {t.name for t in stage_tensors(e, 2, stage)}
    # the dense shape shares no caches: pipeline stages are fine, and the search may use them
    dense = make_plan(PlanRequest(model=str(FIXTURES / "gemma-4-dense"), gpu="H100", pipeline_parallel_size=2,
                                  num_gpus=2, max_model_len=8192))
    assert dense.config.pipeline_parallel_size == 2


def test_every_layers_kv_heads_must_divide_or_be_divided_by_tp(tmp_path):
    # the MoE shape: 8 sliding KV heads, 2 global ones; TP 4 divides the first and is a multiple of the second
    moe = str(FIXTURES / "gemma-4-moe")
    assert make_plan(PlanRequest(model=moe, gpu="H100", tensor_parallel_size=4, num_gpus=4,
                                 max_model_len=8192)).config.tensor_parallel_size == 4
    # 24 heads, 8 sliding KV heads and 3 global ones: TP 8 suits the sliding layers, not the global ones
    config = raw("gemma-4-moe")
    text = config["text_config"]
    text["num_attention_heads"] = 24
    for layer in text["per_layer_config"].values():
        layer["num_key_value_heads"] = 3
    path = str(write_config(tmp_path / "g", config))
    with pytest.raises(PlannerError) as err:
        make_plan(PlanRequest(model=path, gpu="H100", tensor_parallel_size=8, num_gpus=8, max_model_len=8192))
    assert str(err.value) == ("--tensor-parallel-size 8 and the model's 3 KV heads: one must divide the other; use a "
                              "divisor or multiple of 3")
    # a global layer whose heads are not a multiple of its KV heads is refused with the config
    for layer in text["per_layer_config"].values():
        layer["num_key_value_heads"] = 5
    with pytest.raises(PlannerError) as err:
        from_config(config, "acme/g4")
    assert str(err.value) == ("config.json of acme/g4 has 24 attention heads and 5 KV heads on its global layers; "
                              "the heads must be a multiple of the KV heads (fix the config.json)")


def test_keys_a_config_leaves_out_take_transformers_defaults():
    # Gemma4TextConfig's defaults: no KV sharing, no per-layer embeddings beyond what is named, global heads 512
    # wide, one full layer after five sliding ones, the last layer full, tied embeddings, the vocabulary's own size
    # for the per-layer table
    full = raw("gemma-4-dense")
    text = full["text_config"]
    sparse = {k: v for k, v in text.items() if k not in (
        "per_layer_config", "layer_types", "num_kv_shared_layers", "attention_k_eq_v", "use_double_wide_mlp",
        "tie_word_embeddings", "attention_bias", "vocab_size_per_layer_input")}
    sparse.update(global_head_dim=512, num_global_key_value_heads=4)
    explicit = arch("gemma-4-dense")
    # without attention_k_eq_v the global layers keep the sliding layers' KV heads, and their V in the checkpoint
    implicit = from_config(dict(full, text_config=sparse), "m")
    assert [a.kind for a in implicit.attention] == [a.kind for a in explicit.attention]
    assert [a.head_size for a in implicit.attention] == [a.head_size for a in explicit.attention]
    assert {a.num_kv_heads for a in implicit.attention} == {16} and implicit.tie_word_embeddings
    # per global layer: K and V of 16 heads of 512 in place of K alone of 4
    assert implicit.num_params - explicit.num_params == 10 * (2 * 16 - 4) * 512 * 5376
    # a table for per-layer inputs over the main vocabulary when its own size is not given
    e = raw("gemma-4-e")
    e["text_config"].pop("vocab_size_per_layer_input")
    table = next(t for t in from_config(e, "e").tensors if t.name == "model.embed_tokens_per_layer")
    assert table.rows == 262144
    # an odd layer count still ends on a full layer, as Gemma4TextConfig forces
    seven = dict(sparse, num_hidden_layers=7)
    assert [a.kind for a in from_config(dict(full, text_config=seven), "m").attention] == \
        ["sliding"] * 5 + ["full", "full"]


def test_the_moe_block_by_hand():
    moe = {t.name: t for t in arch("gemma-4-moe").tensors if t.layer == 0}
    # a router over 128 experts with its per-dimension and per-expert scales; 8 of 128 experts of 704 run a token
    assert (moe["model.layers.0.router.proj"].rows, moe["model.layers.0.router.proj"].kind) == (128, "router")
    assert moe["model.layers.0.router.scale+per_expert_scale"].numel == 2816 + 128
    gate_up = moe["model.layers.0.experts.gate_up_proj"]
    assert (gate_up.rows, gate_up.copies, gate_up.active_copies, gate_up.shard) == (2 * 704, 128, 8, "col")
    # beside the dense MLP of 2,112, three more norms
    assert moe["model.layers.0.mlp.gate_proj"].rows == 2112 and "model.layers.0.pre_feedforward_layernorm_2" in moe
    assert arch("gemma-4-moe").experts_per_token == 8


def test_attention_biases_the_expert_width_alias_windows_and_the_sharing_boundary():
    config = raw("gemma-4-moe")
    text = config["text_config"]
    biased = {t.name: t for t in from_config(dict(config, text_config=dict(text, attention_bias=True)), "m").tensors
              if t.layer == 5}
    # q (16 x 512), k and v (2 x 512 each: values are keys, V still allocated) and o (hidden) carry biases
    assert {n.rsplit(".", 2)[-2]: t.rows for n, t in biased.items() if n.endswith(".bias")} == {
        "q_proj": 16 * 512, "o_proj": 2816, "k_proj": 2 * 512, "v_proj": 2 * 512}
    alias = {k: v for k, v in text.items() if k != "moe_intermediate_size"}
    alias["expert_intermediate_size"] = 704
    assert from_config(dict(config, text_config=alias), "m").num_params == arch("gemma-4-moe").num_params
    layers = arch("gemma-4-moe").attention
    assert {a.window for a in layers if a.kind == "full"} == {None} and {a.window for a in layers if
                                                                           a.kind == "sliding"} == {1024}
    # the last 24 layers may share the caches of the first six (five sliding, one full)
    shared = dict(text, num_kv_shared_layers=24)
    assert sum(a.shares_kv for a in from_config(dict(config, text_config=shared), "m").attention) == 24
    # with 25, the full layers among them have no earlier full layer to read
    with pytest.raises(PlannerError) as err:
        from_config(dict(config, text_config=dict(text, num_kv_shared_layers=25)), "acme/g4")
    assert str(err.value) == ("config.json of acme/g4 shares the KV cache of full_attention layers from layer 5 on, "
                              "but no earlier layer is of that type (fix num_kv_shared_layers)")
