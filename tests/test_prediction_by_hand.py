"""Issue 12: the speed model pinned term by term on a toy configuration whose answer is worked out by hand, so a
change to any term (efficiencies, the kernel floor, KV reads, prefill chunks, the step overhead) fails here."""

import dataclasses

import pytest

from estimator.coefficients import PRIOR
from estimator.performance import PerfInputs, predict

TOY = dict(
    gpu="toy", mem_bw=1e12, peak_flops=1e14, attn_peak_flops=1e14, link="pcie", link_bw=1e10, tp=1, pp=1,
    dense_bytes=1e10, expert_bytes=0.0, num_experts=0, experts_per_token=0, flops_per_token=2e10, lm_head_flops=0.0,
    attn_flops_full=0.0, attn_flops_window=0.0, kv_full=1e5, kv_window=0.0, window=0, layers=10, hidden=4096,
    act_bytes=2, active_params_rank=1e10, batch_cap=64, max_num_batched_tokens=2048, eager=0, graph_max=0, graph_seqs=0,
    weight_only_low_bit=0, input_len=100, output_len=10, concurrency=1, request_rate=0.0, num_prompts=0, online=0,
    rocm=0)
COEFFICIENTS = dataclasses.replace(
    PRIOR, per_gpu={"toy": [0.5, 0.5, 1.0]}, size_exponent=0.0, layer_overhead_us=10.0, seq_overhead_us=0.0,
    request_overhead_ms=0.0, wave_sync=0.0, attention_bandwidth_factor=0.5)


def test_one_sequence_by_hand():
    p = predict(PerfInputs(**TOY), COEFFICIENTS)
    # decode step: 10 GB of weights at 0.5 x 1 TB/s = 20 ms; KV: 1e5 B/token x (100 + 10/2) tokens at
    # 0.5 x 0.5 x 1 TB/s = 0.042 ms; 2e10 FLOPs at 0.5 x 100 TFLOP/s = 0.4 ms is under the bandwidth time;
    # fixed: 1 ms per step + 10 layers x 10 us = 1.1 ms.
    tpot = 0.020 + 0.000042 + 0.0011
    assert float(p.tpot_ms) == pytest.approx(tpot * 1e3, rel=1e-9)
    # first token: one 100-token chunk, 2e12 FLOPs at 50 TFLOP/s = 40 ms (compute-bound), plus the fixed 1.1 ms
    ttft = 0.040 + 0.0011
    assert float(p.ttft_ms) == pytest.approx(ttft * 1e3, rel=1e-9)
    latency = ttft + 9 * tpot
    assert float(p.request_latency_ms) == pytest.approx(latency * 1e3, rel=1e-9)
    assert float(p.output_tokens_per_s) == pytest.approx(10 / latency, rel=1e-9)  # offline: no API server cap
    assert float(p.total_tokens_per_s) == pytest.approx(110 / latency, rel=1e-9)


def test_four_sequences_by_hand():
    p = predict(PerfInputs(**dict(TOY, concurrency=4)), COEFFICIENTS)
    # decode of 4: the weights once (20 ms), KV four times (0.168 ms), 8e10 FLOPs (1.6 ms) still under; and each
    # finished request's replacement brings 100 prompt tokens per 10 steps: 3 x 100 / 10 = 30 tokens a step,
    # arriving as one 100-token chunk in 30% of the steps (a 104-token step: 2.08e12 FLOPs = 41.6 ms).
    plain = 0.020 + 4 * 0.000042 + 0.0011
    mixed = max(0.020 + 4 * 0.000042, 104 * 2e10 / 5e13) + 0.0011
    tpot = 0.7 * plain + 0.3 * mixed
    assert float(p.tpot_ms) == pytest.approx(tpot * 1e3, rel=1e-9)
    # its own prompt rides with the 3 others' decode: 103 tokens = 2.06e12 FLOPs
    ttft = max(0.020 + 3 * 0.000042, 103 * 2e10 / 5e13) + 0.0011
    assert float(p.ttft_ms) == pytest.approx(ttft * 1e3, rel=1e-9)
    assert float(p.output_tokens_per_s) == pytest.approx(4 * 10 / (ttft + 9 * tpot), rel=1e-9)


def test_the_api_server_caps_what_an_online_server_passes_on():
    online = dataclasses.replace(COEFFICIENTS, api_request_ms=100.0, api_token_us=1000.0)
    p = predict(PerfInputs(**dict(TOY, concurrency=4, online=1)), online)
    cap = 1 / (0.100 + 10 * 0.001)  # 9.1 requests/s: the server, not the engine, binds
    offline = predict(PerfInputs(**dict(TOY, concurrency=4)), online)
    assert float(offline.output_tokens_per_s) / 10 > cap  # the engine alone would go faster
    assert float(p.output_tokens_per_s) == pytest.approx(cap * 10, rel=1e-9)


def test_tensor_parallel_adds_two_all_reduces_per_layer_by_hand():
    co = dataclasses.replace(COEFFICIENTS, tp_efficiency={"nvlink": 0.7, "xgmi": 0.55, "pcie": 0.45},
                             allreduce_latency_us={"nvlink": 8.0, "xgmi": 12.0, "pcie": 25.0})
    one = predict(PerfInputs(**TOY), co)
    two = predict(PerfInputs(**dict(TOY, tp=2)), co)  # the byte and FLOP counts are per rank already
    # one decode token: 4096 x 2 bytes, of which a ring all-reduce moves 2 x (2-1)/2 over the link at 0.45 x 10 GB/s,
    # after 25 us of latency; two all-reduces per layer, 10 layers
    per_all_reduce = 25e-6 + 4096 * 2 * 2 * 0.5 / (1e10 * 0.45)
    assert float(two.tpot_ms - one.tpot_ms) == pytest.approx(2 * 10 * per_all_reduce * 1e3, rel=1e-9)


def test_the_roofline_by_hand():
    from estimator.performance import roofline_step_seconds

    x = PerfInputs(**dict(TOY, attn_flops_full=1e6))
    # 8 sequences at 1,000 tokens of context: 10 GB of weights + 8 x 1,000 x 1e5 B of KV at 1 TB/s = 10.8 ms; the
    # compute side, 8 x 2e10 GEMM FLOPs at 100 TFLOP/s plus 8 x 1,000 x 1e6 attention FLOPs at 100 TFLOP/s,
    # is 1.68 ms: the step is bandwidth-bound.
    assert float(roofline_step_seconds(x, 8, 1000)) == pytest.approx(0.0108, rel=1e-9)
    # at 2,048 sequences the compute side binds: 4.096e13 / 1e14 + 2.048e12 / 1e14 s, above the 0.2148 s of bytes
    assert float(roofline_step_seconds(x, 2048, 1000)) == pytest.approx(0.4096 + 0.02048, rel=1e-9)


def test_the_interval_by_hand():
    import math

    import numpy as np

    p = predict(PerfInputs(**TOY), COEFFICIENTS)
    z80 = 1.2815515655446004  # the 90th percentile of a standard normal
    lo, hi = p.interval("tpot_ms")
    sigma = COEFFICIENTS.log_sigma_latency
    assert (lo, hi) == pytest.approx((float(p.tpot_ms) * math.exp(-z80 * sigma), float(p.tpot_ms) * math.exp(z80 * sigma)))
    lo, hi = p.interval("output_tokens_per_s")
    assert hi / lo == pytest.approx(math.exp(2 * z80 * COEFFICIENTS.log_sigma_throughput))
    # several configurations at once: arrays, and one of them by index
    many = predict(PerfInputs(**dict(TOY, concurrency=np.array([1, 4]))), COEFFICIENTS)
    lows, highs = many.interval("tpot_ms")
    assert lows.shape == (2,) and float(lows[0]) == pytest.approx(lo_tpot := p.interval("tpot_ms")[0])
    assert many.interval("tpot_ms", 0) == pytest.approx((lo_tpot, p.interval("tpot_ms")[1]))
    assert isinstance(many.interval("tpot_ms", 1)[0], float)


def test_taking_one_configuration_of_several():
    import numpy as np

    x = PerfInputs(**dict(TOY, concurrency=np.array([1, 4]), input_len=np.array([100, 200])))
    one = x.take(1)
    assert int(one.concurrency) == 4 and int(one.input_len) == 200 and one.gpu == "toy" and one.mem_bw == 1e12
    assert float(predict(one, COEFFICIENTS).tpot_ms) == pytest.approx(float(predict(x, COEFFICIENTS).tpot_ms[1]))


def _tpot(co, **changes):
    return float(predict(PerfInputs(**dict(TOY, **changes)), co).tpot_ms)


def test_the_factors_for_4_bit_weights_rocm_eager_mode_and_experts_by_hand():
    base = _tpot(COEFFICIENTS)  # 20 ms of weights + 0.042 ms of KV + 1.1 ms fixed (test_one_sequence_by_hand)
    # 4-bit weight-only GEMMs reach half the bandwidth on the weights: 20 ms more
    low = dataclasses.replace(COEFFICIENTS, low_bit_weight_factor=0.5, low_bit_compute_factor=0.5)
    assert _tpot(low, weight_only_low_bit=1) == pytest.approx(base + 20.0, rel=1e-9)
    assert _tpot(low) == pytest.approx(base, rel=1e-9)  # ... and nothing changes for 16-bit weights
    # ROCm: attention reaches half its bandwidth share, so the KV reads take twice as long
    rocm = dataclasses.replace(COEFFICIENTS, rocm_attention_factor=0.5)
    assert _tpot(rocm, rocm=1) == pytest.approx(base + 0.042, rel=1e-9)
    assert _tpot(rocm) == pytest.approx(base, rel=1e-9)
    # eager mode: 100 us more per layer and step, 10 layers
    eager = dataclasses.replace(COEFFICIENTS, eager_overhead_us_per_layer=100.0)
    assert _tpot(eager, eager=1) == pytest.approx(base + 1.0, rel=1e-9)
    # routed experts: one sequence reads 2 of 8 experts (2e10 of 8e10 bytes) at the MoE share (0.5) of 0.5 TB/s
    moe = dataclasses.replace(COEFFICIENTS, moe_bandwidth_factor=0.5, rocm_moe_factor=0.5, rocm_attention_factor=1.0)
    experts = dict(expert_bytes=8e10, num_experts=8, experts_per_token=2)
    assert _tpot(moe, **experts) == pytest.approx(base + 80.0, rel=1e-9)
    assert _tpot(moe, rocm=1, **experts) == pytest.approx(base + 160.0, rel=1e-9)  # ROCm's fused MoE: half again
    # factors above 1 would beat the datasheet: clipped to 1
    fast = dataclasses.replace(COEFFICIENTS, low_bit_weight_factor=1.7, attention_bandwidth_factor=1.7,
                               moe_bandwidth_factor=1.7)
    assert _tpot(fast, weight_only_low_bit=1, kv_full=0.0, **experts) == pytest.approx(20.0 + 40.0 + 1.1, rel=1e-9)


def test_an_open_loop_settles_where_batch_is_rate_times_latency():
    p = predict(PerfInputs(**dict(TOY, concurrency=0, request_rate=20.0, online=1)), COEFFICIENTS)
    assert float(p.batch) > 2 and not bool(p.saturated)
    assert float(p.batch) == pytest.approx(20.0 * float(p.request_latency_ms) / 1e3, rel=1e-3)
    assert float(p.output_tokens_per_s) == pytest.approx(20.0 * 10, rel=1e-9)
    slow = predict(PerfInputs(**dict(TOY, concurrency=0, request_rate=10.0, online=1)), COEFFICIENTS)
    assert 1 < float(slow.batch) < float(p.batch)  # fewer requests at once at a lower rate
    # a rate so low that one request is done before the next arrives still runs a batch of one
    idle = predict(PerfInputs(**dict(TOY, concurrency=0, request_rate=0.1, online=1)), COEFFICIENTS)
    assert float(idle.batch) == 1.0
