"""Does a fit of light load transfer to heavy load? The issue's check, run on the public corpus.

    python benchmarks/transfer.py [--corpus ../shared/corpus/throughput_public.csv]

For every GPU with corpus rows at both loads, as a new user of that GPU would: defaults fitted without the
sources that measured it (MAP from the priors on the other sources), then `calibrate fit`'s fitter, started from
them, fitted to the GPU's rows running at most 8 sequences at once, predicts its rows running more. Prints the
median and mean absolute error of output tokens/s on the heavy rows (and that of the defaults before the user's
fit), and the fitted per-GPU efficiencies, which must stay physical.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from fit_defaults import DEFAULT_CORPUS

from calibrate.corpus import groups, load
from calibrate.fit import CoefficientFitter
from estimator.coefficients import DEFAULT, PRIOR
from estimator.performance import predict

LIGHT = 8  # running sequences: the "concurrency up to 8"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    args = parser.parse_args()
    corpus = load(args.corpus)
    obs, sources = corpus.observations, groups(corpus)
    batch = np.asarray(predict(obs.inputs, DEFAULT).batch, dtype=float)
    measured = obs.measured["output_tokens_per_s"]
    gpus = np.array([r.gpu for r in obs.runs])
    print(f"fit on rows running <= {LIGHT} sequences, predict the rest (output tokens/s, absolute error)")
    for gpu in sorted(set(gpus.tolist())):
        light = np.flatnonzero((gpus == gpu) & (batch <= LIGHT))
        heavy = np.flatnonzero((gpus == gpu) & (batch > LIGHT) & np.isfinite(measured))
        if len(light) < 2 or not len(heavy):
            print(f"  {gpu:16} {len(light)} light, {len(heavy)} heavy rows: not enough to try")
            continue
        others = np.flatnonzero(~np.isin(sources, sources[gpus == gpu]))
        base = CoefficientFitter(base=PRIOR, name="default").fit(
            obs.inputs.take(others), {m: v[others] for m, v in obs.measured.items()}, groups=sources[others])
        fitter = CoefficientFitter(base=base.coefficients_).fit(obs.inputs.take(light),
                                                                {m: v[light] for m, v in obs.measured.items()})
        fitted = np.asarray(fitter.predict(obs.inputs.take(heavy)).output_tokens_per_s, dtype=float)
        error = np.abs(fitted / measured[heavy] - 1)
        before = np.asarray(base.predict(obs.inputs.take(heavy)).output_tokens_per_s, dtype=float)
        unfitted = np.abs(before / measured[heavy] - 1)
        efficiencies = ", ".join(f"{k.rsplit(':', 1)[1]} {v:.3g}" for k, v in fitter.coef_.items()
                                 if k.startswith(f"gpu:{gpu}:"))
        print(f"  {gpu:16} {len(light):2d} light -> {len(heavy):2d} heavy: median {100 * np.median(error):5.1f}%  "
              f"mean {100 * np.mean(error):5.1f}%  (defaults before the fit: median {100 * np.median(unfitted):5.1f}%)  "
              f"fitted: {efficiencies}")


if __name__ == "__main__":
    main()
