"""Fitting the estimator's coefficients to measurements, through the very prediction function plans use.

scikit-learn's conventions: configuration in the constructor, ``fit()`` returns self, fitted attributes end in
``_``, predicting before fitting raises. Residuals are log(predicted / measured) per metric, so errors are
relative; the loss is robust (soft L1). Standard errors come from the Jacobian at the solution. What the data
cannot identify (TP efficiency without TP>1 runs on that interconnect, the size exponent from one model size)
is not fitted: it keeps its previous value and ``refused_`` says why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import numpy as np

from estimator.coefficients import DEFAULT, Coefficients
from estimator.performance import PerfInputs, Prediction, predict

# measured metric -> prediction attribute; throughput and latency metrics carry separate spreads
METRICS = {"output_tokens_per_s": "output_tokens_per_s", "mean_ttft_ms": "ttft_ms", "mean_tpot_ms": "tpot_ms"}
THROUGHPUT_METRICS = ("output_tokens_per_s",)
# Bounds keep every fitted coefficient physical (efficiencies are fractions of a datasheet peak).
BOUNDS = {"bandwidth_efficiency": (0.02, 1.0), "compute_efficiency": (0.02, 1.0), "step_overhead_ms": (0.0, 200.0),
          "size_exponent": (0.0, 1.0), "tp_efficiency": (0.02, 1.0)}
SIZE_SPREAD_TO_IDENTIFY = 1.5  # active parameters per rank must differ by this factor to fit the size exponent


class NotFittedError(RuntimeError):
    pass


def stack(items: list[PerfInputs]) -> PerfInputs:
    """One PerfInputs whose fields are arrays over the given configurations."""
    out = {}
    for f in fields(PerfInputs):
        values = [getattr(x, f.name) for x in items]
        out[f.name] = np.array(values, dtype=object if f.name in ("gpu", "link") else float)
    return PerfInputs(**out)


@dataclass(frozen=True)
class Parameter:
    name: str  # "gpu:H100-SXM:bandwidth_efficiency", "size_exponent", "tp:nvlink"
    initial: float
    lower: float
    upper: float


class CoefficientFitter:
    def __init__(self, base: Coefficients = DEFAULT, name: str = "fit", loss: str = "soft_l1", f_scale: float = 0.1,
                 max_nfev: int = 200):
        self.base, self.name, self.loss, self.f_scale, self.max_nfev = base, name, loss, f_scale, max_nfev

    # --- parameters ---------------------------------------------------------------------------------------------

    def _parameters(self, x: PerfInputs) -> tuple[list[Parameter], list[str]]:
        params, refused = [], []
        for gpu in sorted(set(x.gpu.tolist())):
            bw, fl, step = self.base.gpu_efficiency(gpu)
            for key, value in (("bandwidth_efficiency", bw), ("compute_efficiency", fl), ("step_overhead_ms", step)):
                params.append(Parameter(f"gpu:{gpu}:{key}", value, *BOUNDS[key]))
        sizes = x.active_params_rank
        if sizes.max() / max(sizes.min(), 1.0) >= SIZE_SPREAD_TO_IDENTIFY:
            params.append(Parameter("size_exponent", self.base.size_exponent, *BOUNDS["size_exponent"]))
        else:
            refused.append(f"size_exponent: every run has about {sizes.min() / 1e9:.2f}B active parameters per rank; "
                           "it needs models of different sizes, so it keeps its previous value "
                           f"{self.base.size_exponent}")
        for kind in ("nvlink", "xgmi", "pcie"):
            on_kind = x.link == kind
            if not on_kind.any():
                continue
            if (x.tp[on_kind] > 1).any():
                params.append(Parameter(f"tp:{kind}", self.base.tp_efficiency[kind], *BOUNDS["tp_efficiency"]))
            else:
                refused.append(f"tp_efficiency[{kind}]: only tensor-parallel size 1 was measured on {kind}; it keeps "
                               f"its previous value {self.base.tp_efficiency[kind]}")
        return params, refused

    def coefficients(self, values: np.ndarray, params: list[Parameter] | None = None) -> Coefficients:
        """The base coefficient set with the fitted values put in."""
        params = params if params is not None else self.params_
        per_gpu = {k: list(v) for k, v in self.base.per_gpu.items()}
        tp = dict(self.base.tp_efficiency)
        changes = {}
        for p, v in zip(params, values):
            kind, _, rest = p.name.partition(":")
            if kind == "gpu":
                gpu, key = rest.rsplit(":", 1)
                row = per_gpu.setdefault(gpu, list(self.base.gpu_efficiency(gpu)))
                row[("bandwidth_efficiency", "compute_efficiency", "step_overhead_ms").index(key)] = float(v)
            elif kind == "tp":
                tp[rest] = float(v)
            else:
                changes[p.name] = float(v)
        return dataclasses.replace(self.base, name=self.name, per_gpu=per_gpu, tp_efficiency=tp, **changes)

    # --- fitting ------------------------------------------------------------------------------------------------

    def _residuals(self, pred: Prediction, measured: dict) -> np.ndarray:
        parts = []
        for metric, attr in METRICS.items():
            m = measured.get(metric)
            if m is None:
                continue
            ok = np.isfinite(m) & (m > 0)
            p = np.asarray(getattr(pred, attr), dtype=float)
            parts.append(np.where(ok, np.log(np.maximum(p, 1e-12) / np.where(ok, m, 1.0)), 0.0))
        return np.concatenate(parts)

    def fit(self, inputs: PerfInputs, measured: dict) -> "CoefficientFitter":
        """``measured``: metric name -> array over the rows of ``inputs`` (nan where not measured)."""
        from scipy.optimize import least_squares

        params, refused = self._parameters(inputs)
        x0 = np.array([p.initial for p in params])
        lower, upper = np.array([p.lower for p in params]), np.array([p.upper for p in params])

        def fun(values):
            return self._residuals(predict(inputs, self.coefficients(values, params)), measured)

        result = least_squares(fun, np.clip(x0, lower, upper), bounds=(lower, upper), loss=self.loss,
                               f_scale=self.f_scale, x_scale="jac", max_nfev=self.max_nfev)
        self.params_, self.refused_ = params, refused
        self.coef_ = {p.name: float(v) for p, v in zip(params, result.x)}
        residuals = fun(result.x)
        used = np.concatenate([np.isfinite(measured[m]) & (measured[m] > 0) for m in METRICS if m in measured])
        n, k = int(used.sum()), len(params)
        dof = max(n - k, 1)
        jac = result.jac[used]
        s2 = float(np.sum(residuals[used] ** 2)) / dof
        cov = np.linalg.pinv(jac.T @ jac) * s2
        self.covariance_ = cov
        self.stderr_ = {p.name: float(np.sqrt(max(cov[i, i], 0.0))) for i, p in enumerate(params)}
        self.residuals_ = residuals
        self.n_points_ = n
        # Interval width: the residual spread plus the fitted parameters' own uncertainty at the data
        # (J cov J^T per point), per metric, as a log-normal sigma.
        spreads = {}
        offset = 0
        for metric in METRICS:
            if metric not in measured:
                continue
            size = len(measured[metric])
            ok = np.isfinite(measured[metric]) & (measured[metric] > 0)
            r = residuals[offset:offset + size][ok]
            j = result.jac[offset:offset + size][ok]
            parameter_var = float(np.mean(np.sum((j @ cov) * j, axis=1))) if len(r) else 0.0
            spreads[metric] = float(np.sqrt(np.mean(r**2) + parameter_var)) if len(r) else None
            offset += size
        self.spread_ = spreads
        thr = [spreads[m] for m in THROUGHPUT_METRICS if spreads.get(m) is not None]
        lat = [spreads[m] for m in ("mean_ttft_ms", "mean_tpot_ms") if spreads.get(m) is not None]
        fitted = self.coefficients(result.x)
        self.coefficients_ = dataclasses.replace(
            fitted, log_sigma_throughput=max(thr) if thr else fitted.log_sigma_throughput,
            log_sigma_latency=max(lat) if lat else fitted.log_sigma_latency)
        return self

    def predict(self, inputs: PerfInputs) -> Prediction:
        if not hasattr(self, "coefficients_"):
            raise NotFittedError("call fit() before predict()")
        return predict(inputs, self.coefficients_)
