"""Issue 13: replicas as vLLM runs them (a replica with no request adds nothing), and imports that stream."""

import json

import pytest
import yaml
from click.testing import CliRunner

from calibrate.cli import main as calibrate_cli
from estimator.artifacts import compose, kubernetes, serve_script
from estimator.cli import main as estimator
from estimator.plan import PlanRequest, make_plan, plan_with_search
from estimator.workload import Workload


def test_busy_replicas_never_exceed_the_requests_that_keep_them_busy():
    assert Workload(concurrency=64).busy_replicas(256) == 64
    assert Workload(concurrency=100).busy_replicas(8) == pytest.approx(100 / 13)
    assert Workload(concurrency=8).busy_replicas(8) == 8
    assert Workload(request_rate=3.0).busy_replicas(4) == 4
    assert Workload(num_prompts=3).busy_replicas(8) == 3
    assert Workload().busy_replicas(5) == 5  # saturation: every replica full
    assert Workload(concurrency=64).busy_replicas(1) == 1


def test_64_requests_on_256_gpus_are_64_replicas_worth_not_256():
    workload = Workload(256, 64, concurrency=64, goal="throughput")
    plan = plan_with_search(PlanRequest(model="Qwen/Qwen3-0.6B", gpu="H100", num_gpus=256), workload)
    best = plan.search["best"]
    one = make_plan(PlanRequest(model="Qwen/Qwen3-0.6B", gpu="H100",
                                tensor_parallel_size=best["gpus_per_replica"], quantization=best["quantization"],
                                max_num_seqs=best["max_num_seqs"], max_num_batched_tokens=best["max_num_batched_tokens"],
                                max_model_len=best["max_model_len"], kv_cache_dtype=best["kv_cache_dtype"]),
                    workload=Workload(256, 64, concurrency=1))
    assert best["replicas"] * best["gpus_per_replica"] <= 256
    assert best["busy_replicas"] <= 64
    # the offered load bounds the total: 64 users, each at most one single-user replica's speed
    assert best["output_tokens_per_s"] <= 64 * float(one.performance.output_tokens_per_s) * 1.001


def test_replicas_render_as_data_parallel_in_one_server():
    plan = plan_with_search(PlanRequest(model="Qwen/Qwen3-8B", gpu="H100", num_gpus=8),
                            Workload(1024, 256, concurrency=256, goal="throughput"))
    replicas = plan.replicas
    assert replicas > 1, plan.search["best"]
    assert plan.data_parallel_size == replicas
    argv = plan.serve_argv
    assert argv[argv.index("--data-parallel-size") + 1] == str(replicas)
    data = plan.to_dict()
    assert data["config"]["data_parallel_size"] == replicas and data["search"]["replicas"] == replicas
    assert f"--data-parallel-size {replicas} in one vllm serve" in " ".join(plan.warnings)
    service = compose(plan)["services"]["vllm"]
    assert service["command"][:len(argv)] == argv
    gpus = plan.config.world_size * replicas
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["count"] == gpus
    deployment = kubernetes(plan)[0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert "--data-parallel-size" in serve_script(plan)


def test_replicas_render_as_separate_servers_when_asked():
    plan = plan_with_search(PlanRequest(model="Qwen/Qwen3-8B", gpu="H100", num_gpus=8),
                            Workload(1024, 256, concurrency=256, goal="throughput"), replicas_as="separate")
    replicas = plan.replicas
    assert replicas > 1 and plan.data_parallel_size == 1 and "--data-parallel-size" not in plan.serve_argv
    services = compose(plan)["services"]
    assert sorted(services) == [f"vllm-{i}" for i in range(replicas)]
    ids = [services[f"vllm-{i}"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
           for i in range(replicas)]
    assert len({g for group in ids for g in group}) == replicas * plan.config.world_size  # no GPU shared
    assert len({tuple(s["ports"]) for s in services.values()}) == replicas
    assert kubernetes(plan)[0]["spec"]["replicas"] == replicas


def test_the_cli_takes_replicas_as_with_search_only(tmp_path):
    base = ["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "H100", "--num-gpus", "8", "--concurrency", "256",
            "--goal", "throughput", "--json"]
    result = CliRunner().invoke(estimator, base + ["--search", "--replicas-as", "separate"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["config"]["data_parallel_size"] == 1 and data["search"]["replicas"] > 1
    refused = CliRunner().invoke(estimator, base + ["--replicas-as", "separate"])
    assert refused.exit_code == 2 and "--replicas-as applies to --search" in refused.stderr
    out = tmp_path / "deploy"
    generated = CliRunner().invoke(estimator, ["generate", *base[1:-1], "--search", "--output-dir", str(out)])
    assert generated.exit_code == 0, generated.output
    assert "--data-parallel-size" in (out / "serve.sh").read_text()
    assert yaml.safe_load((out / "kubernetes.yaml").read_text().split("---")[0])["spec"]["replicas"] == 1


# --- imports that stream (issue 13) ---------------------------------------------------------------------------


def write_rows(path, rows):
    import csv

    from calibrate.importers import CSV_COLUMNS

    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for i in range(rows):
            writer.writerow({"model": "Qwen/Qwen3-8B", "gpu": "H100", "benchmark": "serve", "input_len": 128 + i % 64,
                             "output_len": 64, "concurrency": 1 + i % 8, "output_tokens_per_s": 100 + i % 50,
                             "notes": f"row {i}"})


def test_a_streamed_import_stores_every_row_in_batches_and_a_bad_row_late_in_the_file_keeps_none(tmp_path):
    from calibrate.importers import stream_file
    from store import Store

    path = tmp_path / "runs.csv"
    write_rows(path, 5000)
    streamed = stream_file(path, batch_size=1000)
    batches = list(streamed.batches)
    assert [len(b) for b in batches] == [1000] * 5
    db = f"sqlite:///{tmp_path}/r.db"
    result = CliRunner().invoke(calibrate_cli, ["import", str(path), "--db", db])
    assert result.exit_code == 0 and result.stdout == f"{path}: 5000 run(s) imported\n"
    with path.open("a") as f:  # the same rows again, and a broken one at the very end
        f.write("Qwen/Qwen3-8B,H100,,,,,,,,,,,serve,128,64,1,,,,-1,,,,,,,,,,\n")
    before = len(Store.open(db).list_runs())
    result = CliRunner().invoke(calibrate_cli, ["import", str(path), "--db", db])
    assert result.exit_code == 1 and "line 5002: output_tokens_per_s is -1, negative" in result.stderr
    assert len(Store.open(db).list_runs()) == before  # the 5000 rows read before it were rolled back


def test_kill_9_in_the_middle_of_a_streamed_import_leaves_none_of_the_file(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from store import Store

    path = tmp_path / "big.csv"
    write_rows(path, 150_000)
    db_path = tmp_path / "r.db"
    db = f"sqlite:///{db_path}"
    assert CliRunner().invoke(calibrate_cli, ["db", "upgrade", "--db", db]).exit_code == 0
    proc = subprocess.Popen([sys.executable, "-m", "calibrate", "import", str(path), "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wal = tmp_path / "r.db-wal"
    deadline = time.time() + 60
    while time.time() < deadline and not (wal.exists() and wal.stat().st_size > 2_000_000):
        time.sleep(0.05)  # batches are being written inside the open transaction
    assert proc.poll() is None, "the import finished before it could be interrupted; give it more rows"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert Store.open(db).list_runs() == []
    # and the file imports whole afterwards
    result = CliRunner().invoke(calibrate_cli, ["import", str(path), "--db", db])
    assert result.exit_code == 0 and result.stdout.endswith("150000 run(s) imported\n")
