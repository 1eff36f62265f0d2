"""Issue 12: the speed model's engine pinned around its step function. `Engine.stage_step` is priced by hand in
test_prediction_by_hand.py; here it is the unit, and what is built on it is checked term by term: pipeline
microbatches and hand-offs, the prefill chunks a running batch leaves room for, the closed loop's waves and queue,
and the open loop's settling."""

import dataclasses
import math

import pytest

from estimator.performance import Engine, PerfInputs, predict
from tests.test_prediction_by_hand import COEFFICIENTS, TOY

CO = dataclasses.replace(COEFFICIENTS, pp_transfer_latency_us=50.0, request_overhead_ms=7.0, seq_overhead_us=3.0,
                         wave_sync=1.0)


def engine(**changes) -> Engine:
    return Engine(PerfInputs(**dict(TOY, **changes)), CO)


def test_pipeline_stages_run_microbatches_and_hand_off_between_stages():
    e = engine(pp=2)
    hand_off = 50e-6
    assert e.step(1, 0) == pytest.approx(2 * e.stage_step(1, 0) + hand_off, rel=1e-12)  # one sequence: one micro
    assert e.step(8, 100) == pytest.approx(2 * e.stage_step(4, 50) + hand_off, rel=1e-12)  # split in two
    assert e.step(0, 300) == pytest.approx(2 * e.stage_step(0, 300) + hand_off, rel=1e-12)  # a prompt alone
    e4 = engine(pp=4)
    assert e4.step(2, 0) == pytest.approx(4 * e4.stage_step(1, 0) + 3 * hand_off, rel=1e-12)  # 2 of 4 stages
    one = engine()
    assert one.step(8, 100) == pytest.approx(one.stage_step(8, 100), rel=1e-12)  # no pipeline: no hand-off


def test_sequence_overhead_is_per_decoding_sequence():
    e, without = engine(), Engine(PerfInputs(**TOY), dataclasses.replace(CO, seq_overhead_us=0.0))
    assert e.stage_step(5, 40) - without.stage_step(5, 40) == pytest.approx(5 * 3e-6, rel=1e-9)


@pytest.mark.parametrize("batch,mixed_prefill,own_chunk", [
    (1, None, 100),  # alone: no other prompts; its own prompt in one 100-token chunk
    (3, 100, 100),  # 2 others x 100 / 10 = 20 prompt tokens per step: a 100-token chunk in a fifth of the steps
    (30, 290, 100),  # 29 x 10 = 290 > one chunk: every step carries all 290 prompt tokens (the budget allows)
    (2000, 48, 49),  # the batch leaves 48 tokens of the 2,048 budget; its own prompt in chunks of 49
])
def test_a_running_batch_shares_each_step_with_prompt_chunks(batch, mixed_prefill, own_chunk):
    e = engine(input_len=100, output_len=10, max_num_batched_tokens=2048)
    ttft, tpot, latency = e.cycle(batch)
    plain = e.step(batch, 0.0)
    prefill = (batch - 1) * 100 / 10
    if mixed_prefill is None:
        assert tpot == pytest.approx(plain, rel=1e-12)
    elif prefill <= 100:
        share = prefill / 100
        assert tpot == pytest.approx((1 - share) * plain + share * e.step(batch, mixed_prefill), rel=1e-12)
    else:
        assert tpot == pytest.approx(e.step(batch, mixed_prefill), rel=1e-12)
    chunks = math.ceil(100 / own_chunk)
    assert ttft == pytest.approx(7e-3 + chunks * e.step(batch - 1, own_chunk), rel=1e-12)
    assert latency == pytest.approx(ttft + 9 * tpot, rel=1e-12)


def test_a_closed_loop_waits_for_the_waves_prompts_and_for_a_slot():
    x = PerfInputs(**dict(TOY, concurrency=16, batch_cap=64))
    e = Engine(x, CO)
    p = predict(x, CO)
    ttft, tpot, latency = e.cycle(16)
    # 16 requests start together: each waits on average for half of the other 15 prompts, prefilled in chunks of
    # min(budget, 16 x 100) tokens
    burst = 15 * 100 / 2 / 1600 * e.step(0.0, 1600)
    assert float(p.ttft_ms) == pytest.approx((ttft + burst) * 1e3, rel=1e-9)
    assert float(p.batch) == 16
    # 96 users but 64 slots: the 32 waiting ones wait half a latency each on average (96/64 - 1)
    crowded = PerfInputs(**dict(TOY, concurrency=96, batch_cap=64))
    q = predict(crowded, CO)
    e64 = Engine(crowded, CO)
    ttft64, _, latency64 = e64.cycle(64)
    burst64 = 63 * 100 / 2 / 2048 * e64.step(0.0, 2048)
    assert float(q.ttft_ms) == pytest.approx((ttft64 + burst64 + 0.5 * latency64) * 1e3, rel=1e-9)
    assert float(q.request_latency_ms) == pytest.approx((latency64 + 0.5 * latency64) * 1e3, rel=1e-9)
    # the same 96 prompts sent at once and no more (an offline batch): the queue drains in waves, half as long
    drained = PerfInputs(**dict(TOY, concurrency=96, batch_cap=64, num_prompts=96))
    assert float(predict(drained, CO).request_latency_ms) == pytest.approx((latency64 + 0.25 * latency64) * 1e3,
                                                                           rel=1e-9)


def test_an_open_loop_settles_where_batch_equals_rate_times_latency():
    x = PerfInputs(**dict(TOY, concurrency=0, request_rate=20.0, batch_cap=64))
    p = predict(x, CO)
    _, _, latency = Engine(x, CO).cycle(float(p.batch))
    assert float(p.batch) == pytest.approx(20.0 * latency, rel=1e-6)
    ttft, _, _ = Engine(x, CO).cycle(float(p.batch))
    assert float(p.ttft_ms) == pytest.approx(ttft * 1e3, rel=1e-6)  # arrivals are spread out: no wave to wait for
    assert float(p.output_tokens_per_s) == pytest.approx(20.0 * 10, rel=1e-9)  # it keeps up: rate x output
    assert not bool(p.saturated)
    # a rate beyond what 64 slots sustain: saturated, TTFT unbounded
    flooded = predict(PerfInputs(**dict(TOY, concurrency=0, request_rate=1e4, batch_cap=64)), CO)
    assert bool(flooded.saturated) and math.isinf(float(flooded.ttft_ms))


def test_a_finite_run_sent_faster_than_it_is_served_waits_for_the_prompts_before_it():
    # 1000 prompts at 1e4/s into 64 slots: request k starts when k - 64 have finished, at (k - 64) / served
    # seconds, and arrived at k / 1e4; the mean wait over all of them, by summing, not by the closed form
    run = PerfInputs(**dict(TOY, concurrency=0, request_rate=1e4, batch_cap=64, num_prompts=1000))
    p = predict(run, CO)
    ttft, _, latency = Engine(run, CO).cycle(64.0)
    served = 64 / latency
    waits = [max(0.0, (k - 64) / served - k / 1e4) for k in range(1, 1001)]
    wait = sum(waits) / 1000
    assert bool(p.saturated) and float(p.batch) == pytest.approx(64, rel=1e-9)
    assert float(p.ttft_ms) == pytest.approx((ttft + wait) * 1e3, rel=0.01)
    assert float(p.request_latency_ms) == pytest.approx((latency + wait) * 1e3, rel=0.01)
    assert float(p.output_tokens_per_s) == pytest.approx(served * 10, rel=1e-9)  # what the slots finish
    # fewer prompts than keep 64 slots busy past their arrival: no wait at all
    few = predict(PerfInputs(**dict(TOY, concurrency=0, request_rate=1e4, batch_cap=64, num_prompts=60)), CO)
    assert float(few.ttft_ms) == pytest.approx(ttft * 1e3, rel=1e-9)


def test_a_rate_under_one_request_per_second_is_an_open_loop_too():
    x = PerfInputs(**dict(TOY, concurrency=0, request_rate=0.5, batch_cap=64))
    p = predict(x, CO)
    e = Engine(x, CO)
    ttft, _, latency = e.cycle(float(p.batch))
    assert float(p.batch) == pytest.approx(max(0.5 * latency, 1.0), rel=1e-6)  # a lone request at a time
    assert float(p.output_tokens_per_s) == pytest.approx(0.5 * 10, rel=1e-9)
    assert float(p.ttft_ms) == pytest.approx(ttft * 1e3, rel=1e-9)  # no wave, no queue: requests come one by one
    assert float(p.request_latency_ms) == pytest.approx(latency * 1e3, rel=1e-9)


def test_open_and_closed_loops_side_by_side_in_one_array():
    import numpy as np

    both = PerfInputs(**dict(TOY, concurrency=np.array([8.0, 0.0]), request_rate=np.array([0.0, 0.5]), batch_cap=64))
    p = predict(both, CO)
    closed = predict(PerfInputs(**dict(TOY, concurrency=8, batch_cap=64)), CO)
    open_ = predict(PerfInputs(**dict(TOY, concurrency=0, request_rate=0.5, batch_cap=64)), CO)
    assert p.batch[0] == closed.batch and p.batch[1] == pytest.approx(float(open_.batch), rel=1e-9)
    assert p.ttft_ms[1] == pytest.approx(float(open_.ttft_ms), rel=1e-9)


def test_one_output_token_and_a_full_step_budget():
    e = engine(input_len=100, output_len=1, max_num_batched_tokens=2048)
    ttft, tpot, latency = e.cycle(4)
    assert latency == ttft  # the first token is the last
    # 3 others x 100 prompt tokens per output token: 300 > a 100-token chunk, every step carries them
    assert tpot == pytest.approx(e.step(4, 300), rel=1e-12)
    p = predict(PerfInputs(**dict(TOY, output_len=1, concurrency=4)), CO)
    assert float(p.total_tokens_per_s) == pytest.approx(float(p.output_tokens_per_s) * 101, rel=1e-12)
    # a batch as large as the budget leaves one token of room: prompts advance a token per step
    full = engine(input_len=100, output_len=10, max_num_batched_tokens=64)
    _, tpot64, _ = full.cycle(64)
    assert tpot64 == pytest.approx(full.step(64, 1), rel=1e-12)
    ttft64, _, _ = full.cycle(64)
    assert ttft64 == pytest.approx(7e-3 + 100 * full.step(63, 1), rel=1e-12)


def test_one_slot_and_one_prompt():
    one_slot = PerfInputs(**dict(TOY, concurrency=4, batch_cap=1))
    p = predict(one_slot, CO)
    _, _, latency = Engine(one_slot, CO).cycle(1)
    assert float(p.batch) == 1 and float(p.request_latency_ms) == pytest.approx((latency + 3 * latency) * 1e3)
    single = predict(PerfInputs(**dict(TOY, concurrency=0, num_prompts=1, batch_cap=64)), CO)
    assert float(single.batch) == 1  # an offline run of one prompt runs one sequence


def test_itl_is_the_time_per_output_token():
    p = predict(PerfInputs(**dict(TOY, concurrency=4)), CO)
    assert float(p.itl_ms) == float(p.tpot_ms) > 1


def test_saturation_starts_just_above_what_the_slots_or_the_api_server_sustain():
    slow = dict(TOY, output_len=1000, concurrency=0, batch_cap=4)
    _, _, latency = Engine(PerfInputs(**dict(slow, request_rate=1.0)), CO).cycle(4)
    sustained = 4 / latency  # requests/s that 4 slots serve
    assert not bool(predict(PerfInputs(**dict(slow, request_rate=0.99 * sustained)), CO).saturated)
    # under one request/s but longer than a second each: still no wave in the first token
    steady = PerfInputs(**dict(slow, request_rate=0.9, batch_cap=64))
    q = predict(steady, CO)
    assert float(q.batch) > 1
    assert float(q.ttft_ms) == pytest.approx(Engine(steady, CO).cycle(float(q.batch))[0] * 1e3, rel=1e-6)
    assert bool(predict(PerfInputs(**dict(slow, request_rate=1.5 * sustained)), CO).saturated)
    # the API server: each request and streamed token costs it time, whatever the engine could do
    served = dict(TOY, concurrency=0, batch_cap=4096, online=1, output_len=10)
    busy = dataclasses.replace(CO, api_request_ms=500.0)  # a server passing on about 2 requests/s
    frontend = 1 / (busy.api_request_ms / 1e3 + 10 * busy.api_token_us * 1e-6)
    assert not bool(predict(PerfInputs(**dict(served, request_rate=0.99 * frontend)), busy).saturated)
    assert bool(predict(PerfInputs(**dict(served, request_rate=1.5 * frontend)), busy).saturated)


def test_an_api_server_that_binds_stretches_every_token():
    # a closed loop of 64 users through the API server: the engine could finish more requests per second than
    # the server passes on, so each token reaches its client later by the same factor
    x = PerfInputs(**dict(TOY, concurrency=64, batch_cap=64, online=1))
    p = predict(x, dataclasses.replace(CO, api_request_ms=50.0))
    e = Engine(x, dataclasses.replace(CO, api_request_ms=50.0))
    _, tpot, latency = e.cycle(64)
    frontend = 1 / (50.0 / 1e3 + 10 * CO.api_token_us * 1e-6)
    stretch = (64 / latency) / frontend
    assert stretch > 1
    assert float(p.tpot_ms) == pytest.approx(tpot * stretch * 1e3, rel=1e-9)
    assert float(p.request_latency_ms) == pytest.approx(latency * stretch * 1e3, rel=1e-9)
    assert float(p.output_tokens_per_s) == pytest.approx(frontend * 10, rel=1e-9)


def test_windowed_layers_attention_and_the_lm_head_add_to_a_step():
    """Decode reads each windowed layer's KV over min(context, window) tokens, attention adds FLOPs per context
    token (a decoding sequence's context: prompt + half the output; a prompt token's: half the prompt), and the
    LM head runs once per decoding sequence."""
    from estimator.performance import step_work

    x = PerfInputs(**dict(TOY, kv_window=3e4, window=64, attn_flops_full=1e6, attn_flops_window=5e5,
                          lm_head_flops=2e9))
    experts, kv, gemm, attn = step_work(x, 4, 200, 105.0, 100.0, 204)
    assert kv == pytest.approx(4 * (1e5 * 105 + 3e4 * 64))
    assert gemm == pytest.approx(2e10 * 204 + 2e9 * 4)
    assert attn == pytest.approx(4 * (1e6 * 105 + 5e5 * 64) + 200 * (1e6 * 100 + 5e5 * 64))
    assert experts == 0
    e = Engine(x, CO)
    assert (e.ctx_dec, e.ctx_pre) == (105.0, 50.0)


def test_rates_are_clipped_at_the_datasheet_and_rocm_attention_is_slower():
    import numpy as np

    from estimator.performance import achieved_rates

    x = PerfInputs(**dict(TOY, link=np.array(["pcie"]), gpu=np.array(["toy"]), rocm=1, weight_only_low_bit=1))
    # factors above 1 are refused: nothing runs faster than the datasheet
    over = dataclasses.replace(CO, attention_bandwidth_factor=1.5, rocm_attention_factor=1.5, rocm_moe_factor=1.5,
                               low_bit_compute_factor=1.5, tp_efficiency={"pcie": 1.5, "nvlink": 1.5, "xgmi": 1.5},
                               per_gpu={"toy": [1.5, 1.5, 1.0]})
    at_one = dataclasses.replace(over, attention_bandwidth_factor=1.0, rocm_attention_factor=1.0, rocm_moe_factor=1.0,
                                 low_bit_compute_factor=1.0, tp_efficiency={"pcie": 1.0, "nvlink": 1.0, "xgmi": 1.0},
                                 per_gpu={"toy": [1.0, 1.0, 1.0]})
    r_over, r_one = achieved_rates(x, over), achieved_rates(x, at_one)
    for field in ("kv_bw", "flops_rate", "attn_rate", "tp_eff", "moe_factor", "weight_bw"):
        assert np.allclose(getattr(r_over, field), getattr(r_one, field)), field
    # on ROCm attention runs at rocm_attention_factor of the CUDA rate, both for KV reads and attention FLOPs
    half = dataclasses.replace(at_one, rocm_attention_factor=0.5)
    assert np.allclose(achieved_rates(x, half).attn_rate, 0.5 * r_one.attn_rate)
    assert np.allclose(achieved_rates(x, half).kv_bw, 0.5 * r_one.kv_bw)
    # a small model reaches a lower share of the peak: the size term scales the compute efficiency down
    small = dataclasses.replace(at_one, per_gpu={"toy": [0.5, 0.5, 1.0]}, size_exponent=0.5,
                                size_reference_params=4e10)  # 1e10 / 4e10 = 1/4 -> scale 1/2
    assert np.allclose(achieved_rates(PerfInputs(**dict(TOY, rocm=0)), small).attn_rate, 1e14 * 0.5 * 0.5)
    assert np.allclose(achieved_rates(PerfInputs(**dict(TOY, rocm=0)), small).flops_rate, 1e14 * 0.5 * 0.5)
