"""Regenerate the shipped default coefficients (estimator/data/default_coefficients.json) from the public corpus.

    python benchmarks/fit_defaults.py [--corpus ../shared/corpus/throughput_public.csv]

The first-principles priors (estimator.coefficients.PRIOR) are fitted (maximum a posteriori, rows weighted by
source) to every corpus row the planner can represent; the p10-p90 spreads come from leave-one-source-out
residuals, so the band describes a source the fit has not seen. The file records the corpus' sha256, the CSV
lines used, the date and each coefficient's standard error.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # catalog models only; never wait on a hub

from calibrate.corpus import groups, leave_one_source_out, load
from calibrate.fit import CoefficientFitter
from estimator.coefficients import PRIOR, SHIPPED_FILE, SHIPPED_SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "throughput_public.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--output", default=str(ROOT / "estimator" / SHIPPED_FILE))
    args = parser.parse_args()
    corpus = load(args.corpus)
    obs = corpus.observations
    fitter = CoefficientFitter(base=PRIOR, name="default").fit(obs.inputs, obs.measured, groups=groups(corpus))
    loso = leave_one_source_out(corpus, PRIOR)
    fitted = fitter.coefficients_.to_dict()
    values = {k: v for k, v in fitted.items() if k not in ("name", "version", "provenance")
              and v != PRIOR.to_dict()[k]}
    values["log_sigma_throughput"] = loso["log_sigma_throughput"] or PRIOR.log_sigma_throughput
    values["log_sigma_latency"] = loso["log_sigma_latency"] or PRIOR.log_sigma_latency
    data = {
        "schema_version": SHIPPED_SCHEMA_VERSION,
        "provenance": {
            "fitted_to": "the public corpus (shared/corpus/throughput_public.csv)",
            "corpus_sha256": corpus.sha256, "date": date.today().isoformat(),
            "csv_lines_used": [r.id for r in obs.runs], "sources": sorted(set(corpus.sources)),
            "gpus": sorted({r.gpu for r in obs.runs}), "points": fitter.n_points_,
            "interval": "log_sigma_* from leave-one-source-out residuals",
        },
        "coefficients": values,
        "standard_errors": fitter.stderr_,
        "moved_in_prior_widths": fitter.moved_,
        "unidentified": fitter.unidentified_,
    }
    Path(args.output).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{len(obs.runs)} rows from {len(set(corpus.sources))} sources ({len(corpus.excluded)} rows not "
          f"representable); corpus sha256 {corpus.sha256[:16]}")
    for name, value in fitter.coef_.items():
        print(f"  {name:45} {value:10.4g} +- {fitter.stderr_[name]:8.3g}  moved {fitter.moved_[name]:+.2f} prior widths")
    print(f"  log_sigma_throughput {values['log_sigma_throughput']:.3f}, log_sigma_latency "
          f"{values['log_sigma_latency']:.3f} (leave-one-source-out)")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
