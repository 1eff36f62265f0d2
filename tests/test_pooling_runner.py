"""`--runner pooling`: the model vLLM builds for embeddings has no LM head and runs a pooler, not a sampler."""

import json

import pytest
from click.testing import CliRunner

from estimator.cli import main
from estimator.errors import PlannerError
from estimator.gpus import GIB
from estimator.model_source import catalog_configs
from estimator.plan import PlanRequest, make_plan
from tests.conftest import tensor_weights, write_config

EMBEDDING = "Qwen/Qwen3-Embedding-8B"
FLAGS = dict(gpu="H100", max_model_len=8192, gpu_memory_utilization=0.9)


def plans(**extra):
    return (make_plan(PlanRequest(model=EMBEDDING, runner="generate", **FLAGS, **extra)),
            make_plan(PlanRequest(model=EMBEDDING, **FLAGS, **extra)))


def test_a_sentence_transformers_repo_is_planned_as_vllm_serves_it_without_the_lm_head():
    generate, pooling = plans()
    config = catalog_configs()[EMBEDDING]
    padded_vocab = -(-config["vocab_size"] // 64) * 64  # the LM head's rows, padded as vLLM pads them
    lm_head_gib = padded_vocab * config["hidden_size"] * 2 / GIB
    assert (tensor_weights(generate) - tensor_weights(pooling)) / GIB == \
        pytest.approx(lm_head_gib, rel=1e-9)
    assert pooling.config.runner == "pooling" and generate.config.runner == "generate"
    assert "--runner" not in pooling.serve_argv  # vLLM picks pooling for it on its own
    assert generate.serve_argv[-2:] == ["--runner", "generate"]
    assert any("sentence-transformers modules.json" in w for w in pooling.warnings)


def test_the_logged_start_up_of_this_model_is_matched():
    # memory_public.csv line 10: vLLM 0.12.0 on an H100 logged 14.1062 GiB of weights for Qwen3-Embedding-8B
    _, pooling = plans()
    assert pooling.memory.per_gpu.weights_gib == pytest.approx(14.1062, rel=0.002)


def test_no_sampler_in_the_activation_peak():
    # max_num_seqs 1024 requests x 151,665 float32 logits would dwarf the forward pass at 1024 tokens.
    generate, pooling = plans(max_num_batched_tokens=1024)
    assert generate.memory.per_gpu.activation_gib > 0.5
    assert pooling.memory.per_gpu.activation_gib < 0.25
    assert pooling.memory.per_gpu.kv_cache_gib > generate.memory.per_gpu.kv_cache_gib


def test_tied_embeddings_leave_no_copy_on_the_last_pipeline_stage():
    generate = make_plan(PlanRequest(model="Qwen/Qwen3-Embedding-4B", gpu="L4", runner="generate",
                                     pipeline_parallel_size=2, num_gpus=2, max_model_len=4096))
    pooling = make_plan(PlanRequest(model="Qwen/Qwen3-Embedding-4B", gpu="L4", pipeline_parallel_size=2, num_gpus=2,
                                    max_model_len=4096))
    assert pooling.memory.per_stage[0].weights_gib == generate.memory.per_stage[0].weights_gib
    assert pooling.memory.per_stage[1].weights_gib < generate.memory.per_stage[1].weights_gib


def test_a_local_directory_with_modules_json_is_a_pooling_model(tmp_path):
    directory = write_config(tmp_path / "emb", catalog_configs()[EMBEDDING])
    as_generator = make_plan(PlanRequest(model=str(directory), **FLAGS))
    (directory / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                         "type": "sentence_transformers.models.Transformer"}]))
    as_embedder = make_plan(PlanRequest(model=str(directory), **FLAGS))
    assert as_generator.config.runner == "generate" and as_embedder.config.runner == "pooling"
    assert as_embedder.memory.per_gpu.weights_gib < as_generator.memory.per_gpu.weights_gib


def test_a_generative_model_can_be_served_for_embeddings():
    plan = make_plan(PlanRequest(model="Qwen/Qwen3-8B", runner="pooling", **FLAGS))
    assert plan.serve_argv[-2:] == ["--runner", "pooling"] and plan.arch.pooling


def test_an_unknown_runner_is_one_clear_error():
    with pytest.raises(PlannerError, match="--runner draft is not one the planner models; use generate or pooling"):
        PlanRequest(model=EMBEDDING, runner="draft")
    result = CliRunner().invoke(main, ["plan", "--model", EMBEDDING, "--runner", "embed"])
    assert result.exit_code == 2 and "Invalid value for '--runner'" in result.output
    assert "Traceback" not in result.output


def test_the_cli_takes_the_runner_and_says_so_in_json():
    result = CliRunner().invoke(main, ["plan", "--model", "Qwen/Qwen3-8B", "--runner", "pooling", "--gpu", "L4",
                                       "--max-model-len", "4096", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["config"]["runner"] == "pooling"
    assert data["serve"]["argv"][-2:] == ["--runner", "pooling"]
