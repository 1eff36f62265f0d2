"""Issue 9: the public corpus as data, canonical GPU names, the load terms of the step model, the regularised
fit and the shipped defaults' provenance."""

import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from calibrate.cli import main as calibrate
from calibrate.fit import PRIORS, CoefficientFitter, stack
from calibrate.importers import CSV_COLUMNS, parse_file
from estimator.cli import main as estimator
from estimator.coefficients import DEFAULT, PRIOR, choose, save_fit
from estimator.errors import PlannerError
from estimator.gpus import canonical_name
from estimator.performance import perf_inputs, predict
from estimator.plan import PlanRequest, make_plan
from estimator.workload import Workload

ROOT = Path(__file__).resolve().parent.parent
# The corpus ships beside the checkout (../shared/corpus, as CI lays it); VLLM_PLANNER_CORPUS names another copy.
CORPUS = Path(os.environ.get("VLLM_PLANNER_CORPUS") or ROOT.parent / "shared" / "corpus" / "throughput_public.csv")


@pytest.fixture(scope="module")
def corpus_path():
    if not CORPUS.exists():
        pytest.fail(f"the public corpus is not at {CORPUS}; it ships beside the checkout as shared/corpus")
    return CORPUS


# --- the corpus as data ----------------------------------------------------------------------------------------


def test_every_corpus_row_is_stored_or_refused_with_a_reason(tmp_path, corpus_path):
    lines = sum(1 for _ in csv.DictReader(corpus_path.open()))
    parsed = parse_file(corpus_path)
    assert len(parsed.records) + len(parsed.refused) == lines
    assert all(r.notes for r in parsed.records)  # the notes column travels with each run
    r = CliRunner().invoke(calibrate, ["import", str(corpus_path), "--db", f"sqlite:///{tmp_path}/c.db"])
    assert r.exit_code == 0 and r.output == f"{corpus_path}: {len(parsed.records)} run(s) imported\n"
    listed = json.loads(CliRunner().invoke(calibrate, ["runs", "list", "--db", f"sqlite:///{tmp_path}/c.db",
                                                       "--json"]).output)
    from estimator.gpus import catalog

    names = {g.name for g in catalog()}
    assert len(listed) == len(parsed.records) and {run["gpu"] for run in listed} <= names


def test_a_row_whose_gpu_cannot_be_placed_is_refused_and_the_rest_stored(tmp_path):
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for gpu in ("NVIDIA A100-SXM4-80GB", "RTX 4090 48GB", "Mystery GPU 9000"):
            writer.writerow({"model": "Qwen/Qwen3-8B", "gpu": gpu, "benchmark": "serve", "input_len": 128,
                             "output_len": 64, "concurrency": 1, "output_tokens_per_s": 50.0, "notes": "n"})
    parsed = parse_file(path)
    assert [r.gpu for r in parsed.records] == ["A100-SXM4-80GB"]
    assert parsed.refused[0].startswith("line 3: GPU 'RTX 4090 48GB': RTX-4090 has 24 GB, not 48 GB")
    assert parsed.refused[1].startswith("line 4: unknown GPU 'Mystery GPU 9000'")


@pytest.mark.parametrize("written, canonical", [
    ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"), ("H100 80GB (form factor not stated)", "H100-SXM"),
    ("AMD Instinct MI100 32GB", "MI100"), ("RTX PRO 6000 96GB (AWS g7e.24xlarge)", "RTX-PRO-6000"),
    ("H200 SXM 141GB (AWS p5en.48xlarge)", "H200"), ("H20-3e (141GB)", "H20-3e"), ("cpu", "cpu")])
def test_gpu_names_as_written_resolve_to_the_catalog(written, canonical):
    assert canonical_name(written) == canonical


def test_h20_is_never_an_h200():
    assert canonical_name("H20 96GB") == "H20" and canonical_name("H20 141GB") == "H20-3e"
    with pytest.raises(PlannerError, match="H20 has 96 GB, not 80 GB"):
        canonical_name("H20 80GB")


def test_a_fit_of_runs_imported_with_nvidia_smi_names_is_found_by_the_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for concurrency in (1, 4, 16):
            p = make_plan(PlanRequest(model="Qwen/Qwen3-8B", gpu="A100-SXM4-80GB", max_model_len=4096), DEFAULT,
                          Workload(512, 128, concurrency=concurrency)).performance
            writer.writerow({"model": "Qwen/Qwen3-8B", "gpu": "NVIDIA A100-SXM4-80GB", "max_model_len": 4096,
                             "benchmark": "serve", "input_len": 512, "output_len": 128, "concurrency": concurrency,
                             "output_tokens_per_s": p.output_tokens_per_s * 0.8, "vllm_version": "0.32.0"})
    db = f"sqlite:///{tmp_path}/r.db"
    assert CliRunner().invoke(calibrate, ["import", str(path), "--db", db]).exit_code == 0
    fit = CliRunner().invoke(calibrate, ["fit", "--db", db, "--json"])
    assert fit.exit_code == 0, fit.output
    assert json.loads(fit.output)["scope"]["gpu"] == "A100-SXM4-80GB"
    r = CliRunner().invoke(estimator, ["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "A100-SXM4-80GB", "--concurrency",
                                       "8", "--max-model-len", "4096", "--coefficients", "latest", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["performance"]["coefficients_source"].startswith("fit-")


def write_rows(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({"model": "Qwen/Qwen3-8B", "gpu": "H100", "benchmark": "serve", "concurrency": 1, **row})


def test_mean_lengths_come_from_the_rates_a_result_states(tmp_path):
    path = tmp_path / "rates.csv"
    write_rows(path, [
        # lengths not stated: output / requests, and (total - output) / requests
        {"request_throughput": 0.5, "output_tokens_per_s": 134.0, "total_tokens_per_s": 203.0},
        # stated 128 without --ignore-eos, but 53 tokens per request came out: the rates are those of 53
        {"input_len": 1024, "output_len": 128, "request_throughput": 0.97, "output_tokens_per_s": 51.6,
         "total_tokens_per_s": 1046.4},
        # within rounding of the stated length: kept as stated
        {"input_len": 1024, "output_len": 128, "request_throughput": 0.49, "output_tokens_per_s": 61.0},
        # 72.9 / 0.04 is 1822, but 0.04 may be 0.045 (1620) or 0.035 (2083): too coarse to say 2048 was a limit
        {"input_len": 128, "output_len": 2048, "request_throughput": 0.04, "output_tokens_per_s": 72.9},
        # no request rate: nothing to derive from
        {"output_tokens_per_s": 80.0}])
    records = parse_file(path).records
    assert [(r.workload.get("input_len"), r.workload.get("output_len")) for r in records] == \
        [(138, 268), (1024, 53), (1024, 128), (128, 2048), (None, None)]
    assert records[0].metric_notes["workload.input_len"].startswith("derived: (total_tokens_per_s")
    assert "a limit the outputs stopped short of" in records[1].metric_notes["workload.output_len"]


def test_a_dtype_the_source_left_open_is_what_vllm_takes_without_the_flag(tmp_path):
    path = tmp_path / "dtype.csv"
    write_rows(path, [{"dtype": "bf16/auto (not stated)", "input_len": 8, "output_len": 8,
                       "output_tokens_per_s": 1.0}, {"dtype": "bf16", "input_len": 8, "output_len": 8,
                                                      "output_tokens_per_s": 1.0}])
    assert [r.config["dtype"] for r in parse_file(path).records] == ["auto", "bfloat16"]


def test_a_quantized_checkpoint_the_source_does_not_name_is_planned_with_the_formats_defaults(tmp_path):
    from calibrate.corpus import readings
    from calibrate.observations import plan_of

    path = tmp_path / "gptq.csv"
    write_rows(path, [{"model": "Qwen/Qwen3-Coder-30B-A3B-Instruct", "gpu": "A100-SXM4-80GB", "dtype": "fp16",
                       "quantization": "gptq 4-bit (local checkpoint /models/x; repo not named)", "input_len": 1024,
                       "output_len": 256, "output_tokens_per_s": 100.0, "notes": "n"}])
    record, why = readings(parse_file(path).records[0])
    assert why is None and record.config["quantization"] == "gptq"
    plan = plan_of(record)
    assert (plan.quant.method, plan.quant.weight_bits, plan.quant.group_size, plan.quant.act_order) == \
        ("gptq", 4, 128, False)
    bf16 = make_plan(PlanRequest(model="Qwen/Qwen3-Coder-30B-A3B-Instruct", gpu="A100-SXM4-80GB"), DEFAULT,
                     Workload(1024, 256, concurrency=1))
    assert 0.25 < plan.memory.per_gpu.weights_gib / bf16.memory.per_gpu.weights_gib < 0.35  # 4-bit experts


def test_a_self_quantized_checkpoints_column_describes_it_and_an_online_method_stays_a_flag(tmp_path):
    from calibrate.corpus import readings
    from calibrate.observations import plan_of

    path = tmp_path / "q.csv"
    common = {"gpu": "H200", "input_len": 1024, "output_len": 256, "output_tokens_per_s": 100.0, "notes": "n"}
    write_rows(path, [dict(common, model="moonshotai/Kimi-K2-Thinking", num_gpus=8, tensor_parallel_size=8,
                           quantization="int4 (native compressed-tensors W4A16 experts)"),
                      dict(common, model="Qwen/Qwen3-8B", quantization="fp8")])
    kimi, qwen = (readings(r)[0] for r in parse_file(path).records)
    # vLLM loads Kimi-K2-Thinking with its own compressed-tensors config: "int4" is no --quantization flag
    assert "quantization" not in kimi.config and plan_of(kimi).quant.method == "compressed-tensors"
    # a 16-bit checkpoint quantized online keeps the flag
    assert qwen.config["quantization"] == "fp8" and plan_of(qwen).quant.method == "fp8"


def test_the_corpus_leaves_out_what_the_planner_cannot_represent(corpus_path):
    from calibrate.corpus import load, output_rate_bound

    corpus = load(corpus_path)
    obs = corpus.observations
    # nothing fitted is faster than the hardware allows at its stated configuration ...
    assert np.all(obs.measured["output_tokens_per_s"][np.isfinite(obs.measured["output_tokens_per_s"])]
                  <= output_rate_bound(obs.inputs)[np.isfinite(obs.measured["output_tokens_per_s"])])
    reasons = " ".join(corpus.excluded)
    # ... what is, is listed with the reason, as are repeats served from the prefix cache
    assert "beats the hardware bound of the stated configuration" in reasons
    assert "the planner does not model cache hits" in reasons
    assert not any("repeats (same seed" in (r.notes or "") for r in obs.runs)
    used = {r.id for r in obs.runs}
    assert all(int(m.split()[1]) not in used for m in corpus.excluded)


# --- the step model under load ---------------------------------------------------------------------------------


def inputs_for(model, gpu, workloads, **flags):
    items = []
    for w in workloads:
        plan = make_plan(PlanRequest(model=model, gpu=gpu, **flags), DEFAULT, w)
        items.append(perf_inputs(plan.arch, plan.gpu, plan.config, plan.quant, plan.memory.num_gpu_blocks, w))
    return stack(items)


def test_an_overloaded_server_sustains_what_it_can_whatever_arrives_at_once():
    counts = (64, 256, 1024, 4096, 16384)
    x = inputs_for("Qwen/Qwen3-0.6B", "H100", [Workload(64, 8, concurrency=n, num_prompts=n) for n in counts])
    p = predict(x, DEFAULT)
    out = np.asarray(p.output_tokens_per_s)
    assert np.all(np.diff(out) <= 1e-6 * out[:-1])  # never more for sending more at once
    # the API server's per-request and per-token cost caps requests per second
    cap = 1 / (DEFAULT.api_request_ms / 1e3 + 8 * DEFAULT.api_token_us / 1e6)
    assert np.all(out / 8 <= cap * (1 + 1e-9))
    ttft = np.asarray(p.ttft_ms)
    assert np.all(np.diff(ttft) > 0)  # the excess waits


def test_an_offline_run_admits_no_more_sequences_than_it_has_prompts():
    x = inputs_for("meta-llama/Llama-3.1-8B-Instruct", "H100", [Workload(1000, 1000, num_prompts=n)
                                                                  for n in (10, 100, 100000)])
    batch = np.asarray(predict(x, DEFAULT).batch)
    assert batch[0] == 10 and batch[1] == 100 and batch[2] == x.batch_cap[2]


def test_the_first_token_of_a_closed_loop_waits_for_the_others_prompts():
    x = inputs_for("meta-llama/Llama-3.1-8B-Instruct", "H100", [Workload(4000, 200, concurrency=c)
                                                                  for c in (1, 64)])
    in_step = predict(x, DEFAULT)
    spread = predict(x, dataclasses.replace(DEFAULT, wave_sync=0.0))
    assert in_step.ttft_ms[0] == pytest.approx(spread.ttft_ms[0])  # alone, nothing to wait for
    assert in_step.ttft_ms[1] > 5 * spread.ttft_ms[1]
    assert in_step.output_tokens_per_s[1] == pytest.approx(spread.output_tokens_per_s[1])  # same work per second


def test_four_bit_weight_only_kernels_are_slower_than_their_bytes_say():
    bf16 = inputs_for("Qwen/Qwen3-32B", "A100-SXM4-80GB", [Workload(512, 256, concurrency=1)], max_model_len=8192)
    awq = inputs_for("Qwen/Qwen3-32B-AWQ", "A100-SXM4-80GB", [Workload(512, 256, concurrency=1)],
                     max_model_len=8192)
    assert awq.weight_only_low_bit[0] == 1 and bf16.weight_only_low_bit[0] == 0
    speedup = float(predict(bf16, DEFAULT).tpot_ms[0] / predict(awq, DEFAULT).tpot_ms[0])
    bytes_ratio = float(bf16.dense_bytes[0] / awq.dense_bytes[0])
    assert 1.0 < speedup < bytes_ratio


def test_attention_runs_at_16_bit_rates_whatever_the_weights_precision():
    w = [Workload(16000, 64, concurrency=1)]
    bf16 = inputs_for("Qwen/Qwen3-30B-A3B", "H100", w, max_model_len=32768)
    fp8 = inputs_for("Qwen/Qwen3-30B-A3B-FP8", "H100", w, max_model_len=32768)
    assert fp8.peak_flops[0] == pytest.approx(2 * bf16.peak_flops[0], rel=1e-3)  # FP8 tensor cores for GEMMs ...
    assert fp8.attn_peak_flops[0] == bf16.attn_peak_flops[0] == bf16.peak_flops[0]  # ... not for attention
    # a long prompt's prefill is mostly attention, so FP8 weights cut its time by far less than half
    ratio = float(predict(fp8, DEFAULT).ttft_ms[0] / predict(bf16, DEFAULT).ttft_ms[0])
    assert 0.5 < ratio < 0.9


def test_four_bit_gemms_lose_more_to_many_tokens_than_to_one():
    awq = inputs_for("Qwen/Qwen3-32B-AWQ", "A100-SXM4-80GB", [Workload(4000, 16, concurrency=1)], max_model_len=8192)
    slow = predict(awq, dataclasses.replace(DEFAULT, low_bit_compute_factor=0.35))
    fast = predict(awq, dataclasses.replace(DEFAULT, low_bit_compute_factor=0.7))
    # a 4000-token prefill is compute-bound: half the kernel efficiency, about twice the GEMM time
    assert 1.5 < float(slow.ttft_ms[0] / fast.ttft_ms[0]) < 2.05
    bf16 = inputs_for("Qwen/Qwen3-32B", "A100-SXM4-80GB", [Workload(4000, 16, concurrency=1)], max_model_len=8192)
    assert predict(bf16, dataclasses.replace(DEFAULT, low_bit_compute_factor=0.35)).ttft_ms[0] == \
        pytest.approx(predict(bf16, DEFAULT).ttft_ms[0])  # 16-bit weights are untouched


def test_a_decode_batch_runs_padded_to_the_next_cuda_graph_size():
    from estimator.memory import cudagraph_capture_sizes, graph_padded

    plan = make_plan(PlanRequest(model="Qwen/Qwen3-8B", gpu="H100"), DEFAULT, Workload(128, 128, concurrency=1))
    sizes = cudagraph_capture_sizes(plan.config, plan.gpu)
    largest = sizes[-1]
    tokens = np.arange(1, largest + 40)
    padded = graph_padded(tokens, largest)
    expected = [min(s for s in sizes if s >= t) if t <= largest else t for t in tokens]
    assert padded.tolist() == expected
    assert graph_padded(tokens, 0).tolist() == tokens.tolist()  # eager: no graphs, no padding
    # 300 sequences plus the prompt tokens riding along run as the next capture size; eager mode pays for none
    x = inputs_for("meta-llama/Llama-3.1-8B-Instruct", "H100", [Workload(16, 64, concurrency=c) for c in (8, 300)])
    assert x.graph_max[1] == largest
    with_graphs = np.asarray(predict(x, DEFAULT).tpot_ms)
    unpadded = np.asarray(predict(dataclasses.replace(x, graph_max=np.zeros(2)), DEFAULT).tpot_ms)
    assert with_graphs[0] == pytest.approx(unpadded[0])  # memory-bound: padding rows cost nothing
    assert with_graphs[1] > unpadded[1]  # compute-bound: the 4 padding rows cost GEMM time


def test_rocm_moe_kernels_slow_only_routed_experts_on_amd_gpus():
    w = [Workload(128, 512, concurrency=64)]
    slower = dataclasses.replace(DEFAULT, rocm_moe_factor=DEFAULT.rocm_moe_factor / 2)
    amd_moe = inputs_for("Qwen/Qwen3-30B-A3B", "MI300X", w, max_model_len=4096)
    amd_dense = inputs_for("Qwen/Qwen3-8B", "MI300X", w, max_model_len=4096)
    nvidia_moe = inputs_for("Qwen/Qwen3-30B-A3B", "H100", w, max_model_len=4096)
    assert predict(amd_moe, slower).tpot_ms[0] > 1.2 * predict(amd_moe, DEFAULT).tpot_ms[0]
    for x in (amd_dense, nvidia_moe):
        assert predict(x, slower).tpot_ms[0] == pytest.approx(predict(x, DEFAULT).tpot_ms[0])


def test_every_decoder_layer_adds_its_kernel_floor_to_a_step():
    w = [Workload(128, 128, concurrency=1)]
    x = stack([inputs_for(m, "H100", w, max_model_len=4096).take(0)
               for m in ("Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B-Instruct")])
    without = predict(x, dataclasses.replace(DEFAULT, layer_overhead_us=0.0))
    with_floor = predict(x, dataclasses.replace(DEFAULT, layer_overhead_us=50.0))
    added = np.asarray(with_floor.tpot_ms) - np.asarray(without.tpot_ms)
    assert added == pytest.approx(x.layers * 50e-3, rel=1e-6)  # ms: layers x 50 us, nothing else


# --- the regularised fit ---------------------------------------------------------------------------------------


def synthetic(x, truth, sigma=0.03, seed=0):
    rng = np.random.default_rng(seed)
    p = predict(x, truth)
    n = len(x.tp)
    return {m: np.asarray(getattr(p, a), dtype=float) * np.exp(rng.normal(0, sigma, n))
            for m, a in (("output_tokens_per_s", "output_tokens_per_s"), ("mean_ttft_ms", "ttft_ms"),
                         ("mean_tpot_ms", "tpot_ms"))}


def test_terms_the_data_cannot_inform_stay_at_their_prior():
    # Short prompts at concurrency 1 on one GPU: paged attention's share of the step is negligible.
    x = inputs_for("meta-llama/Llama-3.1-8B-Instruct", "H100", [Workload(16, 64, concurrency=1)] * 4)
    truth = dataclasses.replace(DEFAULT, attention_bandwidth_factor=0.3)
    fitter = CoefficientFitter(base=DEFAULT).fit(x, synthetic(x, truth))
    unidentified = [m.split(":")[0] for m in fitter.unidentified_]
    assert "attention_bandwidth_factor" in unidentified
    assert abs(fitter.moved_["attention_bandwidth_factor"]) < 0.3
    assert fitter.coef_["attention_bandwidth_factor"] == pytest.approx(DEFAULT.attention_bandwidth_factor, rel=0.1)


def test_every_fitted_term_stays_in_its_physical_range_even_when_the_data_pull_out_of_it():
    x = inputs_for("meta-llama/Llama-3.1-8B-Instruct", "H100", [Workload(512, 128, concurrency=c)
                                                                  for c in (1, 4, 16, 64)])
    measured = synthetic(x, DEFAULT)
    measured = {m: v * (0.3 if m == "output_tokens_per_s" else 1 / 0.3) for m, v in measured.items()}  # 3x faster
    fitter = CoefficientFitter(base=DEFAULT).fit(x, measured)
    for name, value in fitter.coef_.items():
        key = name.rsplit(":", 1)[-1] if name.startswith("gpu:") else {
            "tp": "tp_efficiency", "allreduce": "allreduce_latency_us"}.get(name.split(":")[0], name)
        assert PRIORS[key].lower - 1e-9 <= value <= PRIORS[key].upper + 1e-9, (name, value)


def test_a_term_whose_prior_sits_on_a_bound_still_moves_with_the_data():
    # wave_sync's prior (1: fully in step) is its upper bound; a fit starting on it once froze every term.
    x = inputs_for("meta-llama/Llama-3.1-8B-Instruct", "H100", [Workload(4000, 200, concurrency=c)
                                                                  for c in (1, 16, 32, 64)])
    truth = dataclasses.replace(DEFAULT, wave_sync=0.4)
    fitter = CoefficientFitter(base=dataclasses.replace(DEFAULT, wave_sync=1.0)).fit(x, synthetic(x, truth))
    assert fitter.coef_["wave_sync"] == pytest.approx(0.4, abs=0.2)


def test_the_fit_recovers_the_load_terms_from_data_drawn_from_the_model():
    workloads = [Workload(i, o, concurrency=c, num_prompts=c) for i in (32, 2000) for o in (16, 256)
                 for c in (1, 8, 64, 512, 2048)]
    x = inputs_for("Qwen/Qwen3-0.6B", "H100", workloads)
    truth = dataclasses.replace(DEFAULT, api_request_ms=4.0, seq_overhead_us=40.0)
    fitter = CoefficientFitter(base=DEFAULT).fit(x, synthetic(x, truth))
    for name, value in (("api_request_ms", 4.0), ("seq_overhead_us", 40.0)):
        assert abs(fitter.coef_[name] / value - 1) < 0.25, (name, fitter.coef_[name], fitter.stderr_[name])


def test_a_fit_that_is_not_adopted_is_never_chosen_as_the_latest(tmp_path):
    save_fit(dataclasses.replace(DEFAULT, name="fit-1"), 1, "a" * 64, {"gpu": "L4"}, "2026-01-01", tmp_path)
    save_fit(dataclasses.replace(DEFAULT, name="fit-2"), 2, "b" * 64, {"gpu": "L4"}, "2026-02-01", tmp_path,
             adopt=False)
    assert choose(None, "L4", directory=tmp_path).name == "fit-1"
    assert choose("2", "L4", directory=tmp_path).name == "fit-2"  # still there when asked for by id


# --- the shipped defaults --------------------------------------------------------------------------------------


def test_the_shipped_defaults_say_where_they_come_from(corpus_path):
    from importlib import resources

    data = json.loads(resources.files("estimator").joinpath("data/default_coefficients.json").read_text())
    provenance = data["provenance"]
    assert provenance["corpus_sha256"] == hashlib.sha256(corpus_path.read_bytes()).hexdigest(), \
        "the corpus changed: regenerate the defaults with benchmarks/fit_defaults.py"
    assert provenance["csv_lines_used"] and provenance["date"] and data["standard_errors"]
    assert DEFAULT.provenance == provenance and DEFAULT.name == "default"
    for gpu, (bw, fl, step) in DEFAULT.per_gpu.items():
        assert 0 < bw <= 1 and 0 < fl <= 1 and step > 0, gpu
    assert set(DEFAULT.to_dict()) == set(PRIOR.to_dict())


def test_a_plan_says_whether_its_gpu_was_measured():
    args = ["plan", "--model", "Qwen/Qwen3-8B", "--concurrency", "4", "--max-model-len", "4096", "--coefficients",
            "default", "--json"]
    fitted = json.loads(CliRunner().invoke(estimator, args + ["--gpu", DEFAULT.provenance["gpus"][0]]).output)
    unmeasured = json.loads(CliRunner().invoke(estimator, args + ["--gpu", "L4"]).output)
    assert fitted["performance"]["efficiency_basis"].startswith("fitted to the public corpus")
    assert unmeasured["performance"]["efficiency_basis"] == "physical prior (no measurements of this GPU)"
