"""Hybrid models: linear-attention (Gated DeltaNet) layers keep a fixed state per request, not KV per token.

vLLM's own KV sizing agrees on blocks, tokens and groups (tests/test_kv_against_vllm.py); these tests check by hand
what that comparison takes as given: the state's size, the block size vLLM aligns to it, and the search's use of it.
"""

import json
from pathlib import Path

import pytest

from estimator.architecture import from_config
from estimator.errors import PlannerError
from estimator.model_source import catalog_configs
from estimator.plan import PlanRequest, make_plan, plan_with_search
from estimator.workload import Workload
from tests.conftest import run_in_vllm

NEXT = "Qwen/Qwen3-Next-80B-A3B-Instruct"


def arch():
    return from_config(catalog_configs()[NEXT], NEXT)


def test_every_fourth_layer_is_full_attention_and_the_rest_keep_a_state():
    a = arch()
    kinds = [layer.kind for layer in a.attention]
    assert kinds.count("full") == 12 and kinds.count("mamba") == 36
    assert [i for i, k in enumerate(kinds) if k == "full"] == list(range(3, 48, 4))
    assert a.attention_layer.kind == "full" and a.kv_bytes_per_token(2) == 12 * 2 * 2 * 256 * 2


def test_the_state_is_the_convolution_window_and_one_matrix_per_value_head():
    # conv: (2 x 16 key heads x 128 + 32 value heads x 128) channels x (kernel 4 - 1); temporal: 32 x 128 x 128
    state = arch().state_layers[0]
    assert state.state_bytes(2) == ((2 * 16 * 128 + 32 * 128) * 3 + 32 * 128 * 128) * 2 == 1_097_728
    assert state.state_bytes(2, tp=4) == 1_097_728 // 4
    assert state.bytes_per_token(2) == 0


@pytest.mark.parametrize("flags,block", [
    (dict(gpu="H100", tensor_parallel_size=4), 272),  # 274,432 B state / (16 x 1,024 B per token) -> 17 x 16
    (dict(gpu="H100", tensor_parallel_size=2), 544),  # 548,864 / (16 x 1,024) = 33.5 -> 34 x 16
    (dict(gpu="H200", tensor_parallel_size=2, kv_cache_dtype="fp8"), 1072),  # 548,864 / (16 x 512) -> 67 x 16
    (dict(gpu="H100", tensor_parallel_size=4, block_size=512), 512),  # already holds the state: kept
])
def test_the_block_grows_until_its_attention_page_holds_one_state(flags, block):
    plan = make_plan(PlanRequest(model=NEXT, max_model_len=32768, **flags))
    assert plan.config.block_size == block
    assert plan.memory.bytes_per_block == 12 * block * plan.arch.attention_layer.bytes_per_token(
        plan.config.kv_dtype_bytes, plan.config.tensor_parallel_size)
    # a request: its attention blocks plus 2 state blocks in each of the 3 state groups (prefix caching on)
    assert plan.memory.blocks_per_request == -(-32768 // block) + 3 * 2
    if "block_size" not in flags:
        assert any("linear-attention state" in d for d in plan.config.defaults)


def test_the_search_sizes_the_block_for_each_kv_dtype():
    plan = plan_with_search(PlanRequest(model=NEXT, gpu="H200", num_gpus=2),
                            Workload(input_len=2000, output_len=500, concurrency=64))
    best = plan.search["best"]
    kv_bytes = 1 if best["kv_cache_dtype"].startswith("fp8") else 2
    tp = best["tensor_parallel_size"]
    state = arch().state_layers[0].state_bytes(2, tp)
    per_token = max(1, 2 // tp) * 256 * 2 * kv_bytes
    assert plan.config.block_size == 16 * -(-state // (16 * per_token))
    assert plan.memory.fits


def test_layer_types_that_are_neither_kind_are_refused():
    config = dict(catalog_configs()[NEXT], layer_types=["sliding_attention"] * 48)
    with pytest.raises(PlannerError, match="expected full_attention or linear_attention per layer"):
        from_config(config, "bad")


GRANITE = str(Path(__file__).parent / "fixtures" / "models" / "granite-hybrid")


def granite():
    return from_config(json.loads((Path(GRANITE) / "config.json").read_text()), GRANITE)


def test_granite_hybrid_layers_follow_layer_types():
    a = granite()
    assert [i for i, layer in enumerate(a.attention) if layer.kind == "full"] == [5, 15, 25, 35]
    assert len(a.state_layers) == 36 and a.num_experts == 64 and a.experts_per_token == 6
    # Mamba2 mixer: in_proj to z, x (2 x 3072), B and C (2 x 128) and dt (48 heads), conv over x, B, C with a bias
    names = {t.name.rsplit(".", 1)[-1]: t for t in a.tensors if t.layer == 0}
    assert (names["in_proj"].rows, names["in_proj"].cols) == (2 * 3072 + 256 + 48, 1536)
    assert (names["conv1d"].rows, names["conv1d"].cols) == (3072 + 256, 5)


@pytest.mark.vllm
def test_state_shapes_match_vllms_calculator(vllm_py):
    """Per TP rank, including Mamba2's single B/C group copied to every rank, against vLLM's own calculator."""
    granite_config = json.loads((Path(GRANITE) / "config.json").read_text())
    next_config = catalog_configs()[NEXT]
    cases, ours = [], []
    for tp in (1, 2, 4):
        cases.append(dict(granite_config, kind="mamba2", tp=tp))
        ours.append(granite().state_layers[0].state_shapes(tp))
        cases.append(dict(next_config, kind="gdn", tp=tp))
        ours.append(arch().state_layers[0].state_shapes(tp))
    reference = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_state_reference.py", cases)
    for mine, theirs in zip(ours, reference, strict=True):
        conv, temporal = theirs  # vLLM keeps the convolution window as one (channels, window) tensor
        assert sum(rows for rows, _ in mine[:-1]) == conv[0] and {cols for _, cols in mine[:-1]} == {conv[1]}
        assert list(mine[-1]) == [temporal[0], temporal[1] * temporal[2]]
