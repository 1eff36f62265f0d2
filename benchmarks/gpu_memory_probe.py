"""Measure, on a real NVIDIA GPU, the physical facts behind the memory plan's guessed terms, with PyTorch alone.

vLLM itself cannot run where this runs (no vLLM build for that machine's torch), so this script rebuilds the parts
of vLLM 0.32's start-up that decide those terms, the way vLLM does them:

- ``nontorch``: memory outside torch's allocator that grows after the CUDA context exists (vLLM's non-torch
  increase is measured from its first snapshot, taken after the context): cuBLAS/cuBLASLt handles, lazily loaded
  kernel modules, Triton kernels, flash attention, the sampler's kernels.
- ``graphs``: driver memory per captured CUDA graph as a function of its kernel nodes.
- ``piecewise``: a Llama-3-8B-shaped decoder, its pieces between attention calls compiled by Inductor as vLLM's
  piecewise backend does, captured largest batch first into one shared pool (PIECEWISE mode: one graph per piece
  per size) and as whole-forward graphs (FULL mode), with vLLM 0.32's estimate (first capture + (n - 1) x the
  second capture's delta, gpu_model_runner.profile_cudagraph_memory) and the real total after every size.
- ``activation``: the peak of the same compiled forward over T tokens, as vLLM's profile_run measures it.

Usage: ``python benchmarks/gpu_memory_probe.py [EXPERIMENT ...] [--out FILE] [--layers N ...]``; each experiment
prints its figures and they are written, as they come, to FILE (JSON). ``--device cpu`` dry-runs what needs no GPU.
``benchmarks/gpu_memory_summary.py`` derives the memory plan's coefficients from the saved files.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback

import torch
import torch.nn.functional as F

MIB = 2**20

# Decoder shapes (hidden, heads, KV heads, head dim, intermediate, vocabulary) from the models' config.json files;
# Llama-3-8B's is the default: the best-known dense decoder vLLM serves.
SHAPES = {"llama3-8b": (4096, 32, 8, 128, 14336, 128256), "qwen3-4b": (2560, 32, 8, 128, 9728, 151936),
          "qwen2.5-7b": (3584, 28, 4, 128, 18944, 152064), "phi3-mini": (3072, 32, 32, 96, 8192, 32064)}
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE, VOCAB = SHAPES["llama3-8b"]
DTYPE = torch.bfloat16


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def snapshot(device="cuda") -> dict:
    sync(device)
    free, total = torch.cuda.mem_get_info()
    reserved = torch.cuda.memory_reserved()
    return {"used_mib": (total - free) / MIB, "reserved_mib": reserved / MIB,
            "non_torch_mib": (total - free - reserved) / MIB, "allocated_mib": torch.cuda.memory_allocated() / MIB}


# --- non-torch memory --------------------------------------------------------------------------------------------


def nontorch(device: str, args) -> dict:
    torch.empty(1, device=device)
    steps = [("context", snapshot())]

    def step(name, fn):
        fn()
        steps.append((name, snapshot()))

    a = torch.randn(HIDDEN, HIDDEN, device=device, dtype=DTYPE)
    step("bf16 GEMM 4096x4096x4096 (cuBLAS handle, kernel load)", lambda: a @ a)
    x = torch.randn(8192, HIDDEN, device=device, dtype=DTYPE)
    step("bf16 GEMMs M=1, 8, 256, 8192", lambda: [x[:m] @ a for m in (1, 8, 256, 8192)])
    bias = torch.randn(HIDDEN, device=device, dtype=DTYPE)
    step("linear with bias (cuBLASLt epilogue)", lambda: F.linear(x, a, bias))
    q = torch.randn(1, HEADS, 8192, HEAD_DIM, device=device, dtype=DTYPE)
    kv = torch.randn(1, KV_HEADS, 8192, HEAD_DIM, device=device, dtype=DTYPE)
    step("flash attention, causal, 8192 tokens", lambda: F.scaled_dot_product_attention(
        q, kv, kv, is_causal=True, enable_gqa=True))
    fused = torch.compile(lambda t, w: F.silu(t) * w + t, dynamic=True)
    step("an Inductor-compiled Triton kernel", lambda: fused(x, x))
    logits = torch.randn(256, VOCAB, device=device, dtype=torch.float32)

    def sampler():
        probs = logits.softmax(-1)
        logits.topk(50, -1)
        logits.sort(-1)
        torch.multinomial(probs, 1)
        probs.div_(torch.empty_like(probs).exponential_()).argmax(-1)

    step("sampler kernels (softmax, top-k, sort, multinomial, exponential)", sampler)
    base = steps[0][1]
    rows = [{"step": name, **s, "non_torch_growth_mib": s["non_torch_mib"] - base["non_torch_mib"]}
            for name, s in steps]
    for r in rows:
        print(f"  {r['step']:<66} non-torch {r['non_torch_mib']:8.1f} MiB  growth {r['non_torch_growth_mib']:7.1f}"
              f"  reserved {r['reserved_mib']:8.1f}")
    return {"steps": rows, "context_mib": base["used_mib"] - base["reserved_mib"]}


# --- driver memory per graph -------------------------------------------------------------------------------------


def graphs(device: str, args) -> dict:
    x = torch.zeros(256, device=device)
    a = torch.randn(64, 64, device=device, dtype=DTYPE)
    out = torch.empty(64, 64, device=device, dtype=DTYPE)
    x.add_(1.0)
    torch.mm(a, a, out=out)
    count = 24
    result = {}
    for kind, body in (("elementwise", lambda: x.add_(1.0)), ("gemm", lambda: torch.mm(a, a, out=out))):
        for nodes in (1, 8, 64, 512):
            pool = torch.cuda.graph_pool_handle()
            before = snapshot()["used_mib"]
            kept = []
            for _ in range(count):
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, pool=pool):
                    for _ in range(nodes):
                        body()
                kept.append(g)
            per_graph = (snapshot()["used_mib"] - before) / count
            result[f"{kind}_{nodes}"] = per_graph
            print(f"  {count} graphs of {nodes:4d} {kind} nodes: {per_graph:7.3f} MiB per graph")
            del kept
    return result


# --- a vLLM-shaped decoder ---------------------------------------------------------------------------------------


def rms_norm(x, w, eps=1e-5):
    v = x.float()
    return (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rope(q, k, positions):
    half = HEAD_DIM // 2
    freqs = 1.0 / (500000.0 ** (torch.arange(half, device=q.device, dtype=torch.float32) / half))
    angles = positions.float()[:, None] * freqs[None, :]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]

    def turn(t):
        t = t.float()
        a, b = t[..., :half], t[..., half:]
        return torch.cat((a * cos - b * sin, b * cos + a * sin), -1).to(DTYPE)

    return turn(q), turn(k)


def pre_attention(x, positions, w_qkv):
    qkv = F.linear(x, w_qkv)
    q, k, v = qkv.split([HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM], -1)
    q, k = rope(q.view(-1, HEADS, HEAD_DIM), k.view(-1, KV_HEADS, HEAD_DIM), positions)
    return q, k, v.reshape(-1, KV_HEADS, HEAD_DIM)


def first_piece(ids, positions, embed, w_norm, w_qkv):
    residual = F.embedding(ids, embed)
    return (*pre_attention(rms_norm(residual, w_norm), positions, w_qkv), residual)


def mlp_block(attn, residual, w_o, w_norm2, w_gate_up, w_down):
    residual = F.linear(attn, w_o) + residual
    gate, up = F.linear(rms_norm(residual, w_norm2), w_gate_up).chunk(2, -1)
    return F.linear(F.silu(gate) * up, w_down) + residual


def mid_piece(attn, residual, positions, w_o, w_norm2, w_gate_up, w_down, w_norm1, w_qkv):
    """vLLM splits the compiled graph at each attention call: a piece is one layer's o_proj and MLP and the next
    layer's norm, QKV projection and rotary embedding."""
    residual = mlp_block(attn, residual, w_o, w_norm2, w_gate_up, w_down)
    return (*pre_attention(rms_norm(residual, w_norm1), positions, w_qkv), residual)


def last_piece(attn, residual, w_o, w_norm2, w_gate_up, w_down, w_final):
    return rms_norm(mlp_block(attn, residual, w_o, w_norm2, w_gate_up, w_down), w_final)


class Decoder:
    def __init__(self, layers: int, device: str, compiled: bool, scale: int = 1):
        def w(*shape):
            return torch.randn(*shape, device=device, dtype=DTYPE) * 0.02

        h, i = HIDDEN // scale, INTERMEDIATE // scale
        self.embed = w(VOCAB // scale, h)
        self.layers = [dict(qkv=w((HEADS + 2 * KV_HEADS) * HEAD_DIM, h), o=w(h, HEADS * HEAD_DIM),
                            norm1=torch.ones(h, device=device, dtype=DTYPE),
                            norm2=torch.ones(h, device=device, dtype=DTYPE),
                            gate_up=w(2 * i, h), down=w(h, i)) for _ in range(layers)]
        self.final = torch.ones(h, device=device, dtype=DTYPE)
        wrap = (lambda f: torch.compile(f, dynamic=True, fullgraph=True)) if compiled else (lambda f: f)
        self.first, self.mid, self.last = wrap(first_piece), wrap(mid_piece), wrap(last_piece)

    def pieces(self, ids, positions):
        """The forward as (piece, inputs) steps with attention between them: yields each piece's call."""
        L = self.layers
        yield lambda: self.first(ids, positions, self.embed, L[0]["norm1"], L[0]["qkv"])
        for n in range(1, len(L)):
            p, c = L[n - 1], L[n]
            yield lambda attn, res, p=p, c=c: self.mid(attn, res, positions, p["o"], p["norm2"], p["gate_up"],
                                                       p["down"], c["norm1"], c["qkv"])
        p = L[-1]
        yield lambda attn, res: self.last(attn, res, p["o"], p["norm2"], p["gate_up"], p["down"], self.final)


def attention(q, k, v):
    """Prefill attention over one sequence (flash attention through SDPA), output [tokens, heads x head_dim]."""
    out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                                         v.transpose(0, 1)[None], is_causal=True, enable_gqa=True)
    return out[0].transpose(0, 1).reshape(q.shape[0], -1)


def forward(model: Decoder, ids, positions, capture=None):
    """One forward; with ``capture(fn)`` each piece is run through it (graph capture), attention stays eager."""
    steps = model.pieces(ids, positions)
    run = capture or (lambda fn: fn())
    q, k, v, residual = run(next(steps))
    for piece in steps:
        attn = attention(q, k, v)
        result = run(lambda piece=piece, attn=attn, residual=residual: piece(attn, residual))
        if isinstance(result, tuple):
            q, k, v, residual = result
        else:
            return result


def activation(device: str, args) -> dict:
    result = {}
    for layers in args.layers[:1]:
        model = Decoder(layers, device, compiled=not args.eager, scale=args.scale)
        for tokens in args.tokens:
            ids = torch.randint(0, VOCAB // args.scale, (tokens,), device=device)
            positions = torch.arange(tokens, device=device)
            forward(model, ids, positions)  # compile and warm up
            if device == "cuda":
                sync(device)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                start = torch.cuda.memory_allocated()
                out = forward(model, ids, positions)
                sync(device)
                peak = (torch.cuda.max_memory_allocated() - start) / MIB
                del out
            else:
                peak = float("nan")
            h, i = HIDDEN // args.scale, INTERMEDIATE // args.scale
            per_token = peak * MIB / tokens / 2
            result[str(tokens)] = {"peak_mib": peak, "per_token_elements": per_token,
                                   "hidden": h, "intermediate": i, "qkv": (HEADS + 2 * KV_HEADS) * HEAD_DIM}
            print(f"  {layers} layers, {tokens:6d} tokens: peak {peak:9.1f} MiB = {per_token:9.0f} bf16 elements "
                  f"per token (H {h}, I {i}, QKV {(HEADS + 2 * KV_HEADS) * HEAD_DIM})")
    return result


def capture_sizes(largest: int) -> list[int]:
    """vLLM 0.32's default grid up to ``largest``, largest first (the capture order)."""
    sizes = [s for s in (1, 2, 4) if s <= largest] + list(range(8, min(largest + 1, 256), 8)) \
        + list(range(256, largest + 1, 16))
    return sorted(sizes, reverse=True)


class Capturer:
    """Captures into one graph pool and keeps every graph, as vLLM's CUDAGraphWrapper does: a warm-up run, then
    the capture."""

    def __init__(self):
        self.pool, self.graphs = torch.cuda.graph_pool_handle(), []

    def __call__(self, fn):
        fn()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=self.pool):
            out = fn()
        self.graphs.append(g)
        return out


def capture_mode(model: Decoder, mode: str, sizes: list[int], capturer: Capturer, device: str) -> dict:
    """Capture every size, largest first, in PIECEWISE mode (each piece its own graph, attention eager between)
    or FULL mode (the whole forward one graph); the memory after each size, from before the first."""
    ids = torch.randint(0, model.embed.shape[0], (sizes[0],), device=device)
    positions = torch.arange(sizes[0], device=device)
    forward(model, ids, positions)
    sync(device)
    torch.cuda.empty_cache()
    start, totals, t0 = snapshot()["used_mib"], [], time.time()
    for size in sizes:
        if mode == "PIECEWISE":
            out = forward(model, ids[:size], positions[:size], capturer)
        else:
            out = capturer(lambda size=size: forward(model, ids[:size], positions[:size]))
        del out
        totals.append(snapshot()["used_mib"] - start)
    first, second = totals[0], totals[1] - totals[0]
    return {"capture_1_mib": first, "capture_2_mib": second, "sizes": len(sizes), "graphs": len(capturer.graphs),
            "total_mib": totals[-1], "seconds": time.time() - t0, "cumulative_mib": totals,
            # gpu_model_runner.profile_cudagraph_memory: first capture + (n - 1) x max(second, 1 MiB)
            "vllm_estimate_mib": first + max(second, 1.0) * (len(sizes) - 1)}


def piecewise(device: str, args) -> dict:
    result = {}
    sizes = capture_sizes(args.largest)
    for layers in args.layers:
        model = Decoder(layers, device, compiled=not args.eager, scale=args.scale)
        capturer = Capturer()
        for mode in ("PIECEWISE", "FULL"):
            if not args.keep:  # each mode on its own (otherwise as vLLM profiles: one pool, all graphs kept)
                capturer = Capturer()
                sync(device)
                torch.cuda.empty_cache()
            e = result.setdefault(str(layers), {})[mode] = capture_mode(model, mode, sizes, capturer, device)
            print(f"  {layers} layers {mode:9s} {e['sizes']} sizes, {e['graphs']} graphs: first "
                  f"{e['capture_1_mib']:7.1f} MiB, second {e['capture_2_mib']:6.2f}, total {e['total_mib']:7.1f}, "
                  f"vLLM's estimate {e['vllm_estimate_mib']:7.1f} ({e['seconds']:.0f} s)")
        del model, capturer
        torch.cuda.empty_cache()
    return result


EXPERIMENTS = {"nontorch": nontorch, "graphs": graphs, "piecewise": piecewise, "activation": activation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--out", default=None, help="JSON file the figures are written to as they come")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--layers", type=int, nargs="+", default=[32, 16])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 8192, 16384])
    parser.add_argument("--largest", type=int, default=512, help="largest capture size")
    parser.add_argument("--scale", type=int, default=1, help="divide hidden, intermediate and vocab (dry runs)")
    parser.add_argument("--eager", action="store_true", help="no Inductor")
    parser.add_argument("--keep", action="store_true", help="capture both modes into one pool, keeping every graph")
    parser.add_argument("--shape", default="llama3-8b", choices=list(SHAPES), help="the decoder's dimensions")
    args = parser.parse_args()
    global HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE, VOCAB
    HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE, VOCAB = SHAPES[args.shape]
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_memory_probe: no CUDA GPU is visible; run it on a GPU host (or --device cpu for a dry run)")
    facts = {"torch": torch.__version__, "python": platform.python_version()}
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=props.name, total_mib=props.total_memory / MIB, cuda=torch.version.cuda,
                     capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count)
    results = {"facts": facts, "args": vars(args)}
    print(json.dumps(facts))
    for name in args.experiments:
        print(f"{name}:", flush=True)
        t0 = time.time()
        try:
            results[name] = EXPERIMENTS[name](args.device, args)
        except Exception as exc:  # one experiment's failure must not lose the others' figures
            traceback.print_exc()
            results[name] = {"error": repr(exc)}
        print(f"  ({time.time() - t0:.0f} s)", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
