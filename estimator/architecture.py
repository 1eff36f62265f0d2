"""From a config.json to the exact tensors vLLM loads and the KV cache each attention layer keeps.

Every supported architecture is listed in ``ARCHITECTURES``; anything else fails closed. The builders live
beside this module: ``inventory`` (the records and shared layers), ``decoders`` (decoder families as data, MLA,
gpt-oss), ``hybrid`` (linear-attention hybrids) and ``vision`` (multimodal checkpoints). The tensor
inventory carries, per tensor, how tensor parallelism shards it (as vLLM's parallel layers do), which
pipeline stage holds it and whether the checkpoint's quantization applies to it, so parameter counts,
per-rank weight bytes and quantized sizes all come from one list.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from estimator import deepseek_v4 as dsv4
from estimator import quantization
from estimator.decoders import chatglm_config, decoder, deepseek, gpt_oss, hunyuan_moe_config, mimo_v2
from estimator.errors import PlannerError
from estimator.gemma3n import gemma3n_causal, gemma3n_mm
from estimator.gemma4 import gemma4_causal, gemma4_mm
from estimator.hybrid import falcon_h1, granite_hybrid, jamba, kimi_linear, lfm2, nemotron_h, qwen3_next
from estimator.internvl import internvl, internvl_config
from estimator.inventory import (
    DTYPE_BYTES,
    VLLM_REFERENCE_VERSION,
    AttentionLayer,
    Config,
    Inventory,
    Tensor,
    VisionProfile,
    language_config,
    tied_embeddings,
)
from estimator.llava import llava, llava_config, llava_next, llava_onevision
from estimator.opt import gpt2, gpt2_config, opt
from estimator.quantization import QuantScheme
from estimator.rope import longrope_default_len, rope_tables
from estimator.speculative import build_mtp
from estimator.vision import gemma3_mm, glm4v, kimi_k25, llama4_mm, mistral3, qwen2_vl, qwen_vl

# Keys vLLM reads (in this order, taking the minimum) for the model's maximum length
# (vllm/config/model.py, derived_max_model_len_and_key).
MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_sequence_length", "max_seq_length", "seq_len")
# The config.json layer_types name of each attention kind whose rope parameters may be keyed by it
LAYER_TYPES = {"full": "full_attention", "sliding": "sliding_attention"}
# RoPE types whose factor vLLM does not multiply into the derived maximum length (_get_and_verify_max_len).
ROPE_TYPES_NOT_SCALING_MAX_LEN = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")


@dataclass(frozen=True)
class ModelArch:
    architecture: str
    model_type: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    dtype: str
    tie_word_embeddings: bool
    tensors: tuple[Tensor, ...]
    attention: tuple[AttentionLayer, ...]
    quant: QuantScheme | None
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    # How the router weighs the top-k experts, as vLLM's TRTLLM-Gen MoE kernels tell routings apart
    # (fused_moe/config.py get_routing_method_type): "renormalize" (the top-k weights renormalized, or a
    # sigmoid/grouped/Llama 4 router those kernels run), "plain" (softmax weights left as they are: Qwen2-MoE,
    # DeepSeek-V2-Lite), "custom" (a model's own routing function: Phi-3.5-MoE's sparsemixer, Gemma 4)
    moe_routing: str = "renormalize"
    # The experts' activation as vLLM's MoE kernels tell them apart (MoEActivation): "silu" (gated SiLU, and the
    # default), "swigluoai" (gpt-oss's clamped SwiGLU), "gelu" (gated tanh-GELU, MoEActivation.GELU_TANH: Gemma 4)
    moe_activation: str = "silu"
    # Below this intermediate size per TP rank vLLM pads every routed expert to it times TP (Kimi-Linear's KimiMoE
    # min_moe_intermediate_per_partition, without expert parallelism); 0: held as loaded
    moe_min_intermediate_per_rank: int = 0
    is_mla: bool = False
    # MLA: one head's width of kv_b_proj's output (qk_nope_head_dim + v_head_dim), the up-projected context
    mla_kv_up_dim: int = 0
    multimodal: bool = False
    # The modalities its vision tower serves (vLLM's _mark_tower_model): with all of them limited to 0 per prompt,
    # vLLM does not build the tower at all
    tower_modalities: tuple[str, ...] = ()
    # A modality whose tower the planner cannot size (gemma-3n's timm MobileNet-V5 image tower): plans must limit
    # it to 0 per prompt, which leaves that tower out of what vLLM builds
    unsized_modality: str | None = None
    derived_max_model_len: int = 2048
    max_len_key: str = "max_position_embeddings"
    longrope_default_len: int | None = None  # vLLM defaults to original_max_position_embeddings for longrope
    pooling: bool = False  # built for `--runner pooling` (embeddings): no LM head, no sampler
    # Buffers the model allocates at construction per batched token, in hidden-size rows of the model dtype;
    # vLLM counts them in "Model loading took" (Qwen3-VL: one deepstack buffer per tapped vision block).
    buffer_rows_per_token: int = 0
    # The vision tower's profiling pass, where the configs fix its item size; None: not modelled
    vision: VisionProfile | None = None
    # The rotary tables vLLM builds (estimator/rope.py): (elements, bytes each or None for the model dtype)
    rope_tables: tuple[tuple[int, int | None], ...] = ()
    # The vision tower's own rotary table, built with the tower (get_rope in qwen2_vl.py and the other Qwen-VL towers,
    # glm4_1v.py, mllama4.py): (elements, bytes each or None for the model dtype); gone with the tower
    tower_rope_tables: tuple[tuple[int, int | None], ...] = ()
    # Sparse MLA: the top-k token indices the indexer picks (index_topk in config.json); vLLM allocates an int32
    # [max_num_batched_tokens, index_topk] buffer for them when it builds the model (deepseek_v2.py
    # DeepseekV2Model). 0: dense attention.
    index_topk: int = 0
    family: str = ""  # the planner's family of the architecture (ARCHITECTURES)
    # The checkpoint's multi-token-prediction layers (estimator/speculative.py), which vLLM loads only as the
    # drafter of --speculative-config method mtp: their tensors and KV layers, indexed after the decoder's
    draft_tensors: tuple[Tensor, ...] = ()
    draft_attention: tuple[AttentionLayer, ...] = ()
    # As served with speculative decoding (speculative.served): draft tokens per step and the method; with mtp the
    # draft's tensors and KV layers are then in ``tensors`` and ``attention`` (after the decoder's num_layers)
    num_speculative_tokens: int = 0
    speculative_method: str | None = None

    @property
    def num_params(self) -> int:
        """The model's parameters, without an MTP drafter's (mtp_params) even when served with one."""
        return sum(t.numel for t in self.target_tensors if t.kind != "derived" and t.in_checkpoint)

    @property
    def active_params(self) -> int:
        return sum(t.active_numel for t in self.target_tensors if t.kind != "derived" and t.in_checkpoint)

    @property
    def target_tensors(self) -> tuple[Tensor, ...]:
        """The tensors of the model itself: all but an MTP drafter's."""
        return tuple(t for t in self.tensors if not self.drafts(t))

    def drafts(self, t: Tensor) -> bool:
        """Whether a tensor is the MTP drafter's: speculative.served adds its layers after the decoder's."""
        return t.layer is not None and t.layer >= self.num_layers

    @property
    def drafter_layers(self) -> int:
        """The MTP drafter's layers as served (0: no drafter), after the decoder's in ``attention``."""
        return len(self.attention) - self.num_layers

    @property
    def mtp_params(self) -> int:
        """Parameters of the checkpoint's MTP layers, beyond num_params (shared embeddings and LM head not counted
        again)."""
        return sum(t.numel for t in self.draft_tensors if t.kind != "derived" and t.in_checkpoint)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_deepseek_v4(self) -> bool:
        """DeepSeek-V4's layers: compressed caches packed per block id (deepseek_v4.kv_layout), fp8_ds_mla entries."""
        return self.family == "deepseek_v4"

    @property
    def is_sparse_mla(self) -> bool:
        return self.index_topk > 0

    @property
    def attention_layer(self) -> AttentionLayer:
        """The first layer that keeps KV per token: its page sets the block size of every group."""
        return next(a for a in self.attention if a.kind not in ("mamba", "none") and not a.shares_kv)

    @property
    def shares_kv_caches(self) -> bool:
        """Whether some layers attend over another layer's KV cache (gemma-3n, Gemma 4's last layers)."""
        return any(a.shares_kv for a in self.attention)

    @property
    def state_layers(self) -> tuple[AttentionLayer, ...]:
        return tuple(a for a in self.attention if a.kind == "mamba")

    def kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        """KV bytes one token adds across all layers at TP=1 (sliding layers included, as if unbounded)."""
        return sum(a.bytes_per_token(kv_dtype_bytes) for a in self.attention if not a.shares_kv)

    def default_max_model_len(self) -> int:
        return self.longrope_default_len or self.derived_max_model_len


RUNNERS = ("generate", "pooling")  # vllm/config/model.py RunnerType


def as_pooling(arch: ModelArch) -> ModelArch:
    """The model vLLM builds for `--runner pooling` (vllm/model_executor/models/adapters.py
    _create_pooling_model_cls): the same backbone with the LM head and logits processor left out, so no LM
    head weights (nor, with tied embeddings, the last stage's copy) and a pooler in place of the sampler."""
    tensors = tuple(t for t in arch.tensors if t.name not in ("lm_head", "lm_head.bias"))
    return replace(arch, tensors=tensors, tie_word_embeddings=False, pooling=True)


def without_tower(arch: ModelArch) -> ModelArch:
    """The model vLLM builds when every modality of its tower is limited to 0 per prompt (--limit-mm-per-prompt,
    --language-model-only): the tower and its projector are left out (interfaces.py _mark_tower_model puts a
    StageMissingLayer in their place), so are their weights, the profiling pass and Qwen3-VL's deepstack
    buffers (allocated only beside a built tower)."""
    tensors = tuple(t for t in arch.tensors if t.kind != "vision")
    return replace(arch, tensors=tensors, vision=None, multimodal=False, buffer_rows_per_token=0, tower_rope_tables=())


Builder = Callable[[Config, Inventory, str], tuple]

# architectures[0] of config.json -> (family, builder, uses text_config: True, False or "optional")
ARCHITECTURES: dict[str, tuple[str, Builder, bool | str]] = {
    "LlamaForCausalLM": ("llama", decoder, False),
    "MistralForCausalLM": ("mistral", decoder, False),
    "Ministral3ForCausalLM": ("mistral", decoder, False),  # vLLM serves it with MistralForCausalLM (registry.py)
    "Qwen2ForCausalLM": ("qwen2", decoder, False),
    "Qwen3ForCausalLM": ("qwen3", decoder, False),
    "GraniteForCausalLM": ("granite", decoder, False),
    "Phi3ForCausalLM": ("phi3", decoder, False),
    "InternLM2ForCausalLM": ("internlm2", decoder, False),
    "CohereForCausalLM": ("cohere", decoder, False),
    "Cohere2ForCausalLM": ("cohere2", decoder, False),
    "GemmaForCausalLM": ("gemma", decoder, False),  # Gemma 1 and CodeGemma: Llama's layer, tied, GeGLU
    "Gemma2ForCausalLM": ("gemma2", decoder, False),
    "Gemma3ForCausalLM": ("gemma3", decoder, False),
    "Gemma3ForConditionalGeneration": ("gemma3", gemma3_mm, True),
    "Gemma3nForCausalLM": ("gemma3n", gemma3n_causal, "optional"),
    "Gemma3nForConditionalGeneration": ("gemma3n", gemma3n_mm, True),
    "Gemma4ForCausalLM": ("gemma4", gemma4_causal, "optional"),
    "Gemma4ForConditionalGeneration": ("gemma4", gemma4_mm, True),
    "MixtralForCausalLM": ("mixtral", decoder, False),
    "GraniteMoeForCausalLM": ("granitemoe", decoder, False),
    "PhiMoEForCausalLM": ("phimoe", decoder, False),
    "Qwen2MoeForCausalLM": ("qwen2_moe", decoder, False),
    "Qwen3MoeForCausalLM": ("qwen3_moe", decoder, False),
    "Glm4MoeForCausalLM": ("glm4_moe", decoder, False),
    "MiniMaxM2ForCausalLM": ("minimax_m2", decoder, False),
    "DeepseekV2ForCausalLM": ("deepseek", deepseek, False),
    "DeepseekV3ForCausalLM": ("deepseek", deepseek, False),
    # DeepSeek Sparse Attention: GLM-5's glm_moe_dsa runs vLLM's same DeepSeek-V3.2 model code
    # (vllm/models/deepseek_v32/__init__.py).
    "DeepseekV32ForCausalLM": ("deepseek", deepseek, False),
    "GlmMoeDsaForCausalLM": ("deepseek", deepseek, False),
    # GLM-4.7-Flash: DeepSeek's latent attention under GLM-4.5's MoE block (glm4_moe_lite.py)
    "Glm4MoeLiteForCausalLM": ("deepseek", deepseek, False),
    # Kimi-K2.5: Kimi-K2 (DeepSeek-V3's code) under the MoonViT tower
    "KimiK25ForConditionalGeneration": ("deepseek", kimi_k25, True),
    "GptOssForCausalLM": ("gpt_oss", gpt_oss, False),
    # MiMo-V2-Flash: windowed and global layers with heads and head sizes of their own, attention sinks, experts
    "MiMoV2FlashForCausalLM": ("mimo_v2", mimo_v2, False),
    "Llama4ForConditionalGeneration": ("llama4", llama4_mm, True),
    "Qwen2VLForConditionalGeneration": ("qwen2", qwen2_vl, "optional"),
    "Qwen2_5_VLForConditionalGeneration": ("qwen2", qwen_vl, "optional"),
    "Qwen3VLForConditionalGeneration": ("qwen3", qwen_vl, True),
    "Qwen3VLMoeForConditionalGeneration": ("qwen3_moe", qwen_vl, True),
    "Mistral3ForConditionalGeneration": ("mistral", mistral3, True),
    # LLaVA (1.5 and the like): a Llama, Mistral or Qwen2 decoder under a CLIP or SigLIP tower; its family is the
    # language model's (llava_config)
    "LlavaForConditionalGeneration": ("llava", llava, True),
    "LlavaNextForConditionalGeneration": ("llava", llava_next, True),  # LLaVA-NeXT (1.6): tiled images
    "LlavaOnevisionForConditionalGeneration": ("llava", llava_onevision, True),  # tiled images and videos
    # InternVL 2.5/3/3.5: a decoder from llm_config under InternViT; its family is the language model's
    "InternVLChatModel": ("internvl", internvl, True),
    # GLM-4.1V (GLM-4 under GLM-4V's tower) and GLM-4.5V/4.6V (GLM-4.5's MoE under the same tower)
    "Glm4vForConditionalGeneration": ("glm4", glm4v, True),
    "Glm4vMoeForConditionalGeneration": ("glm4_moe", glm4v, True),
    "Olmo2ForCausalLM": ("olmo2", decoder, False),
    # served by vLLM's Transformers modeling backend (vLLM has no model code of its own for them)
    "Olmo3ForCausalLM": ("olmo3", decoder, False),
    "SmolLM3ForCausalLM": ("smollm3", decoder, False),
    "SeedOssForCausalLM": ("seed_oss", decoder, False),
    "HunYuanDenseV1ForCausalLM": ("hunyuan_v1_dense", decoder, False),
    "HunYuanMoEV1ForCausalLM": ("hunyuan_v1_moe", decoder, False),  # Hunyuan-A13B
    "PhiForCausalLM": ("phi", decoder, False),  # Phi-1, Phi-1.5, Phi-2
    "GPTNeoXForCausalLM": ("gpt_neox", decoder, False),  # Pythia, GPT-NeoX-20B, Dolly v2
    "Starcoder2ForCausalLM": ("starcoder2", decoder, False),
    "ArceeForCausalLM": ("arcee", decoder, False),  # AFM-4.5B
    "GlmForCausalLM": ("glm", decoder, False),  # GLM-4-9B-chat-hf, GLM-Edge
    "OlmoeForCausalLM": ("olmoe", decoder, False),
    "Ernie4_5ForCausalLM": ("ernie4_5", decoder, False),
    "Exaone4ForCausalLM": ("exaone4", decoder, False),
    "Ernie4_5_MoeForCausalLM": ("ernie4_5_moe", decoder, False),
    "NemotronForCausalLM": ("nemotron", decoder, False),
    "ApertusForCausalLM": ("apertus", decoder, False),
    # ChatGLM3 and GLM-4-9B-chat (chatglm.py)
    "ChatGLMModel": ("chatglm", decoder, False),
    "Glm4ForCausalLM": ("glm4", decoder, False),
    # OPT: learned positions, LayerNorms with biases, a plain MLP (facebook/opt-125m, vLLM's quick-start model)
    "OPTForCausalLM": ("opt", opt, False),
    "GPT2LMHeadModel": ("gpt2", gpt2, False),  # GPT-2: the same kind, under n_embd, n_layer, n_head, n_positions
    "GraniteMoeHybridForCausalLM": ("granitemoehybrid", granite_hybrid, False),
    "Qwen3NextForCausalLM": ("qwen3_next", qwen3_next, False),
    "Qwen3_5ForCausalLM": ("qwen3_5", qwen3_next, False),
    "Qwen3_5MoeForCausalLM": ("qwen3_5_moe", qwen3_next, False),
    "Qwen3_5ForConditionalGeneration": ("qwen3_5", qwen_vl, True),
    "Qwen3_5MoeForConditionalGeneration": ("qwen3_5_moe", qwen_vl, True),
    "NemotronHForCausalLM": ("nemotron_h", nemotron_h, False),
    # LFM2: gated short convolutions with a state of their own between GQA layers
    "Lfm2ForCausalLM": ("lfm2", lfm2, False),
    "Lfm2MoeForCausalLM": ("lfm2_moe", lfm2, False),
    # Kimi-Linear: Kimi Delta Attention (a gated linear attention with a state) between MLA layers
    "KimiLinearForCausalLM": ("kimi_linear", kimi_linear, False),
    # Jamba: Mamba layers with an attention layer every eighth, routed experts every second
    "JambaForCausalLM": ("jamba", jamba, False),
    # DeepSeek-V4: compressed sparse (CSA) and heavily compressed (HCA) attention beside a sliding window in every
    # layer, mHC, hash-routed first layers (deepseek_v4.py)
    "DeepseekV4ForCausalLM": ("deepseek_v4", dsv4.deepseek_v4, False),
    # Falcon-H1: attention and a Mamba2 mixer side by side in every layer, each mixer a layer of its own as vLLM
    # registers it (PARALLEL_MIXERS)
    "FalconH1ForCausalLM": ("falcon_h1", falcon_h1, False),
}


def decoder_families() -> dict[str, str]:
    """The architectures whose model is the decoder table's (decoders.DECODERS), by family: the language models a
    composite checkpoint may carry under its tower (not ChatGLM, whose config needs renaming first, nor those vLLM
    serves through its Transformers backend)."""
    return {arch: family for arch, (family, build, uses_text) in ARCHITECTURES.items()
            if build is decoder and uses_text is False and family != "chatglm" and arch not in TRANSFORMERS_BACKEND}


# Architectures whose config.json vLLM reads only through the checkpoint's own code (auto_map: vLLM 0.32 ships no
# config class for them), so `vllm serve` needs --trust-remote-code: InternLM2's and InternVL's
REMOTE_CODE = frozenset({"InternLM2ForCausalLM", "InternVLChatModel"})

# Architectures whose layers each run attention and a Mamba mixer side by side, the mixers counted as layers
# num_hidden_layers.. as vLLM registers them: the planner does not split them over pipeline stages.
PARALLEL_MIXERS = frozenset({"FalconH1ForCausalLM"})


# Architectures vLLM 0.32 serves through its Transformers modeling backend (model_executor/models/registry.py
# maps them to TransformersForCausalLM): transformers' own modules around vLLM's attention and linear layers, so
# their rotary embeddings are transformers' (an inv_freq vector; cos and sin computed each step), not a cos/sin
# table of vLLM's. The tests check the set against vLLM's registry.
TRANSFORMERS_BACKEND = frozenset({"Olmo2ForCausalLM", "Olmo3ForCausalLM", "SmolLM3ForCausalLM", "SeedOssForCausalLM",
                                  "HunYuanDenseV1ForCausalLM", "HunYuanMoEV1ForCausalLM", "PhiForCausalLM",
                                  "GPTNeoXForCausalLM", "Starcoder2ForCausalLM", "ArceeForCausalLM", "GlmForCausalLM"})


# Architectures vLLM served once and has since removed, with the last version that served each (vLLM 0.32's
# model_executor/models/registry.py _PREVIOUSLY_SUPPORTED_MODELS; tests check the two agree). Llama 3.2 Vision
# (Mllama) went with the V0 engine's encoder-decoder support.
REMOVED_FROM_VLLM = {
    "MotifForCausalLM": "0.10.2", "Phi3SmallForCausalLM": "0.9.2", "Phi4FlashForCausalLM": "0.10.2",
    "Phi4MultimodalForCausalLM": "0.12.0", "JAISLMHeadModel": "0.22.0", "ErnieModel": "0.23.0",
    "ErnieForSequenceClassification": "0.23.0", "ErnieForTokenClassification": "0.23.0",
    "InternLM2VEForCausalLM": "0.23.0", "QWenLMHeadModel": "0.23.0", "QwenVLForConditionalGeneration": "0.23.0",
    "InternLMForCausalLM": "0.23.0", "DonutForConditionalGeneration": "0.10.2",
    "MllamaForConditionalGeneration": "0.10.2", "XverseForCausalLM": "0.23.0", "Dots1ForCausalLM": "0.23.0",
    "BambaForCausalLM": "0.23.0", "MiniMaxForCausalLM": "0.23.0", "MiniMaxText01ForCausalLM": "0.23.0",
    "MiniMaxM1ForCausalLM": "0.23.0", "MiniMaxVL01ForConditionalGeneration": "0.23.0",
    "BaiChuanForCausalLM": "0.23.0", "BaichuanForCausalLM": "0.23.0", "AquilaModel": "0.24.0",
    "AquilaForCausalLM": "0.24.0", "Grok1ModelForCausalLM": "0.24.0", "Grok1ForCausalLM": "0.24.0",
    "TarsierForConditionalGeneration": "0.24.0", "Tarsier2ForConditionalGeneration": "0.23.0",
    "MantisForConditionalGeneration": "0.24.0", "MusicFlamingoForConditionalGeneration": "0.24.0",
    "AyaVisionForConditionalGeneration": "0.24.0", "TeleChatForCausalLM": "0.25.0", "PersimmonForCausalLM": "0.25.0",
    "FuyuForCausalLM": "0.25.0", "Plamo2ForCausalLM": "0.26.0", "OuroForCausalLM": "0.26.0",
    "ArcticForCausalLM": "0.28.0", "ChameleonForConditionalGeneration": "0.28.0", "Cheers": "0.28.0",
    "CheersForConditionalGeneration": "0.28.0", "Fairseq2LlamaForCausalLM": "0.28.0",
    "FireRedLIDForConditionalGeneration": "0.28.0", "GritLM": "0.28.0", "HCXVisionForCausalLM": "0.28.0",
    "MPTForCausalLM": "0.28.0", "MptForCausalLM": "0.28.0", "RWForCausalLM": "0.28.0",
    "StableLMEpochForCausalLM": "0.28.0", "PrithviGeoSpatialMAE": "0.28.0",
}


def _derived_max_len(text: dict, family: str) -> tuple[int, str, int | None]:
    present = [(text[k], k) for k in MAX_LEN_KEYS if isinstance(text.get(k), (int, float)) and text[k] > 0]
    if not present:
        return 2048, "default (no length key in config.json)", None
    length, key = min(present)
    rope = text.get("rope_scaling") or text.get("rope_parameters")
    longrope_len = None
    if isinstance(rope, dict) and family != "gemma3":
        rope_type = rope.get("rope_type", rope.get("type"))
        if rope_type in ("longrope", "su"):
            longrope_len = longrope_default_len(text, family)
        elif rope_type not in ROPE_TYPES_NOT_SCALING_MAX_LEN and rope.get("factor"):
            length = length * float(rope["factor"])
    return int(length), key, longrope_len


# The kinds of the config.json keys the planner reads (at any depth: text_config, rope_scaling, quantization_config).
# A value of another kind ("bits": "four", a string max_position_embeddings, tie_word_embeddings: "no") is an error
# naming the key, never a guess and never a crash further on.
INT_KEYS = frozenset((
    "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
    "intermediate_size_mlp", "moe_intermediate_size", "shared_expert_intermediate_size", "vocab_size",
    "max_position_embeddings", "original_max_position_embeddings", "max_seq_len", "max_sequence_length",
    "seq_length", "n_positions", "sliding_window", "num_experts", "num_local_experts", "n_routed_experts",
    "num_experts_per_tok", "n_shared_experts", "first_k_dense_replace", "kv_lora_rank", "q_lora_rank",
    "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "index_topk", "index_n_heads", "index_head_dim", "n_group", "topk_group", "sliding_window_pattern",
    "attention_chunk_size", "max_window_layers", "bits", "w_bit", "group_size", "q_group_size",
    "decoder_sparse_step", "moe_layer_freq", "depth", "out_hidden_size", "spatial_merge_size", "temporal_patch_size",
    "num_position_embeddings", "patch_size", "in_channels", "in_chans", "num_channels", "full_attention_interval",
    "linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
    "linear_conv_kernel_dim", "mamba_expand", "mamba_n_groups", "mamba_d_state", "mamba_n_heads", "mamba_d_head",
    "mamba_d_conv", "shared_intermediate_size", "mamba_num_heads", "mamba_head_dim", "n_groups", "ssm_state_size",
    "conv_kernel", "moe_shared_expert_intermediate_size", "moe_latent_size", "global_head_dim",
    "num_global_key_value_heads", "num_kv_shared_layers", "hidden_size_per_layer_input", "vocab_size_per_layer_input",
    "top_k_experts", "expert_intermediate_size", "position_embedding_size", "conv_kernel_size", "output_proj_dims",
    "laurel_rank", "altup_num_inputs", "input_feat_size", "conf_num_attention_heads", "conf_num_hidden_layers",
    "conf_conv_kernel_size", "embed_dim", "moe_num_experts", "moe_k", "moe_num_shared_experts",
    "moe_layer_start_index", "moe_layer_end_index", "moe_layer_interval", "ffn_dim", "word_embed_proj_dim",
    "attn_layer_period", "attn_layer_offset", "expert_layer_period", "expert_layer_offset", "n_embd", "n_layer",
    "n_head", "n_positions", "n_inner"))
# keys that may also be a list: one per layer (gemma-3n's intermediate_size), a 2-D block (AutoRound FP8's group_size)
INT_LIST_KEYS = frozenset(("intermediate_size", "group_size"))
# keys that may also be a list of 0 or 1 per layer (MiMo-V2's moe_layer_freq: experts on this layer or not)
LAYER_FLAG_KEYS = frozenset(("moe_layer_freq",))
BOOL_KEYS = frozenset(("tie_word_embeddings", "use_sliding_window", "attention_bias", "mlp_bias", "desc_act", "sym",
                       "use_bias", "use_conv_bias", "layer_scale", "attention_k_eq_v",
                       "use_double_wide_mlp",
                       "zero_point", "norm_topk_prob", "use_qk_norm", "lm_head_bias", "use_routing_bias", "qk_layernorm",
                       "multimodal_projector_bias", "mamba_proj_bias", "mamba_conv_bias", "enable_bias",
                       "do_layer_norm_before", "layer_norm_elementwise_affine"))
STRING_LIST_KEYS = frozenset(("architectures", "layer_types"))
DICT_KEYS = frozenset(("rope_scaling", "rope_parameters", "quantization_config", "text_config", "vision_config"))
NUMBER_KEYS = frozenset(("rope_theta", "factor", "partial_rotary_factor", "low_freq_factor", "high_freq_factor",
                         "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "rms_norm_eps",
                         "layer_norm_eps", "routed_scaling_factor", "mlp_ratio"))


def check_kinds(raw: dict, model_id: str, prefix: str = "") -> None:
    """Refuse a config.json whose known keys hold values of the wrong kind, naming the key and the model."""
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if value is None:
            continue
        scalar = key in INT_KEYS or key in BOOL_KEYS or key in NUMBER_KEYS or key in STRING_LIST_KEYS
        if isinstance(value, dict) and not scalar:
            check_kinds(value, model_id, f"{where}.")
            continue
        wrong = None
        if key in DICT_KEYS:
            wrong = "an object"
        elif key in STRING_LIST_KEYS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            wrong = "a list of strings"
        elif key in INT_LIST_KEYS and isinstance(value, list):
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                wrong = "an integer or a list of positive integers"
        elif key in LAYER_FLAG_KEYS and isinstance(value, list):
            if not all(v in (0, 1) and not isinstance(v, bool) for v in value):
                wrong = "an integer or a list of 0s and 1s, one per layer"
        elif key in INT_KEYS and (isinstance(value, bool) or not isinstance(value, int)):
            if not (isinstance(value, float) and math.isfinite(value) and value == int(value)):
                wrong = "an integer"
        elif key in BOOL_KEYS and not isinstance(value, bool):
            wrong = "true or false"
        elif key in NUMBER_KEYS and (isinstance(value, bool) or not isinstance(value, (int, float))
                                     or not math.isfinite(value)):
            wrong = "a finite number"
        if wrong:
            raise PlannerError(f"config.json of {model_id} has {where}={value!r}; expected {wrong} (fix the "
                               "config.json)")


def _closest(arch: str) -> str:
    """Names the supported architecture nearest an unknown one, as a pointer only: planning a checkpoint as another
    architecture would be a guess."""
    import difflib

    def stem(name: str) -> str:  # "Qwen3NextForCausalLM" -> "Qwen3Next": every name shares the suffixes
        return name.split("For", 1)[0]

    stems = {stem(name): name for name in sorted(ARCHITECTURES, key=len, reverse=True)}  # the plainest wins
    near = [stems[s] for s in difflib.get_close_matches(stem(arch), list(stems), n=1, cutoff=0.7)]
    if not near:
        return ""
    return (f"the closest supported is {near[0]} (family {ARCHITECTURES[near[0]][0]}), which is a different "
            "model and is not used in its place; ")


def from_config(raw: dict, model_id: str, preprocessor: dict | None = None) -> ModelArch:
    """Read a config.json dict (and the processor's configs, where a vision tower's profiling depends on them)
    into a ModelArch, or raise PlannerError naming what is wrong."""
    if not isinstance(raw, dict):
        raise PlannerError(f"config.json of {model_id} is not a JSON object (fix the config.json)")
    if raw.get("architectures") == ["HunYuanMoEV1ForCausalLM"]:  # per-layer lists of experts and top-k, first
        raw = hunyuan_moe_config(raw, model_id)
    check_kinds(raw, model_id)
    archs = raw.get("architectures")
    if not archs or not isinstance(archs, list) or not isinstance(archs[0], str):
        raise PlannerError(f"config.json of {model_id} has no 'architectures' list; the planner needs it to know "
                           "the model's structure (fix the config.json)")
    arch = archs[0]
    if arch in REMOVED_FROM_VLLM:
        raise PlannerError(f"architecture {arch} of {model_id} was removed from vLLM after {REMOVED_FROM_VLLM[arch]}; "
                           f"the planner follows vLLM {VLLM_REFERENCE_VERSION}, which cannot serve it: choose another model "
                           f"(vllm=={REMOVED_FROM_VLLM[arch]} still serves it, but the planner does not model it)")
    if arch not in ARCHITECTURES:
        raise PlannerError(f"architecture {arch} of {model_id} is not supported by the planner; "
                           f"{_closest(arch)}supported: {', '.join(sorted(ARCHITECTURES))}")
    family, build, uses_text = ARCHITECTURES[arch]
    if family == "chatglm":  # its own names for the common keys (vLLM's ChatGLMConfig)
        raw = chatglm_config(raw, model_id)
    elif family == "gpt2":  # GPT2Config's names and defaults
        raw = gpt2_config(raw)
    elif family == "llava":  # the sizes transformers' LlavaConfig fills in; the language model's family
        raw, family = llava_config(raw, model_id)
    elif family == "internvl":  # llm_config as text_config, the remote config classes' defaults
        raw, family = internvl_config(raw, model_id, decoder_families())
    c = Config(raw, model_id, preprocessor)
    text = Config(language_config(c, uses_text), model_id)
    inv = Inventory()
    attention, extra = build(c, inv, family)
    if extra.get("experts_per_token", 0) > extra.get("num_experts", 0) > 0:
        raise PlannerError(f"config.json of {model_id} routes each token to {extra['experts_per_token']} of "
                           f"{extra['num_experts']} experts; fix the config.json")
    hidden, heads, kv, hd = (text.int("hidden_size"), text.int("num_attention_heads"),
                             text.int("num_key_value_heads", text.get("num_attention_heads")), 0)
    hd = extra.pop("head_dim", None) or text.get("head_dim") or hidden // heads
    dtype = str(text.get("torch_dtype") or text.get("dtype") or raw.get("torch_dtype") or "bfloat16")
    if dtype not in DTYPE_BYTES:
        raise PlannerError(f"config.json of {model_id} has torch_dtype={dtype!r}; expected bfloat16, float16 "
                           "or float32")
    max_len, key, longrope_len = _derived_max_len(text.raw, family)
    rope_head = text.int("qk_rope_head_dim") if family == "deepseek" else int(hd)
    # each layer type's head size, for rope parameters keyed by layer type (Gemma 4's global heads are wider)
    head_sizes = {LAYER_TYPES[a.kind]: a.head_size for a in attention if a.kind in LAYER_TYPES}
    if family == "deepseek_v4":  # a table per kind of layer, main and compress (deepseek_v4.py)
        tables = dsv4.rope_tables(text.raw, [a.compress_ratio for a in attention])
    else:
        tables = rope_tables(text.raw, family, rope_head, model_id, head_sizes)  # (its rope type checked either way)
    if arch in TRANSFORMERS_BACKEND:
        tables = ()
    draft_tensors, draft_attention = build_mtp(raw, model_id, family, uses_text)
    # the MLP's width as built, where the model's code derives it from the config (LFM2's adjusted SwiGLU)
    inter = extra.pop("mlp_width", None) or text.get("intermediate_size_mlp") or text.get("intermediate_size") or 0
    if isinstance(inter, list):  # gemma-3n: one per layer; the widest sets the MLP's activation peak
        inter = max(inter)
    return ModelArch(
        architecture=arch, model_type=str(raw.get("model_type", family)), hidden_size=hidden,
        num_layers=extra.pop("num_layers", None) or text.int("num_hidden_layers"), vocab_size=text.int("vocab_size"), num_heads=heads,
        num_kv_heads=kv, head_dim=int(hd), intermediate_size=int(inter), dtype=dtype,
        tie_word_embeddings=tied_embeddings(text.raw, family),
        tensors=tuple(inv.tensors), attention=tuple(attention),
        quant=quantization.bind(dsv4.quant_scheme(raw.get("quantization_config"), raw.get("expert_dtype"), model_id)
                                if family == "deepseek_v4" else
                                quantization.from_config(raw.get("quantization_config")
                                                         or text.get("quantization_config")),
                                inv.tensors),
        derived_max_model_len=max_len, max_len_key=key, longrope_default_len=longrope_len, rope_tables=tables,
        family=family, draft_tensors=draft_tensors, draft_attention=draft_attention, **extra,
    )
