"""DeepSeek-V4: its tensors, its packed KV cache groups against vLLM 0.32's own sizing, its catalog entry and what
the planner refuses."""

import json
from pathlib import Path

import pytest

from estimator import architecture
from estimator import deepseek_v4 as dsv4
from estimator.errors import PlannerError
from estimator.model_source import catalog_configs
from estimator.plan import PlanRequest, make_plan
from tests.conftest import run_in_vllm

FIXTURE = Path(__file__).parent / "fixtures" / "models" / "deepseek-v4"
SCRIPT = Path(__file__).parent / "vllm_deepseek_v4_kv.py"


def fixture_arch():
    return architecture.from_config(json.loads((FIXTURE / "config.json").read_text()), "deepseek-v4")


def test_each_layer_keeps_the_caches_its_compress_ratio_gives():
    """Layer 0 (ratio 0) keeps its sliding window only; CSA layers (4) add the compressed latent, its compressor's
    state, the indexer's keys and their compressor; HCA layers (128) the latent and its compressor. Pages are
    vLLM's: 64 sliding tokens of 584 bytes, 256 / ratio latent entries, float32 states, padded to 576 bytes."""
    a = fixture_arch()
    assert [x.compress_ratio for x in a.attention] == [1, 4, 128, 4]
    pages = [[(s.sliding, s.block_size, s.window, s.page) for s in dsv4.layer_caches(x)] for x in a.attention]
    assert pages[0] == [(True, 64, 128, 37440)]
    assert pages[1] == [(False, 256, 0, 8640), (True, 4, 8, 8640), (True, 64, 128, 37440), (False, 256, 0, 37440),
                        (True, 4, 8, 32832)]
    assert pages[2] == [(True, 64, 128, 37440), (False, 256, 0, 1728), (True, 8, 128, 32832)]


def test_the_caches_pack_into_vllms_groups():
    """kv_cache_utils._get_packed_kv_cache_groups on this model (checked against vLLM below): the four sliding
    windows split two and two, the compressed caches in one group, the CSA compressors in one, the HCA one alone;
    a block id is as wide as the widest group."""
    layout = dsv4.kv_layout(fixture_arch().attention)
    assert sorted(sum(s.page for s in g) for g in layout.groups) == [32832, 74880, 74880, 82944, 93888]
    assert layout.bytes_per_block == 93888
    # a request of 8,192 tokens with 8,192 in flight: 129 window blocks in each sliding group, 32 compressed, 2,049
    # four-token compressor blocks and 1,025 eight-token ones
    assert layout.blocks_per_request(8192, 8192) == 129 + 129 + 32 + 2049 + 1025


@pytest.mark.vllm
def test_kv_pool_matches_vllms_own_sizing_of_the_model_it_builds(vllm_py):
    # (an fp8 KV cache asked for keeps the same fp8_ds_mla entries: V4 stores nothing else)
    cases = [dict(directory=str(FIXTURE), max_model_len=8192, max_num_batched_tokens=4096, available=2 * 2**30),
             dict(directory=str(FIXTURE), max_model_len=32768, max_num_batched_tokens=2048, available=5 * 2**30 + 77),
             dict(directory=str(FIXTURE), max_model_len=16384, max_num_batched_tokens=8192, available=3 * 2**30,
                  kv_cache_dtype="fp8")]
    layout = dsv4.kv_layout(fixture_arch().attention)
    for case, theirs in zip(cases, run_in_vllm(vllm_py, SCRIPT, cases), strict=True):
        assert "error" not in theirs, theirs
        assert theirs["pages"] == sorted(sum(s.page for s in g) for g in layout.groups)
        blocks = case["available"] // layout.bytes_per_block
        assert theirs["num_blocks"] == blocks
        concurrency = blocks / layout.blocks_per_request(case["max_model_len"], theirs["in_flight"])
        assert theirs["max_concurrency"] == pytest.approx(concurrency, rel=1e-12)
        assert theirs["kv_cache_tokens"] == int(concurrency * case["max_model_len"])


def test_the_plan_prices_the_packed_pool():
    """The plan's block is the packed block id, its blocks what the memory left holds of them, and a request of
    max_model_len the blocks of every group (with max_num_batched_tokens x 2 in flight, as on GPUs)."""
    plan = make_plan(PlanRequest(model=str(FIXTURE), gpu="H100", max_model_len=8192, max_num_batched_tokens=4096))
    m, layout = plan.memory, dsv4.kv_layout(fixture_arch().attention)
    assert (m.block_size, m.bytes_per_block, m.num_kv_cache_groups) == (256, layout.bytes_per_block, 5)
    assert m.num_gpu_blocks == m.available_kv_bytes[0] // layout.bytes_per_block
    assert m.blocks_per_request == layout.blocks_per_request(8192, 2 * 4096)
    assert m.max_concurrency == pytest.approx(m.num_gpu_blocks / m.blocks_per_request)
    assert any("DeepSeek-V4's activation peak" in w for w in plan.warnings)


def test_flash_is_the_size_deepseek_announced_with_mxfp4_experts_and_fp8_blocks():
    """The catalog's DeepSeek-V4-Flash: transformers' DeepseekV4Config defaults (documented as Flash-Base) hold
    284.3B parameters, DeepSeek's 284B; its experts are MXFP4 and its other linears FP8 blocks, so one H200 at TP 4
    holds about a quarter of 145.8 GiB of weights."""
    a = architecture.from_config(catalog_configs()["deepseek-ai/DeepSeek-V4-Flash"], "deepseek-ai/DeepSeek-V4-Flash")
    assert abs(a.num_params / 284e9 - 1) < 0.005
    expert = next(t for t in a.tensors if t.kind == "expert")
    linear = next(t for t in a.tensors if t.name.endswith(".attn.wq_b"))
    assert a.quant.scheme_for(expert.name, "expert").method == "mxfp4"
    assert a.quant.scheme_for(linear.name, "linear").block == (128, 128)
    plan = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V4-Flash", gpu="H200", tensor_parallel_size=4))
    assert 36 < plan.memory.per_gpu.weights_gib < 38 and plan.memory.fits
    # Flash-Base (expert_dtype fp8): the same network with FP8 block experts, about a byte a parameter
    base = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V4-Flash-Base", gpu="H200", tensor_parallel_size=8))
    assert base.arch.quant.scheme_for(expert.name, "expert").block == (128, 128)
    assert 0.99 < base.memory.per_gpu.weights_gib * 8 * 2**30 / 284.3e9 < 1.07


@pytest.mark.parametrize("flags, why", [
    (dict(block_size=64), "256-token blocks only"),
    (dict(pipeline_parallel_size=2), "one pipeline stage only"),
    (dict(speculative_config='{"method": "mtp", "num_speculative_tokens": 1}'), "has none the planner knows of"),
])
def test_what_the_planner_does_not_model_is_refused(flags, why):
    with pytest.raises(PlannerError, match=why):
        make_plan(PlanRequest(model=str(FIXTURE), gpu="H100", **flags))


def test_compress_ratios_vllm_cannot_build_are_refused():
    raw = json.loads((FIXTURE / "config.json").read_text())
    for ratios, why in (([0, 4, 64, 4], r"compress ratios \[64\]"), ([0, 4], "one entry per layer")):
        with pytest.raises(PlannerError, match=why):
            architecture.from_config(dict(raw, compress_ratios=ratios), "v4")
    # transformers' own layer_types, which vLLM 0.32's model does not read
    types = ["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention",
             "compressed_sparse_attention"]
    with pytest.raises(PlannerError, match="no compress_ratios"):
        architecture.from_config(dict({k: v for k, v in raw.items() if k != "compress_ratios"}, layer_types=types), "v4")
    with pytest.raises(PlannerError, match="native FP8 128 x 128 block checkpoints only"):
        architecture.from_config(dict(raw, quantization_config={"quant_method": "awq", "bits": 4}), "v4")


def test_the_profiling_pass_reserves_the_prefill_gather_of_the_widest_layer():
    """nvidia/flashmla.py without metadata reserves, per layer, 4 x M bf16 rows of 512 (M: max_model_len / ratio +
    window + batched tokens) beside [tokens, round_up(index_topk + window, 128)] and [tokens] int32; the CSA layers'
    is the widest. The fixture at 8,192 tokens and 4,096 batched: M = 2,048 + 128 + 4,096."""
    from estimator.memory import deepseek_v4_workspace_bytes

    plan = make_plan(PlanRequest(model=str(FIXTURE), gpu="H100", max_model_len=8192, max_num_batched_tokens=4096))
    rows = 8192 // 4 + 128 + 4096
    assert deepseek_v4_workspace_bytes(plan.arch, plan.config) == 4 * rows * 512 * 2 + 4096 * 256 * 4 + 4096 * 4
    longer = make_plan(PlanRequest(model=str(FIXTURE), gpu="H100", max_model_len=32768, max_num_batched_tokens=4096))
    assert longer.memory.per_gpu.activation_gib > plan.memory.per_gpu.activation_gib


def test_the_activation_peak_follows_the_dgx_spark_a_b_start_ups():
    """MiaAI-Lab/DeepSeek-v4-Flash-One-DGX-Spark#4 changed only --max-num-batched-tokens on one GB10 (121.63 GiB,
    one sequence): 'peak activation 1.39 GiB' at 2,048 tokens, 5.30 at 8,224. The traced buffers alone give 0.59
    and 2.06; with the fitted per-token term (memory.DSV4_UNTRACED_HIDDEN_VECTORS) both are within 2%."""
    peaks = {}
    for tokens, logged in ((2048, 1.39), (8224, 5.30)):
        plan = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V4-Flash", gpu="GB10", gpu_memory_gib=121.63,
                                     max_model_len=262144, gpu_memory_utilization=0.93, max_num_seqs=1,
                                     max_num_batched_tokens=tokens))
        peaks[tokens] = plan.memory.per_gpu.activation_gib
        assert peaks[tokens] == pytest.approx(logged, rel=0.02)
    # the slope per batched token holds the fitted term beside the traced buffers
    from estimator.inventory import FP32_BYTES
    from estimator.memory import DSV4_UNTRACED_HIDDEN_VECTORS
    assert (peaks[8224] - peaks[2048]) * 2**30 / 6176 > DSV4_UNTRACED_HIDDEN_VECTORS * 4096 * FP32_BYTES
