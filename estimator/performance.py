"""The performance model: one prediction function for planning, search and calibration.

An engine step is priced by the roofline of one pipeline stage on one tensor-parallel rank: the time to stream
the bytes it reads (weights, the experts a batch of that size touches, the KV cache of every running sequence)
against the time to do its FLOPs (active parameters plus attention over the context), each at an achieved
fraction of the datasheet peak, plus the all-reduces tensor parallelism adds, the pipeline's hand-offs and the
engine's fixed costs. Serving is a steady state of such steps: each running sequence decodes one token per step
while the prompts of new requests are prefilled in chunks alongside (vLLM's chunked prefill).

Every input is an array (one element per configuration x workload), so the search prices thousands of
candidates in one call and calibration fits the very same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from estimator.architecture import ModelArch
from estimator.coefficients import Coefficients
from estimator.gpus import GpuSpec
from estimator.memory import (
    graph_padded,
    largest_capture_size,
    pp_layer_ranges,
    request_blocks,
    shard_fraction,
    stage_tensors,
    tensor_bytes,
)
from estimator.quantization import QuantScheme
from estimator.workload import Workload
from estimator.xp import as_float, ceil, clip, is_array, maximum, minimum, where

Z80 = 1.2815515655446004  # standard normal quantile of 0.9: p10/p90 of a log-normal spread
MS = 1e3


@dataclass(frozen=True)
class PerfInputs:
    """Numbers the prediction needs, per configuration (numpy arrays or scalars that broadcast)."""

    gpu: object  # GPU name(s), for per-GPU coefficients
    mem_bw: object  # bytes/s, datasheet
    peak_flops: object  # FLOP/s at the compute precision the configuration runs its GEMMs
    attn_peak_flops: object  # FLOP/s of attention: 16-bit tensor cores, whatever the weights' precision
    link: object  # interconnect kind(s)
    link_bw: object  # bytes/s one way
    tp: object
    pp: object
    dense_bytes: object  # weight bytes per rank on the slowest stage, routed experts excluded
    expert_bytes: object  # routed-expert weight bytes per rank on that stage
    num_experts: object
    experts_per_token: object
    flops_per_token: object  # 2 x active parameters per rank on that stage (LM head excluded)
    lm_head_flops: object  # 2 x LM head parameters per rank, per sampled token (last stage)
    attn_flops_full: object  # attention FLOPs per token per context token, full-attention layers
    attn_flops_window: object  # the same for sliding-window / chunked layers
    kv_full: object  # KV bytes per token per rank read by full-attention layers
    kv_window: object  # ... and by windowed layers
    window: object
    layers: object  # decoder layers on that stage
    hidden: object
    act_bytes: object  # activation dtype bytes (all-reduce payload)
    active_params_rank: object
    batch_cap: object  # sequences the engine runs at once: min(max_num_seqs, KV pool / (input + output))
    max_num_batched_tokens: object
    eager: object
    graph_max: object  # largest CUDA-graph capture size (0: none): smaller batches run padded to a capture size
    graph_seqs: object  # max_num_seqs, which vLLM captures too (the widest decode batch) where it is within graph_max
    weight_only_low_bit: object  # 1 where linear weights are 4-bit and dequantized in the GEMM (AWQ, GPTQ, MXFP4)
    input_len: object
    output_len: object
    concurrency: object  # 0: not given
    request_rate: object  # 0: not given
    rocm: object = 0  # 1 on AMD GPUs (ROCm kernels)
    num_prompts: object = 0  # requests in all (0: unbounded): an offline run admits no more than these at once
    online: object = 1  # 1: served through the API server (vllm serve); 0: offline engine (vllm bench throughput)
    # Bytes per rank each decoding sequence moves per step through its linear-attention states (read and written
    # back whole by every Mamba / Gated DeltaNet layer on the stage), whatever its context length
    state_bytes: object = 0

    def take(self, index) -> PerfInputs:
        """The subset of configurations at ``index`` (scalars are shared)."""
        return PerfInputs(**{f.name: (v[index] if is_array(v := getattr(self, f.name)) and v.ndim else v)
                             for f in fields(self)})


@dataclass(frozen=True)
class Prediction:
    batch: object
    output_tokens_per_s: object
    total_tokens_per_s: object
    ttft_ms: object
    tpot_ms: object
    itl_ms: object
    request_latency_ms: object
    saturated: object  # request rate above what the configuration sustains
    log_sigma_throughput: float
    log_sigma_latency: float

    def interval(self, metric: str, index=None):
        """(p10, p90) of a metric: numbers for one configuration, arrays for several."""
        value = getattr(self, metric) if index is None else getattr(self, metric)[index]
        sigma = self.log_sigma_throughput if metric.endswith("_per_s") else self.log_sigma_latency
        lo, hi = value * math.exp(-Z80 * sigma), value * math.exp(Z80 * sigma)
        return (lo, hi) if is_array(lo) and getattr(lo, "ndim", 0) else (float(lo), float(hi))


# --- building the inputs from a configuration -------------------------------------------------------------


def half_precision_peak(gpu: GpuSpec, resolved_dtype: str) -> float:
    """Datasheet TFLOP/s of the activation dtype (bf16 or fp16): attention's rate, and unquantized GEMMs'."""
    return (gpu.bf16_tflops if resolved_dtype == "bfloat16" else gpu.fp16_tflops) or gpu.fp16_tflops \
        or gpu.bf16_tflops or 0.0


def compute_peak(gpu: GpuSpec, quant: QuantScheme | None, resolved_dtype: str) -> float:
    """Datasheet FLOP/s at the precision the GEMMs run: FP8 tensor cores for W8A8-FP8 where the GPU has
    them, the int8 rate (FP8 rate, else twice BF16) for W8A8-INT8, else the activation dtype's rate."""
    half = half_precision_peak(gpu, resolved_dtype)
    if quant is not None and quant.fp8_compute and gpu.fp8_tflops:
        return gpu.fp8_tflops * 1e12
    if quant is not None and quant.int8_compute:
        return (gpu.fp8_tflops or 2 * half) * 1e12
    return half * 1e12


def weight_split(arch: ModelArch, tp: int, pp: int, dtype_bytes: int, quant: QuantScheme | None):
    """(dense bytes, routed-expert bytes, FLOPs per token, LM-head FLOPs, active params) per rank of the
    stage with the most layers."""
    ranges = pp_layer_ranges(arch.num_layers, pp)
    stage = max(range(pp), key=lambda s: len(ranges[s]))
    last = stage == pp - 1
    dense = expert = flops = head = active = 0.0
    for t in stage_tensors(arch, pp, stage):
        # the speed model is the target's alone: what drafting gains depends on acceptance, which it cannot know
        if t.kind == "vision" or arch.drafts(t):
            continue
        share = shard_fraction(t, arch, tp)
        nbytes = tensor_bytes(t, dtype_bytes, quant) * share
        if t.kind == "expert":
            expert += nbytes
        else:
            dense += nbytes
        if t.name == "lm_head" or (t.name == "model.embed_tokens" and arch.tie_word_embeddings):
            head = 2 * t.numel * share if last else 0.0  # the LM head runs on the last stage only
        # matmuls, quantized or not (Jamba's Mamba projections, which vLLM never quantizes); norms and biases are not
        elif t.kind in ("linear", "expert", "router", "unquantized"):
            flops += 2 * t.active_numel * share
            active += t.active_numel * share
    return dense, expert, flops, head, active + head / 2


def attention_terms(arch: ModelArch, tp: int, pp: int, kv_dtype_bytes: float, state_dtype_bytes: float):
    """Per token and context token on the stage with most layers: (full FLOPs, windowed FLOPs, full KV
    bytes, windowed KV bytes, window, layers, state bytes a decoding sequence reads and writes per step).
    DeepSeek Sparse Attention splits a layer in two: its indexer scores every context token (a full term; it is
    replicated, not split over TP), and the latent attention reads only the index_topk tokens it picks, which
    costs what a window of that many tokens does."""
    ranges = pp_layer_ranges(arch.num_layers, pp)
    layers = max(ranges, key=len)
    heads = arch.num_heads // tp
    full_f = win_f = full_kv = win_kv = state = 0.0
    window = 0
    for i in layers:
        a = arch.attention[i]
        flops = 2 * heads * a.attention_width  # QK^T and PV over one context token
        kv = a.bytes_per_token(kv_dtype_bytes, tp)
        state += 2 * a.state_bytes(state_dtype_bytes, tp)
        if a.indexer_bytes:
            full_f, full_kv = full_f + 2 * a.indexer_width, full_kv + a.indexer_bytes
            win_f, win_kv, window = win_f + flops, win_kv + kv - a.indexer_bytes, arch.index_topk
        elif a.window:
            win_f, win_kv, window = win_f + flops, win_kv + kv, a.window
        else:
            full_f, full_kv = full_f + flops, full_kv + kv
    return full_f, win_f, full_kv, win_kv, window, len(layers), state


def batch_cap(arch: ModelArch, cfg, num_blocks, workload: Workload):
    """Sequences of input+output tokens the KV pool holds, capped by max_num_seqs."""
    seq_len = minimum(workload.input_len + workload.output_len, cfg.max_model_len)
    per_seq = request_blocks(arch, cfg, int(cfg.tensor_parallel_size), seq_len)
    return minimum(cfg.max_num_seqs, num_blocks // per_seq)


def perf_inputs(arch: ModelArch, gpu: GpuSpec, cfg, quant: QuantScheme | None, num_blocks,
                workload: Workload) -> PerfInputs:
    """The prediction's inputs for one (TP, PP, quantization) layout; other fields of cfg may be arrays."""
    tp, pp = int(cfg.tensor_parallel_size), int(cfg.pipeline_parallel_size)
    dense, expert, flops, head, active = weight_split(arch, tp, pp, cfg.dtype_bytes, quant)
    full_f, win_f, full_kv, win_kv, window, layers, state = attention_terms(arch, tp, pp, cfg.kv_dtype_bytes,
                                                                             cfg.dtype_bytes)
    return PerfInputs(
        gpu=gpu.name, mem_bw=gpu.memory_bandwidth_gbs * 1e9, peak_flops=compute_peak(gpu, quant, cfg.resolved_dtype),
        # Attention multiplies queries by the cached keys and values in 16 bits (an FP8 KV cache is dequantized
        # in the kernel), so FP8 weights do not speed it up.
        attn_peak_flops=half_precision_peak(gpu, cfg.resolved_dtype) * 1e12,
        link=gpu.interconnect.kind, link_bw=gpu.interconnect.bandwidth_gbs * 1e9 / 2, tp=tp, pp=pp,
        dense_bytes=dense, expert_bytes=expert, num_experts=arch.num_experts,
        experts_per_token=arch.experts_per_token, flops_per_token=flops, lm_head_flops=head,
        attn_flops_full=full_f, attn_flops_window=win_f, kv_full=full_kv, kv_window=win_kv, window=window,
        layers=layers, hidden=arch.hidden_size, act_bytes=cfg.dtype_bytes, active_params_rank=active,
        batch_cap=batch_cap(arch, cfg, num_blocks, workload), max_num_batched_tokens=cfg.max_num_batched_tokens,
        eager=cfg.enforce_eager, graph_max=largest_capture_size(cfg, gpu), graph_seqs=cfg.max_num_seqs,
        weight_only_low_bit=weight_only_low_bit(quant), input_len=workload.input_len,
        output_len=workload.output_len, concurrency=workload.concurrency or 0,
        request_rate=workload.request_rate or 0.0, num_prompts=workload.num_prompts or 0,
        online=0 if workload.saturated else 1, rocm=int(gpu.vendor == "amd"), state_bytes=state,
    )


def weight_only_low_bit(quant: QuantScheme | None) -> int:
    """1 where the GEMMs read packed 4-bit weights and dequantize them on the fly (Marlin-style kernels reach a
    smaller share of the bandwidth than a plain bf16 GEMM), 0 otherwise."""
    return int(quant is not None and quant.weight_bits <= 4 and not (quant.fp8_compute or quant.int8_compute))


def speed_known(gpu: GpuSpec) -> bool:
    """A custom device given only by its memory has no bandwidth or FLOP/s to predict speed from."""
    return bool(gpu.memory_bandwidth_gbs and (gpu.bf16_tflops or gpu.fp16_tflops))


# --- the prediction ------------------------------------------------------------------------------------


def _gpu_coefficients(gpu, co: Coefficients):
    """Per-GPU (bandwidth efficiency, compute efficiency, step overhead ms), for one name or an array of them."""
    if isinstance(gpu, str):
        return co.gpu_efficiency(gpu)
    import numpy

    table = {name: co.gpu_efficiency(name) for name in set(gpu.tolist())}
    values = numpy.array([table[n] for n in gpu.tolist()], dtype=float)
    return values[:, 0], values[:, 1], values[:, 2]


def _by_kind(link, table: dict):
    if isinstance(link, str):
        return float(table[link])
    import numpy

    return numpy.array([table[k] for k in link.tolist()], dtype=float)


@dataclass(frozen=True)
class AchievedRates:
    """What the hardware achieves for this configuration: the datasheet peaks times the fitted efficiencies."""

    weight_bw: object  # bytes/s for weights (lower for 4-bit weight-only GEMMs)
    kv_bw: object  # bytes/s for KV reads in attention
    flops_rate: object  # GEMM FLOP/s
    attn_rate: object  # attention FLOP/s (16-bit, ROCm's share applied)
    moe_factor: object  # the share of bandwidth routed experts reach
    tp_eff: object  # the share of link bandwidth an all-reduce reaches
    ar_lat: object  # seconds of latency per all-reduce
    fixed: object  # seconds per step that do not scale with the work: launch, per-layer kernels, eager mode


def achieved_rates(x: PerfInputs, co: Coefficients) -> AchievedRates:
    bw_eff, fl_eff, step_ms = _gpu_coefficients(x.gpu, co)
    scale = minimum(1.0, (maximum(x.active_params_rank, 1.0) / co.size_reference_params) ** co.size_exponent)
    # Efficiencies above 1 would beat the datasheet: clipping keeps every prediction under the roofline.
    bw = x.mem_bw * clip(bw_eff * scale, 1e-3, 1.0)
    low_bit = x.weight_only_low_bit > 0
    flops_rate = x.peak_flops * clip(fl_eff * scale, 1e-3, 1.0) \
        * where(low_bit, clip(co.low_bit_compute_factor, 1e-3, 1.0), 1.0)
    # Attention kernels on ROCm (paged decode attention, prefill attention) reach a smaller share of the peaks.
    attention = where(as_float(x.rocm) > 0, clip(co.rocm_attention_factor, 1e-3, 1.0), 1.0)
    return AchievedRates(
        weight_bw=bw * where(low_bit, clip(co.low_bit_weight_factor, 1e-3, 1.0), 1.0),
        kv_bw=bw * clip(co.attention_bandwidth_factor, 1e-3, 1.0) * attention,
        flops_rate=flops_rate,
        attn_rate=x.attn_peak_flops * clip(fl_eff * scale, 1e-3, 1.0) * attention,
        moe_factor=clip(co.moe_bandwidth_factor, 1e-3, 1.0) * where(as_float(x.rocm) > 0,
                                                                    clip(co.rocm_moe_factor, 1e-3, 1.0), 1.0),
        tp_eff=clip(_by_kind(x.link, co.tp_efficiency), 1e-3, 1.0),
        ar_lat=_by_kind(x.link, co.allreduce_latency_us) * 1e-6,
        fixed=step_ms / MS + co.layer_overhead_us * 1e-6 * x.layers
        + where(x.eager, co.eager_overhead_us_per_layer * 1e-6 * x.layers, 0.0))


class Engine:
    """Step times and the steady state of one running batch, for one configuration (or an array of them)."""

    def __init__(self, x: PerfInputs, co: Coefficients):
        self.x, self.co, self.r = x, co, achieved_rates(x, co)
        self.inp, self.out = as_float(x.input_len), as_float(x.output_len)
        self.budget = as_float(x.max_num_batched_tokens)
        self.ctx_dec, self.ctx_pre = self.inp + self.out / 2, self.inp / 2

    def stage_step(self, n_dec, n_pre):
        """Seconds for one stage to run one step: n_dec decoding sequences, n_pre prompt tokens."""
        x, r = self.x, self.r
        tokens = n_dec + n_pre
        # A batch that fits a CUDA graph runs as the next capture size: the padding rows cost GEMM FLOPs.
        experts, kv_bytes, gemm, attn = step_work(x, n_dec, n_pre, self.ctx_dec, self.ctx_pre,
                                                  graph_padded(tokens, x.graph_max, x.graph_seqs))
        weights = (x.dense_bytes + experts / r.moe_factor) / r.weight_bw
        t = maximum(weights + kv_bytes / r.kv_bw, gemm / r.flops_rate + attn / r.attn_rate)
        payload = tokens * x.hidden * x.act_bytes * 2 * (x.tp - 1) / maximum(x.tp, 1)
        allreduce = where(x.tp > 1, 2 * x.layers * (r.ar_lat + payload / (x.link_bw * r.tp_eff)), 0.0)
        return t + allreduce + r.fixed + self.co.seq_overhead_us * 1e-6 * n_dec

    def step(self, n_dec, n_pre):
        """One token for every running sequence, through all pipeline stages (microbatched)."""
        micro = maximum(minimum(maximum(n_dec, 1), self.x.pp), 1)
        stage = self.stage_step(n_dec / micro, n_pre / micro)
        return self.x.pp * stage + (self.x.pp - 1) * self.co.pp_transfer_latency_us * 1e-6

    def cycle(self, batch):
        """(TTFT without queueing, TPOT, request latency) with ``batch`` sequences running."""
        inp, out, budget = self.inp, self.out, self.budget
        batch = maximum(batch, 1.0)
        room = maximum(budget - batch, 1)
        chunk = maximum(minimum(inp, room), 1)
        # Each finished request is replaced, so the other B-1 sequences bring input/output prompt tokens per
        # step. They come as whole chunks in some steps (a share f of them), not spread over all steps.
        prefill = maximum(batch - 1, 0) * inp / maximum(out, 1)
        share = clip(prefill / chunk, 0, 1)
        plain = self.step(batch, 0.0)
        mixed = self.step(batch, where(prefill <= chunk, chunk, minimum(prefill, room)))
        tpot = where(prefill <= chunk, (1 - share) * plain + share * mixed, mixed)
        # Its own prompt: chunks of the step budget left by the other running sequences.
        own_chunk = maximum(minimum(inp, budget - (batch - 1)), 1)
        ttft = self.co.request_overhead_ms / MS + ceil(inp / own_chunk) * self.step(batch - 1, own_chunk)
        return ttft, tpot, ttft + maximum(out - 1, 0) * tpot


def _running_batch(engine: Engine, closed, cap, rate, frontend_rate):
    """The sequences running at once: the closed loop's users (up to the engine's cap), or for an open loop
    where batch = rate x latency settles (Little's law)."""
    batch = minimum(closed, cap)
    if (rate > 0).any() if is_array(rate) else rate > 0:
        open_batch = batch * 0 + 1.0
        for _ in range(40):
            open_batch = minimum(cap, maximum(minimum(rate, frontend_rate) * engine.cycle(open_batch)[2], 1.0))
        batch = where(rate > 0, open_batch, batch)
    return batch


def predict(x: PerfInputs, co: Coefficients) -> Prediction:
    """Steady-state serving (or offline) performance of each configuration under its workload."""
    engine = Engine(x, co)
    inp, out, budget = engine.inp, engine.out, engine.budget
    cap = maximum(as_float(x.batch_cap), 1.0)
    conc, rate, prompts = as_float(x.concurrency), as_float(x.request_rate), as_float(x.num_prompts)
    # An offline run admits all of its prompts, up to what the engine runs at once.
    closed = where(conc > 0, conc, where(prompts > 0, minimum(prompts, cap), cap))
    # The API server is one process: each request and each streamed token costs it CPU time, which caps the
    # requests per second it passes on, however fast the engine is.
    frontend_rate = where(as_float(x.online) > 0, 1.0 / (co.api_request_ms / MS + out * co.api_token_us * 1e-6),
                          math.inf)
    batch = _running_batch(engine, closed, cap, rate, frontend_rate)
    ttft, tpot, latency = engine.cycle(batch)
    served = minimum(batch / latency, frontend_rate)  # requests/s the server sustains at this batch
    # Where the API server binds, tokens reach the clients more slowly than the engine makes them.
    stretch = maximum(batch / latency / served, 1.0)
    tpot, latency = tpot * stretch, latency * stretch
    saturated = (rate > 0) & ((rate * latency > cap * 1.001) | (rate > frontend_rate * 1.001))
    # A closed loop starts its requests together and, with fixed lengths, they stay in step: each wave's prompts
    # are prefilled one after another, so a request waits on average for half of the others' prompts.
    others = maximum(batch - 1, 0) * inp / 2
    burst_chunk = maximum(minimum(budget, batch * inp), 1)
    burst = co.wave_sync * others / burst_chunk * engine.step(0.0, burst_chunk)
    # More users than running slots: the rest wait for a slot, each a share of a request's latency; a finite
    # set of prompts sent at once drains in waves, so on average half as long.
    drains = (prompts > 0) & (prompts <= closed)
    queued = where((rate <= 0) & (closed > batch), where(drains, 0.5, 1.0) * (closed / batch - 1) * latency, 0.0)
    # Arrivals faster than the server sustains: a stream's queue grows without bound, but a finite run's prompts
    # (vllm bench serve --num-prompts) only queue behind those sent before them (backlog_seconds).
    backlog = where(saturated & (prompts > 0), backlog_seconds(prompts, rate, served, batch), math.inf)
    queued = where(saturated, backlog, queued)
    ttft = ttft + where(rate > 0, 0.0, burst) + queued
    output_tps = where(rate > 0, minimum(rate, served), served) * out
    total_tps = output_tps * (inp + out) / maximum(out, 1)
    return Prediction(batch=batch, output_tokens_per_s=output_tps, total_tokens_per_s=total_tps,
                      ttft_ms=ttft * MS, tpot_ms=tpot * MS, itl_ms=tpot * MS,
                      request_latency_ms=latency * MS + queued * MS,
                      saturated=saturated, log_sigma_throughput=co.log_sigma_throughput,
                      log_sigma_latency=co.log_sigma_latency)


def backlog_seconds(prompts, rate, served, batch):
    """Mean wait for a slot over a finite run of ``prompts`` requests arriving at ``rate`` per second to a server
    that runs ``batch`` at once and finishes ``served`` per second (rate > served). Request k arrives at k / rate
    and starts when k - batch have finished, at (k - batch) / served: it waits from k0 = batch / (1 - served /
    rate) on, a / 2 x (prompts - k0)^2 in all with a = 1 / served - 1 / rate, shared over every prompt."""
    a = 1 / maximum(served, 1e-12) - 1 / maximum(rate, 1e-12)
    first = batch / maximum(served * a, 1e-12)
    late = maximum(prompts - first, 0.0)
    return a * late * late / (2 * maximum(prompts, 1.0))


def step_work(x: PerfInputs, n_dec, n_pre, ctx_dec, ctx_pre, gemm_tokens):
    """What one step of one stage moves and computes, before any efficiency: (routed-expert bytes the batch
    touches, KV-cache bytes its decoding sequences read, GEMM FLOPs for ``gemm_tokens`` rows, attention FLOPs).
    The one rule for the step's work, priced by predict() and bounded by roofline_step_seconds()."""
    tokens = n_dec + n_pre
    experts = maximum(x.num_experts, 1)
    touched = where(x.num_experts > 0, 1 - (1 - x.experts_per_token / experts) ** tokens, 0.0)
    ctx_win_dec = minimum(ctx_dec, where(x.window > 0, x.window, ctx_dec))
    ctx_win_pre = minimum(ctx_pre, where(x.window > 0, x.window, ctx_pre))
    kv_bytes = n_dec * (x.kv_full * ctx_dec + x.kv_window * ctx_win_dec + x.state_bytes)
    gemm = x.flops_per_token * gemm_tokens + x.lm_head_flops * n_dec
    attn = n_dec * (x.attn_flops_full * ctx_dec + x.attn_flops_window * ctx_win_dec) \
        + n_pre * (x.attn_flops_full * ctx_pre + x.attn_flops_window * ctx_win_pre)
    return x.expert_bytes * touched, kv_bytes, gemm, attn


def roofline_step_seconds(x: PerfInputs, n_dec, ctx) -> object:
    """The hardware bound of a pure decode step for n_dec sequences: no efficiency, no overhead."""
    experts, kv_bytes, gemm, attn = step_work(x, n_dec, 0.0, ctx, ctx, n_dec)
    return maximum((x.dense_bytes + experts + kv_bytes) / x.mem_bw, gemm / x.peak_flops + attn / x.attn_peak_flops)

