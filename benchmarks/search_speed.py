"""Times the configuration search. Target: 10,000+ candidates in under a second on 2 cores.

Usage: python benchmarks/search_speed.py [--runs N]
"""

import argparse
import os
import platform
import statistics
import time

from estimator import architecture, gpus
from estimator.coefficients import DEFAULT
from estimator.model_source import catalog_configs
from estimator.search import search
from estimator.workload import Workload

CASES = [
    ("meta-llama/Llama-3.1-70B-Instruct", "H100", 8, Workload(input_len=2000, output_len=500, concurrency=64)),
    ("Qwen/Qwen3-30B-A3B", "L40S", 8, Workload(concurrency=32, ttft_ms=500, tpot_ms=40)),
    ("deepseek-ai/DeepSeek-V3", "H200", 8, Workload(request_rate=4.0, goal="latency")),
    ("meta-llama/Llama-3.1-405B-Instruct", "B200", 8, Workload()),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{runs} runs each")
    print(f"{'case':60} {'candidates':>10} {'median':>9} {'max':>8} {'per 10k':>8}")
    worst = 0.0
    for model, gpu, n, workload in CASES:
        arch = architecture.from_config(catalog_configs()[model], model)
        times, result = [], None
        for _ in range(runs):
            start = time.perf_counter()
            result = search(arch, gpus.lookup(gpu), n, {}, workload, DEFAULT)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        per_10k = median / result.candidates * 10_000
        worst = max(worst, per_10k)
        print(f"{model + ' ' + gpu + ' x' + str(n):60} {result.candidates:10,} {median * 1000:7.0f} ms "
              f"{max(times) * 1000:6.0f} ms {per_10k * 1000:6.0f} ms")
    print(f"worst time per 10,000 candidates: {worst * 1000:.0f} ms (target < 1000 ms): "
          f"{'OK' if worst < 1.0 else 'OVER'}")


if __name__ == "__main__":
    main()
