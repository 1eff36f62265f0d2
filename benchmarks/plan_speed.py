"""Times `estimator plan` as a whole process and in-process. Target: the process under 0.5 s on 2 cores.

Usage: python benchmarks/plan_speed.py [--runs N]
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

CASES = [
    ["--model", "meta-llama/Llama-3.1-8B-Instruct"],
    ["--model", "deepseek-ai/DeepSeek-V3", "--gpu", "H200", "--tensor-parallel-size", "8"],
    ["--model", "meta-llama/Llama-3.1-405B-Instruct", "--gpu", "A100-SXM4-80GB", "--tensor-parallel-size", "8"],
    ["--model", "google/gemma-3-27b-it", "--gpu", "L40S", "--tensor-parallel-size", "2", "--json"],
]


def process_times(args, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "estimator", "plan", *args], check=True, capture_output=True,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
        times.append(time.perf_counter() - start)
    return times


def in_process_times(args, runs):
    from click.testing import CliRunner

    from estimator.cli import main

    runner, times = CliRunner(), []
    for _ in range(runs):
        start = time.perf_counter()
        result = runner.invoke(main, ["plan", *args])
        assert result.exit_code == 0, result.output
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    cache = "off (PYTHONDONTWRITEBYTECODE set: every run compiles)" if os.environ.get("PYTHONDONTWRITEBYTECODE") \
        else "on"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; bytecode cache {cache}; {runs} runs each")
    print(f"{'case':70} {'process median':>15} {'max':>7} {'in-process median':>18}")
    worst = 0.0
    for args in CASES:
        proc = process_times(args, runs)
        inproc = in_process_times(args, runs)
        worst = max(worst, statistics.median(proc))
        print(f"{' '.join(args):70} {statistics.median(proc) * 1000:12.0f} ms {max(proc) * 1000:4.0f} ms "
              f"{statistics.median(inproc) * 1000:15.1f} ms")
    print(f"worst process median: {worst * 1000:.0f} ms (target < 500 ms): {'OK' if worst < 0.5 else 'OVER'}")


if __name__ == "__main__":
    main()
