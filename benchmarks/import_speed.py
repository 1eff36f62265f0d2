"""How fast and how lean `calibrate import` is on a large CSV: the issue's 200,000 rows.

    python benchmarks/import_speed.py [--rows 200000] [--db URL]

Writes a CSV of the documented columns (one model and GPU, lengths and metrics varied), imports it into a fresh
SQLite file (or --db) with `calibrate import` as a separate process, and prints the wall time and that process's
peak memory (targets: under 30 s and 250 MB on 2 cores). Then imports it again (nothing added) and times that.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calibrate.importers import CSV_COLUMNS


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for i in range(rows):
            writer.writerow({"model": "Qwen/Qwen3-8B", "gpu": "H100", "num_gpus": 1, "benchmark": "serve",
                             "input_len": 128 + i % 2048, "output_len": 64 + i % 512, "concurrency": 1 + i % 256,
                             "num_prompts": 1000, "request_throughput": 1 + (i % 97) / 10,
                             "output_tokens_per_s": 100 + i % 5000, "mean_ttft_ms": 20 + i % 300,
                             "mean_tpot_ms": 5 + (i % 50) / 3, "vllm_version": "0.32.0",
                             "source": "benchmarks/import_speed.py", "notes": f"synthetic row {i}"})


def timed_import(path: Path, db: str) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "calibrate", "import", str(path), "--db", db], capture_output=True,
                         text=True)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if out.returncode != 0:
        sys.exit(f"import failed: {out.stderr.strip()}")
    return wall, max(peak_kib, before) / 1024, out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.csv"
        write_csv(path, args.rows)
        db = args.db or f"sqlite:///{tmp}/results.db"
        print(f"{args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB CSV, {os.cpu_count()} CPUs")
        wall, peak, said = timed_import(path, db)
        print(f"import: {wall:.1f} s, peak memory {peak:.0f} MB (targets: 30 s, 250 MB) - {said}")
        wall, peak, said = timed_import(path, db)
        print(f"again:  {wall:.1f} s - {said}")


if __name__ == "__main__":
    main()
