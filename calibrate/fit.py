"""Fitting the estimator's coefficients to measurements, through the very prediction function plans use.

scikit-learn's conventions: configuration in the constructor, ``fit()`` returns self, fitted attributes end in
``_``, predicting before fitting raises. The fit is regularised (maximum a posteriori): each coefficient has a
prior, centred on the set the fit starts from (the shipped defaults) with a width that says how far data may
move it, and a physical range (no efficiency above the datasheet, no negative overhead). Residuals are
log(predicted / measured) per metric over an assumed measurement spread, so errors are relative; the loss is
robust (soft L1). A term the data cannot inform stays at its prior and ``unidentified_`` says so; what cannot
be fitted at all (TP efficiency without TP>1 runs on that interconnect, the size exponent from one model size)
is left out and ``refused_`` says why.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

import numpy as np

from estimator.coefficients import DEFAULT, INTERCONNECTS, Coefficients
from estimator.performance import PerfInputs, Prediction, predict

# measured metric -> prediction attribute; throughput and latency metrics carry separate spreads
METRICS = {"output_tokens_per_s": "output_tokens_per_s", "mean_ttft_ms": "ttft_ms", "mean_tpot_ms": "tpot_ms"}
THROUGHPUT_METRICS = ("output_tokens_per_s",)
GPU_KEYS = ("bandwidth_efficiency", "compute_efficiency", "step_overhead_ms")
SIZE_SPREAD_TO_IDENTIFY = 1.5  # active parameters per rank must differ by this factor to fit the size exponent
# A term whose posterior spread is still this share of its prior width learned (almost) nothing from the data.
UNIDENTIFIED_SHARE = 0.7
MAX_LOG_ERROR = math.log(100.0)  # residuals are capped at a factor of 100 either way
START_MARGIN = 0.05  # prior widths between a bound and where the optimiser starts


@dataclass(frozen=True)
class Prior:
    """How far data may move a coefficient: a normal prior on log(value) (``log``) or on the value itself, and
    the physical range it may never leave."""

    width: float
    lower: float
    upper: float
    log: bool = True


# Widths say how sure the physics is: datasheet fractions within about +-30-40%, CPU-side costs within a
# factor of e or so. Ranges are what the hardware allows.
PRIORS = {
    "bandwidth_efficiency": Prior(0.3, 0.05, 1.0),
    "compute_efficiency": Prior(0.35, 0.05, 1.0),
    "step_overhead_ms": Prior(0.7, 0.05, 50.0),
    "size_exponent": Prior(0.1, 0.0, 0.5, log=False),
    "tp_efficiency": Prior(0.4, 0.02, 1.0),
    "allreduce_latency_us": Prior(0.7, 2.0, 500.0),
    "seq_overhead_us": Prior(1.0, 0.1, 500.0),
    "layer_overhead_us": Prior(0.7, 0.5, 200.0),
    "request_overhead_ms": Prior(1.0, 0.1, 200.0),
    "api_request_ms": Prior(1.0, 0.05, 50.0),
    "api_token_us": Prior(1.0, 0.1, 500.0),
    "wave_sync": Prior(0.3, 0.0, 1.0, log=False),
    "attention_bandwidth_factor": Prior(0.3, 0.05, 1.0),
    "low_bit_weight_factor": Prior(0.4, 0.05, 1.0),
    "low_bit_compute_factor": Prior(0.4, 0.05, 1.0),
    "moe_bandwidth_factor": Prior(0.3, 0.05, 1.0),
    "rocm_attention_factor": Prior(0.4, 0.05, 1.0),
    "rocm_moe_factor": Prior(0.4, 0.05, 1.0),
}


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
    name: str  # "gpu:H100-SXM:bandwidth_efficiency", "tp:nvlink", or a Coefficients field
    prior: float  # the centre: the value the fit starts from
    spec: Prior

    def to_z(self, value: float) -> float:
        """The value in prior standard deviations from the centre (the space the optimiser works in)."""
        return (self._t(value) - self._t(self.prior)) / self.spec.width

    def from_z(self, z: float) -> float:
        t = self._t(self.prior) + z * self.spec.width
        return float(math.exp(t)) if self.spec.log else float(t)

    def _t(self, value: float) -> float:
        return math.log(max(value, 1e-12)) if self.spec.log else value

    @property
    def z_bounds(self) -> tuple[float, float]:
        return self.to_z(self.spec.lower) if self.spec.lower > 0 or not self.spec.log else -50.0, \
            self.to_z(self.spec.upper)


class CoefficientFitter:
    def __init__(self, base: Coefficients = DEFAULT, name: str = "fit", loss: str = "soft_l1", f_scale: float = 2.0,
                 max_nfev: int = 300, throughput_sigma: float = 0.2, latency_sigma: float = 0.35):
        self.base, self.name, self.loss, self.f_scale, self.max_nfev = base, name, loss, f_scale, max_nfev
        self.throughput_sigma, self.latency_sigma = throughput_sigma, latency_sigma

    # --- parameters ---------------------------------------------------------------------------------------------

    def _parameters(self, x: PerfInputs, measured: dict) -> tuple[list[Parameter], list[str]]:
        params, refused = [], []
        for gpu in sorted(set(x.gpu.tolist())):
            for key, value in zip(GPU_KEYS, self.base.gpu_efficiency(gpu), strict=True):
                params.append(Parameter(f"gpu:{gpu}:{key}", value, PRIORS[key]))
        sizes = x.active_params_rank
        if sizes.max() / max(sizes.min(), 1.0) >= SIZE_SPREAD_TO_IDENTIFY:
            params.append(Parameter("size_exponent", self.base.size_exponent, PRIORS["size_exponent"]))
        else:
            refused.append(f"size_exponent: every run has about {sizes.min() / 1e9:.2f}B active parameters per rank; "
                           "it needs models of different sizes, so it keeps its previous value "
                           f"{self.base.size_exponent}")
        for kind in INTERCONNECTS:
            on_kind = x.link == kind
            if not on_kind.any():
                continue
            if (x.tp[on_kind] > 1).any():
                params.append(Parameter(f"tp:{kind}", self.base.tp_efficiency[kind], PRIORS["tp_efficiency"]))
                params.append(Parameter(f"allreduce:{kind}", self.base.allreduce_latency_us[kind],
                                        PRIORS["allreduce_latency_us"]))
            else:
                refused.append(f"tp_efficiency[{kind}]: only tensor-parallel size 1 was measured on {kind}; it keeps "
                               f"its previous value {self.base.tp_efficiency[kind]}")
        has_ttft = np.isfinite(measured.get("mean_ttft_ms", np.array([np.nan]))).any()
        relevant = {
            "seq_overhead_us": True, "attention_bandwidth_factor": True,
            "layer_overhead_us": bool(x.layers.max() >= SIZE_SPREAD_TO_IDENTIFY * x.layers.min()),
            "request_overhead_ms": has_ttft,
            "wave_sync": has_ttft and bool(((x.request_rate <= 0) & (x.online > 0)).any()),
            "api_request_ms": bool((x.online > 0).any()), "api_token_us": bool((x.online > 0).any()),
            "low_bit_weight_factor": bool((x.weight_only_low_bit > 0).any()),
            "low_bit_compute_factor": bool((x.weight_only_low_bit > 0).any()),
            "moe_bandwidth_factor": bool((x.num_experts > 0).any()),
            "rocm_attention_factor": bool((x.rocm > 0).any()),
            "rocm_moe_factor": bool(((x.rocm > 0) & (x.num_experts > 0)).any()),
        }
        for key, wanted in relevant.items():
            if wanted:
                params.append(Parameter(key, getattr(self.base, key), PRIORS[key]))
        return params, refused

    def coefficients(self, values, params: list[Parameter] | None = None) -> Coefficients:
        """The base coefficient set with the fitted values put in."""
        params = params if params is not None else self.params_
        per_gpu = {k: list(v) for k, v in self.base.per_gpu.items()}
        tp = dict(self.base.tp_efficiency)
        latency = dict(self.base.allreduce_latency_us)
        changes = {}
        for p, v in zip(params, values, strict=True):
            kind, _, rest = p.name.partition(":")
            if kind == "gpu":
                gpu, key = rest.rsplit(":", 1)
                row = per_gpu.setdefault(gpu, list(self.base.gpu_efficiency(gpu)))
                row[GPU_KEYS.index(key)] = float(v)
            elif kind == "tp":
                tp[rest] = float(v)
            elif kind == "allreduce":
                latency[rest] = float(v)
            else:
                changes[p.name] = float(v)
        return dataclasses.replace(self.base, name=self.name, per_gpu=per_gpu, tp_efficiency=tp,
                                   allreduce_latency_us=latency, **changes)

    # --- fitting ------------------------------------------------------------------------------------------------

    def _residuals(self, pred: Prediction, measured: dict) -> np.ndarray:
        """log(predicted / measured) per metric, stacked (0 where not measured)."""
        parts = []
        for metric, attr in METRICS.items():
            m = measured.get(metric)
            if m is None:
                continue
            ok = np.isfinite(m) & (m > 0)
            p = np.asarray(getattr(pred, attr), dtype=float)
            ratio = np.log(np.maximum(p, 1e-12) / np.where(ok, m, 1.0))
            # A saturated prediction (infinite TTFT) is a large error, but a bounded one.
            ratio = np.where(np.isfinite(ratio), np.clip(ratio, -MAX_LOG_ERROR, MAX_LOG_ERROR), MAX_LOG_ERROR)
            parts.append(np.where(ok, ratio, 0.0))
        return np.concatenate(parts)

    def fit(self, inputs: PerfInputs, measured: dict, groups=None) -> CoefficientFitter:
        """``measured``: metric name -> array over the rows of ``inputs`` (nan where not measured). ``groups``
        (optional, one label per row, e.g. the source): rows of one group are not independent, so each group
        weighs as about sqrt(its size) rows rather than its size."""
        from scipy.optimize import least_squares

        params, refused = self._parameters(inputs, measured)
        n_rows = len(inputs.tp)
        row_weight = np.ones(n_rows)
        if groups is not None:
            labels = np.asarray(groups, dtype=object)
            counts = {g: int((labels == g).sum()) for g in set(labels.tolist())}
            row_weight = np.array([1 / math.sqrt(counts[g]) for g in labels.tolist()])
        present = [m for m in METRICS if m in measured]
        sigma = np.concatenate([np.full(n_rows, self.throughput_sigma if m in THROUGHPUT_METRICS
                                        else self.latency_sigma) for m in present])
        weight = np.tile(row_weight, len(present)) / sigma
        used = np.concatenate([np.isfinite(measured[m]) & (measured[m] > 0) for m in present])
        lower = np.array([p.z_bounds[0] for p in params])
        upper = np.array([p.z_bounds[1] for p in params])

        def values_of(z):
            return [p.from_z(v) for p, v in zip(params, z, strict=True)]

        def fun(z):
            data = self._residuals(predict(inputs, self.coefficients(values_of(z), params)), measured) * weight
            return np.concatenate([data, z])  # the prior: each term's distance from its centre, in prior widths

        # Start a little inside the range: a term whose prior sits on a bound (wave_sync = 1) would otherwise
        # truncate every step the optimiser takes towards that bound to nothing.
        start = np.clip(np.zeros(len(params)), lower + START_MARGIN, upper - START_MARGIN)
        result = least_squares(fun, start, bounds=(lower, upper), loss=self.loss, f_scale=self.f_scale,
                               max_nfev=self.max_nfev)
        values = values_of(result.x)
        self.params_, self.refused_ = params, refused
        self.coef_ = {p.name: v for p, v in zip(params, values, strict=True)}
        self.moved_ = {p.name: float(z) for p, z in zip(params, result.x, strict=True)}  # in prior widths
        n_data = len(used)
        jac = result.jac
        data_jac = jac[:n_data][used]
        residuals = self._residuals(predict(inputs, self.coefficients(values, params)), measured)
        whitened = (residuals * weight)[used]
        # Posterior covariance in prior widths: the data's information, discounted where they scatter more than
        # assumed (a robust scale, so a few outliers do not discount everything), plus the prior's.
        scale = 1.4826 * float(np.median(np.abs(whitened))) if len(whitened) else 1.0
        inflation = max(1.0, scale ** 2)
        cov_z = np.linalg.pinv(data_jac.T @ data_jac / inflation + np.eye(len(params)))
        sd_z = np.sqrt(np.maximum(np.diag(cov_z), 0.0))
        self.covariance_ = cov_z
        self.stderr_ = {p.name: float(s * p.spec.width * (v if p.spec.log else 1.0))
                        for p, s, v in zip(params, sd_z, values, strict=True)}
        self.unidentified_ = [f"{p.name}: the data do not inform it (posterior {s:.2f} of its prior width); it stays "
                              f"at its prior {p.prior:g}" for p, s in zip(params, sd_z, strict=True) if s > UNIDENTIFIED_SHARE]
        self.residuals_ = residuals
        self.n_points_ = int(used.sum())
        # Interval width: the residual spread plus the fitted parameters' own uncertainty at the data, per metric,
        # as a log-normal sigma.
        spreads = {}
        offset = 0
        for metric in present:
            ok = np.isfinite(measured[metric]) & (measured[metric] > 0)
            r = residuals[offset:offset + n_rows][ok]
            j = (jac[offset:offset + n_rows] / np.maximum(weight[offset:offset + n_rows], 1e-12)[:, None])[ok]
            parameter_var = float(np.mean(np.sum((j @ cov_z) * j, axis=1))) if len(r) else 0.0
            spreads[metric] = float(np.sqrt(np.mean(r ** 2) + parameter_var)) if len(r) else None
            offset += n_rows
        self.spread_ = spreads
        thr = [spreads[m] for m in THROUGHPUT_METRICS if spreads.get(m) is not None]
        lat = [spreads[m] for m in ("mean_ttft_ms", "mean_tpot_ms") if spreads.get(m) is not None]
        fitted = self.coefficients(values, params)
        self.coefficients_ = dataclasses.replace(
            fitted, log_sigma_throughput=max(thr) if thr else fitted.log_sigma_throughput,
            log_sigma_latency=max(lat) if lat else fitted.log_sigma_latency)
        return self

    def predict(self, inputs: PerfInputs) -> Prediction:
        if not hasattr(self, "coefficients_"):
            raise NotFittedError("call fit() before predict()")
        return predict(inputs, self.coefficients_)
