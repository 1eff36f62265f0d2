"""The memory plan's measured coefficients are what the saved H200 probe runs give, and the summary derives them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from estimator.coefficients import PRIOR

ROOT = Path(__file__).resolve().parent.parent
RESULTS = sorted((ROOT / "benchmarks" / "results" / "h200-probe").glob("*.json"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_memory_summary import summarize  # noqa: E402


@pytest.fixture(scope="module")
def summary():
    return summarize([str(p) for p in RESULTS])


def test_the_shipped_memory_coefficients_are_the_h200_probes(summary):
    assert len(RESULTS) == 10
    assert PRIOR.cuda_graph_mib_per_piece == round(summary["mib_per_piece"], 3)
    assert PRIOR.cuda_graph_mib_per_full_layer == round(summary["mib_per_full_layer"], 3)
    assert PRIOR.cuda_graph_first_mib == round(summary["first_capture_fixed_mib"])
    assert PRIOR.non_torch_base_gib == round(summary["non_torch_growth_mib"] / 1024, 3)
    for name in ("act_hidden_buffers", "act_qkv_buffers", "act_mlp_buffers"):
        assert getattr(PRIOR, name) == round(summary[name], 2)


def test_the_fitted_widths_reproduce_every_measured_shape(summary):
    # four decoder shapes, three widths: each shape's measured peak per token within 1% of the fitted sum
    assert sum(1 for k in summary if k.startswith("activation_measured_over_planned")) == 4
    for path in RESULTS:
        run = json.loads(path.read_text())
        activation = run.get("activation")
        if not activation or "error" in activation or run["args"].get("eager"):
            continue
        a = activation[max(activation, key=int)]
        fitted = (PRIOR.act_hidden_buffers * a["hidden"] + PRIOR.act_qkv_buffers * a["qkv"]
                  + PRIOR.act_mlp_buffers * a["intermediate"])
        assert fitted == pytest.approx(a["per_token_elements"], rel=0.01), path.name


def test_the_summary_refuses_files_it_cannot_read(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_memory_summary.py"), str(broken)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("gpu_memory_summary: cannot read the probe's files (")
    assert "Traceback" not in done.stderr
