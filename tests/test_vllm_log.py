"""Memory figures from vLLM logs in the wordings of several versions."""

import pytest

from calibrate import vllm_log

V1_032 = """INFO 11-27 06:35:01 [gpu_model_runner.py:2602] Model loading took 14.9877 GiB and 5.123 seconds
INFO 11-27 06:35:09 [gpu_worker.py:298] Available KV cache memory: 55.63 GiB
INFO 11-27 06:35:09 [kv_cache_utils.py:1087] GPU KV cache size: 455,792 tokens
INFO 11-27 06:35:09 [kv_cache_utils.py:1091] Maximum concurrency for 131,072 tokens per request: 3.48x
INFO 11-27 06:35:30 [gpu_model_runner.py:3180] Graph capturing finished in 21 secs, took 0.58 GiB
INFO 11-27 06:35:31 [api_server.py:1855] vLLM API server version 0.32.0"""
V1_09 = ("DEBUG Memory profiling takes 5.41 seconds. Total non KV cache memory: 16.25GiB; torch peak memory "
         "increase: 1.19GiB; non-torch forward increase memory: 0.09GiB; weights memory: 14.99GiB.\n"
         "INFO GPU KV cache size: 1,234,560 tokens")
V0_06 = ("INFO worker.py:240] Memory profiling takes 4.52 seconds\nthe current vLLM instance can use total_gpu_memory "
         "(79.10GiB) x gpu_memory_utilization (0.90) = 71.19GiB\nmodel weights take 14.99GiB; non_torch_memory takes "
         "0.09GiB; PyTorch activation peak memory takes 1.19GiB; the rest of the memory reserved for KV Cache is "
         "54.92GiB.\nINFO gpu_executor.py:122] # GPU blocks: 28117, # CPU blocks: 2048")
CPU_032 = ("INFO 11-27 06:34:38 [cpu_worker.py:150] Auto set (2.49/10.34) GiB for KV cache on node 0, with 3.1 GiB "
           "requested memory for the worker.\nINFO 11-27 06:34:38 [kv_cache_utils.py:1087] CPU KV cache size: "
           "2,097,152 tokens\nINFO Maximum concurrency for 512 tokens per request: 4096.00x")


def test_v1_log_of_vllm_032():
    assert vllm_log.parse(V1_032) == {"weights_gib": 14.9877, "kv_cache_gib": 55.63, "kv_cache_tokens": 455792,
                                      "max_concurrency": 3.48, "cuda_graph_gib": 0.58, "vllm_version": "0.32.0"}


def test_profiling_summary_of_vllm_09():
    out = vllm_log.parse(V1_09)
    assert out == {"weights_gib": 14.99, "activation_gib": 1.19, "non_torch_gib": 0.09, "non_kv_cache_gib": 16.25,
                   "kv_cache_tokens": 1234560}


def test_v0_profiling_and_blocks_of_vllm_06():
    out = vllm_log.parse(V0_06)
    assert out == {"weights_gib": 14.99, "activation_gib": 1.19, "non_torch_gib": 0.09, "kv_cache_gib": 54.92,
                   "num_gpu_blocks": 28117}


def test_cpu_backend_log():
    assert vllm_log.parse(CPU_032) == {"kv_cache_gib": 2.49, "kv_cache_tokens": 2097152, "max_concurrency": 4096.0}


@pytest.mark.parametrize("log,label", [
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "out of memory"),
    ("ValueError: No available memory for the cache blocks. Try increasing", "no room for the KV cache"),
    ("ValueError: To serve at least one request with the model's max seq len (131072), (16.00 GiB KV cache is "
     "needed", "no room for the KV cache"),
    ("vllm serve: error: unrecognized arguments: --swap-space 4", "bad argument"),
    # seen when a test ran calibrate with TMPDIR under a pytest-xdist worker's tmp_path
    ('zmq.error.ZMQError: ipc path "/tmp/pytest-of-root/pytest-3/popen-gw1/test_ctrl_c_or_sigterm_stores_1/tmp/'
     'e9c751a5-c94b-4b3d-9680-1e274c7c4bad" is longer than 107 characters (sizeof(sockaddr_un.sun_path)).',
     "TMPDIR too long for vLLM's sockets (set TMPDIR to a short directory such as /tmp)"),
])
def test_failure_reasons(log, label):
    assert vllm_log.failure_reason("INFO starting\n" + log + "\nINFO shutting down").startswith(label + ": ")


def test_no_reason_in_a_clean_log():
    assert vllm_log.failure_reason(V1_032) is None
