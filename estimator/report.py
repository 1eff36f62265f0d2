"""The human-readable plan. JSON output never goes through here."""

from __future__ import annotations

from estimator.plan import Plan
from estimator.serve_config import expert_parallel_size


def _b(n: float) -> str:
    return f"{n / 1e9:.2f}B"


def _kv_format(a, c) -> str:
    if a.is_deepseek_v4:
        return "fp8_ds_mla, compressed"  # DeepSeek-V4's own entries, per compressed state
    return c.kv_cache_dtype if c.kv_cache_dtype != "auto" else c.resolved_dtype


def render(plan: Plan) -> str:
    a, c, m, g = plan.arch, plan.config, plan.memory, plan.memory.per_gpu
    kv_per_token = a.kv_bytes_per_token(c.kv_dtype_bytes)
    quant = c.quantization or "none"
    lines = [
        f"{plan.source.id} [{plan.source.kind}] on {plan.num_gpus} x {plan.gpu.name} ({plan.gpu.memory_gib:.2f} GiB)",
        f"  {a.architecture}: {_b(a.num_params)} parameters, {_b(a.active_params)} active; "
        f"KV {kv_per_token / 1024:.1f} KiB per token ({_kv_format(a, c)})",
        "Configuration",
        f"  tensor-parallel {c.tensor_parallel_size}, pipeline-parallel {c.pipeline_parallel_size}, "
        + (f"data-parallel {c.data_parallel_size}, " if c.data_parallel_size > 1 else "")
        + (f"expert-parallel {expert_parallel_size(c)}, " if expert_parallel_size(c) > 1 else "")
        + (f"EPLB with {c.num_redundant_experts} redundant experts, " if c.enable_eplb else "")
        + (f"decode-context-parallel {c.decode_context_parallel_size}, " if c.decode_context_parallel_size > 1 else "") +
        f"max-model-len {c.max_model_len}, gpu-memory-utilization {c.gpu_memory_utilization}, "
        f"dtype {c.resolved_dtype}, quantization {quant}, kv-cache-dtype {c.kv_cache_dtype}",
        f"  max-num-seqs {c.max_num_seqs}, max-num-batched-tokens {c.max_num_batched_tokens}, "
        f"block-size {c.block_size}, {'eager' if c.enforce_eager else 'CUDA graphs'}",
        "Memory per GPU (GiB)" + (" on the binding pipeline stage" if c.pipeline_parallel_size > 1 else ""),
        f"  total {g.total_gib:.2f} | budget {g.budget_gib:.2f} | weights {g.weights_gib:.2f} | "
        f"activation {g.activation_gib:.2f} | non-torch {g.non_torch_gib:.2f} | CUDA graphs {g.cuda_graph_gib:.2f} | "
        f"KV cache {g.kv_cache_gib:.2f}",
        f"KV cache{' of each engine' if c.data_parallel_size > 1 else ''}: {m.num_gpu_blocks:,} blocks of "
        f"{m.block_size} tokens, {m.kv_cache_tokens:,} tokens; "
        f"maximum concurrency for {c.max_model_len:,} tokens per request: {m.max_concurrency:.2f}x",
        f"Fits: {'yes' if m.fits else 'NO'} (binding: {m.binding_constraint}) - {plan.limit_summary()}",
    ]
    if plan.performance is not None:
        lines += _performance_lines(plan)
    if plan.search is not None:
        lines += _search_lines(plan.search)
    if c.defaults:
        lines.append("vLLM defaults used: " + "; ".join(c.defaults))
    lines += [f"Warning: {w}" for w in plan.warnings]
    lines.append(plan.serve_command)
    return "\n".join(lines)


def _performance_lines(plan: Plan) -> list[str]:
    p, w = plan.performance, plan.workload
    if w.saturated:
        head = f"Performance, offline at saturation ({w.input_len} in / {w.output_len} out, batch {float(p.batch):.0f})"
    elif w.concurrency:
        head = f"Performance at concurrency {w.concurrency} ({w.input_len} in / {w.output_len} out)"
    else:
        head = f"Performance at {w.request_rate} requests/s ({w.input_len} in / {w.output_len} out)"
    lines = [head + f", coefficients {plan.coefficients.name}; p10-p90 in brackets"]
    for label, metric, unit in (("output", "output_tokens_per_s", "tok/s"), ("total", "total_tokens_per_s", "tok/s"),
                                ("TTFT", "ttft_ms", "ms"), ("TPOT", "tpot_ms", "ms"),
                                ("latency", "request_latency_ms", "ms")):
        value = float(getattr(p, metric))
        if value == float("inf"):
            lines.append(f"  {label:8} unbounded (saturated)")
            continue
        lo, hi = p.interval(metric)
        lines.append(f"  {label:8} {value:10.1f} {unit:5} [{lo:.1f} - {hi:.1f}]")
    return lines


def _search_lines(search: dict) -> list[str]:
    lines = [f"Search ({search['seconds'] * 1000:.0f} ms)"] + [f"  {r}" for r in search["reasons"]]
    count = len(search["pareto"])
    lines.append(f"  Pareto set, output tok/s per GPU against tok/s per user ({count} point{'s' * (count != 1)}):")
    for p in search["pareto"][:8]:
        lines.append(f"    {p['output_tokens_per_s_per_gpu']:9.1f} per GPU  {p['tokens_per_s_per_user']:7.1f} per user  "
                     f"tp {p['tensor_parallel_size']} pp {p['pipeline_parallel_size']} x{p['replicas']} "
                     f"max-num-seqs {p['max_num_seqs']} kv {p['kv_cache_dtype']} quant {p['quantization'] or 'none'}")
    return lines
