"""The memory plan's own bookkeeping: every figure it reports adds up, for plans that fit and for each way a plan
fails. These pin what `estimator plan --json` says per GPU and per stage (found unpinned by mutation testing)."""

import dataclasses
import math

import pytest

from estimator.gpus import GIB
from estimator.memory import cudagraph_capture_sizes, graph_padded, largest_capture_size, num_capture_sizes
from estimator.plan import PlanRequest, make_plan

CASES = {
    "fits, max_num_seqs binds": dict(model="Qwen/Qwen2.5-7B-Instruct", gpu="H100", max_model_len=2048,
                                     max_num_seqs=256),
    "fits, the KV pool binds": dict(model="Qwen/Qwen2.5-7B-Instruct", gpu="L4", max_model_len=32768),
    "three uneven pipeline stages": dict(model="google/gemma-2-27b-it", gpu="A100-SXM4-40GB",
                                         pipeline_parallel_size=3),
    "weights do not fit": dict(model="meta-llama/Llama-3.1-70B-Instruct", gpu="L40S"),
    "overheads do not fit": dict(model="Qwen/Qwen2.5-7B-Instruct", gpu="L4", gpu_memory_utilization=0.68),
    "one request does not fit": dict(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L4", max_model_len=131072),
}


# Function-scoped, so mutation testing (which maps each test to the code it runs) sees every test use the plan.
@pytest.fixture(params=CASES, ids=list(CASES))
def case(request):
    return request.param, make_plan(PlanRequest(**CASES[request.param]))


@pytest.fixture
def plan(case):
    return case[1]


def test_every_case_is_the_case_it_names(case):
    name, plan = case
    m = plan.memory
    binding = {"fits, max_num_seqs binds": (True, "max_num_seqs"), "fits, the KV pool binds": (True, "kv_cache"),
               "weights do not fit": (False, "weights"), "overheads do not fit": (False, "overheads"),
               "one request does not fit": (False, "kv_cache")}
    if name in binding:
        assert (m.fits, m.binding_constraint) == binding[name]
    else:
        assert m.fits and len(m.per_stage) == 3 and len({s.num_layers for s in m.per_stage}) == 2


def test_each_stage_s_memory_adds_up_to_the_budget(plan):
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


def test_the_binding_stage_is_the_one_that_limits(plan):
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
    if m.fits:
        assert m.max_concurrency == m.num_gpu_blocks / m.blocks_per_request
        assert m.kv_cache_tokens == int(m.max_concurrency * plan.config.max_model_len)
        assert f"max_num_seqs={plan.config.max_num_seqs}" in m.reason
    elif m.binding_constraint == "kv_cache":
        assert m.reason.startswith(f"one request of max_model_len {plan.config.max_model_len} needs ")


def test_the_json_says_exactly_what_the_plan_holds(plan):
    m = plan.memory
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


@pytest.mark.parametrize("max_num_seqs", [1, 2, 3, 4, 5, 100, 127, 128, 129, 135, 136, 200, 256, 257, 300])
def test_capture_sizes_listed_and_counted_agree(max_num_seqs):
    base = make_plan(PlanRequest(model="Qwen/Qwen2.5-7B-Instruct", gpu="H100", max_model_len=4096))
    cfg = dataclasses.replace(base.config, max_num_seqs=max_num_seqs, max_num_batched_tokens=8192)
    largest = int(largest_capture_size(cfg, base.gpu))
    sizes = cudagraph_capture_sizes(cfg, base.gpu)
    assert largest == min(2 * max_num_seqs, 512)
    assert sizes == sorted(set(sizes)) and sizes[-1] <= largest and len(sizes) == num_capture_sizes(cfg, base.gpu)
    # every batch up to the largest runs in the smallest captured graph that holds it
    for tokens in range(1, largest + 1):
        assert graph_padded(tokens, largest) == min(s for s in sizes + [largest] if s >= tokens)
