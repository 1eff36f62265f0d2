"""The fitter on synthetic runs made from known coefficients plus noise: it recovers them within their reported
standard errors, refuses what the data cannot identify, and its 80% intervals cover about 80% of held-back
points."""

import dataclasses

import numpy as np
import pytest

from calibrate.fit import CoefficientFitter, NotFittedError, stack
from estimator.coefficients import DEFAULT
from estimator.errors import PlannerError
from estimator.performance import perf_inputs, predict
from estimator.plan import PlanRequest, make_plan
from estimator.workload import Workload

TRUE = dataclasses.replace(DEFAULT, name="truth", per_gpu={"H100-SXM": [0.68, 0.52, 2.4], "A100-SXM4-80GB":
                                                             [0.74, 0.47, 1.9]},
                           tp_efficiency={"nvlink": 0.55, "xgmi": 0.55, "pcie": 0.45}, size_exponent=0.15)


def configs(tp_sizes=(1, 2, 4), models=("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct",
                                        "meta-llama/Llama-3.1-70B-Instruct")):
    items = []
    for model in models:
        for gpu in ("H100", "A100-SXM4-80GB"):
            for tp in tp_sizes:
                for concurrency in (1, 4, 16, 64):
                    for lengths in ((128, 128), (1024, 128), (2000, 500)):
                        try:
                            plan = make_plan(PlanRequest(model=model, gpu=gpu, tensor_parallel_size=tp,
                                                         max_model_len=4096),
                                             workload=Workload(*lengths, concurrency=concurrency))
                        except PlannerError:  # e.g. TP 4 on a model with 14 attention heads
                            continue
                        if not plan.memory.fits:
                            continue
                        quant = None
                        items.append(perf_inputs(plan.arch, plan.gpu, plan.config, quant, plan.memory.num_gpu_blocks,
                                                 plan.workload))
    return stack(items)


def synthetic(inputs, sigma, seed):
    rng = np.random.default_rng(seed)
    truth = predict(inputs, TRUE)
    n = len(inputs.tp)
    return {m: np.asarray(getattr(truth, a), dtype=float) * np.exp(rng.normal(0, sigma, n))
            for m, a in (("output_tokens_per_s", "output_tokens_per_s"), ("mean_ttft_ms", "ttft_ms"),
                         ("mean_tpot_ms", "tpot_ms"))}


@pytest.fixture(scope="module")
def data():
    return configs()


def test_recovers_known_coefficients_within_their_standard_errors(data):
    fitter = CoefficientFitter(name="synthetic").fit(data, synthetic(data, 0.05, seed=1))
    expected = {"gpu:H100-SXM:bandwidth_efficiency": 0.68, "gpu:H100-SXM:compute_efficiency": 0.52,
                "gpu:A100-SXM4-80GB:bandwidth_efficiency": 0.74, "tp:nvlink": 0.55, "size_exponent": 0.15}
    for name, value in expected.items():
        assert abs(fitter.coef_[name] - value) <= 4 * fitter.stderr_[name] + 0.02, (name, fitter.coef_[name],
                                                                                     fitter.stderr_[name])
    assert fitter.refused_ == [] and fitter.n_points_ == 3 * len(data.tp)
    assert fitter.coefficients_.name == "synthetic"


def test_same_runs_give_the_same_fit(data):
    measured = synthetic(data, 0.05, seed=2)
    a = CoefficientFitter().fit(data, measured)
    b = CoefficientFitter().fit(data, measured)
    assert a.coef_ == b.coef_ and a.stderr_ == b.stderr_


def test_unidentifiable_coefficients_are_refused_and_kept():
    one_size = configs(tp_sizes=(1,), models=("meta-llama/Llama-3.1-8B-Instruct",))
    fitter = CoefficientFitter().fit(one_size, synthetic(one_size, 0.05, seed=3))
    assert not any(name.startswith(("tp:", "size_exponent")) for name in fitter.coef_)
    assert any(msg.startswith("tp_efficiency[nvlink]: only tensor-parallel size 1 was measured") for msg in
               fitter.refused_)
    assert any(msg.startswith("size_exponent: every run has about") for msg in fitter.refused_)
    assert fitter.coefficients_.size_exponent == DEFAULT.size_exponent
    assert fitter.coefficients_.tp_efficiency == DEFAULT.tp_efficiency


def test_eighty_percent_intervals_cover_about_eighty_percent_of_held_back_points(data):
    n = len(data.tp)
    rng = np.random.default_rng(7)
    order = rng.permutation(n)
    train, test = order[: n // 2], order[n // 2:]
    measured = synthetic(data, 0.15, seed=4)
    fitter = CoefficientFitter().fit(data.take(train), {m: v[train] for m, v in measured.items()})
    pred = fitter.predict(data.take(test))
    lo, hi = pred.interval("output_tokens_per_s")
    inside = (measured["output_tokens_per_s"][test] >= lo) & (measured["output_tokens_per_s"][test] <= hi)
    assert 0.65 <= inside.mean() <= 0.95, inside.mean()


def test_predicting_before_fitting_raises(data):
    with pytest.raises(NotFittedError):
        CoefficientFitter().predict(data)
