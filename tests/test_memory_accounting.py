"""The memory plan's own bookkeeping: every figure it reports adds up, for plans that fit and for each way a plan
fails. These pin what `estimator plan --json` says per GPU and per stage (found unpinned by mutation testing)."""

import dataclasses
import math

import pytest

from estimator.gpus import GIB
from estimator.memory import (
    cudagraph_capture_sizes,
    graph_padded,
    kv_cache_groups,
    largest_capture_size,
    num_capture_sizes,
)
from estimator.plan import PlanRequest, make_plan

CASES = {
    "fits, max_num_seqs binds": dict(model="Qwen/Qwen2.5-7B-Instruct", gpu="H100", max_model_len=2048,
                                     max_num_seqs=256),
    "fits, the KV pool binds": dict(model="Qwen/Qwen2.5-7B-Instruct", gpu="L4", max_model_len=32768),
    "three uneven pipeline stages": dict(model="google/gemma-2-27b-it", gpu="A100-SXM4-40GB",
                                         pipeline_parallel_size=3),
    "weights do not fit": dict(model="meta-llama/Llama-3.1-70B-Instruct", gpu="L40S"),
    "weights do not fit, the first of three stages heaviest": dict(
        model="meta-llama/Llama-3.1-70B-Instruct", gpu="L4", pipeline_parallel_size=3),
    "overheads do not fit": dict(model="Qwen/Qwen2.5-7B-Instruct", gpu="L4", gpu_memory_utilization=0.68),
    "overheads do not fit on the last of three stages": dict(
        model="google/gemma-2-27b-it", gpu="A100-SXM4-40GB", pipeline_parallel_size=3, gpu_memory_utilization=0.49),
    "one request does not fit": dict(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L4", max_model_len=131072),
    "one request does not fit on the last of three stages": dict(
        model="google/gemma-2-27b-it", gpu="A100-SXM4-40GB", pipeline_parallel_size=3, gpu_memory_utilization=0.5),
}
BINDING = {"fits, max_num_seqs binds": (True, "max_num_seqs", 0), "fits, the KV pool binds": (True, "kv_cache", 0),
           "three uneven pipeline stages": (True, "kv_cache", 2), "weights do not fit": (False, "weights", 0),
           "weights do not fit, the first of three stages heaviest": (False, "weights", 0),
           "overheads do not fit": (False, "overheads", 0),
           "overheads do not fit on the last of three stages": (False, "overheads", 2),
           "one request does not fit": (False, "kv_cache", 0),
           "one request does not fit on the last of three stages": (False, "kv_cache", 2)}
# Each test plans its case itself (no shared fixture): mutation testing maps a test to the code its body runs.
names = pytest.mark.parametrize("name", CASES, ids=list(CASES))


def plan_of(name):
    return make_plan(PlanRequest(**CASES[name]))


@names
def test_every_case_is_the_case_it_names(name):
    m = plan_of(name).memory
    assert (m.fits, m.binding_constraint, m.per_stage.index(m.per_gpu)) == BINDING[name]


@names
def test_each_stage_s_memory_adds_up_to_the_budget(name):
    plan = plan_of(name)
    m, cfg, gpu = plan.memory, plan.config, plan.gpu
    budget = math.ceil(gpu.memory_bytes * cfg.gpu_memory_utilization)
    assert len(m.per_stage) == cfg.pipeline_parallel_size
    assert sum(s.num_layers for s in m.per_stage) == plan.arch.num_layers
    for stage, available in zip(m.per_stage, m.available_kv_bytes, strict=True):
        assert stage.total_gib == pytest.approx(gpu.memory_bytes / GIB, abs=1e-9)
        assert stage.budget_gib == pytest.approx(budget / GIB, abs=1e-9)
        used = stage.weights_gib + stage.activation_gib + stage.non_torch_gib + stage.cuda_graph_gib
        assert (used * GIB + available) == pytest.approx(budget, abs=2)
        assert stage.kv_cache_gib == pytest.approx(m.num_gpu_blocks * m.bytes_per_block / GIB, rel=1e-12) or \
            len(m.per_stage) > 1  # stages of other widths hold the same number of blocks of their own size
    assert m.per_gpu in m.per_stage


@names
def test_the_binding_stage_is_the_one_that_limits(name):
    plan = plan_of(name)
    m = plan.memory
    index = m.per_stage.index(m.per_gpu)
    if m.binding_constraint == "weights":
        assert m.per_gpu.weights_gib == max(s.weights_gib for s in m.per_stage)
        assert m.reason.startswith(f"weights need {m.per_gpu.weights_gib:.2f} GiB per GPU but the budget is "
                                   f"{m.per_gpu.budget_gib:.2f} GiB")
    elif m.binding_constraint == "overheads":
        assert m.available_kv_bytes[index] == min(m.available_kv_bytes) < 0
        assert m.reason.startswith("no memory left for the KV cache")
    else:
        blocks = [a // m.bytes_per_block for a in m.available_kv_bytes]
        assert blocks[index] == min(blocks) and m.num_gpu_blocks == max(0, min(blocks))
    # the figures that describe the pool, against their sources
    cfg, arch = plan.config, plan.arch
    assert (m.block_size, m.num_kv_cache_groups) == (cfg.block_size, len(kv_cache_groups(arch)))
    assert m.kv_bytes_per_token_per_gpu == arch.attention[0].bytes_per_token(
        cfg.kv_dtype_bytes, cfg.tensor_parallel_size) * m.per_gpu.num_layers
    budget, available = m.per_gpu.budget_gib, m.available_kv_bytes[index] / GIB
    if m.binding_constraint == "overheads":
        assert m.reason.endswith(f"exceed the {budget:.2f} GiB budget by {-available:.2f} GiB")
    if m.binding_constraint == "weights":
        assert m.reason.endswith(f"({cfg.gpu_memory_utilization} x {m.per_gpu.total_gib:.2f} GiB)")
    if not m.fits and m.binding_constraint == "kv_cache":
        need = m.bytes_per_block * m.blocks_per_request / GIB
        left = max(0.0, available - m.bytes_per_block / GIB)
        assert m.reason.endswith(f"needs {need:.2f} GiB of KV cache but {left:.2f} GiB is available")
    if m.fits:
        assert m.max_concurrency == m.num_gpu_blocks / m.blocks_per_request
        assert m.kv_cache_tokens == int(m.max_concurrency * plan.config.max_model_len)
        assert f"max_num_seqs={plan.config.max_num_seqs}" in m.reason
    elif m.binding_constraint == "kv_cache":
        assert m.reason.startswith(f"one request of max_model_len {plan.config.max_model_len} needs ")


@names
def test_the_json_says_exactly_what_the_plan_holds(name):
    m = plan_of(name).memory
    data = m.to_dict()
    assert data == {
        "per_gpu": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(m.per_gpu).items()},
        "per_stage": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(s).items()}
                      for s in m.per_stage],
        "num_gpu_blocks": m.num_gpu_blocks, "kv_cache_tokens": m.kv_cache_tokens,
        "max_concurrency": round(m.max_concurrency, 2), "fits": m.fits, "binding_constraint": m.binding_constraint,
        "reason": m.reason, "block_size": m.block_size, "num_kv_cache_groups": m.num_kv_cache_groups,
        "bytes_per_block": m.bytes_per_block, "blocks_per_request": m.blocks_per_request,
        "kv_bytes_per_token_per_gpu": m.kv_bytes_per_token_per_gpu,
        "available_kv_gib": [round(b / GIB, 4) for b in m.available_kv_bytes]}
    assert set(data["per_gpu"]) == {"total_gib", "budget_gib", "weights_gib", "activation_gib", "non_torch_gib",
                                    "cuda_graph_gib", "kv_cache_gib", "num_layers"}


@pytest.mark.parametrize("max_num_seqs,max_num_batched_tokens", [
    (1, 8192), (2, 8192), (3, 8192), (4, 8192), (5, 8192), (100, 8192), (127, 8192), (128, 8192), (129, 8192),
    (135, 8192), (136, 8192), (200, 8192), (256, 8192), (257, 8192), (300, 8192), (1024, 271), (1024, 287),
    (1024, 255)])
def test_capture_sizes_listed_and_counted_agree(max_num_seqs, max_num_batched_tokens):
    base = make_plan(PlanRequest(model="Qwen/Qwen2.5-7B-Instruct", gpu="H100", max_model_len=4096))
    cfg = dataclasses.replace(base.config, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens)
    largest = int(largest_capture_size(cfg, base.gpu))
    sizes = cudagraph_capture_sizes(cfg, base.gpu)
    # the grid up to min(2 x max_num_seqs, 512, max_num_batched_tokens), which vLLM captures only on a grid point
    # or when it is max_num_batched_tokens
    ceiling = min(2 * max_num_seqs, 512, max_num_batched_tokens)
    assert largest == sizes[-1] <= ceiling and (largest == ceiling or ceiling < max_num_batched_tokens)
    assert sizes == sorted(set(sizes)) and len(sizes) == num_capture_sizes(cfg, base.gpu)
    # every batch up to the largest runs in the smallest captured graph that holds it
    for tokens in range(1, largest + 1):
        assert graph_padded(tokens, largest, max_num_seqs) == min(s for s in sizes if s >= tokens), tokens
