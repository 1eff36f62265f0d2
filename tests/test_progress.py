"""Issue 13: calibrate run's live display under a pseudo-terminal, plain lines when piped; vLLM's start-up phase
read from its log."""

import os
import pty
import select
import subprocess
import sys

import pytest

from calibrate.vllm_log import phase
from tests.conftest import ROOT

SCRIPT = """
from calibrate.progress import choose
display = choose()
print(type(display).__name__, flush=True)
display.point_started(0, 2, "concurrency 1", "40 requests")
display.vllm_state("capturing CUDA graphs")
display.point_finished(0, 2, "concurrency 1", 123.4, 118.0, "123.4 output tok/s (predicted 118.0, +5%)")
display.point_started(1, 2, "concurrency 8", "40 requests")
display.point_finished(1, 2, "concurrency 8", 801.0, 760.0, "801.0 output tok/s (predicted 760.0, +5%)")
display.close()
"""


def run_in_pty(code: str) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=follower, stderr=follower, cwd=ROOT,
                            env=dict(os.environ, COLUMNS="120", TERM="xterm-256color"))
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=30)
    os.close(leader)
    return out.decode(errors="replace")


def test_the_live_display_renders_under_a_pseudo_terminal():
    out = run_in_pty(SCRIPT)
    assert out.splitlines()[0].endswith("Live")  # after the sequence that hides the cursor
    assert "\x1b[" in out  # drawn in place with terminal control sequences
    for text in ("measured tok/s", "predicted tok/s", "concurrency 1", "123.4", "118.0", "concurrency 8", "801.0",
                 "vLLM: capturing CUDA graphs", "point 2/2"):
        assert text in out, text


def test_piped_output_degrades_to_lines():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT).stdout
    assert out.splitlines() == [
        "Lines",
        "[1/2] concurrency 1: running (40 requests), elapsed 0 s",
        "vLLM: capturing CUDA graphs",
        "[1/2] concurrency 1: 123.4 output tok/s (predicted 118.0, +5%); elapsed 0 s, about 0 s left",
        "[2/2] concurrency 8: running (40 requests), elapsed 0 s",
        "[2/2] concurrency 8: 801.0 output tok/s (predicted 760.0, +5%); elapsed 0 s, about 0 s left",
    ]
    assert "\x1b[" not in out


@pytest.mark.parametrize("log, expected", [
    ("", "starting"),
    ("INFO gpu_model_runner.py:2000] Starting to load model Qwen/Qwen3-8B...", "loading weights"),
    ("Starting to load model x...\nINFO Model loading took 15.27 GiB and 4.1 seconds", "profiling memory"),
    ("Model loading took 15.27 GiB\nAvailable KV cache memory: 50 GiB\nCapturing CUDA graphs (decode, FULL)",
     "capturing CUDA graphs"),
    ("Capturing CUDA graphs\nGraph capturing finished in 12 secs", "starting the API server"),
    ("Graph capturing finished\nINFO api_server.py:1000] Starting vLLM API server 0 on http://0.0.0.0:8000",
     "serving"),
])
def test_the_start_up_phase_is_the_latest_marker_in_the_log(log, expected):
    assert phase(log) == expected


def test_a_large_import_shows_its_progress_in_a_terminal(tmp_path):
    from tests.test_deployments import write_rows

    path = tmp_path / "runs.csv"
    write_rows(path, 20_000)
    code = (f"import sys; from calibrate.cli import main; sys.argv = ['calibrate', 'import', {str(path)!r}, "
            f"'--db', 'sqlite:///{tmp_path}/r.db', '--progress']; main()")
    out = run_in_pty(code)
    assert "importing" in out and "rows" in out  # the live line, before it is cleared
    assert f"{path}: 20000 run(s) imported" in out
