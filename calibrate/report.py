"""`calibrate report`: predicted against measured for every run and metric, with error figures, interval
coverage and drift. Reporting only reads the store."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from calibrate.observations import from_runs
from calibrate.vllm_log import is_memory_failure
from estimator.coefficients import Coefficients, choose
from estimator.errors import PlannerError
from estimator.performance import predict
from store import Store

SPEED = {"output_tokens_per_s": "output_tokens_per_s", "mean_ttft_ms": "ttft_ms", "mean_tpot_ms": "tpot_ms"}
MEMORY = ("kv_cache_tokens", "weights_gib", "kv_cache_gib")
DRIFT_MIN_RUNS = 2  # points judged before drift is called
DRIFT_SHARE = 0.5  # more than half of the newer runs outside their 80% interval


@dataclass(frozen=True)
class Row:
    run_id: int
    model: str
    gpu: str | None
    concurrency: float | None
    metric: str
    measured: float
    predicted: float
    p10: float | None
    p90: float | None
    coefficients: str
    started_at: str | None

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1 if self.measured else math.inf

    @property
    def inside(self) -> bool | None:
        return None if self.p10 is None else self.p10 <= self.measured <= self.p90


def _coefficients_for(store: Store, fit_id: int | None, gpu: str) -> Coefficients:
    if fit_id is None:
        return choose(None, gpu)
    fit = store.get_fit(fit_id)
    return Coefficients.from_dict({**fit.coefficients, "name": f"fit-{fit_id}"})


def build_rows(store: Store, runs, fit_id: int | None = None) -> tuple[list[Row], list[str]]:
    rows, notes = [], []
    fitted = [r for r in runs if r.status == "ok" and r.benchmark in ("serve", "throughput")]
    if fitted:
        obs = from_runs(fitted)
        notes += list(obs.skipped)
        by_gpu = defaultdict(list)
        for i, r in enumerate(obs.runs):
            by_gpu[r.gpu].append(i)
        for gpu, index in by_gpu.items():
            co = _coefficients_for(store, fit_id, gpu)
            part = obs.take(index)
            pred = predict(part.inputs, co)
            for metric, attr in SPEED.items():
                lo, hi = pred.interval(attr)
                for j, r in enumerate(part.runs):
                    m = part.measured[metric][j]
                    if np.isfinite(m) and m > 0:
                        rows.append(Row(r.id, r.model, r.gpu, r.workload.get("concurrency"), metric, float(m),
                                        float(np.asarray(getattr(pred, attr))[j]), float(lo[j]), float(hi[j]), co.name,
                                        r.started_at.isoformat() if r.started_at else None))
    for r in runs:
        prediction = r.prediction or {}
        for metric in MEMORY:
            if r.metrics.get(metric) and prediction.get(metric):
                rows.append(Row(r.id, r.model, r.gpu, r.workload.get("concurrency"), metric,
                                float(r.metrics[metric]), float(prediction[metric]), None, None,
                                str(prediction.get("coefficients", "at run time")), None))
        # A start that failed for another reason than memory (a timeout, a bad flag) does not judge the memory plan.
        if r.benchmark == "startup" and "fits" in prediction and (r.status == "ok" or is_memory_failure(r.error)):
            rows.append(Row(r.id, r.model, r.gpu, None, "started", 0.0 if r.status != "ok" else 1.0,
                            1.0 if prediction["fits"] else 0.0, None, None, "memory plan", None))
    return rows, notes


def summarise(rows: list[Row]) -> dict:
    """Per metric, and per metric and GPU / model: count, median and mean absolute percentage error, bias
    (median signed error) and the share inside the 80% interval."""
    def figures(group: list[Row]) -> dict:
        if group[0].metric == "started":
            agree = sum(1 for r in group if r.measured == r.predicted)
            return {"n": len(group), "agreement": agree / len(group)}
        errors = np.array([r.error for r in group])
        inside = [r.inside for r in group if r.inside is not None]
        return {"n": len(group), "median_ape": float(np.median(np.abs(errors))),
                "mape": float(np.mean(np.abs(errors))), "bias": float(np.median(errors)),
                "coverage_80": float(np.mean(inside)) if inside else None}

    out = {"by_metric": {}, "by_gpu": {}, "by_model": {}}
    groups = defaultdict(list)
    for r in rows:
        groups[("by_metric", r.metric)].append(r)
        groups[("by_gpu", f"{r.metric} | {r.gpu}")].append(r)
        groups[("by_model", f"{r.metric} | {r.model}")].append(r)
    for (kind, key), group in sorted(groups.items()):
        out[kind][key] = figures(group)
    return out


def drifted(outside: int, judged: int) -> bool:
    """The one drift rule, for `calibrate run` and `calibrate report`: enough points judged, and more than
    DRIFT_SHARE of them outside the 80% interval they were predicted with."""
    return judged >= DRIFT_MIN_RUNS and outside / judged > DRIFT_SHARE


def drift(rows: list[Row], fitted_at: str | None) -> str | None:
    """Runs measured after the coefficients were fitted that fall outside their 80% interval."""
    newer = [r for r in rows if r.metric == "output_tokens_per_s" and r.inside is not None
             and (fitted_at is None or (r.started_at or "") > fitted_at)]
    outside = [r for r in newer if not r.inside]
    if fitted_at is None or not drifted(len(outside), len(newer)):
        return None
    return (f"drift: {len(outside)} of {len(newer)} runs measured since the fit fall outside its 80% interval "
            "(a vLLM, driver or GPU change?): refit with `calibrate fit`")


def table(rows: list[Row], summary: dict) -> str:
    lines = [f"{'metric':<20} {'n':>4} {'median |err|':>13} {'MAPE':>8} {'bias':>8} {'in 80%':>7}"]
    for metric, f in summary["by_metric"].items():
        if "agreement" in f:
            lines.append(f"{metric:<20} {f['n']:>4} {'agreement ' + format(f['agreement'], '.0%'):>13}")
            continue
        cov = "-" if f["coverage_80"] is None else f"{f['coverage_80']:.0%}"
        lines.append(f"{metric:<20} {f['n']:>4} {f['median_ape']:>13.1%} {f['mape']:>8.1%} {f['bias']:>+8.1%} "
                     f"{cov:>7}")
    lines.append("")
    lines.append(f"{'run':>5} {'metric':<20} {'measured':>12} {'predicted':>12} {'error':>8}  coefficients")
    for r in rows:
        lines.append(f"{r.run_id:>5} {r.metric:<20} {r.measured:>12,.2f} {r.predicted:>12,.2f} "
                     f"{r.error if math.isfinite(r.error) else float('nan'):>+8.1%}  {r.coefficients}")
    return "\n".join(lines)


def to_json(rows, summary, notes, drift_note) -> str:
    return json.dumps({"summary": summary, "rows": [dict(asdict(r), error=r.error if math.isfinite(r.error) else None,
                                                         inside_80=r.inside) for r in rows],
                       "notes": notes, "drift": drift_note}, indent=2)


def to_csv(rows) -> str:
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["run_id", "model", "gpu", "concurrency", "metric", "measured", "predicted", "p10", "p90",
                     "error", "coefficients"])
    for r in rows:
        writer.writerow([r.run_id, r.model, r.gpu, r.concurrency, r.metric, r.measured, r.predicted, r.p10, r.p90,
                         r.error if math.isfinite(r.error) else "", r.coefficients])
    return buffer.getvalue()


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlannerError("plots need matplotlib: pip install 'vllm-planner[plots]'") from None
    return plt


def figures(rows: list[Row]) -> dict[str, bytes]:
    """PNG files: a parity plot per speed metric, and the error against concurrency."""
    plt = _pyplot()
    out = {}
    for metric in SPEED:
        group = [r for r in rows if r.metric == metric]
        if not group:
            continue
        fig, ax = plt.subplots(figsize=(5, 5))
        measured = np.array([r.measured for r in group])
        predicted = np.array([r.predicted for r in group])
        lo = np.array([r.p10 for r in group])
        hi = np.array([r.p90 for r in group])
        ax.errorbar(measured, predicted, yerr=[predicted - lo, hi - predicted], fmt="o", alpha=0.7, capsize=2)
        edge = [min(measured.min(), predicted.min()) * 0.8, max(measured.max(), predicted.max()) * 1.25]
        ax.plot(edge, edge, "k--", linewidth=1, label="predicted = measured")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {metric}")
        ax.set_ylabel(f"predicted {metric} (80% interval)")
        ax.set_title(f"{metric}: predicted against measured")
        ax.legend()
        out[f"parity_{metric}.png"] = _png(fig, plt)
    group = [r for r in rows if r.metric in SPEED and r.concurrency]
    if group:
        fig, ax = plt.subplots(figsize=(6, 4))
        for metric in SPEED:
            points = [(r.concurrency, r.error * 100) for r in group if r.metric == metric]
            if points:
                ax.plot(*zip(*sorted(points), strict=True), "o-", label=metric)
        ax.axhline(0, color="k", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("concurrency")
        ax.set_ylabel("error, % (predicted / measured - 1)")
        ax.set_title("Error against concurrency")
        ax.legend()
        out["error_vs_concurrency.png"] = _png(fig, plt)
    return out


def _png(fig, plt) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def to_html(rows, summary, notes, drift_note) -> str:
    """One self-contained page: the summary, each run's errors, and the plots embedded as data URIs."""
    try:
        pngs = figures(rows)
    except PlannerError as err:
        pngs, notes = {}, notes + [str(err)]
    e = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>vllm-planner: predicted against measured</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid "
             "#ccc;padding:3px 8px;text-align:right}th{background:#eee}</style>",
             "<h1>Predicted against measured</h1>"]
    if drift_note:
        parts.append(f"<p><b>{e(drift_note)}</b></p>")
    parts.append("<h2>Summary</h2><table><tr><th>metric</th><th>n</th><th>median |error|</th><th>MAPE</th>"
                 "<th>bias</th><th>inside 80% interval</th></tr>")
    for metric, f in summary["by_metric"].items():
        if "agreement" in f:
            parts.append(f"<tr><td>{e(metric)}</td><td>{f['n']}</td><td colspan=4>agreement {f['agreement']:.0%}</td></tr>")
        else:
            cov = "-" if f["coverage_80"] is None else f"{f['coverage_80']:.0%}"
            parts.append(f"<tr><td>{e(metric)}</td><td>{f['n']}</td><td>{f['median_ape']:.1%}</td><td>{f['mape']:.1%}"
                         f"</td><td>{f['bias']:+.1%}</td><td>{cov}</td></tr>")
    parts.append("</table>")
    for name, data in pngs.items():
        parts.append(f"<h2>{e(name[:-4].replace('_', ' '))}</h2><img alt='{e(name)}' "
                     f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
    parts.append("<h2>Runs</h2><table><tr><th>run</th><th>model</th><th>GPU</th><th>concurrency</th><th>metric</th>"
                 "<th>measured</th><th>predicted</th><th>error</th></tr>")
    for r in rows:
        err = f"{r.error:+.1%}" if math.isfinite(r.error) else "-"
        parts.append(f"<tr><td>{r.run_id}</td><td>{e(r.model)}</td><td>{e(str(r.gpu))}</td><td>{r.concurrency or '-'}"
                     f"</td><td>{e(r.metric)}</td><td>{r.measured:,.2f}</td><td>{r.predicted:,.2f}</td><td>{err}</td></tr>")
    parts.append("</table>")
    for note in notes:
        parts.append(f"<p>{e(note)}</p>")
    return "\n".join(parts)


def write_plots(rows: list[Row], directory: str) -> list[str]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in figures(rows).items():
        (out / name).write_bytes(data)
        paths.append(str(out / name))
    return paths


@dataclass(frozen=True)
class Report:
    """Predicted against measured for a set of runs, judged with one coefficient set: what `calibrate report`
    renders."""

    rows: list[Row]
    summary: dict
    notes: list[str]
    drift_note: str | None

    def render(self, fmt: str) -> str:
        if fmt == "table":
            return table(self.rows, self.summary)
        if fmt == "json":
            return to_json(self.rows, self.summary, self.notes, self.drift_note)
        if fmt == "csv":
            return to_csv(self.rows)
        if fmt == "html":
            return to_html(self.rows, self.summary, self.notes, self.drift_note)
        raise PlannerError(f"report format {fmt!r}: use table, json, csv or html")

    def speed_errors_above(self, percent: float) -> list[str]:
        """The speed metrics whose mean absolute percentage error is above ``percent``, worded for a CI gate."""
        return [f"{m} MAPE {f['mape']:.1%} is above {percent:g}%" for m, f in self.summary["by_metric"].items()
                if m in SPEED and f["mape"] * 100 > percent]


def build_report(store: Store, runs, fit_id: int | None = None) -> Report:
    """Judge ``runs`` with fit ``fit_id`` (default: the coefficients plans use now for their GPUs)."""
    rows, notes = build_rows(store, runs, fit_id)
    judged = store.get_fit(fit_id) if fit_id is not None else store.latest_fit({r.gpu for r in runs})
    return Report(rows, summarise(rows), notes, drift(rows, judged.created_at.isoformat() if judged else None))
