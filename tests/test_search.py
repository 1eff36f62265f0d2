import json

import pytest
from click.testing import CliRunner

from estimator import architecture, gpus
from estimator.cli import main
from estimator.coefficients import DEFAULT
from estimator.errors import PlannerError
from estimator.model_source import catalog_configs
from estimator.search import search
from estimator.workload import Workload


def run(model, gpu, num_gpus, workload, fixed=None):
    arch = architecture.from_config(catalog_configs()[model], model)
    return search(arch, gpus.lookup(gpu), num_gpus, fixed or {}, workload, DEFAULT)


def test_search_covers_ten_thousand_candidates_on_an_eight_gpu_node():
    r = run("meta-llama/Llama-3.1-70B-Instruct", "H100", 8, Workload(input_len=2000, output_len=500, concurrency=64))
    assert r.candidates >= 10_000 and r.feasible > 0 and r.best is not None


def test_best_meets_the_slos_and_is_the_best_by_the_goal():
    workload = Workload(input_len=1000, output_len=300, concurrency=32, ttft_ms=1500, tpot_ms=40, goal="throughput")
    r = run("Qwen/Qwen3-30B-A3B", "L40S", 4, workload)
    assert r.best["ttft_ms"] <= 1500 and r.best["tpot_ms"] <= 40
    assert all(p["output_tokens_per_s_per_gpu"] <= r.best["output_tokens_per_s_per_gpu"] + 1e-6 for p in r.pareto)
    assert r.reasons[0].startswith(f"goal throughput: best of {r.candidates:,} candidates")
    assert "TPOT" in " ".join(r.reasons)


def test_latency_goal_prefers_more_tensor_parallelism_than_throughput():
    workload = dict(input_len=512, output_len=256, concurrency=8)
    fast = run("meta-llama/Llama-3.1-70B-Instruct", "H100", 8, Workload(goal="latency", **workload))
    cheap = run("meta-llama/Llama-3.1-70B-Instruct", "H100", 8, Workload(goal="throughput", **workload))
    assert fast.best["request_latency_ms"] <= cheap.best["request_latency_ms"]
    assert fast.best["gpus_per_replica"] >= cheap.best["gpus_per_replica"]


def test_pareto_set_is_non_dominated():
    # At saturation the batch size trades tokens per GPU against tokens per user.
    r = run("meta-llama/Llama-3.1-8B-Instruct", "H100", 4, Workload())
    points = [(p["output_tokens_per_s_per_gpu"], p["tokens_per_s_per_user"]) for p in r.pareto]
    assert len(points) >= 2
    for a in points:
        assert not any(b[0] >= a[0] and b[1] >= a[1] and b != a for b in points)


def test_unreachable_slo_names_the_closest_limit_and_by_how_much():
    r = run("meta-llama/Llama-3.1-70B-Instruct", "A100-SXM4-80GB", 4,
            Workload(input_len=1000, output_len=200, concurrency=16, tpot_ms=2))
    assert r.best is None and r.feasible == 0
    assert r.closest.startswith("no configuration meets the SLOs; the closest is tensor-parallel 4")
    assert "TPOT" in r.closest and "% over" in r.closest


def test_nothing_fits_says_what_is_needed():
    r = run("meta-llama/Llama-3.1-405B-Instruct", "L4", 1, Workload(concurrency=1))
    assert r.best is None and r.closest.startswith("no configuration fits in memory: even the smallest layout needs")


def test_flags_given_are_kept_fixed():
    r = run("meta-llama/Llama-3.1-8B-Instruct", "H100", 8, Workload(concurrency=16),
            fixed={"tensor_parallel_size": 2, "kv_cache_dtype": "auto", "max_num_seqs": 32})
    assert {p["tensor_parallel_size"] for p in r.pareto} == {2}
    assert (r.best["tensor_parallel_size"], r.best["kv_cache_dtype"], r.best["max_num_seqs"]) == (2, "auto", 32)


def test_cli_search_output_and_errors():
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--num-gpus", "2",
            "--concurrency", "32", "--search", "--json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    assert plan["search"]["best"]["tensor_parallel_size"] == plan["config"]["tensor_parallel_size"]
    assert plan["serve"]["argv"][0] == "meta-llama/Llama-3.1-8B-Instruct"
    r = CliRunner().invoke(main, args[:-1] + ["--tpot-ms", "0.1"])
    assert r.exit_code == 1 and r.output.startswith("Error: no configuration meets the SLOs; the closest is")
    r = CliRunner().invoke(main, ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--concurrency", "4",
                                  "--request-rate", "2"])
    assert r.exit_code == 1 and r.output == "Error: give --concurrency or --request-rate, not both\n"


def test_a_flag_no_layout_can_serve_is_named_not_a_crash():
    """Every layout refused (here --max-model-len beyond the model's) used to leave the search nothing to rank and
    end in a numpy error; the refusal the layouts share is the answer."""
    r = CliRunner().invoke(main, ["plan", "--model", "meta-llama/Meta-Llama-3-8B-Instruct", "--gpu", "H100",
                                  "--num-gpus", "8", "--search", "--max-model-len", "16384"])
    assert r.exit_code == 1
    assert r.output == ("Error: no layout of 8 x H100-SXM can serve this model: --max-model-len 16384 exceeds the "
                        "model's maximum of 8192 (max_position_embeddings in config.json); use 8192 or less\n")


def test_search_needs_a_known_speed():
    arch = architecture.from_config(catalog_configs()["meta-llama/Llama-3.1-8B-Instruct"], "m")
    with pytest.raises(PlannerError, match="the search needs the GPU's speed"):
        search(arch, gpus.custom(40.0), 1, {}, Workload(), DEFAULT)


@pytest.mark.parametrize("model", ["Qwen/Qwen3-30B-A3B", "meta-llama/Llama-3.1-8B-Instruct"])
def test_the_search_sizes_a_replica_as_the_server_it_renders(model):
    # data-parallel replicas are one server's engines: a MoE's experts spread over all of them and each engine's
    # tokens are gathered to every GPU, so the search plans each candidate with its engines, as the plan of the
    # chosen configuration does, and the two agree on its speed
    from estimator.plan import PlanRequest, plan_with_search

    plan = plan_with_search(PlanRequest(model=model, gpu="H100", num_gpus=8), Workload(1024, 128, goal="throughput"))
    best = plan.search["best"]
    assert plan.config.data_parallel_size == best["replicas"] > 1
    assert best["tpot_ms"] == pytest.approx(float(plan.performance.tpot_ms), abs=0.01)
    assert best["output_tokens_per_s"] / best["replicas"] == pytest.approx(
        float(plan.performance.output_tokens_per_s), abs=0.1)
