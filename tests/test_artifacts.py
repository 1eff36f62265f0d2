import json
import os
import stat

import yaml
from click.testing import CliRunner

from estimator.cli import main

FLAGS = ["--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "H100", "--tensor-parallel-size", "4",
         "--max-model-len", "16384", "--kv-cache-dtype", "fp8", "--concurrency", "32", "--input-len", "1000",
         "--output-len", "200"]


def generate(tmp_path, *extra):
    out = tmp_path / "deploy"
    r = CliRunner().invoke(main, ["generate", *FLAGS, *extra, "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    return out, json.loads((out / "plan.json").read_text())


def test_files_load_and_carry_the_plans_argv(tmp_path):
    out, plan = generate(tmp_path)
    argv = plan["serve"]["argv"]
    assert argv == ["meta-llama/Llama-3.1-70B-Instruct", "--tensor-parallel-size", "4", "--max-model-len", "16384",
                    "--kv-cache-dtype", "fp8"]
    compose = yaml.safe_load((out / "docker-compose.yaml").read_text())["services"]["vllm"]
    assert compose["image"] == "vllm/vllm-openai:v0.32.0"
    assert compose["command"][: len(argv)] == argv
    assert compose["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 4
    assert compose["shm_size"] and compose["healthcheck"]["test"][-1].endswith("/health")
    assert any(v.endswith(":/root/.cache/huggingface") for v in compose["volumes"])
    deployment, service = yaml.safe_load_all((out / "kubernetes.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][: len(argv)] == argv and all(isinstance(a, str) for a in container["args"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    shm = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert service["kind"] == "Service" and service["spec"]["ports"][0]["targetPort"] == 8000
    serve = (out / "serve.sh").read_text()
    assert "exec vllm serve meta-llama/Llama-3.1-70B-Instruct --tensor-parallel-size 4" in serve
    assert os.stat(out / "serve.sh").st_mode & stat.S_IXUSR
    bench = (out / "bench.sh").read_text()
    assert "vllm bench serve" in bench and "--max-concurrency 32" in bench and "--random-input-len 1000" in bench


def test_profile_loads_back_and_flags_override_it(tmp_path):
    out, plan = generate(tmp_path)
    profile = str(out / "profile.yaml")
    again = json.loads(CliRunner().invoke(main, ["plan", "--profile", profile, "--json"]).output)
    assert again["serve"]["argv"] == plan["serve"]["argv"] and again["workload"] == plan["workload"]
    override = json.loads(CliRunner().invoke(main, ["plan", "--profile", profile, "--max-model-len", "8192",
                                                    "--json"]).output)
    assert override["config"]["max_model_len"] == 8192 and override["config"]["tensor_parallel_size"] == 4


def test_bad_profiles(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("flags: [1, 2")
    r = CliRunner().invoke(main, ["plan", "--profile", str(bad)])
    assert r.exit_code == 1 and r.output.startswith(f"Error: profile {bad} is not valid YAML")
    bad.write_text("schema_version: 1\nflags: {model: x, colour: red}\n")
    r = CliRunner().invoke(main, ["plan", "--profile", str(bad)])
    assert r.exit_code == 1 and r.output == f"Error: profile {bad} has unknown keys colour; regenerate it\n"
    r = CliRunner().invoke(main, ["plan", "--profile", str(tmp_path / "none.yaml")])
    assert r.exit_code == 1 and "does not exist" in r.output
    r = CliRunner().invoke(main, ["plan"])
    assert r.exit_code == 2 and "Missing option '--model'" in r.output


def test_offline_plans_get_a_throughput_benchmark(tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["generate", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L40S",
                                  "--max-model-len", "8192", "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    bench = (out / "bench.sh").read_text()
    # the L40S's serve defaults, which the plan sized, written out: the LLM class would batch 8192 tokens
    assert "vllm bench throughput --model meta-llama/Llama-3.1-8B-Instruct --max-model-len 8192 --max-num-seqs 256 " \
        "--max-num-batched-tokens 2048 --dataset-name random" in bench


def test_an_llm_class_plan_s_profile_and_benchmark_keep_its_batch(tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["generate", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L40S",
                                  "--max-model-len", "8192", "--entrypoint", "llm", "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert "entrypoint: llm" in (out / "profile.yaml").read_text()
    bench = (out / "bench.sh").read_text()
    # the batch is in the engine flags once, not repeated by the benchmark
    assert bench.count("--max-num-batched-tokens") == 1 and "--max-num-seqs 256 --max-num-batched-tokens 8192" in bench
    again = CliRunner().invoke(main, ["plan", "--profile", str(out / "profile.yaml"), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["config"]["max_num_batched_tokens"] == 8192
