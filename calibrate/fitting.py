"""`calibrate fit` as a library call: select runs, fit, cross-validate, store with provenance, and write the
coefficient file `estimator plan` reads."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timezone

import numpy as np

from calibrate.fit import CoefficientFitter
from calibrate.memory_fit import fit_memory
from calibrate.observations import from_runs
from estimator.coefficients import choose, save_fit
from estimator.errors import PlannerError
from estimator.paths import coefficients_dir
from estimator.performance import predict
from store import FitRecord, Store

FIT_RESULT_SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What `calibrate fit` did: the stored fit, its coefficients beside their priors, and why a term or a run
    was left alone. `calibrate fit --json` prints ``to_dict()``."""

    fit_id: int
    name: str
    existing: bool  # the same runs were fitted before; this is that fit
    runs: int
    points: int
    coefficients: dict[str, float]
    standard_errors: dict[str, float]
    before: dict[str, float]  # each coefficient's prior (or the value plans used before)
    moved: dict[str, float]  # how far the data moved each term, in prior widths
    unidentified: tuple[str, ...]
    adopted: bool  # later plans use it
    not_adopted: str | None
    refused: tuple[str, ...]
    skipped: tuple[str, ...]
    metrics: dict
    scope: dict
    inputs_hash: str
    file: str  # the coefficient file written
    schema_version: int = FIT_RESULT_SCHEMA_VERSION

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict) -> FitResult:
        version = data.get("schema_version")
        if version != FIT_RESULT_SCHEMA_VERSION:
            raise PlannerError(f"a fit result of schema version {version}; this vllm-planner reads version "
                               f"{FIT_RESULT_SCHEMA_VERSION}: run `calibrate fit` again with this version")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in fields}
        return cls(**values)

    def lines(self) -> list[str]:
        """The result as `calibrate fit` prints it."""
        out = [f"fit {self.fit_id} ({self.name}) on {self.runs} run(s), {self.points} points"
               + (" - the same runs were fitted before, as this fit" if self.existing else ""),
               f"{'coefficient':<44} {'value':>9} {'std err':>9} {'prior':>9} {'moved':>7}"]
        for key, value in self.coefficients.items():
            moved = self.moved.get(key)
            out.append(f"{key:<44} {value:9.4f} {self.standard_errors[key]:9.4f} {self.before[key]:9.4f} "
                       + (f"{moved:+6.2f}w" if moved is not None else "       "))
        out.append("(moved: how far the data moved each term from its prior, in prior widths)")
        out += [f"unidentified: {m}" for m in self.unidentified]
        out += [f"not fitted: {m}" for m in self.refused]
        out += [f"skipped: {m}" for m in self.skipped]
        cv = self.metrics.get("cv_median_ape_output")
        out.append(f"median |error| on output tok/s: {self.metrics['median_ape_output']:.1%} fitted"
                   + (f", {cv:.1%} cross-validated ({self.metrics['cv']})" if cv is not None else
                      f" ({self.metrics['cv']})"))
        out.append(f"coefficients for `estimator plan`: {self.file}" if self.adopted else
                   f"not adopted: {self.not_adopted}; kept in {self.file}")
        return out


def _ape(pred, measured) -> np.ndarray:
    ok = np.isfinite(measured) & (measured > 0)
    return np.abs(np.asarray(pred, dtype=float)[ok] / measured[ok] - 1)


def _cross_validate(obs, fitter_args, base=None) -> tuple[float | None, str, float | None]:
    """Median absolute error on output tokens/s of held-out runs: leave one model out where there are several
    models, else five folds (none below three runs); and the same runs' error with ``base`` unfitted, so the fit
    can be judged against what plans used before."""
    models = sorted({r.model for r in obs.runs})
    n = len(obs.runs)
    if len(models) > 1:
        folds, how = [[i for i, r in enumerate(obs.runs) if r.model == m] for m in models], "leave one model out"
    elif n >= 3:
        k = min(5, n)
        folds, how = [list(range(i, n, k)) for i in range(k)], f"{k}-fold"
    else:
        return None, "too few runs to cross-validate", None
    errors, unfitted = [], []
    for held in folds:
        train = [i for i in range(n) if i not in held]
        if not train:
            continue
        fitter = CoefficientFitter(**fitter_args).fit(obs.inputs.take(np.array(train)),
                                                      {m: v[train] for m, v in obs.measured.items()})
        pred = fitter.predict(obs.inputs.take(np.array(held)))
        errors.extend(_ape(pred.output_tokens_per_s, obs.measured["output_tokens_per_s"][held]).tolist())
        if base is not None:
            before = predict(obs.inputs.take(np.array(held)), base)
            unfitted.extend(_ape(before.output_tokens_per_s, obs.measured["output_tokens_per_s"][held]).tolist())
    return (float(np.median(errors)) if errors else None), how, (float(np.median(unfitted)) if unfitted else None)


def run_fit(store: Store, *, gpu=None, model=None, vllm_version=None, since=None, name=None,
            labels=None) -> FitResult:
    """Fit the stored runs that match, store the fit (once per set of runs) and write its coefficient file."""
    runs = store.list_runs(gpu=gpu, model=model, vllm_version=vllm_version, status="ok", since=since, labels=labels)
    if not runs:
        raise PlannerError("no successful runs match; see `calibrate runs list`")
    gpus = sorted({r.gpu for r in runs if r.gpu})
    obs = from_runs(runs)
    base = choose("default", gpus[0] if gpus else "cpu")
    payload = json.dumps([[r.id, r.metrics] for r in obs.runs], sort_keys=True, default=str)
    inputs_hash = hashlib.sha256((payload + json.dumps(base.to_dict(), sort_keys=True)).encode()).hexdigest()
    existing = store.find_fit_by_hash(inputs_hash)
    fitter = CoefficientFitter(base=base, name=name or "fit").fit(obs.inputs, obs.measured)
    memory_coefficients, memory_values, memory_errors, memory_refused = fit_memory(obs.runs, fitter.coefficients_)
    cv, how, cv_base = _cross_validate(obs, {"base": base}, base)
    pred = fitter.predict(obs.inputs)
    metrics = {"median_ape_output": float(np.median(_ape(pred.output_tokens_per_s,
                                                          obs.measured["output_tokens_per_s"]))),
               "cv_median_ape_output": cv, "cv": how, "cv_median_ape_output_defaults": cv_base,
               "spread": fitter.spread_, "points": fitter.n_points_}
    # Plans never adopt silently a fit that predicts unseen runs worse than the defaults did.
    adopt, why_not = True, None
    if cv is not None and cv_base is not None and cv > cv_base:
        adopt, why_not = False, (f"cross-validated error {cv:.1%} is worse than the defaults' {cv_base:.1%} on the "
                                 "same runs; plans keep their coefficients (use --coefficients FIT_ID to try it)")
    scope = {"gpu": gpus[0] if len(gpus) == 1 else None, "model": model,
             "vllm_version": vllm_version or (sorted({r.vllm_version for r in obs.runs if r.vllm_version}) or [None])[0]}
    names = [p.name for p in fitter.params_]
    if existing is None:
        record = FitRecord(name=name or "fit", coefficients=memory_coefficients.to_dict(),
                           standard_errors={**fitter.stderr_, **memory_errors}, covariance={"parameters": names,
                                                                        "matrix": fitter.covariance_.tolist()},
                           metrics=metrics, scope=scope, inputs_hash=inputs_hash,
                           run_ids=tuple(r.id for r in obs.runs),
                           software={"vllm_planner": _version(),
                                     "vllm": sorted({r.vllm_version for r in obs.runs if r.vllm_version})},
                           created_at=datetime.now(timezone.utc))
        fit_id = store.add_fit(record)
    else:
        fit_id = existing.id
    named = dataclasses.replace(memory_coefficients, name=name or f"fit-{fit_id}", provenance={})
    path = save_fit(named, fit_id, inputs_hash, scope, datetime.now(timezone.utc).isoformat(), coefficients_dir(),
                    adopt=adopt)
    before = {p.name: p.prior for p in fitter.params_}
    before.update({k: (1.0 if k.endswith("_scale") else getattr(fitter.coefficients_, k)) for k in memory_values})
    return FitResult(
        fit_id=fit_id, name=named.name, existing=existing is not None, runs=len(obs.runs), points=fitter.n_points_,
        coefficients={**fitter.coef_, **memory_values}, standard_errors={**fitter.stderr_, **memory_errors},
        before=before, moved=dict(fitter.moved_), unidentified=tuple(fitter.unidentified_), adopted=adopt,
        not_adopted=why_not, refused=tuple(fitter.refused_ + memory_refused), skipped=tuple(obs.skipped),
        metrics=metrics, scope=scope, inputs_hash=inputs_hash, file=str(path))


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vllm-planner")
    except PackageNotFoundError:
        return None
