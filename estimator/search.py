"""Configuration search: every combination of the flags that matter, priced at once with numpy.

For each (tensor-parallel, pipeline-parallel, quantization) layout the weights are computed once; the KV-cache
dtype, max_model_len, max_num_seqs and max_num_batched_tokens are then a grid of arrays that the memory core and
the performance model evaluate in one call each. GPUs not used by one instance run further replicas.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from estimator.architecture import ModelArch
from estimator.coefficients import Coefficients
from estimator.errors import PlannerError
from estimator.gpus import GIB, GpuSpec
from estimator.memory import kv_pool, weights_per_stage
from estimator.performance import perf_inputs, predict, speed_known
from estimator.serve_config import KV_CACHE_DTYPE_BYTES, hybrid_block_size, resolve
from estimator.workload import Workload

TP_SIZES = (1, 2, 4, 8)
PP_SIZES = (1, 2, 4)
MAX_NUM_SEQS = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)
MAX_NUM_BATCHED_TOKENS = (1024, 2048, 4096, 8192, 16384)
PARETO_POINTS = 25
GRID_FIELDS = ("kv_cache_dtype", "max_model_len", "max_num_seqs", "max_num_batched_tokens")


@dataclass(frozen=True)
class SearchResult:
    candidates: int
    fitting: int
    feasible: int
    best: dict | None  # flags and predicted metrics of the chosen configuration
    reasons: tuple[str, ...]
    pareto: tuple[dict, ...]
    closest: str | None  # where nothing meets the SLOs: the nearest miss, in numbers
    seconds: float

    def to_dict(self) -> dict:
        return {"candidates": self.candidates, "fitting": self.fitting, "feasible": self.feasible, "best": self.best,
                "replicas": self.best["replicas"] if self.best else None,
                "reasons": list(self.reasons), "pareto": list(self.pareto), "closest": self.closest,
                "seconds": round(self.seconds, 4)}


def _lengths(arch: ModelArch, workload: Workload, fixed: int | None) -> list[int]:
    if fixed:
        return [fixed]
    need = workload.input_len + workload.output_len
    top = arch.default_max_model_len()
    if need > arch.derived_max_model_len:
        raise PlannerError(f"--input-len + --output-len = {need} exceeds the model's maximum length "
                           f"{arch.derived_max_model_len}")
    values = {min(top, 1 << max(10, math.ceil(math.log2(need))) << k) for k in range(5)}
    return sorted(values | {max(need, min(top, need))})


def _options(arch, gpu: GpuSpec, num_gpus: int, fixed: dict, workload: Workload):
    cc = gpu.compute_capability or (9.0 if gpu.vendor == "amd" and gpu.fp8_tflops else 8.0)
    tps = [fixed["tensor_parallel_size"]] if fixed.get("tensor_parallel_size") else \
        [t for t in TP_SIZES if t <= num_gpus]
    pps = [fixed["pipeline_parallel_size"]] if fixed.get("pipeline_parallel_size") else \
        [p for p in PP_SIZES if p <= num_gpus and p <= arch.num_layers and (p == 1 or not arch.shares_kv_caches)]
    if fixed.get("quantization"):
        quants = [fixed["quantization"]]
    else:
        quants = [None] + (["fp8"] if arch.quant is None and cc >= 8.0 else [])
    kvs = [fixed["kv_cache_dtype"]] if fixed.get("kv_cache_dtype") else \
        ["auto"] + (["fp8"] if cc >= 8.0 else [])
    return dict(tp=tps, pp=pps, quant=quants, kv_cache_dtype=kvs,
                max_model_len=_lengths(arch, workload, fixed.get("max_model_len")),
                max_num_seqs=[fixed["max_num_seqs"]] if fixed.get("max_num_seqs") else list(MAX_NUM_SEQS),
                max_num_batched_tokens=[fixed["max_num_batched_tokens"]] if fixed.get("max_num_batched_tokens")
                else list(MAX_NUM_BATCHED_TOKENS))


def _evaluate(arch, gpu, num_gpus, fixed, workload, co, options, replicas_as="data-parallel"):
    """All candidates, as columns of equal length. A layout is checked and sized as it will be served: its replicas
    as one server's data-parallel engines (a MoE's experts then span them all, what EPLB or sliced experts must
    divide into, and each engine's tokens are gathered to every GPU), or as separate servers."""
    rows: dict[str, list] = {k: [] for k in ("tp", "pp", "quant", "replicas", "busy", *GRID_FIELDS, "fits",
                                             "weights_fit", "weights_gib", "output_tps", "ttft_ms", "tpot_ms",
                                             "latency_ms", "saturated", "batch")}
    refusals: list[str] = []
    grid = list(itertools.product(options["kv_cache_dtype"], options["max_model_len"], options["max_num_seqs"],
                                  options["max_num_batched_tokens"]))
    kv, mml, seqs, tokens = (np.array(col) for col in zip(*grid, strict=True))
    for tp, pp, quant in itertools.product(options["tp"], options["pp"], options["quant"]):
        if tp * pp > num_gpus:
            continue
        engines = num_gpus // (tp * pp) if replicas_as == "data-parallel" else 1
        try:
            base, scheme, _ = resolve(arch, gpu, None, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                                      data_parallel_size=engines,
                                      quantization_method=quant, max_model_len=int(mml.max()),
                                      **{k: fixed[k] for k in ("gpu_memory_utilization", "dtype", "block_size",
                                                               "enforce_eager", "limit_mm_per_prompt",
                                                               "language_model_only", "kv_cache_memory_bytes",
                                                               "enable_expert_parallel",
                                                               "decode_context_parallel_size", "enable_eplb",
                                                               "eplb_config", "speculative_config", "entrypoint")
                                         if fixed.get(k) is not None})
        except PlannerError as err:
            refusals.append(str(err))
            continue  # a layout vLLM would refuse (TP not dividing the heads, ...)
        replicas = num_gpus // (tp * pp)
        # auto is the checkpoint's own KV format where it names one (base resolved it)
        kv_bytes = np.array([KV_CACHE_DTYPE_BYTES[base.kv_cache_dtype if k == "auto" else k] or base.dtype_bytes
                             for k in kv])
        # A hybrid model's block holds one linear-attention state: its size follows the KV dtype.
        block_size = hybrid_block_size(arch, gpu, tp, kv_bytes, base.dtype_bytes, base.block_size) \
            if arch.state_layers else base.block_size
        cfg = SimpleNamespace(
            tensor_parallel_size=tp, pipeline_parallel_size=pp, gpu_memory_utilization=base.gpu_memory_utilization,
            block_size=block_size, enforce_eager=base.enforce_eager, resolved_dtype=base.resolved_dtype,
            dtype_bytes=base.dtype_bytes, max_model_len=mml, max_num_seqs=seqs, max_num_batched_tokens=tokens,
            kv_dtype_bytes=kv_bytes, mm_limit=base.mm_limit, kv_cache_memory_bytes=base.kv_cache_memory_bytes,
            quantization=base.quantization, data_parallel_size=engines,
            enable_expert_parallel=base.enable_expert_parallel,
            decode_context_parallel_size=base.decode_context_parallel_size, enable_eplb=base.enable_eplb,
            num_redundant_experts=base.num_redundant_experts, eplb_window_size=base.eplb_window_size,
            eplb_reserves_profile_buffer=base.eplb_reserves_profile_buffer,
            speculative_config=base.speculative_config, num_speculative_tokens=base.num_speculative_tokens)
        weights = weights_per_stage(arch, cfg, scheme, gpu)
        pool = kv_pool(arch, cfg, gpu, co, weights, scheme)
        # vLLM refuses max_num_batched_tokens below max_num_seqs (SchedulerConfig validation).
        valid = tokens >= seqs
        fits = np.asarray(pool.fits) & valid
        prediction = predict(perf_inputs(arch, gpu, cfg, scheme, pool.num_blocks,
                                         workload.per_replica(replicas)), co)
        n = len(kv)
        for key, value in (("tp", tp), ("pp", pp), ("quant", quant), ("replicas", replicas),
                           ("busy", workload.busy_replicas(replicas))):
            rows[key] += [value] * n
        for key, value in (("kv_cache_dtype", kv), ("max_model_len", mml), ("max_num_seqs", seqs),
                           ("max_num_batched_tokens", tokens)):
            rows[key] += list(value)
        rows["fits"] += list(fits)
        # With per-token model buffers (Qwen3-VL) the weights depend on max_num_batched_tokens: one per candidate.
        rows["weights_fit"] += list(np.broadcast_to(pool.weights_fit, (n,)).astype(bool))
        rows["weights_gib"] += list(np.broadcast_to(functools.reduce(np.maximum, weights) / GIB, (n,)))
        # The total is what the busy replicas make: a replica with no request adds nothing.
        rows["output_tps"] += list(np.broadcast_to(prediction.output_tokens_per_s * workload.busy_replicas(replicas),
                                                   (n,)))
        for key, attr in (("ttft_ms", "ttft_ms"), ("tpot_ms", "tpot_ms"), ("latency_ms", "request_latency_ms"),
                          ("saturated", "saturated"), ("batch", "batch")):
            rows[key] += list(np.broadcast_to(getattr(prediction, attr), (n,)))
    if not rows["tp"]:  # every layout refused: a flag no layout can serve (a --max-model-len too long, ...)
        reason, _ = collections.Counter(refusals).most_common(1)[0] if refusals else ("no layout to try", 0)
        raise PlannerError(f"no layout of {num_gpus} x {gpu.name} can serve this model: {reason}")
    return {k: np.array(v, dtype=object if k in ("quant", "kv_cache_dtype") else None) for k, v in rows.items()}


def _per_user(c):
    """Output tokens per second a user sees over the whole request, time in the queue included."""
    return c["output_len"] * 1000.0 / c["latency_ms"]


def _objective(c, goal: str, mask):
    per_gpu = c["output_tps"] / (c["tp"] * c["pp"] * c["replicas"])
    per_user = _per_user(c)
    if goal == "throughput":
        score = c["output_tps"]
    elif goal == "latency":
        score = -c["latency_ms"]
    else:
        top_gpu, top_user = per_gpu[mask].max(), per_user[mask].max()
        score = np.sqrt(per_gpu / top_gpu * per_user / top_user)
    return np.where(mask, score, -np.inf)


def _flags(c, i) -> dict:
    quant = c["quant"][i]
    return {"tensor_parallel_size": int(c["tp"][i]), "pipeline_parallel_size": int(c["pp"][i]),
            "quantization": None if quant is None else str(quant), "kv_cache_dtype": str(c["kv_cache_dtype"][i]),
            "max_model_len": int(c["max_model_len"][i]), "max_num_seqs": int(c["max_num_seqs"][i]),
            "max_num_batched_tokens": int(c["max_num_batched_tokens"][i])}


def _metrics(c, i) -> dict:
    world = int(c["tp"][i] * c["pp"][i])
    return {"replicas": int(c["replicas"][i]), "gpus_per_replica": world,
            "busy_replicas": round(float(c["busy"][i]), 2),
            "output_tokens_per_s": round(float(c["output_tps"][i]), 1),
            "output_tokens_per_s_per_gpu": round(float(c["output_tps"][i]) / (world * int(c["replicas"][i])), 1),
            "tokens_per_s_per_user": round(float(_per_user(c)[i]), 2),
            "ttft_ms": round(float(c["ttft_ms"][i]), 1), "tpot_ms": round(float(c["tpot_ms"][i]), 2),
            "request_latency_ms": round(float(c["latency_ms"][i]), 1)}


def _reasons(c, best, score, goal, workload, counts) -> list[str]:
    m = _metrics(c, best)
    reasons = [f"goal {goal}: best of {counts[0]:,} candidates, {counts[1]:,} fit in memory, {counts[2]:,} meet "
               f"the SLOs", f"tensor-parallel {m['gpus_per_replica'] // int(c['pp'][best])} x pipeline "
               f"{int(c['pp'][best])}, {m['replicas']} replica(s): {m['output_tokens_per_s']:,.0f} output tok/s in "
               f"all, {m['output_tokens_per_s_per_gpu']:,.0f} per GPU, {m['tokens_per_s_per_user']:.1f} per user"]
    if workload.ttft_ms:
        reasons.append(f"TTFT {m['ttft_ms']:.0f} ms meets --ttft-ms {workload.ttft_ms:g}")
    if workload.tpot_ms:
        reasons.append(f"TPOT {m['tpot_ms']:.1f} ms meets --tpot-ms {workload.tpot_ms:g}")
    dims = ("tp", "pp", "quant", *GRID_FIELDS)
    indifferent = []
    for dim in dims:
        same = np.ones(len(score), dtype=bool)
        for other in dims:
            if other != dim:
                same &= c[other] == c[other][best]
        alternatives = same & (c[dim] != c[dim][best]) & np.isfinite(score)
        if alternatives.any():
            alt = int(np.argmax(np.where(alternatives, score, -np.inf)))
            name = {"tp": "tensor-parallel-size", "pp": "pipeline-parallel-size",
                    "quant": "quantization"}.get(dim, dim.replace("_", "-"))
            if abs(score[best] / score[alt] - 1) < 0.01:
                indifferent.append(f"--{name}")
                continue
            chosen, other = (c[dim][best] or "none"), (c[dim][alt] or "none")
            reasons.append(f"--{name} {chosen} over {other}: {_gain(c, best, alt, goal)}")
    if indifferent:
        reasons.append(f"{', '.join(indifferent)}: other values change the goal by less than 1%")
    return reasons


def _gain(c, best, alt, goal) -> str:
    if goal == "latency":
        return f"request latency {c['latency_ms'][best]:.0f} ms instead of {c['latency_ms'][alt]:.0f} ms"
    ratio = c["output_tps"][best] / c["output_tps"][alt] - 1
    return (f"{ratio:+.0%} output tok/s, TPOT {c['tpot_ms'][best]:.1f} ms instead of {c['tpot_ms'][alt]:.1f} ms")


def _pareto(c, mask) -> list[dict]:
    per_gpu = c["output_tps"] / (c["tp"] * c["pp"] * c["replicas"])
    per_user = _per_user(c)
    order = [i for i in np.lexsort((-per_user, -per_gpu)) if mask[i]]
    front, best_user = [], -np.inf
    for i in order:
        if per_user[i] > best_user * 1.0001:
            front.append(i)
            best_user = per_user[i]
    if len(front) > PARETO_POINTS:
        front = [front[int(k)] for k in np.linspace(0, len(front) - 1, PARETO_POINTS)]
    return [_flags(c, i) | _metrics(c, i) for i in front]


def _closest(c, workload: Workload, fitting) -> str:
    if not fitting.any():
        least = float(np.min(c["weights_gib"]))
        return (f"no configuration fits in memory: even the smallest layout needs {least:.2f} GiB of weights per GPU "
                "before the KV cache; add GPUs (--num-gpus) or quantize")
    if not np.isfinite(c["ttft_ms"][fitting]).any():
        return "every fitting configuration is saturated at this request rate; lower --request-rate or add GPUs"
    ratios = []
    for slo, col in ((workload.ttft_ms, "ttft_ms"), (workload.tpot_ms, "tpot_ms")):
        if slo:
            ratios.append(c[col] / slo)
    worst = np.max(ratios, axis=0)
    i = int(np.argmin(np.where(fitting, worst, np.inf)))
    parts = []
    for slo, col, label in ((workload.ttft_ms, "ttft_ms", "TTFT"), (workload.tpot_ms, "tpot_ms", "TPOT")):
        if slo:
            value = float(c[col][i])
            verdict = "meets" if value <= slo else f"{value / slo - 1:.0%} over"
            parts.append(f"{label} {value:.1f} ms against {slo:g} ({verdict})")
    flags = _flags(c, i)
    return ("no configuration meets the SLOs; the closest is tensor-parallel {tensor_parallel_size} x pipeline "
            "{pipeline_parallel_size}, max-num-seqs {max_num_seqs}: ".format(**flags) + ", ".join(parts))


def search(arch: ModelArch, gpu: GpuSpec, num_gpus: int, fixed: dict, workload: Workload,
           co: Coefficients, replicas_as: str = "data-parallel") -> SearchResult:
    if not speed_known(gpu):
        raise PlannerError("the search needs the GPU's speed: name it with --gpu (with --gpu-memory-gib if its "
                           "memory differs)")
    start = time.perf_counter()
    options = _options(arch, gpu, num_gpus, fixed, workload)
    c = _evaluate(arch, gpu, num_gpus, fixed, workload, co, options, replicas_as)
    c["output_len"] = workload.output_len
    n = len(c["tp"])
    fitting = c["fits"].astype(bool)
    feasible = fitting & ~c["saturated"].astype(bool) & np.isfinite(c["ttft_ms"].astype(float))
    if workload.ttft_ms:
        feasible &= c["ttft_ms"] <= workload.ttft_ms
    if workload.tpot_ms:
        feasible &= c["tpot_ms"] <= workload.tpot_ms
    counts = (n, int(fitting.sum()), int(feasible.sum()))
    if not feasible.any():
        return SearchResult(*counts, None, (), tuple(_pareto(c, fitting)) if fitting.any() else (),
                            _closest(c, workload, fitting), time.perf_counter() - start)
    score = _objective(c, workload.goal, feasible)
    best = int(np.argmax(score))
    return SearchResult(*counts, _flags(c, best) | _metrics(c, best),
                        tuple(_reasons(c, best, score, workload.goal, workload, counts)),
                        tuple(_pareto(c, feasible)), None, time.perf_counter() - start)
