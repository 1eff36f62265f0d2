"""Times the coefficient fit. Target: 10,000 runs in under 5 seconds on 2 cores.

Usage: python benchmarks/fit_speed.py [--runs N]
"""

import argparse
import dataclasses
import os
import platform
import time

import numpy as np

from calibrate.fit import CoefficientFitter, stack
from estimator.coefficients import DEFAULT
from estimator.errors import PlannerError
from estimator.performance import perf_inputs, predict
from estimator.plan import PlanRequest, make_plan
from estimator.workload import Workload

MODELS = ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-30B-A3B", "meta-llama/Llama-3.1-70B-Instruct",
          "google/gemma-3-27b-it", "Qwen/Qwen2.5-0.5B-Instruct")
GPUS = ("H100", "A100-SXM4-80GB", "H200", "L40S")


def base_inputs():
    items = []
    for model in MODELS:
        for gpu in GPUS:
            for tp in (1, 2, 4, 8):
                for concurrency in (1, 8, 64):
                    try:
                        plan = make_plan(PlanRequest(model=model, gpu=gpu, tensor_parallel_size=tp, max_model_len=4096),
                                         workload=Workload(1024, 256, concurrency=concurrency))
                    except PlannerError:
                        continue
                    if plan.memory.fits:
                        items.append(perf_inputs(plan.arch, plan.gpu, plan.config, None, plan.memory.num_gpu_blocks,
                                                 plan.workload))
    return items


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    n = parser.parse_args().runs
    items = base_inputs()
    inputs = stack([items[i % len(items)] for i in range(n)])
    truth = dataclasses.replace(DEFAULT, per_gpu={"H100-SXM": [0.7, 0.5, 2.0], "A100-SXM4-80GB": [0.75, 0.45, 1.8]})
    rng = np.random.default_rng(0)
    p = predict(inputs, truth)
    measured = {m: np.asarray(getattr(p, a), dtype=float) * np.exp(rng.normal(0, 0.1, n))
                for m, a in (("output_tokens_per_s", "output_tokens_per_s"), ("mean_ttft_ms", "ttft_ms"),
                             ("mean_tpot_ms", "tpot_ms"))}
    start = time.perf_counter()
    fitter = CoefficientFitter().fit(inputs, measured)
    seconds = time.perf_counter() - start
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"fit of {n:,} runs ({len(items)} distinct configurations), {len(fitter.coef_)} coefficients: "
          f"{seconds:.2f} s (target < 5 s): {'OK' if seconds < 5 else 'OVER'}")
    print(f"H100 bandwidth efficiency {fitter.coef_['gpu:H100-SXM:bandwidth_efficiency']:.3f} "
          f"+- {fitter.stderr_['gpu:H100-SXM:bandwidth_efficiency']:.3f} (true 0.700)")


if __name__ == "__main__":
    main()
