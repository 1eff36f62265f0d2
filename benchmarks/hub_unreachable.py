"""How long `estimator plan` takes to say that the Hugging Face hub cannot be reached (target: under 5 s).

    python benchmarks/hub_unreachable.py

Points HF_ENDPOINT at a local port nothing listens on (connection refused, where huggingface_hub's retry loop
used to take about 24 s) and at a server that never answers (the timeout), for a model that is not cached.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def timed(endpoint: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        env.update(HF_ENDPOINT=endpoint, HF_HOME=home)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "estimator", "plan", "--model", "acme/not-cached", "--gpu", "H100"],
                             capture_output=True, text=True, env=env)
        return time.perf_counter() - start, run.stderr.strip()[:110]


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}"
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections and never answers
    threading.Thread(target=lambda: [silent.accept() for _ in range(16)], daemon=True).start()
    for name, endpoint in (("connection refused", refused),
                           ("server never answers", f"http://127.0.0.1:{silent.getsockname()[1]}")):
        seconds, said = timed(endpoint)
        print(f"{name:22} {seconds:5.1f} s (target 5 s): {said}...")


if __name__ == "__main__":
    main()
