"""Issue 10: hostile and broken input through the real CLIs. Every failure: a non-zero exit, no traceback, at most
three lines on stderr, nothing on stdout under --json, and the results database unchanged."""

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# --- generated files ------------------------------------------------------------------------------------------


def hostile_model_dir(tmp_path):
    from estimator.model_source import catalog_config

    name = "evil\ntouch INJECTED; $(touch SUBST) `touch TICKS` 'quote\" model"
    directory = tmp_path / name
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(catalog_config("Qwen/Qwen3-0.6B")))
    return directory


def test_serve_sh_for_a_hostile_model_path_runs_exactly_one_command(tmp_path):
    import subprocess

    model = hostile_model_dir(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(estimator, ["generate", "--model", str(model), "--gpu", "H100", "--output-dir",
                                            str(out)])
    assert result.exit_code == 0, result.output
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "vllm"  # records its argv, one argument per line, NUL-separated
    stand_in.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$ARGV_FILE"\n')
    stand_in.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", ARGV_FILE=str(tmp_path / "argv"))
    run = subprocess.run(["bash", str(out / "serve.sh")], cwd=work, env=env, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0, run.stderr
    argv = (tmp_path / "argv").read_text().split("\0")[:-1]
    assert argv[0] == "serve" and argv[1] == str(model)  # the path arrived whole, as one argument
    assert list(work.iterdir()) == [] and not any(p.name in ("INJECTED", "SUBST", "TICKS") for p in tmp_path.iterdir())


def test_generate_never_overwrites_files_it_did_not_write(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "serve.sh").write_text("#!/bin/sh\necho my own script\n")
    args = ["generate", "--model", "Qwen/Qwen3-0.6B", "--gpu", "H100", "--output-dir", str(out)]
    line = refused(estimator, args, "already holds serve.sh, not written by vllm-planner (or edited since)")
    assert "--force" in line
    assert (out / "serve.sh").read_text() == "#!/bin/sh\necho my own script\n"
    assert sorted(p.name for p in out.iterdir()) == ["serve.sh"]  # nothing else written either
    assert CliRunner().invoke(estimator, args + ["--force"]).exit_code == 0
    assert "vllm serve" in (out / "serve.sh").read_text()
    # its own files it rewrites freely; an edit since makes them the user's again
    assert CliRunner().invoke(estimator, args + ["--max-model-len", "4096"]).exit_code == 0
    (out / "bench.sh").write_text("edited\n")
    refused(estimator, args, "already holds bench.sh")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    from estimator import paths

    out = tmp_path / "out"
    args = ["generate", "--model", "Qwen/Qwen3-0.6B", "--gpu", "H100", "--output-dir", str(out)]
    assert CliRunner().invoke(estimator, args).exit_code == 0
    before = (out / "serve.sh").read_bytes()

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paths.os, "replace", disk_full)
    line = refused(estimator, args + ["--max-model-len", "4096"])
    assert line == "Error: the disk is full; free space or write elsewhere"
    assert (out / "serve.sh").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# --- imports store only what is true ------------------------------------------------------------------------------

CSV_HEAD = "model,gpu,benchmark,input_len,output_len,concurrency,num_prompts,output_tokens_per_s\n"


def stored_runs(db):
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("select id from runs").fetchall()


@pytest.mark.parametrize("row, expected", [
    ("Qwen/Qwen3-8B,H100,serve,128,64,1,10,-5", "line 3: output_tokens_per_s is -5, negative"),
    ("Qwen/Qwen3-8B,H100,serve,128,64,1,10,nan", "column output_tokens_per_s: 'nan' is not a number"),
    ("Qwen/Qwen3-8B,H100,serve,128,64,1,10,12abc", "column output_tokens_per_s: '12abc' is not a number"),
])
def test_an_import_with_an_impossible_number_stores_nothing(tmp_path, row, expected):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(CSV_HEAD + "Qwen/Qwen3-8B,H100,serve,128,64,1,10,50\n")
    bad.write_text(CSV_HEAD + "Qwen/Qwen3-8B,H100,serve,128,64,1,10,50\n" + row + "\n")
    db = tmp_path / "r.db"
    result = CliRunner().invoke(calibrate, ["import", str(bad), str(good), "--db", f"sqlite:///{db}"])
    assert result.exit_code == 1
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(stored_runs(db)) == 1  # the good file only: nothing of the bad one


def test_a_vllm_result_with_a_non_numeric_metric_or_more_completed_than_sent_is_refused(tmp_path):
    base = {"date": "20250101-000000", "backend": "vllm", "model_id": "Qwen/Qwen3-8B", "num_prompts": 10,
            "request_rate": "inf", "max_concurrency": 1, "duration": 10.0, "completed": 10,
            "total_input_tokens": 1280, "total_output_tokens": 640, "request_throughput": 1.0,
            "output_throughput": 64.0, "total_token_throughput": 192.0, "mean_ttft_ms": 20.0,
            "mean_tpot_ms": 10.0}
    db = tmp_path / "r.db"
    for change, expected in (({"output_throughput": "fast"}, "output_throughput is 'fast', not a finite number"),
                             ({"completed": 12}, "12 requests completed (and 0 failed) of 10 sent"),
                             ({"mean_ttft_ms": -1.0}, "mean_ttft_ms is -1, negative"),
                             ({"duration": None}, "request_throughput is given but no duration")):
        path = tmp_path / "r.json"
        path.write_text(json.dumps({**base, **change}))
        result = CliRunner().invoke(calibrate, ["import", str(path), "--gpu", "H100", "--db", f"sqlite:///{db}"])
        assert result.exit_code == 1 and expected in result.stderr, result.stderr
    assert stored_runs(db) == []
    path.write_text(json.dumps({**base, "output_throughput": "64.0"}))  # a numeric string is read deliberately
    assert CliRunner().invoke(calibrate, ["import", str(path), "--gpu", "H100", "--db", f"sqlite:///{db}"]).exit_code == 0


def test_a_csv_saved_by_excel_with_a_byte_order_mark_imports(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (CSV_HEAD + "Qwen/Qwen3-8B,H100,serve,128,64,1,10,50\n").encode())
    db = tmp_path / "r.db"
    result = CliRunner().invoke(calibrate, ["import", str(path), "--db", f"sqlite:///{db}"])
    assert result.exit_code == 0, result.output
    assert len(stored_runs(db)) == 1


def test_a_fifo_is_refused_and_an_empty_directory_does_not_stop_the_other_files(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    empty = tmp_path / "empty"
    empty.mkdir()
    good = tmp_path / "good.csv"
    good.write_text(CSV_HEAD + "Qwen/Qwen3-8B,H100,serve,128,64,1,10,50\n")
    db = tmp_path / "r.db"
    result = CliRunner().invoke(calibrate, ["import", str(fifo), str(empty), str(good), "--db", f"sqlite:///{db}"])
    assert result.exit_code == 1
    assert f"{fifo}: not a regular file" in result.stderr
    assert f"{empty}: a directory without vllm bench sweep results" in result.stderr
    assert len(stored_runs(db)) == 1


def test_reimporting_a_corrected_file_says_how_to_replace_the_stored_one(tmp_path):
    path = tmp_path / "runs.csv"
    db = f"sqlite:///{tmp_path}/r.db"
    path.write_text(CSV_HEAD + "Qwen/Qwen3-8B,H100,serve,128,64,1,10,50\n")
    assert CliRunner().invoke(calibrate, ["import", str(path), "--db", db]).exit_code == 0
    path.write_text(CSV_HEAD + "Qwen/Qwen3-8B,H100,serve,128,64,1,10,55\n")
    result = CliRunner().invoke(calibrate, ["import", str(path), "--db", db])
    assert result.exit_code == 0
    assert result.stderr == (f"{path}: an earlier version of this file is stored as run(s) 1; to replace it, "
                             "`calibrate runs delete 1`\n")


# --- fitted coefficients cannot break planning --------------------------------------------------------------------


def test_a_broken_fit_file_is_skipped_with_a_warning_and_never_blocks_plans(tmp_path, monkeypatch):
    import dataclasses

    from estimator.coefficients import DEFAULT, save_fit
    from estimator.paths import coefficients_dir

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder = coefficients_dir()
    save_fit(dataclasses.replace(DEFAULT, name="fit-1"), 1, "a" * 64, {"gpu": "H100-SXM"}, "2026-01-01", folder)
    (folder / "fit-2-truncated.json").write_text('{"schema_version": 1, "coeffi')
    (folder / "fit-3-edited.json").write_text(json.dumps({"schema_version": 1, "fit_id": 3, "scope": {},
                                                          "coefficients": {"per_gpu": {"H100-SXM": [0.8, "x", 1]}}}))
    result = CliRunner().invoke(estimator, PLAN)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["performance"]["coefficients_source"] == "fit-1"
    skipped = [w for w in plan["warnings"] if w.startswith("skipped the fit file")]
    assert [w.split(":")[0] for w in skipped] == ["skipped the fit file fit-2-truncated.json",
                                                  "skipped the fit file fit-3-edited.json"]
    assert "not three positive numbers" in skipped[1]
    # asked for by path, a broken file is an error, in one line
    refused(estimator, PLAN + ["--coefficients", str(folder / "fit-3-edited.json")], "per_gpu[H100-SXM]")


def test_only_a_memory_failure_judges_the_memory_plan():
    from calibrate.vllm_log import failure_reason, is_memory_failure

    assert is_memory_failure(failure_reason("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"))
    assert is_memory_failure(failure_reason("ValueError: No available memory for the cache blocks."))
    assert not is_memory_failure("timeout: /health did not answer within 900 s")
    assert not is_memory_failure(failure_reason("vllm serve: error: unrecognized arguments: --bogus"))
    assert not is_memory_failure(None)


def test_sigterm_and_sighup_raise_like_ctrl_c_inside_a_run_and_not_after():
    import signal

    from calibrate.runner import Stopped, stop_signals_interrupt, why_interrupted

    before = signal.getsignal(signal.SIGTERM)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(KeyboardInterrupt) as caught, stop_signals_interrupt():
            os.kill(os.getpid(), sig)
        assert isinstance(caught.value, Stopped) and caught.value.signum == sig
        assert why_interrupted(caught.value) == f"interrupted ({signal.Signals(sig).name})"
    assert signal.getsignal(signal.SIGTERM) == before
    assert why_interrupted(KeyboardInterrupt()) == "interrupted (Ctrl-C)"


# --- secrets ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "postgresql://alice:s3cr3t@127.0.0.1:1/results",
    "postgresql://alice:p@ss-s3cr3t@127.0.0.1:1/results",
    "postgresql://alice@127.0.0.1:1/results?password=s3cr3t",
    "postgresql://127.0.0.1:1/results?sslmode=disable&password=s3cr3t",
    "host=127.0.0.1 port=1 password=s3cr3t dbname=results",
])
def test_a_password_in_any_form_of_database_url_never_reaches_a_message(url):
    result = CliRunner().invoke(calibrate, ["runs", "list", "--db", url])
    assert result.exit_code == 1
    assert "s3cr3t" not in result.output and "s3cr3t" not in result.stderr
    assert "***" in result.stderr or "not a database URL" in result.stderr


def test_vllm_does_not_inherit_the_results_database_url(monkeypatch):
    from calibrate.runner import Point, Runner, RunOptions
    from estimator.plan import PlanRequest

    monkeypatch.setenv("VLLM_PLANNER_DB", "postgresql://alice:s3cr3t@db/results")
    options = RunOptions(mode="serve", points=(Point(concurrency=1),), input_len=64, output_len=16,
                         vllm_command=("vllm",))
    runner = Runner(PlanRequest(model="Qwen/Qwen3-0.6B", gpu="H100"), options, None, None, echo=lambda s: None)
    env = runner.env()
    assert "VLLM_PLANNER_DB" not in env and "s3cr3t" not in " ".join(env.values())


# --- config.json and profile values of the wrong kind ------------------------------------------------------------


def model_dir_with(tmp_path, model, change):
    from estimator.model_source import catalog_config

    config = catalog_config(model)
    change(config)
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("model, change, expected", [
    ("Qwen/Qwen3-0.6B", lambda c: c.update(tie_word_embeddings="no"), "tie_word_embeddings='no'; expected true or false"),
    ("Qwen/Qwen3-0.6B", lambda c: c.update(max_position_embeddings="40960"),
     "max_position_embeddings='40960'; expected an integer"),
    ("Qwen/Qwen3-0.6B", lambda c: c.update(sliding_window="4096"), "sliding_window='4096'; expected an integer"),
    ("Qwen/Qwen3-0.6B", lambda c: c.update(hidden_size=float("nan")), "hidden_size=nan; expected an integer"),
    ("Qwen/Qwen3-0.6B", lambda c: c.update(rope_theta="big"), "rope_theta='big'; expected a finite number"),
    ("meta-llama/Llama-3.1-8B-Instruct", lambda c: c["rope_scaling"].update(factor="8"),
     "rope_scaling.factor='8'; expected a finite number"),
    ("Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4", lambda c: c["quantization_config"].update(bits="four"),
     "quantization_config.bits='four'; expected an integer"),
])
def test_a_config_value_of_the_wrong_kind_names_the_key_and_the_model(tmp_path, model, change, expected):
    directory = model_dir_with(tmp_path, model, change)
    line = refused(estimator, ["plan", "--model", str(directory), "--gpu", "H100", "--json"], expected)
    assert f"config.json of {directory}" in line


def test_every_catalog_config_passes_the_kind_checks():
    from estimator.architecture import from_config
    from estimator.model_source import catalog_config, catalog_ids

    for model in catalog_ids():
        from_config(catalog_config(model), model)


@pytest.mark.parametrize("key, value, expected", [
    ("enforce_eager", "false", "enforce_eager is 'false'; expected true or false"),
    ("num_gpus", 0, "num_gpus is 0; expected a positive integer"),
    ("gpu_memory_utilization", ".nan", "gpu_memory_utilization is nan; expected a positive finite number"),
    ("max_model_len", "4096", "max_model_len is '4096'; expected a positive integer"),
    ("model", 7, "model is 7; expected a string"),
    ("limit_mm_per_prompt", 2, "limit_mm_per_prompt is 2; expected counts per modality (a mapping, or its JSON)"),
    ("language_model_only", "yes", "language_model_only is 'yes'; expected true or false"),
    ("enable_expert_parallel", 1, "enable_expert_parallel is 1; expected true or false"),
    ("data_parallel_size", 0, "data_parallel_size is 0; expected a positive integer"),
    ("decode_context_parallel_size", "2", "decode_context_parallel_size is '2'; expected a positive integer"),
])
def test_a_profile_value_of_the_wrong_kind_names_the_profile_and_the_key(tmp_path, key, value, expected):
    path = tmp_path / "profile.yaml"
    literal = value if isinstance(value, str) and value.startswith(".") else json.dumps(value)
    path.write_text(f"schema_version: 1\nflags:\n  model: Qwen/Qwen3-0.6B\n  gpu: H100\n  {key}: {literal}\n")
    refused(estimator, ["plan", "--profile", str(path), "--json"], f"profile {path}: {expected}")


@pytest.mark.parametrize("argv_tail", [[b"--model", b"Qwen/Qwen3-\xff"], [b"--gpu", b"H\xfe100"]])
def test_a_flag_that_is_not_utf8_is_one_line(argv_tail):
    import subprocess
    import sys

    args = [a.decode("utf-8", "surrogateescape") for a in argv_tail]
    base = ["--model", "Qwen/Qwen3-0.6B", "--gpu", "H100"]
    run = subprocess.run([sys.executable, "-m", "estimator", "plan", *base, *[os.fsencode(a) for a in args]],
                         capture_output=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=120)
    assert run.returncode != 0
    err = run.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and 1 <= len([x for x in err.splitlines() if x.strip()]) <= 3, err


# --- property tests: whatever config.json or profile holds, the planner answers or refuses in one line -----------


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)
CONFIG_KEYS = sorted(("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                      "intermediate_size", "vocab_size", "max_position_embeddings", "sliding_window",
                      "tie_word_embeddings", "rope_theta", "rope_scaling", "torch_dtype", "quantization_config",
                      "architectures", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
                      "layer_types", "use_sliding_window", "max_window_layers"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(["Qwen/Qwen3-0.6B", "Qwen/Qwen3-30B-A3B", "meta-llama/Llama-3.1-8B-Instruct",
                              "Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4", "google/gemma-3-27b-it"]),
       changes=st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUES | st.integers(-3, 70000),
                               min_size=1, max_size=3))
def test_any_config_json_is_planned_or_refused_with_a_planner_error(model, changes):
    import tempfile

    from estimator.architecture import from_config
    from estimator.errors import PlannerError
    from estimator.model_source import catalog_config
    from estimator.plan import PlanRequest, make_plan
    from estimator.workload import Workload

    config = {**catalog_config(model), **changes}
    try:
        arch = from_config(config, "hypothesis-model")
    except PlannerError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert arch.num_layers > 0 and arch.hidden_size > 0
    with tempfile.TemporaryDirectory() as directory:  # and the whole plan, from a model directory
        (Path(directory) / "config.json").write_text(json.dumps(config, allow_nan=True))
        try:
            plan = make_plan(PlanRequest(model=directory, gpu="H100", max_model_len=1024), None,
                             Workload(256, 64, concurrency=4))
        except PlannerError as err:
            assert str(err) and "\n" not in str(err)
            return
        assert plan.memory.num_gpu_blocks >= 0


PROFILE_KEYS = ("num_gpus", "max_model_len", "gpu_memory_utilization", "enforce_eager", "block_size", "dtype",
                "request_rate", "concurrency", "input_len", "kv_cache_dtype", "coefficients", "goal",
                "limit_mm_per_prompt", "language_model_only", "kv_cache_memory_bytes", "data_parallel_size",
                "enable_expert_parallel", "decode_context_parallel_size")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(st.sampled_from(PROFILE_KEYS),
                              st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=8)
                              | st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=4))
def test_any_profile_is_planned_or_refused_in_one_line(tmp_path, values):
    import yaml

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "flags": {"model": "Qwen/Qwen3-0.6B", "gpu": "H100",
                                                                   **values}}))
    result = CliRunner().invoke(estimator, ["plan", "--profile", str(path), "--json"])
    if result.exit_code == 0:
        plan = json.loads(result.stdout)
        assert plan["config"]["enforce_eager"] is (values.get("enforce_eager") is True)
    else:
        assert result.exception is None or isinstance(result.exception, SystemExit)
        lines = [x for x in result.stderr.splitlines() if x.strip()]
        assert 1 <= len(lines) <= 3 and "unexpected" not in result.stderr, result.stderr


def test_a_file_the_database_cannot_hold_is_refused_and_the_files_after_it_are_imported(tmp_path, db_url):
    from store import Store

    long_name = "org/" + "m" * 1030
    bad, good = tmp_path / "bad.csv", tmp_path / "good.csv"
    bad.write_text(CSV_HEAD + "Qwen/Qwen3-8B,H100,serve,128,64,1,10,50\n" + f"{long_name},H100,serve,128,64,1,10,50\n")
    good.write_text(CSV_HEAD + "Qwen/Qwen3-8B,H100,serve,128,64,1,10,50\n")
    assert CliRunner().invoke(calibrate, ["db", "upgrade", "--db", db_url]).exit_code == 0  # PostgreSQL: by hand
    result = CliRunner().invoke(calibrate, ["import", str(bad), str(good), "--db", db_url])
    assert result.exit_code == 1
    assert f"error: {bad}: record 1: model is 1034 characters long, more than the 1024" in result.stderr
    assert f"{good}: 1 run(s) imported" in result.stdout
    assert [r.source_file for r in Store.open(db_url).list_runs()] == [str(good)]


@pytest.mark.parametrize("cli, args, expected", [
    (calibrate, ["runs", "list", "--db", ""], "--db is empty"),
    (calibrate, ["run", "--model", "Qwen/Qwen3-0.6B", "--concurrency", "4", "--env", "X"], "--env takes KEY=VALUE"),
    (estimator, ["plan", "--model", "Qwen/Qwen3-0.6B", "--gpu-memory-gib", "1e308"], "more than any device has"),
    (calibrate, ["runs", "list", "--db", "sqlite:////nonexistent-dir/\0x.db"], None),
])
def test_more_hostile_flags_are_one_line(cli, args, expected):
    refused(cli, args, expected)


def test_a_corrupt_sqlite_file_is_one_line_and_left_as_it_was(tmp_path):
    db = tmp_path / "r.db"
    assert CliRunner().invoke(calibrate, ["db", "upgrade", "--db", f"sqlite:///{db}"]).exit_code == 0
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3] + b"\0garbage" * 50)
    before = db.read_bytes()
    line = refused(calibrate, ["runs", "list", "--db", f"sqlite:///{db}"])
    assert "database disk image is malformed" in line or "file is not a database" in line
    assert db.read_bytes() == before


def test_messages_name_the_flag_as_the_user_typed_it():
    short = refused(estimator, ["plan", "--model", "Qwen/Qwen3-0.6B", "--gpu", "H100", "-tp", "3"])
    assert short == "Error: -tp 3 does not divide the 16 attention heads of this model; use a divisor of 16"
    long = refused(estimator, ["plan", "--model", "Qwen/Qwen3-0.6B", "--gpu", "H100", "--tensor-parallel-size", "3"])
    assert long.startswith("Error: --tensor-parallel-size 3 does not divide")
