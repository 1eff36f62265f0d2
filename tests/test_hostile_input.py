"""Issue 10: hostile and broken input through the real CLIs. Every failure: a non-zero exit, no traceback, at most
three lines on stderr, nothing on stdout under --json, and the results database unchanged."""

import json
import os
import sqlite3

import pytest
from click.testing import CliRunner

from calibrate.cli import main as calibrate
from estimator.cli import main as estimator

PLAN = ["plan", "--model", "Qwen/Qwen3-0.6B", "--gpu", "H100", "--json"]


def refused(cli, args, expected: str | None = None, env=None):
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.stderr and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, result.stderr
    if "--json" in args:
        assert result.stdout == ""
    if expected is not None:
        assert expected in lines[-1], lines[-1]
    return lines[-1]


@pytest.mark.parametrize("flags, expected", [
    (["--num-gpus", "0"], "--num-gpus must be a positive integer, got 0"),
    (["--gpu-memory-utilization", "nan"], "--gpu-memory-utilization must be a finite number, got nan"),
    (["--gpu-memory-utilization", "inf"], "--gpu-memory-utilization must be a finite number, got inf"),
    (["--gpu-memory-gib", "nan"], "--gpu-memory-gib must be a finite number, got nan"),
    (["--request-rate", "nan"], "--request-rate must be a finite number, got nan"),
    (["--ttft-ms", "-inf"], "--ttft-ms must be a finite number, got -inf"),
    (["--block-size", "7"], "--block-size 7: vLLM's attention kernels on H100-SXM take multiples of 16; use 16"),
    (["--block-size", "40"], "use 32 or 48"),
    (["--input-len", "100000", "--output-len", "100"],
     "a request of 100000 + 100 tokens is longer than --max-model-len 40960"),
    (["--max-num-seqs", "64", "--max-num-batched-tokens", "32"],
     "--max-num-batched-tokens 32 is below --max-num-seqs 64"),
])
def test_bad_numbers_are_refused_before_any_work(flags, expected):
    refused(estimator, PLAN + flags, expected)


def test_a_defaulted_max_num_seqs_follows_a_small_token_budget_as_vllm_does():
    result = CliRunner().invoke(estimator, PLAN + ["--max-num-batched-tokens", "64"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"]["max_num_seqs"] == 64


@pytest.mark.parametrize("cli", [estimator, calibrate])
def test_dash_h_is_help(cli):
    result = CliRunner().invoke(cli, ["-h"])
    assert result.exit_code == 0 and result.stdout.startswith("Usage:")


def test_a_text_file_given_as_the_database_is_one_line(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database")
    line = refused(calibrate, ["runs", "list", "--db", f"sqlite:///{path}", "--json"])
    assert line.startswith(f"Error: cannot open the results database sqlite:///{path}: file is not a database")
    assert path.read_text() == "not a database"


def test_a_json_file_nested_too_deeply_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    db = tmp_path / "r.db"
    refused(calibrate, ["import", str(path), "--db", f"sqlite:///{db}"])


def test_an_unexpected_error_is_one_line_unless_debugging(monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("estimator.plan.make_plan", broken)
    line = refused(estimator, PLAN)
    assert line.startswith("Error: unexpected ZeroDivisionError: boom (a bug in vllm-planner; rerun with "
                           "VLLM_PLANNER_DEBUG=1")
    result = CliRunner().invoke(estimator, PLAN, env={"VLLM_PLANNER_DEBUG": "1"})
    assert isinstance(result.exception, ZeroDivisionError)


def test_an_output_directory_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = refused(estimator, ["generate", "--model", "Qwen/Qwen3-0.6B", "--gpu", "H100", "--output-dir",
                               str(blocker / "out")])
    assert "not a directory" in line


def test_an_id_too_large_for_the_database_is_one_line(tmp_path):
    db = tmp_path / "r.db"
    assert CliRunner().invoke(calibrate, ["db", "upgrade", "--db", f"sqlite:///{db}"]).exit_code == 0
    before = db.read_bytes()
    refused(calibrate, ["runs", "show", str(2 ** 80), "--db", f"sqlite:///{db}"])
    assert db.read_bytes() == before


def test_json_output_never_holds_nan_or_infinity():
    result = CliRunner().invoke(estimator, PLAN + ["--request-rate", "100000"])  # far past saturation
    assert result.exit_code == 0, result.output
    assert "Infinity" not in result.stdout and "NaN" not in result.stdout
    plan = json.loads(result.stdout)
    assert plan["performance"]["saturated"] is True and plan["performance"]["ttft_ms"] is None


@pytest.mark.parametrize("args, expected", [
    (["report", "--fail-above-mape", "nan"], "nan is not a finite number"),
    (["report", "--fail-above-mape", "-1"], "-1 is below 0"),
    (["runs", "show", str(2 ** 80)], "is not in the range 1<=x<=9223372036854775807"),
    (["import", "x.csv", "--num-gpus", "0"], "0 is not in the range x>=1"),
    (["run", "--model", "Qwen/Qwen3-0.6B", "--timeout", "inf"], "inf is not a finite number"),
])
def test_calibrate_refuses_bad_numbers_before_touching_anything(tmp_path, args, expected):
    db = tmp_path / "r.db"
    refused(calibrate, args + ["--db", f"sqlite:///{db}"], expected)
    assert not db.exists()
