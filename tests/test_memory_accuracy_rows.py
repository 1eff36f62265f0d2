"""benchmarks/memory_accuracy.py reads start-up rows people wrote by hand: their counts, percentages and dtype
spellings become the flags vLLM ran with, and a row it cannot represent is counted with its reason."""

import csv
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import memory_accuracy

COLUMNS = ("source_url", "vllm_version", "model", "gpu", "gpu_total_gib", "tp", "pp", "dtype", "quantization",
           "kv_cache_dtype", "max_model_len", "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens",
           "enforce_eager", "block_size", "weights_gib", "activation_peak_gib", "non_torch_gib", "cuda_graph_gib",
           "kv_cache_gib", "gpu_blocks", "kv_cache_tokens", "max_concurrency", "notes")


@pytest.mark.parametrize("cell, expected", [
    ("32768", 32768), ("32k", 32000), ("128K", 131072), ("1.26M", 1_260_000), ("2M", 2 * 2**20),
    ("290,632", 290632), ("8192 (default)", 8192), ("", None), ("n/a", None), ("4 GPUs", 4),
])
def test_counts_are_read_as_vllm_reads_them(cell, expected):
    assert memory_accuracy.count(cell) == expected


@pytest.mark.parametrize("cell, expected", [("0.9", 0.9), ("90%", 0.9), ("92", 0.92), ("1", 1.0), ("", None)])
def test_a_utilization_is_a_fraction_however_written(cell, expected):
    value = memory_accuracy.utilization(cell)
    assert (value is None) if expected is None else value == pytest.approx(expected)


@pytest.mark.parametrize("cell, expected", [("bf16", "bfloat16"), ("BF16", "bfloat16"), ("torch.float16", "float16"),
                                            ("FP8 (online)", "fp8"), ("compressed-tensors (FP8)", "compressed-tensors"),
                                            ("fp8_e4m3", "fp8_e4m3"), ("", None)])
def test_dtypes_and_methods_take_vllms_spelling(cell, expected):
    assert memory_accuracy.spelled(cell) == expected


def test_a_hand_written_row_becomes_the_flags_vllm_ran_with():
    row = dict.fromkeys(COLUMNS, "") | {
        "model": "Qwen/Qwen2.5-7B-Instruct (local path)", "gpu": "2x RTX 4090", "tp": "2", "dtype": "BF16",
        "quantization": "FP8", "kv_cache_dtype": "fp8_e4m3", "max_model_len": "32k", "gpu_memory_utilization": "90%",
        "max_num_batched_tokens": "8K", "vllm_version": "0.22.0"}
    request, why = memory_accuracy.request_of(row)
    assert why is None
    assert (request.model, request.gpu, request.tensor_parallel_size, request.num_gpus) == \
        ("Qwen/Qwen2.5-7B-Instruct", "RTX-4090", 2, 2)
    assert (request.dtype, request.quantization, request.kv_cache_dtype) == ("bfloat16", "fp8", "fp8_e4m3")
    assert (request.max_model_len, request.max_num_batched_tokens, request.gpu_memory_utilization) == \
        (32000, 8192, 0.9)


def test_the_benchmark_answers_what_it_can_and_counts_the_rest_by_reason(tmp_path):
    corpus = tmp_path / "startups.csv"
    with open(corpus, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerow(dict.fromkeys(COLUMNS, "") | {"model": "Qwen/Qwen2.5-7B-Instruct", "gpu": "NVIDIA L40S",
                                                     "tp": "1", "dtype": "bf16", "kv_cache_gib": "30"})
        writer.writerow(dict.fromkeys(COLUMNS, "") | {"model": "Qwen/Qwen2.5-7B-Instruct", "gpu": "L40S",
                                                     "quantization": "bitsandbytes", "kv_cache_gib": "30"})
        writer.writerow(dict.fromkeys(COLUMNS, "") | {"model": "someone/not-a-catalog-model", "gpu": "L40S"})
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory_accuracy.py"), "--corpus", str(corpus)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "   2 Qwen/Qwen2.5-7B-Instruct" in out and " L40S " in out
    assert "Rows the planner cannot represent: 2 of 3, by reason" in out
    assert "--quantization bitsandbytes is not a quantization method of vLLM" in out
    assert "model not in the bundled catalog" in out
