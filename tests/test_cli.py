"""`estimator` through click's CliRunner: exact output on errors, one JSON object with --json."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from estimator.cli import main
from tests.conftest import ROOT, write_config

PLAN_KEYS = {
    "model": {"id", "architecture", "num_params", "active_params", "kv_bytes_per_token"},
    "hardware": {"gpu", "num_gpus", "memory_gib_per_gpu"},
    "config": {"tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "gpu_memory_utilization", "dtype",
               "quantization", "kv_cache_dtype", "max_num_seqs", "max_num_batched_tokens", "block_size",
               "enforce_eager"},
    "memory": {"per_gpu", "num_gpu_blocks", "kv_cache_tokens", "max_concurrency", "fits", "binding_constraint"},
    "serve": {"argv", "command"},
}


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_plan_json_is_exactly_one_object_with_the_contract_fields():
    r = invoke("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--json")
    assert r.exit_code == 0
    plan = json.loads(r.output)  # the whole of stdout is one JSON document
    assert plan["schema_version"] == 1 and isinstance(plan["warnings"], list)
    for section, keys in PLAN_KEYS.items():
        assert keys <= set(plan[section]), section
    assert set(plan["memory"]["per_gpu"]) >= {"total_gib", "budget_gib", "weights_gib", "activation_gib",
                                              "non_torch_gib", "cuda_graph_gib", "kv_cache_gib"}
    assert plan["model"]["num_params"] == 8_030_261_248
    assert plan["serve"]["argv"] == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert plan["serve"]["command"] == "vllm serve meta-llama/Llama-3.1-8B-Instruct"
    assert "max-model-len=131072 (the model's max_position_embeddings)" in plan["config"]["defaults"]


def test_plan_argv_carries_the_given_flags_in_vllm_spelling():
    r = invoke("plan", "--model", "Qwen/Qwen3-30B-A3B", "--gpu", "L40S", "--tensor-parallel-size", "4",
               "--max-model-len", "32768", "--kv-cache-dtype", "fp8", "--dtype", "bfloat16", "--enforce-eager",
               "--gpu-memory-utilization", "0.92", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["serve"]["argv"] == [
        "Qwen/Qwen3-30B-A3B", "--tensor-parallel-size", "4", "--max-model-len", "32768", "--dtype", "bfloat16",
        "--kv-cache-dtype", "fp8", "--enforce-eager"]


def test_an_llm_class_plan_takes_that_class_s_batch_and_writes_it_into_the_serve_command():
    """vLLM's LLM class (vllm bench throughput, a script's LLM(...)) batches 8192 tokens on an L4 where vllm serve
    batches 2048 (EngineArgs.get_batch_defaults): the forward's activation peak is larger and the KV pool smaller,
    and vllm serve reproduces that batch only when told."""
    flags = ("plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "L4", "--max-model-len", "4096", "--json")
    serve, llm = json.loads(invoke(*flags).output), json.loads(invoke(*flags, "--entrypoint", "llm").output)
    assert (serve["config"]["max_num_batched_tokens"], llm["config"]["max_num_batched_tokens"]) == (2048, 8192)
    assert (serve["config"]["entrypoint"], llm["config"]["entrypoint"]) == ("serve", "llm")
    assert "max-num-batched-tokens=8192 (vLLM's LLM-class default for L4)" in llm["config"]["defaults"]
    assert llm["memory"]["per_gpu"]["activation_gib"] > serve["memory"]["per_gpu"]["activation_gib"] + 0.5
    assert llm["memory"]["per_gpu"]["kv_cache_gib"] < serve["memory"]["per_gpu"]["kv_cache_gib"] - 0.5
    assert serve["serve"]["argv"] == ["Qwen/Qwen2.5-7B-Instruct", "--max-model-len", "4096"]
    assert llm["serve"]["argv"] == ["Qwen/Qwen2.5-7B-Instruct", "--max-model-len", "4096", "--max-num-seqs", "256",
                                    "--max-num-batched-tokens", "8192"]
    r = invoke(*flags, "--entrypoint", "docker")
    assert r.exit_code == 2 and "Invalid value for '--entrypoint'" in r.output
    from estimator.errors import PlannerError
    from estimator.plan import PlanRequest, make_plan

    with pytest.raises(PlannerError, match="^--entrypoint docker is not one the planner knows; use serve"):
        make_plan(PlanRequest(model="Qwen/Qwen2.5-7B-Instruct", gpu="L4", entrypoint="docker"))
    searched = json.loads(invoke(*flags, "--entrypoint", "llm", "--search").output)
    assert searched["config"]["entrypoint"] == "llm"
    from estimator.serve_config import ENTRYPOINTS

    option = next(p for p in main.commands["plan"].params if p.name == "entrypoint")
    assert tuple(option.type.choices) == ENTRYPOINTS


def test_plan_human_report():
    r = invoke("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L40S")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0] == "meta-llama/Llama-3.1-8B-Instruct [catalog] on 1 x L40S (44.52 GiB)"
    assert any(line.startswith("Fits: yes (binding: kv_cache) - the KV pool holds ") for line in lines)
    assert lines[-1] == "vllm serve meta-llama/Llama-3.1-8B-Instruct"


def test_num_gpus_alone_means_tensor_parallel_over_all_of_them():
    r = invoke("plan", "--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "H100", "--num-gpus", "4", "--json")
    plan = json.loads(r.output)
    assert plan["config"]["tensor_parallel_size"] == 4 and plan["hardware"]["num_gpus"] == 4
    assert plan["serve"]["argv"][1:] == ["--tensor-parallel-size", "4"]


@pytest.mark.parametrize("args,message", [
    (["--gpu", "H300"], "Error: unknown GPU 'H300': closest known: H200, H800, B300; use one of the names in "
                        "`estimator gpus`, or --gpu-memory-gib for a custom device"),
    (["--tensor-parallel-size", "3"], "Error: --tensor-parallel-size 3 does not divide the 32 attention heads of this "
                                      "model; use a divisor of 32"),
    (["--max-model-len", "200000"], "Error: --max-model-len 200000 exceeds the model's maximum of 131072 "
                                    "(max_position_embeddings in config.json); use 131072 or less"),
    (["--max-model-len", "0"], "Error: --max-model-len must be a positive integer (e.g. 32768, 32k, 32K or auto, as "
                               "vLLM takes it), got '0'"),
    (["--max-model-len", "-5"], "Error: --max-model-len must be a positive integer (e.g. 32768, 32k, 32K or auto, "
                                "as vLLM takes it), got '-5'"),
    (["--max-num-batched-tokens", "lots"], "Error: --max-num-batched-tokens must be a positive integer (e.g. 8192, "
                                           "8k or 8K, as vLLM takes it), got 'lots'"),
    (["--max-num-seqs", "-1"], "Error: --max-num-seqs must be a positive integer, got -1"),
    (["--gpu-memory-utilization", "1.5"], "Error: --gpu-memory-utilization must be in (0, 1], got 1.5"),
    (["--dtype", "bf16"], "Error: --dtype bf16 is not a vLLM dtype; use one of auto, half, float16, bfloat16, float, "
                          "float32"),
    (["--kv-cache-dtype", "fp8_e4m3fn"], "Error: --kv-cache-dtype fp8_e4m3fn is not supported by the planner; use "
                                         "one of auto, float16, bfloat16, fp8, fp8_e4m3, fp8_e5m2"),
    (["--quantization", "awq"], "Error: --quantization awq needs a checkpoint quantized with awq; on an unquantized "
                                "checkpoint only fp8 is applied at load time"),
    (["--quantization", "bitsandbytes"], "Error: --quantization bitsandbytes is not a quantization method of vLLM "
                                         "0.32.0; use one of awq, auto_awq, fp8, "),
    (["--tensor-parallel-size", "4", "--num-gpus", "2"], "Error: --tensor-parallel-size 4 x --pipeline-parallel-size "
                                                          "1 needs 4 GPUs but --num-gpus is 2; raise --num-gpus or "
                                                          "lower the parallel sizes"),
    (["--gpu", "T4", "--dtype", "bfloat16"], "Error: --dtype bfloat16 needs compute capability 8.0 or newer; T4 has "
                                             "7.5: use --dtype float16"),
    (["--gpu", "auto"], "Error: --gpu auto found no NVIDIA driver ("),
    (["--gpu-memory-gib", "-3"], "Error: --gpu-memory-gib must be positive, got -3"),
])
def test_bad_flags_give_one_line_and_a_nonzero_exit(args, message):
    r = invoke("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", *args)
    assert r.exit_code == 1
    assert r.output.startswith(message) and r.output.count("\n") == 1
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_bad_model_inputs(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], ')
    r = invoke("plan", "--model", str(bad))
    assert r.exit_code == 1 and r.output == (f"Error: {bad / 'config.json'} is not valid JSON (Expecting property "
                                             "name enclosed in double quotes at line 1, column 41); re-download or "
                                             "fix it\n")
    unknown = write_config(tmp_path / "unknown", {"architectures": ["RwkvForCausalLM"], "hidden_size": 8})
    r = invoke("plan", "--model", str(unknown))
    assert r.exit_code == 1 and r.output.startswith(f"Error: architecture RwkvForCausalLM of {unknown} is not "
                                                    "supported by the planner; supported: ")
    r = invoke("plan", "--model", str(tmp_path / "missing") + "/")
    assert r.exit_code == 1 and r.output.startswith("Error: no such directory: ")


def test_click_usage_errors_exit_2():
    r = invoke("plan", "--model", "x", "--tensor-parallel-size", "two")
    assert r.exit_code == 2 and "Invalid value for '--tensor-parallel-size'" in r.output


def test_gpus_and_models_listings():
    gpus = json.loads(invoke("gpus", "--json").output)
    assert any(g["name"] == "H100-SXM" for g in gpus)
    models = json.loads(invoke("models", "--json").output)
    assert len(models) >= 40 and any(m["id"] == "openai/gpt-oss-20b" and m["quantization"] == "mxfp4"
                                     for m in models)


def test_python_dash_m_entry_points():
    for module in ("estimator", "calibrate"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0 and "Usage:" in out.stdout


def _plan_both(*args):
    base = ["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "L40S", "--max-model-len", "4096", *args]
    text, as_json = CliRunner().invoke(main, base), CliRunner().invoke(main, base + ["--json"])
    assert text.exit_code == 0 and as_json.exit_code == 0, text.output
    return text.output.splitlines(), json.loads(as_json.output)


def test_the_text_plan_shows_the_json_plan_s_figures_for_each_kind_of_load():
    lines, plan = _plan_both("--request-rate", "2")
    p = plan["performance"]
    head = lines.index("Performance at 2.0 requests/s (1024 in / 128 out), coefficients default; p10-p90 in brackets")
    lo, hi = p["interval"]["output_tokens_per_s"]
    assert lines[head + 1] == f"  output   {p['output_tokens_per_s']:10.1f} tok/s [{lo:.1f} - {hi:.1f}]"
    assert lines[head + 3].startswith(f"  TTFT     {p['ttft_ms']:10.1f} ms")

    lines, plan = _plan_both("--request-rate", "1000")  # past what the server can take: queues grow without end
    assert plan["performance"]["ttft_ms"] is None and "  TTFT     unbounded (saturated)" in lines
    assert "  latency  unbounded (saturated)" in lines

    lines, plan = _plan_both("--concurrency", "16", "--num-gpus", "2", "--search")
    search = plan["search"]
    start = next(i for i, line in enumerate(lines) if line.startswith("Search ("))
    assert lines[start + 1:start + 1 + len(search["reasons"])] == [f"  {r}" for r in search["reasons"]]
    count = len(search["pareto"])
    assert lines[start + 1 + len(search["reasons"])] == \
        f"  Pareto set, output tok/s per GPU against tok/s per user ({count} point{'s' * (count != 1)}):"
    best = search["pareto"][0]
    assert lines[start + 2 + len(search["reasons"])].split()[:2] == [f"{best['output_tokens_per_s_per_gpu']:.1f}",
                                                                    "per"]


def test_the_default_request_is_shortened_to_fit_a_short_context_and_said_so():
    """GPT-2 holds 1,024 positions, fewer than vLLM bench's default 1,024 + 128-token request: the plan prices
    896 + 128 and says so; lengths the user gives are never changed."""
    r = invoke("plan", "--model", "openai-community/gpt2", "--gpu", "T4", "--json")
    assert r.exit_code == 0, r.output
    warnings = json.loads(r.output)["warnings"]
    assert ("the default request of 1024 + 128 tokens is longer than --max-model-len 1024: speed is for 896 + 128 "
            "(give --input-len and --output-len for others)") in warnings
    r = invoke("plan", "--model", "openai-community/gpt2", "--gpu", "T4", "--input-len", "1000")
    assert r.exit_code == 1 and r.output.startswith("Error: a request of 1000 + 128 tokens is longer than "
                                                    "--max-model-len 1024")


def test_lengths_are_taken_as_vllm_takes_them():
    """--max-model-len and --max-num-batched-tokens take vLLM's human-readable counts (k decimal, K binary)."""
    r = invoke("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--max-model-len", "32K",
               "--max-num-batched-tokens", "4k", "--json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    assert (plan["config"]["max_model_len"], plan["config"]["max_num_batched_tokens"]) == (32768, 4000)
    assert plan["serve"]["argv"][1:] == ["--max-model-len", "32768", "--max-num-batched-tokens", "4000"]
    r = invoke("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--max-model-len", "3.5K")
    assert r.exit_code == 1 and r.output == ("Error: --max-model-len must be a positive integer (e.g. 32768, 32k, 32K "
                                             "or auto, as vLLM takes it), got '3.5K'\n")


def test_max_model_len_auto_is_lowered_to_the_longest_that_fits_and_the_command_gives_it():
    r = invoke("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L4", "--max-model-len", "auto",
               "--json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    length = plan["config"]["max_model_len"]
    assert 0 < length < 131072 and plan["memory"]["fits"]
    assert plan["serve"]["argv"][1:] == ["--max-model-len", str(length)]
    assert (f"--max-model-len auto: vLLM lowers the length from the model's 131,072 to {length:,} tokens, the "
            "longest of which one request fits in the KV cache, and the command gives that length") in plan["warnings"]
    # one token more does not fit; the length itself does
    longer = invoke("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L4", "--max-model-len",
                    str(length + 1), "--json")
    assert json.loads(longer.output)["memory"]["fits"] is False
    r = invoke("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--max-model-len", "-1",
               "--json")
    plan = json.loads(r.output)
    assert plan["config"]["max_model_len"] == 131072 and plan["serve"]["argv"] == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert "--max-model-len auto: the model's full 131,072 tokens fit, and vLLM keeps them" in plan["warnings"]
