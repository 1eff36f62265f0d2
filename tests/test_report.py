"""`calibrate report` on stored runs: formats, plots, the MAPE gate and drift."""

import csv
import io
import json

from click.testing import CliRunner

from calibrate.cli import main as calibrate
from calibrate.report import Row, drift
from tests.test_fit_cli import measured_csv


def _db(tmp_path):
    db = f"sqlite:///{tmp_path}/r.db"
    assert CliRunner().invoke(calibrate, ["import", str(measured_csv(tmp_path)), "--db", db]).exit_code == 0
    return db


def test_formats_and_plots(tmp_path):
    db = _db(tmp_path)
    before = json.loads(CliRunner().invoke(calibrate, ["report", "--db", db, "--format", "json"]).output)
    assert before["summary"]["by_metric"]["output_tokens_per_s"]["n"] == 12
    assert {r["coefficients"] for r in before["rows"]} == {"default"}
    CliRunner().invoke(calibrate, ["fit", "--db", db])
    after = json.loads(CliRunner().invoke(calibrate, ["report", "--db", db, "--format", "json"]).output)
    out_before = before["summary"]["by_metric"]["output_tokens_per_s"]
    out_after = after["summary"]["by_metric"]["output_tokens_per_s"]
    assert out_after["median_ape"] < out_before["median_ape"] and out_after["median_ape"] < 0.1
    assert 0.5 <= out_after["coverage_80"] <= 1.0
    assert set(after["summary"]["by_gpu"]) >= {"output_tokens_per_s | L40S"}
    assert len(after["summary"]["by_model"]) >= 9
    table = CliRunner().invoke(calibrate, ["report", "--db", db]).output
    assert table.splitlines()[0].split() == ["metric", "n", "median", "|err|", "MAPE", "bias", "in", "80%"]
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(calibrate, ["report", "--db", db, "--format",
                                                                         "csv"]).output)))
    assert len(rows) == 36 and {r["metric"] for r in rows} == {"output_tokens_per_s", "mean_ttft_ms", "mean_tpot_ms"}
    page = tmp_path / "report.html"
    r = CliRunner().invoke(calibrate, ["report", "--db", db, "--format", "html", "--output", str(page), "--plot",
                                       str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    text = page.read_text()
    assert text.startswith("<!doctype html>") and text.count("data:image/png;base64,") == 4
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["error_vs_concurrency.png", "parity_mean_tpot_ms.png", "parity_mean_ttft_ms.png",
                    "parity_output_tokens_per_s.png"]
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_fail_above_mape_is_a_ci_gate(tmp_path):
    db = _db(tmp_path)
    CliRunner().invoke(calibrate, ["fit", "--db", db])
    assert CliRunner().invoke(calibrate, ["report", "--db", db, "--fail-above-mape", "50"]).exit_code == 0
    r = CliRunner().invoke(calibrate, ["report", "--db", db, "--fail-above-mape", "0.1"])
    assert r.exit_code == 1 and "output_tokens_per_s MAPE" in r.output and "is above 0.1%" in r.output


def test_drift_when_newer_runs_fall_outside_the_interval():
    def row(i, measured, when):
        return Row(i, "m", "H100", 8, "output_tokens_per_s", measured, 100.0, 80.0, 125.0, "fit-1", when)

    fitted = "2026-11-01T00:00:00"
    old = [row(i, 100.0, "2026-10-01T00:00:00") for i in range(5)]
    assert drift(old + [row(9, 100.0, "2026-11-02T00:00:00")] * 3, fitted) is None
    note = drift(old + [row(9, 200.0, "2026-11-02T00:00:00")] * 3, fitted)
    assert note.startswith("drift: 3 of 3 runs measured since the fit fall outside its 80% interval")


def test_the_report_as_a_library_call_renders_every_format_the_command_offers(tmp_path):
    import pytest

    from calibrate.cli import REPORT_FORMATS
    from calibrate.report import build_report
    from estimator.errors import PlannerError
    from store import Store

    store = Store.open(_db(tmp_path))
    report = build_report(store, store.list_runs())
    assert len(report.rows) == 36 and report.drift_note is None
    for fmt in REPORT_FORMATS:
        shown = CliRunner().invoke(calibrate, ["report", "--db", str(store.engine.url), "--format", fmt]).output
        assert report.render(fmt).splitlines() == shown.splitlines()
    with pytest.raises(PlannerError, match="report format 'xml'"):
        report.render("xml")
    assert report.speed_errors_above(1e9) == []
    assert sorted(m.split()[0] for m in report.speed_errors_above(0)) == ["mean_tpot_ms", "mean_ttft_ms",
                                                                         "output_tokens_per_s"]
