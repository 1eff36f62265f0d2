"""Issue 12: what the speed model is fed, worked out by hand: the peaks it divides by, the attention work per
context token, the batch the KV pool holds, and the rates after the fitted efficiencies. The twin of
test_prediction_by_hand.py, which pins the model itself."""

import dataclasses

import numpy as np
import pytest

from estimator.architecture import ModelArch
from estimator.gpus import lookup
from estimator.inventory import AttentionLayer
from estimator.performance import (
    PerfInputs,
    attention_terms,
    batch_cap,
    compute_peak,
    half_precision_peak,
    predict,
    weight_only_low_bit,
)
from estimator.plan import PlanRequest, make_plan
from estimator.quantization import QuantScheme
from estimator.workload import Workload
from tests.test_prediction_by_hand import COEFFICIENTS, TOY

# A made-up GPU whose 16-bit rates differ, so a rule that picks the wrong one shows.
ODD = dataclasses.replace(lookup("H100"), name="odd", bf16_tflops=100.0, fp16_tflops=200.0, fp8_tflops=400.0)
FP8 = QuantScheme("fp8", 8, fp8_compute=True)
INT8 = QuantScheme("w8a8", 8, int8_compute=True)
AWQ = QuantScheme("awq", 4, group_size=128)


def test_the_16_bit_peak_follows_the_dtype():
    assert half_precision_peak(ODD, "bfloat16") == 100.0
    assert half_precision_peak(ODD, "float16") == 200.0
    assert half_precision_peak(dataclasses.replace(ODD, bf16_tflops=None), "bfloat16") == 200.0  # no bf16: fp16
    assert half_precision_peak(dataclasses.replace(ODD, fp16_tflops=None), "float16") == 100.0
    assert half_precision_peak(dataclasses.replace(ODD, bf16_tflops=None, fp16_tflops=None), "float16") == 0.0


def test_the_gemm_peak_follows_the_quantization():
    assert compute_peak(ODD, None, "float16") == 200e12
    assert compute_peak(ODD, FP8, "bfloat16") == 400e12  # FP8 tensor cores
    assert compute_peak(dataclasses.replace(ODD, fp8_tflops=None), FP8, "bfloat16") == 100e12  # none: 16-bit
    assert compute_peak(ODD, INT8, "bfloat16") == 400e12  # the int8 rate is the FP8 rate ...
    assert compute_peak(dataclasses.replace(ODD, fp8_tflops=None), INT8, "float16") == 400e12  # ... else 2 x 16-bit
    assert compute_peak(ODD, AWQ, "float16") == 200e12  # weight-only: the GEMM runs in 16 bits
    assert [weight_only_low_bit(q) for q in (None, FP8, INT8, AWQ)] == [0, 0, 0, 1]


def toy_arch(attention, num_heads=8) -> ModelArch:
    return ModelArch(architecture="LlamaForCausalLM", model_type="llama", hidden_size=1000,
                     num_layers=len(attention), vocab_size=1000, num_heads=num_heads, num_kv_heads=2, head_dim=100,
                     intermediate_size=3000, dtype="bfloat16", tie_word_embeddings=False, tensors=(),
                     attention=tuple(attention), quant=None)


def test_attention_work_per_context_token_by_hand():
    full, sliding = AttentionLayer("full", 2, 100, 100), AttentionLayer("sliding", 2, 100, 100, window=512)
    arch = toy_arch([full, sliding, full, sliding, full])
    # TP 2: 4 query heads a rank, each 2 x (100 K + 100 V) FLOPs per context token; one KV head a rank:
    # (100 + 100) x 2 bytes per layer
    assert attention_terms(arch, 2, 1, 2, 2) == (3 * 2 * 4 * 200, 2 * 2 * 4 * 200, 3 * 400.0, 2 * 400.0, 512, 5, 0.0)
    # PP 2: the stage with most layers (0, 1, 2) sets the pace
    assert attention_terms(arch, 1, 2, 1, 2) == (2 * 2 * 8 * 200, 1 * 2 * 8 * 200, 2 * 400.0, 1 * 400.0, 512, 3, 0.0)
    assert attention_terms(toy_arch([full] * 2), 1, 1, 2, 2)[1:] == (0.0, 2 * 800.0, 0.0, 0, 2, 0.0)  # no windows


def test_a_linear_attention_state_is_read_and_written_whole_each_decode_step():
    # a Mamba2-like state: 300 x 3 convolution rows and 4 x 1000 SSM values, the SSM in fp32
    state = AttentionLayer("mamba", 0, 0, 0, state=((300, 3, 0), (4, 1000, 0)), state_dtype_bytes=(0, 4))
    arch = toy_arch([state, AttentionLayer("full", 2, 100, 100), state])
    assert attention_terms(arch, 1, 1, 2, 2)[-1] == 2 * 2 * (300 * 3 * 2 + 4 * 1000 * 4)
    assert attention_terms(arch, 2, 1, 2, 2)[-1] == 2 * 2 * (150 * 3 * 2 + 2 * 1000 * 4)  # split over TP
    x = PerfInputs(**dict(TOY, state_bytes=1e9))
    y = PerfInputs(**TOY)
    # a billion bytes a decoding sequence a step slows decode, and the more the more sequences there are
    assert predict(x, COEFFICIENTS).tpot_ms > predict(y, COEFFICIENTS).tpot_ms


def test_sparse_attention_reads_the_top_k_and_its_indexer_scores_everything():
    plan = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V3.2", gpu="H200", tensor_parallel_size=8,
                                 max_model_len=32768))
    full_f, win_f, full_kv, win_kv, window, layers, state = attention_terms(plan.arch, 8, 1, 2, 2)
    # the indexer: 64 heads x 128 per context token, replicated, and its 132-byte key; the latent attention:
    # 16 heads a rank x (576 + 512), and the 1152-byte latent, over at most index_topk tokens
    assert (full_f, full_kv) == (61 * 2 * 64 * 128, 61 * 132.0)
    assert (win_f, win_kv, window, state) == (61 * 2 * 16 * (576 + 512), 61 * 1152.0, 2048, 0.0)


def test_the_batch_the_kv_pool_holds_by_hand():
    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", max_model_len=4096,
                                 max_num_seqs=64))
    arch, cfg = plan.arch, plan.config
    # 1000 + 200 tokens take 75 blocks of 16: 1,000 blocks hold 13 such requests (not 13.3)
    assert batch_cap(arch, cfg, 1000, Workload(1000, 200)) == 13
    assert batch_cap(arch, cfg, 100_000, Workload(1000, 200)) == 64  # max_num_seqs caps it
    assert batch_cap(arch, cfg, 1000, Workload(4000, 200)) == 1000 // 256  # capped at max_model_len


def test_the_size_term_and_the_efficiency_ceiling_by_hand():
    # size_exponent 0.5 around a 1e10 reference: a 2.5e9-parameter rank reaches half of its efficiency
    co = dataclasses.replace(COEFFICIENTS, size_exponent=0.5, size_reference_params=1e10)
    small = predict(PerfInputs(**dict(TOY, active_params_rank=2.5e9)), co)
    plain = predict(PerfInputs(**TOY), dataclasses.replace(COEFFICIENTS, per_gpu={"toy": [0.25, 0.25, 1.0]}))
    assert float(small.tpot_ms) == pytest.approx(float(plain.tpot_ms), rel=1e-9)
    # a larger rank is never faster than its efficiency: the term is capped at 1
    big = predict(PerfInputs(**dict(TOY, active_params_rank=4e10)), co)
    assert float(big.tpot_ms) == pytest.approx(float(predict(PerfInputs(**TOY), COEFFICIENTS).tpot_ms), rel=1e-9)
    # a fitted efficiency above 1 would beat the datasheet: it is clipped to 1 (here 10 GB at 1 TB/s = 10 ms)
    over = dataclasses.replace(COEFFICIENTS, per_gpu={"toy": [1.7, 1.7, 0.0]}, layer_overhead_us=0.0)
    p = predict(PerfInputs(**dict(TOY, kv_full=0.0)), over)
    assert float(p.tpot_ms) == pytest.approx(10.0, rel=1e-9)


def test_several_gpus_and_links_at_once_match_one_at_a_time():
    co = dataclasses.replace(COEFFICIENTS, per_gpu={"toy": [0.5, 0.5, 1.0], "other": [0.3, 0.6, 2.0]},
                             tp_efficiency={"nvlink": 0.7, "xgmi": 0.55, "pcie": 0.45},
                             allreduce_latency_us={"nvlink": 8.0, "xgmi": 12.0, "pcie": 25.0})
    one = [predict(PerfInputs(**dict(TOY, gpu=g, link=k, tp=2)), co) for g, k in (("toy", "pcie"), ("other", "nvlink"))]
    both = predict(PerfInputs(**dict(TOY, gpu=np.array(["toy", "other"]), link=np.array(["pcie", "nvlink"]), tp=2)), co)
    assert both.tpot_ms.dtype == float and list(both.tpot_ms) == pytest.approx([float(p.tpot_ms) for p in one])
    assert list(both.ttft_ms) == pytest.approx([float(p.ttft_ms) for p in one])


def test_what_a_plan_feeds_the_model_by_hand():
    from estimator.performance import perf_inputs

    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", tensor_parallel_size=2,
                                 max_model_len=4096), workload=Workload(1000, 200, concurrency=8))
    arch, gpu, cfg = plan.arch, plan.gpu, plan.config
    x = perf_inputs(arch, gpu, cfg, None, plan.memory.num_gpu_blocks, plan.workload)
    assert (x.gpu, x.mem_bw, x.link, x.link_bw) == ("H100-SXM", 3350e9, "nvlink", 900e9 / 2)  # one direction
    assert (x.peak_flops, x.attn_peak_flops) == (989.4e12, 989.4e12)
    assert (x.tp, x.pp, x.layers, x.hidden, x.act_bytes) == (2, 1, 32, 4096, 2)
    assert (x.online, x.rocm, x.concurrency, x.input_len, x.output_len) == (1, 0, 8, 1000, 200)
    offline = perf_inputs(arch, gpu, cfg, None, plan.memory.num_gpu_blocks, Workload(1000, 200))
    assert offline.online == 0  # `vllm bench throughput`: no API server in the way
    fp8 = perf_inputs(arch, ODD, dataclasses.replace(cfg, resolved_dtype="float16"), FP8, 1000, Workload(1000, 200))
    assert (fp8.peak_flops, fp8.attn_peak_flops) == (400e12, 200e12)  # attention stays in 16 bits
    mi300 = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="MI300X", max_model_len=4096))
    assert perf_inputs(mi300.arch, mi300.gpu, mi300.config, None, 1000, Workload(1000, 200)).rocm == 1


def test_the_lm_head_runs_on_the_last_stage_only_by_hand():
    from estimator.performance import weight_split

    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", max_model_len=4096))
    arch = plan.arch
    lm_head = 2 * 128256 * 4096  # FLOPs per token of a 128,256 x 4,096 LM head
    dense, expert, flops, head, active = weight_split(arch, 1, 1, 2, None)
    assert head == lm_head and expert == 0.0
    # the matmul parameters (not the embedding lookup, norms or biases), the LM head among them
    norms = sum(t.numel for t in arch.tensors if t.kind in ("norm", "bias"))
    assert active == arch.active_params - 2 * 128256 * 4096 - norms + lm_head / 2 == 7_504_658_432
    assert flops == pytest.approx(2 * (active - lm_head / 2))
    # TP 2 halves the head; with PP 3 the binding stage (the first, with most layers) has no head at all
    assert weight_split(arch, 2, 1, 2, None)[3] == 2 * (128256 // 2) * 4096
    assert weight_split(arch, 1, 3, 2, None)[3] == 0.0
    # tied embeddings: the embedding matrix is the head (Llama 3.2 1B)
    tied = make_plan(PlanRequest(model="meta-llama/Llama-3.2-1B-Instruct", gpu="H100", max_model_len=4096)).arch
    assert weight_split(tied, 1, 1, 2, None)[3] == 2 * 128256 * 2048
    # a vision tower is not part of a decode step (Gemma 3 4B: 4.3B parameters, the text model's 3.9B)
    mm = make_plan(PlanRequest(model="google/gemma-3-4b-it", gpu="H100", max_model_len=4096)).arch
    vision = sum(t.numel for t in mm.tensors if t.kind == "vision")
    assert weight_split(mm, 1, 1, 2, None)[0] == pytest.approx(2 * (mm.num_params - vision), rel=1e-3)


def test_the_roofline_counts_the_experts_it_reads():
    from estimator.performance import roofline_step_seconds

    moe = PerfInputs(**dict(TOY, expert_bytes=8e10, num_experts=8, experts_per_token=2))
    dense = PerfInputs(**TOY)
    # one sequence reads 2 of 8 experts: 2e10 bytes more than the dense part, 20 ms at 1 TB/s
    assert float(roofline_step_seconds(moe, 1, 0) - roofline_step_seconds(dense, 1, 0)) == pytest.approx(0.02)


def test_intervals_of_one_configuration_are_plain_floats():
    p = predict(PerfInputs(**dict(TOY, concurrency=np.array([1, 4]))), COEFFICIENTS)
    assert all(type(v) is float for v in p.interval("tpot_ms", 1))
    assert all(type(v) is float for v in predict(PerfInputs(**TOY), COEFFICIENTS).interval("tpot_ms"))


def test_weight_only_low_bit_is_four_bit_weights_with_16_bit_math():
    w4a8 = QuantScheme("compressed-tensors", 4, fp8_compute=True)  # 4-bit weights, FP8 activations: FP8 GEMMs
    assert weight_only_low_bit(w4a8) == 0 and weight_only_low_bit(QuantScheme("gptq", 4)) == 1


def test_the_peak_follows_the_activation_dtype_and_active_parameters_split_over_tp():
    """MI100 runs BF16 at half its FP16 matrix rate (92.3 vs 184.6 TFLOP/s): a bfloat16 model gets the BF16 rate
    for its GEMMs and its attention. Per rank, TP 2 holds half the active parameters."""
    from estimator.gpus import lookup
    from estimator.performance import perf_inputs, speed_known
    from estimator.plan import PlanRequest, make_plan
    from estimator.workload import Workload

    def inputs(**flags):
        plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192, **flags))
        return perf_inputs(plan.arch, plan.gpu, plan.config, plan.quant, plan.memory.num_gpu_blocks, Workload())

    mi100 = inputs(gpu="MI100")
    assert mi100.peak_flops == 92.3e12 and mi100.attn_peak_flops == 92.3e12
    assert inputs(gpu="MI100", dtype="float16").peak_flops == 184.6e12
    one, two = inputs(gpu="H100"), inputs(gpu="H100", tensor_parallel_size=2, num_gpus=2)
    assert two.active_params_rank == pytest.approx(one.active_params_rank / 2, rel=2e-3)
    assert speed_known(lookup("T4"))  # FP16 tensor cores only: its speed is known
    assert not speed_known(dataclasses.replace(lookup("H100"), bf16_tflops=None, fp16_tflops=None))  # no FLOP/s
    assert not speed_known(dataclasses.replace(lookup("H100"), memory_bandwidth_gbs=None))  # no bandwidth


def test_the_speed_model_is_fed_the_state_traffic_of_a_hybrid_model():
    from estimator.performance import perf_inputs

    plan = make_plan(PlanRequest(model="Qwen/Qwen3-Next-80B-A3B-Instruct", gpu="H200", tensor_parallel_size=2,
                                 max_model_len=32768))
    x = perf_inputs(plan.arch, plan.gpu, plan.config, plan.quant, plan.memory.num_gpu_blocks, Workload())
    # 36 Gated DeltaNet layers, each state read and written back whole, one TP 2 rank's share, bf16
    assert x.state_bytes == 36 * 2 * plan.arch.state_layers[0].state_bytes(2, 2) > 0
