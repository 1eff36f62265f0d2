"""--kv-cache-memory-bytes as vLLM 0.32 applies it: after the profiling run it reserves exactly that KV cache per
GPU and ignores --gpu-memory-utilization (gpu_worker.determine_available_memory); what must fit is then the whole
device. The size is written as vLLM's human_readable_int reads it."""

import pytest
from click.testing import CliRunner

from estimator.cli import main
from estimator.errors import PlannerError
from estimator.gpus import GIB
from estimator.plan import PlanRequest, make_plan
from estimator.validate import byte_count
from tests.conftest import run_in_vllm

MODEL = "Qwen/Qwen3-8B"


def plan(**flags):
    return make_plan(PlanRequest(model=MODEL, gpu="L4", max_model_len=8192, **flags))


def test_the_pool_is_what_was_reserved_whatever_the_budget():
    reserved = plan(kv_cache_memory_bytes="3G")
    page = 16 * 36 * 8 * 128 * 2 * 2  # 16 tokens x 36 layers x 8 KV heads x 128 x K and V x bf16
    assert reserved.memory.bytes_per_block == page
    assert reserved.memory.num_gpu_blocks == 3 * 2**30 // page
    assert reserved.memory.per_gpu.kv_cache_gib == pytest.approx(3 * 2**30 // page * page / GIB)
    assert reserved.memory.per_gpu.budget_gib == pytest.approx(reserved.gpu.memory_gib)  # the whole device
    # the utilization no longer matters, and the plan says so when it is given
    lower = plan(kv_cache_memory_bytes=3 * 2**30, gpu_memory_utilization=0.5)
    assert lower.memory.num_gpu_blocks == reserved.memory.num_gpu_blocks
    assert any(w.startswith("--gpu-memory-utilization is ignored with --kv-cache-memory-bytes") for w in lower.warnings)
    assert reserved.serve_argv[-2:] == ["--kv-cache-memory-bytes", str(3 * 2**30)]
    assert not any(r.flag == "--gpu-memory-utilization" for r in reserved.relaxations)


def test_a_reservation_the_device_cannot_hold_does_not_fit():
    # 15.26 GiB of weights and 1.3 GiB of overheads leave about 5.4 GiB of the L4's 22.03
    too_much = plan(kv_cache_memory_bytes="6G")
    assert not too_much.memory.fits and too_much.memory.binding_constraint == "overheads"
    spare = too_much.gpu.memory_bytes - sum(getattr(too_much.memory.per_gpu, f) * GIB for f in (
        "weights_gib", "activation_gib", "non_torch_gib", "cuda_graph_gib"))
    assert too_much.memory.reason == (
        f"the 6.00 GiB of --kv-cache-memory-bytes does not fit: with the weights, activation peak, non-torch and "
        f"CUDA graph memory it exceeds the GPU's 22.03 GiB by {(6 * 2**30 - spare) / GIB:.2f} GiB")
    assert plan(kv_cache_memory_bytes="5G").memory.fits
    # too little for one request of max_model_len: vLLM refuses to start, and so does the plan
    small = plan(kv_cache_memory_bytes="64M")
    assert not small.memory.fits and small.memory.binding_constraint == "kv_cache"


BAD_SIZE = "--kv-cache-memory-bytes must be a positive number of bytes (e.g. 1073741824, 64M or 25.6g), got "


@pytest.mark.parametrize("value,message", [
    ("0", BAD_SIZE + "'0'"), ("-1", BAD_SIZE + "'-1'"), ("1.5M", BAD_SIZE + "'1.5M'"), ("64MB", BAD_SIZE + "'64MB'"),
    ("lots", BAD_SIZE + "'lots'"), (True, BAD_SIZE + "True"),
    (0, "--kv-cache-memory-bytes must be a positive integer, got 0")])
def test_a_bad_size_is_one_clear_line(value, message):
    with pytest.raises(PlannerError) as err:
        PlanRequest(model=MODEL, kv_cache_memory_bytes=value)
    assert str(err.value) == message
    if isinstance(value, str):
        result = CliRunner().invoke(main, ["plan", "--model", MODEL, "--kv-cache-memory-bytes", value])
        assert result.exit_code == 1 and result.output == f"Error: {message}\n"


SIZES = ["64M", "1K", "1k", "25.6k", "3G", "2T", "0.5g", "1073741824", " 7m ", "12"]


@pytest.mark.vllm
def test_sizes_are_read_as_vllms_parser_reads_them(vllm_py, tmp_path):
    script = tmp_path / "sizes.py"
    script.write_text("import json, sys\nfrom vllm.utils.argparse_utils import human_readable_int\n"
                      "print(json.dumps([human_readable_int(v) for v in json.loads(sys.stdin.read())]))\n")
    assert [byte_count("--kv-cache-memory-bytes", v) for v in SIZES] == run_in_vllm(vllm_py, script, SIZES)
