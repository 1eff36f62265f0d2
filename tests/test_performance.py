"""The performance model: physical bounds and the shapes a serving engine shows."""

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from estimator import architecture, gpus
from estimator.coefficients import DEFAULT, Coefficients
from estimator.errors import PlannerError
from estimator.model_source import catalog_configs, catalog_ids
from estimator.performance import compute_peak, perf_inputs, predict, roofline_step_seconds, weight_split
from estimator.plan import PlanRequest, make_plan
from estimator.workload import Workload


def inputs(model, gpu="H100", workload=None, **flags):
    workload = workload or Workload()
    plan = make_plan(PlanRequest(model=model, gpu=gpu, **flags), workload=workload)
    quant = plan.arch.quant if plan.arch.quant else (
        __import__("estimator.quantization", fromlist=["online"]).online(plan.config.quantization)
        if plan.config.quantization else None)
    return plan, perf_inputs(plan.arch, plan.gpu, plan.config, quant, plan.memory.num_gpu_blocks, workload)


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(catalog_ids()), gpu=st.sampled_from(["A10G", "L40S", "A100-SXM4-80GB", "H100", "H200",
                                                                  "B200", "MI300X", "RTX-4090"]),
       concurrency=st.sampled_from([1, 4, 32, 256]), input_len=st.sampled_from([128, 2000]),
       output_len=st.sampled_from([16, 512]))
def test_never_faster_than_the_roofline(model, gpu, concurrency, input_len, output_len):
    workload = Workload(input_len=input_len, output_len=output_len, concurrency=concurrency)
    sparse = "index_topk" in catalog_configs()[model]
    assume(not (sparse and gpus.lookup(gpu).vendor == "nvidia" and gpus.lookup(gpu).compute_capability < 9.0))
    try:
        plan, x = inputs(model, gpu, workload, max_model_len=4096, tensor_parallel_size=1)
    except PlannerError as err:  # a model of a shorter context (TinyLlama's 2,048) cannot take this workload
        assume("exceeds the model's maximum" not in str(err))
        raise
    if not plan.memory.fits:
        return
    p = predict(x, DEFAULT)
    batch = float(p.batch)
    # A decode step for `batch` sequences cannot beat the datasheet bandwidth and FLOP/s.
    bound = float(roofline_step_seconds(x, batch, input_len + output_len / 2))
    assert float(p.tpot_ms) / 1e3 >= bound
    assert float(p.output_tokens_per_s) <= batch / bound * (1 + 1e-9)


def test_decode_per_user_falls_and_total_rises_until_the_batch_caps():
    per_user, total = [], []
    for n in (1, 2, 4, 8, 16, 32, 64, 128):
        plan, x = inputs("meta-llama/Llama-3.1-8B-Instruct", "H100", Workload(concurrency=n), max_model_len=4096,
                         max_num_seqs=32)
        p = predict(x, DEFAULT)
        per_user.append(1000 / float(p.tpot_ms))
        total.append(float(p.output_tokens_per_s))
    assert all(a > b for a, b in pairwise(per_user[:6]))  # more users, slower tokens for each
    assert all(a < b for a, b in pairwise(total[:6]))  # ... but more tokens in all
    assert total[5] == pytest.approx(total[6]) == pytest.approx(total[7])  # max_num_seqs=32: the rest queue


def test_queueing_beyond_the_batch_shows_in_ttft():
    _, x32 = inputs("meta-llama/Llama-3.1-8B-Instruct", "H100", Workload(concurrency=32), max_num_seqs=32,
                    max_model_len=4096)
    _, x64 = inputs("meta-llama/Llama-3.1-8B-Instruct", "H100", Workload(concurrency=64), max_num_seqs=32,
                    max_model_len=4096)
    a, b = predict(x32, DEFAULT), predict(x64, DEFAULT)
    assert float(b.ttft_ms) > float(a.ttft_ms) + 0.9 * float(a.request_latency_ms)


def test_moe_computes_only_active_parameters_but_reads_touched_experts():
    arch = architecture.from_config(catalog_configs()["mistralai/Mixtral-8x7B-Instruct-v0.1"], "m")
    dense, expert, flops, head, active = weight_split(arch, 1, 1, 2, None)
    embeddings, norms = 2 * 32000 * 4096, (2 * 32 + 1) * 4096
    assert flops == pytest.approx(2 * (arch.active_params - embeddings - norms))  # top-2 of 8 experts per token
    assert expert == pytest.approx(32 * 8 * 3 * 4096 * 14336 * 2)  # all experts stay in memory
    _, x = inputs("mistralai/Mixtral-8x7B-Instruct-v0.1", "H200", Workload(concurrency=1), max_model_len=4096)
    one = float(roofline_step_seconds(x, 1, 1000))
    many = float(roofline_step_seconds(x, 64, 1000))
    # One token reads 2 of 8 experts per layer; 64 tokens read nearly all of them.
    assert many > 2.5 * one


def test_more_bandwidth_is_never_slower_at_the_same_configuration():
    flags = dict(max_model_len=8192, max_num_seqs=64, max_num_batched_tokens=4096, tensor_parallel_size=2)
    for model in ("meta-llama/Llama-3.1-70B-Instruct", "Qwen/Qwen3-30B-A3B", "openai/gpt-oss-120b"):
        for workload in (Workload(concurrency=1), Workload(concurrency=48), Workload()):
            previous = None
            for gpu in ("A100-SXM4-80GB", "H100", "H200", "B200"):
                plan, x = inputs(model, gpu, workload, **flags)
                if not plan.memory.fits:
                    continue
                p = predict(x, DEFAULT)
                if previous is not None:
                    assert float(p.output_tokens_per_s) >= float(previous.output_tokens_per_s), (model, gpu)
                    if float(p.batch) == float(previous.batch):  # a bigger KV pool may run more sequences
                        assert float(p.tpot_ms) <= float(previous.tpot_ms), (model, gpu)
                previous = p


def test_fp8_uses_fp8_tensor_cores_only_where_they_exist():
    from estimator.quantization import online

    fp8 = online("fp8")
    assert compute_peak(gpus.lookup("H100"), fp8, "bfloat16") == 1978.9e12
    assert compute_peak(gpus.lookup("A100-SXM4-80GB"), fp8, "bfloat16") == 312e12  # weight-only FP8 (Marlin)
    assert compute_peak(gpus.lookup("T4"), None, "float16") == 65e12


def test_fp8_weights_speed_up_memory_bound_decode():
    _, bf16 = inputs("meta-llama/Llama-3.1-70B-Instruct", "H100", Workload(concurrency=1), tensor_parallel_size=4,
                     max_model_len=4096)
    _, fp8 = inputs("meta-llama/Llama-3.1-70B-Instruct", "H100", Workload(concurrency=1), tensor_parallel_size=4,
                    max_model_len=4096, quantization="fp8")
    a, b = predict(bf16, DEFAULT), predict(fp8, DEFAULT)
    assert 1.3 < float(a.tpot_ms) / float(b.tpot_ms) < 2.0


def test_tensor_parallel_over_pcie_pays_more_than_over_nvlink():
    _, nvlink = inputs("meta-llama/Llama-3.1-70B-Instruct", "H100", Workload(concurrency=16), tensor_parallel_size=4,
                       max_model_len=4096)
    _, pcie = inputs("meta-llama/Llama-3.1-70B-Instruct", "H100-PCIE", Workload(concurrency=16),
                     tensor_parallel_size=4, max_model_len=4096)
    same_memory = Coefficients(name="x")
    assert float(predict(pcie, same_memory).tpot_ms) > float(predict(nvlink, same_memory).tpot_ms)


def test_request_rate_beyond_capacity_is_saturated_and_says_so():
    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L4", max_model_len=4096),
                     workload=Workload(request_rate=500.0))
    d = plan.to_dict()["performance"]
    assert d["saturated"] is True and d["ttft_ms"] is None
    assert any("exceeds what this configuration sustains" in w for w in plan.warnings)
    light = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L4", max_model_len=4096),
                      workload=Workload(request_rate=0.2))
    assert light.to_dict()["performance"]["saturated"] is False
    assert light.performance.output_tokens_per_s == pytest.approx(0.2 * 128)


def test_intervals_bracket_the_estimate_from_the_coefficients_spread():
    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100"),
                     workload=Workload(concurrency=8))
    perf = plan.to_dict()["performance"]
    lo, hi = perf["interval"]["output_tokens_per_s"]
    assert lo < perf["output_tokens_per_s"] < hi
    assert hi / perf["output_tokens_per_s"] == pytest.approx(np.exp(1.2816 * DEFAULT.log_sigma_throughput), rel=1e-3)
    assert perf["coefficients_source"] == "default"


def test_plan_json_gains_performance_and_workload():
    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100"),
                     workload=Workload(input_len=500, output_len=200, concurrency=4)).to_dict()
    assert set(plan["performance"]) >= {"output_tokens_per_s", "total_tokens_per_s", "ttft_ms", "tpot_ms", "itl_ms",
                                        "request_latency_ms", "interval", "coefficients_source"}
    assert plan["workload"] == {"input_len": 500, "output_len": 200, "concurrency": 4, "request_rate": None,
                                "ttft_ms": None, "tpot_ms": None, "goal": "balanced"}
    offline = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100")).to_dict()
    assert offline["performance"]["mode"] == "offline" and offline["workload"]["concurrency"] is None


def test_custom_device_without_speed_says_so():
    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu_memory_gib=40))
    assert plan.performance is None and any("no speed estimate" in w for w in plan.warnings)


def test_the_speed_model_and_the_memory_plan_put_the_same_tensors_on_each_stage():
    # Llama-3.2-1B ties its LM head to the embeddings: with PP the last stage holds its own copy, and the speed
    # model must read those bytes and run the LM head's FLOPs there, as the memory plan counts them.
    from estimator.architecture import from_config
    from estimator.gpus import lookup
    from estimator.memory import pp_layer_ranges, weights_per_stage
    from estimator.model_source import catalog_configs
    from estimator.serve_config import resolve

    model = next(m for m, c in catalog_configs().items() if c.get("tie_word_embeddings") and "Llama-3.2" in m)
    arch = from_config(catalog_configs()[model], model)
    cfg, quant, _ = resolve(arch, lookup("H100"), 2, pipeline_parallel_size=2, max_model_len=4096)
    per_stage = weights_per_stage(arch, cfg, quant, allocated=False)
    dense, expert, _, head, _ = weight_split(arch, 1, 2, cfg.dtype_bytes, quant)
    slowest = max(range(2), key=lambda s: len(pp_layer_ranges(arch.num_layers, 2)[s]))
    rope = sum(elements * (size or cfg.dtype_bytes) for elements, size in arch.rope_tables)  # not read per step
    assert dense + expert == pytest.approx(per_stage[slowest] - rope)
    assert (head > 0) == (slowest == 1)
