"""`calibrate fit` on stored runs, and plans that use the fit."""

import csv
import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from calibrate.cli import main as calibrate
from calibrate.fitting import FitResult, run_fit
from calibrate.importers import CSV_COLUMNS
from estimator.cli import main as estimator
from estimator.coefficients import DEFAULT
from estimator.errors import PlannerError
from estimator.plan import PlanRequest, make_plan
from estimator.workload import Workload
from store import Store

TRUE = dataclasses.replace(DEFAULT, per_gpu={"L40S": [0.55, 0.4, 3.0]})
MODELS = ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct")


def measured_csv(tmp_path):
    """Runs measured on an L40S 'host' whose achieved efficiencies are TRUE's, with 5% noise."""
    rng = np.random.default_rng(0)
    rows = []
    for model in MODELS:
        for concurrency in (1, 4, 16, 32):
            workload = Workload(1000, 200, concurrency=concurrency)
            plan = make_plan(PlanRequest(model=model, gpu="L40S", max_model_len=4096), TRUE, workload)
            p = plan.performance
            noise = np.exp(rng.normal(0, 0.05, 3))
            rows.append({"model": model, "gpu": "L40S", "num_gpus": 1, "max_model_len": 4096, "benchmark": "serve",
                         "input_len": 1000, "output_len": 200, "concurrency": concurrency,
                         "output_tokens_per_s": p.output_tokens_per_s * noise[0], "mean_ttft_ms": p.ttft_ms * noise[1],
                         "mean_tpot_ms": p.tpot_ms * noise[2], "vllm_version": "0.32.0"})
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in CSV_COLUMNS})
    return path


def test_fit_then_plan_with_it(tmp_path):
    db = f"sqlite:///{tmp_path}/r.db"
    assert CliRunner().invoke(calibrate, ["import", str(measured_csv(tmp_path)), "--db", db]).exit_code == 0
    r = CliRunner().invoke(calibrate, ["fit", "--db", db, "--json"])
    assert r.exit_code == 0, r.output
    fit = json.loads(r.output)
    assert fit["runs"] == 12 and fit["points"] == 36 and fit["scope"]["gpu"] == "L40S"
    assert abs(fit["coefficients"]["gpu:L40S:bandwidth_efficiency"] - 0.55) < 0.05
    assert fit["metrics"]["cv"] == "leave one model out" and fit["metrics"]["cv_median_ape_output"] < 0.10
    assert any(m.startswith("tp_efficiency[pcie]") for m in fit["refused"])
    again = json.loads(CliRunner().invoke(calibrate, ["fit", "--db", db, "--json"]).output)
    assert again["existing"] and again["fit_id"] == fit["fit_id"] and again["coefficients"] == fit["coefficients"]

    # The library call returns the same result, typed; its dict form is what --json printed.
    result = run_fit(Store.open(db))
    assert isinstance(result, FitResult) and result.fit_id == fit["fit_id"] and result.existing
    assert FitResult.from_dict(result.to_dict()) == result
    assert {k: v for k, v in result.to_dict().items() if k != "existing"} == \
        {k: v for k, v in fit.items() if k != "existing"}
    with pytest.raises(PlannerError, match="schema version 2; this vllm-planner reads version 1"):
        FitResult.from_dict({**fit, "schema_version": 2})
    text = CliRunner().invoke(calibrate, ["fit", "--db", db]).output.splitlines()
    assert text[0] == f"fit {fit['fit_id']} ({fit['name']}) on 12 run(s), 36 points - the same runs were fitted " \
        "before, as this fit"
    assert text[-1] == f"coefficients for `estimator plan`: {fit['file']}"

    args = ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L40S", "--concurrency", "8",
            "--input-len", "1000", "--output-len", "200", "--max-model-len", "4096", "--json"]
    fitted = json.loads(CliRunner().invoke(estimator, args).output)["performance"]
    default = json.loads(CliRunner().invoke(estimator, args + ["--coefficients", "default"]).output)["performance"]
    assert fitted["coefficients_source"] == f"fit-{fit['fit_id']}" and default["coefficients_source"] == "default"
    truth = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L40S", max_model_len=4096), TRUE,
                      Workload(1000, 200, concurrency=8)).performance.output_tokens_per_s
    # an unseen concurrency: the fit predicts it better than the defaults did
    assert abs(fitted["output_tokens_per_s"] / truth - 1) < abs(default["output_tokens_per_s"] / truth - 1)
    assert abs(fitted["output_tokens_per_s"] / truth - 1) < 0.1
    # the interval now comes from the fit's residual spread, not the default +-
    lo, hi = fitted["interval"]["output_tokens_per_s"]
    assert hi / lo < np.exp(2 * 1.2816 * DEFAULT.log_sigma_throughput)
    other_gpu = json.loads(CliRunner().invoke(estimator, ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct",
                                                          "--gpu", "H100", "--json"]).output)
    assert other_gpu["performance"]["coefficients_source"] == "default"
    by_id = CliRunner().invoke(estimator, args + ["--coefficients", str(fit["fit_id"])])
    assert json.loads(by_id.output)["performance"]["coefficients_source"] == f"fit-{fit['fit_id']}"
    missing = CliRunner().invoke(estimator, args + ["--coefficients", "999"])
    assert missing.exit_code == 1 and missing.output.startswith("Error: fit 999 has no coefficients file")


def test_fit_without_runs_is_one_clear_error(tmp_path):
    r = CliRunner().invoke(calibrate, ["fit", "--db", f"sqlite:///{tmp_path}/r.db"])
    assert r.exit_code == 1 and r.output == "Error: no successful runs match; see `calibrate runs list`\n"
