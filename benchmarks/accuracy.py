"""How right the speed model is on published vLLM results: the public corpus, scored three ways.

    python benchmarks/accuracy.py [--corpus ../shared/corpus/throughput_public.csv]

- prior: the first-principles coefficients, before any measurement;
- defaults: the shipped defaults (fitted to this very corpus, so in-sample);
- leave-one-source-out: for each source, a fit on all the other sources predicts it (what a new source sees).

Prints the median and mean absolute error of output tokens/s, TTFT and TPOT, overall and by source, GPU, load
band (running batch 1, 2-16, 17-128, above) and model family, and the share of points inside the p10-p90
interval; then the rows the planner cannot represent, by reason.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from importlib import resources
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from fit_defaults import DEFAULT_CORPUS

from calibrate.corpus import leave_one_source_out, load
from calibrate.fit import METRICS
from estimator.coefficients import DEFAULT, PRIOR
from estimator.performance import Z80, predict

SHORT = {"output_tokens_per_s": "out tok/s", "mean_ttft_ms": "TTFT", "mean_tpot_ms": "TPOT"}


def band(batch: float) -> str:
    return "1" if batch <= 1 else "2-16" if batch <= 16 else "17-128" if batch <= 128 else ">128"


def family(model: str) -> str:
    models = json.loads(resources.files("estimator").joinpath("data/models.json").read_text())["models"]
    if model in models:
        return models[model].get("model_type", "?")
    config = Path(model) / "config.json"  # a checkpoint the corpus planned from a directory
    return json.loads(config.read_text()).get("model_type", "?") if config.is_file() else "?"


def errors(pred: dict, measured: dict, index) -> dict:
    out = {}
    for metric, attr in METRICS.items():
        m, p = measured[metric][index], pred[attr][index]
        ok = np.isfinite(m) & (m > 0)
        # a saturated prediction (infinite TTFT) counts as 100 times off, like the fit's cap
        out[metric] = np.abs(np.where(np.isfinite(p[ok]), p[ok], 100 * m[ok]) / m[ok] - 1)
    return out


def cell(e: np.ndarray) -> str:
    return f"{100 * np.median(e):5.1f}% {100 * np.mean(e):6.1f}% ({len(e):3d})" if len(e) else " " * 21


COLUMNS = (("prior", "output_tokens_per_s"), ("defaults", "output_tokens_per_s"), ("LOSO", "output_tokens_per_s"),
           ("LOSO", "mean_ttft_ms"), ("LOSO", "mean_tpot_ms"))


def table(title: str, keys: list, preds: dict, measured: dict) -> None:
    print(f"\n{title}: median  mean absolute error (points)")
    print(f"  {'':28}" + "".join(f"  {n + ' ' + SHORT[m]:>21}" for n, m in COLUMNS))
    for key in sorted(set(keys), key=str):
        index = np.array([k == key for k in keys])
        row = "".join(f"  {cell(errors(preds[n], measured, index)[m]):>21}" for n, m in COLUMNS)
        print(f"  {str(key)[:28]:28}{row}")


def coverage(pred: dict, measured: dict, sigma_thr: float, sigma_lat: float) -> dict:
    out = {}
    for metric, attr in METRICS.items():
        sigma = sigma_thr if metric == "output_tokens_per_s" else sigma_lat
        m, p = measured[metric], pred[attr]
        ok = np.isfinite(m) & (m > 0) & np.isfinite(p)
        inside = (m[ok] >= p[ok] * np.exp(-Z80 * sigma)) & (m[ok] <= p[ok] * np.exp(Z80 * sigma))
        out[metric] = (float(inside.mean()) if ok.any() else float("nan"), int(ok.sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    args = parser.parse_args()
    corpus = load(args.corpus)
    obs = corpus.observations
    def as_dict(p):
        return {a: np.asarray(getattr(p, a), dtype=float) for a in METRICS.values()}

    defaults = predict(obs.inputs, DEFAULT)
    preds = {"prior": as_dict(predict(obs.inputs, PRIOR)), "defaults": as_dict(defaults),
             "LOSO": leave_one_source_out(corpus, PRIOR)}
    print(f"corpus {corpus.path} (sha256 {corpus.sha256[:16]}): {len(obs.runs)} rows fitted from "
          f"{len(set(corpus.sources))} sources; {len(corpus.excluded)} rows the planner cannot represent (below)")
    print("\nOverall: median  mean absolute error (points)")
    for name in preds:
        e = errors(preds[name], obs.measured, np.ones(len(obs.runs), bool))
        print(f"  {name:10}" + "".join(f"  {SHORT[m]} {cell(e[m])}" for m in METRICS))
    table("By source (LOSO: that source held out)", list(corpus.sources), preds, obs.measured)
    table("By GPU", [r.gpu for r in obs.runs], preds, obs.measured)
    table("By load band (running batch)", [band(b) for b in np.asarray(defaults.batch, dtype=float)], preds,
          obs.measured)
    table("By model family", [family(r.model) for r in obs.runs], preds, obs.measured)
    print("\nShare of measured points inside the p10-p90 interval")
    for name, sigmas in (("defaults (shipped spreads)", (DEFAULT.log_sigma_throughput, DEFAULT.log_sigma_latency)),
                         ("LOSO (shipped spreads)", (DEFAULT.log_sigma_throughput, DEFAULT.log_sigma_latency))):
        pred = preds["defaults" if name.startswith("defaults") else "LOSO"]
        cov = coverage(pred, obs.measured, *sigmas)
        print(f"  {name:28}" + "".join(f"  {SHORT[m]} {100 * v:5.1f}% of {n:3d}" for m, (v, n) in cov.items()))
    print("\nRows not fitted, by reason")
    reasons = collections.Counter(m.split(": ", 1)[1].split(";")[0][:110] for m in corpus.excluded)
    for reason, count in reasons.most_common():
        print(f"  {count:4d}  {reason}")


if __name__ == "__main__":
    main()
