"""The memory plan's CUDA-graph and non-torch coefficients from runs of ``benchmarks/gpu_memory_probe.py`` saved on a
GPU host (the H200 runs behind the shipped values are in ``benchmarks/results/h200-probe/``).

Usage: ``python benchmarks/gpu_memory_summary.py FILE ...``
"""

from __future__ import annotations

import json
import sys


def summarize(paths: list[str]) -> dict:
    """The memory plan's CUDA-graph and non-torch coefficients from saved runs: per PIECEWISE graph (the growth
    after the first size, per size and per piece), per FULL graph per layer, and the first capture's fixed part
    (its intercept over the largest size's tokens, after the pool holds that size's forward buffers)."""
    runs = [json.load(open(p)) for p in paths]
    per_piece, full_per_layer, firsts, shapes, summary = [], [], [], {}, {}
    for run in runs:
        largest = run["args"]["largest"]
        for layers, modes in (run.get("piecewise") or {}).items():
            if not run["args"].get("keep") or "error" in modes:
                continue
            pw, full = modes["PIECEWISE"], modes["FULL"]
            per_piece.append((pw["total_mib"] - pw["capture_1_mib"]) / ((pw["sizes"] - 1) * (int(layers) + 1)))
            full_per_layer.append(full["total_mib"] / (full["sizes"] * int(layers)))
            firsts.append((largest, pw["capture_1_mib"]))
        if "nontorch" in run and "steps" in run["nontorch"]:
            summary["non_torch_growth_mib"] = run["nontorch"]["steps"][-1]["non_torch_growth_mib"]
        if "activation" in run and "error" not in run["activation"] and not run["args"].get("eager"):
            a = run["activation"][max(run["activation"], key=int)]  # the most tokens: fixed buffers matter least
            # the plan's forward buffers per token at the shipped coefficients: 4 x hidden + QKV + 3 x intermediate
            planned = 4 * a["hidden"] + a["qkv"] + 3 * a["intermediate"]
            shape = run["args"].get("shape", "llama3-8b")
            summary[f"activation_measured_over_planned[{shape}]"] = a["per_token_elements"] / planned
            shapes[shape] = (a["hidden"], a["intermediate"], a["qkv"], a["per_token_elements"])
    if len(shapes) >= 3:  # buffers per token alive at the peak, by least squares over the decoder shapes
        import numpy as np

        rows = np.array(list(shapes.values()), dtype=float)
        (hidden, qkv, mlp), *_ = np.linalg.lstsq(rows[:, [0, 2, 1]], rows[:, 3], rcond=None)
        summary.update(act_hidden_buffers=hidden, act_qkv_buffers=qkv, act_mlp_buffers=mlp)
    if per_piece:
        summary["mib_per_piece"] = sum(per_piece) / len(per_piece)
        summary["mib_per_full_layer"] = sum(full_per_layer) / len(full_per_layer)
        tokens = sorted({t for t, _ in firsts})
        if len(tokens) >= 2:  # the first capture against the largest size: a line through each size's mean
            mean = {t: sum(f for u, f in firsts if u == t) / sum(1 for u, _ in firsts if u == t) for t in tokens}
            slope = (mean[tokens[-1]] - mean[tokens[0]]) / (tokens[-1] - tokens[0])
            summary["first_capture_mib_per_token"] = slope
            summary["first_capture_fixed_mib"] = mean[tokens[0]] - slope * tokens[0]
    for key, value in summary.items():
        print(f"  {key:<44} {value:10.3f}")
    return summary



def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/gpu_memory_summary.py FILE ...  (JSON files written by gpu_memory_probe.py)")
    try:
        summarize(sys.argv[1:])
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"gpu_memory_summary: cannot read the probe's files ({exc}); pass files written by --out")


if __name__ == "__main__":
    main()
