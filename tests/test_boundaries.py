"""Package boundaries: estimator is pure and light on the plan path."""

import ast
import json
import subprocess
import sys

import pytest

from estimator import architecture
from estimator.model_source import catalog_configs, catalog_ids
from estimator.plan import PlanRequest, make_plan
from tests.conftest import ROOT

# numpy is a dependency, but the plan path prices one configuration with plain numbers (estimator/xp.py) and
# leaves its import time to the search and calibration.
HEAVY = ("scipy", "sqlalchemy", "alembic", "pynvml", "vllm", "torch", "huggingface_hub", "yaml", "matplotlib",
         "numpy")


def test_plan_path_imports_nothing_heavy():
    code = ("import sys; from click.testing import CliRunner; from estimator.cli import main; "
            "r = CliRunner().invoke(main, ['plan', '--model', 'meta-llama/Llama-3.1-8B-Instruct', '--json']); "
            "assert r.exit_code == 0, r.output; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_estimator_imports_nothing_from_calibrate_or_store():
    for path in (ROOT / "estimator").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in ("calibrate", "store"), f"{path.name} imports {name}"


@pytest.mark.parametrize("model_id", catalog_ids())
def test_every_catalog_model_plans_and_serialises(model_id):
    # 2048 tokens (TinyLlama's and OPT's whole context), or GPT-2's 1024
    max_model_len = min(2048, architecture.from_config(catalog_configs()[model_id], model_id).derived_max_model_len)
    plan = make_plan(PlanRequest(model=model_id, gpu="B200", max_model_len=max_model_len))
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["model"]["num_params"] > 0 and data["memory"]["per_gpu"]["weights_gib"] > 0
    assert data["serve"]["argv"][0] == model_id
