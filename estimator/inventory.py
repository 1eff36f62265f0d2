"""The building blocks every architecture's tensor inventory is made of: the tensor and KV-layer records,
typed config.json reads, and the layers most decoders share (GQA attention, gated MLPs, routed experts, norms,
embeddings)."""

from __future__ import annotations

from dataclasses import dataclass

from estimator.errors import PlannerError
from estimator.xp import maximum, minimum, where

# the vLLM whose behaviour the planner follows (architecture and serve_config re-export it); defined here, where
# every builder can name it without an import cycle
VLLM_REFERENCE_VERSION = "0.32.0"

# How a tensor is split over tensor-parallel ranks (mirrors vLLM's parallel linear layers):
#   col / row: ColumnParallelLinear / RowParallelLinear, 1/tp each;  kv: K/V projections, split by KV head
#   and replicated once tp exceeds the KV heads;  vocab: VocabParallelEmbedding / ParallelLMHead, vocab
#   padded to a multiple of 64 then split;  rep: replicated (norms, routers, biases of row layers, MLA
#   down-projections, vision convolutions).
#   groups: Mamba2's B and C rows, split where TP divides the groups, else one whole group per rank.
SHARDS = ("col", "row", "kv", "vocab", "rep", "groups")
TENSOR_KINDS = ("linear", "expert", "embedding", "norm", "bias", "router", "vision", "derived", "unquantized")
PLACES = ("layer", "first", "last", "every")

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
FP32_BYTES = DTYPE_BYTES["float32"]
# The name suffix of MLA's absorbed decode weights W_UK_T and W_UV, beside a layer's kv_b_proj (decoders.deepseek,
# memory.held)
ABSORBED_MLA = ".mla_attn.W_UK_T+W_UV"
# DeepSeek-V4's fp8_ds_mla cache entry: 448 NoPE bytes in fp8, 64 RoPE dims in bf16, 8 scale bytes (vLLM
# deepseek_v4/attention.py); deepseek_v4.py lays the caches out
FP8_DS_MLA_ENTRY_BYTES = 584


@dataclass(frozen=True)
class Tensor:
    """One weight tensor (or one set of identical expert tensors) as vLLM holds it.

    ``rows`` x ``cols`` is [out_features, in_features] for linear layers; 1-D tensors use cols=1.
    """

    name: str
    rows: int
    cols: int
    shard: str
    # linear | expert | embedding | norm | bias | router | vision | derived | unquantized (a linear layer vLLM
    # builds with quant_config=None, so it stays in the model dtype in a quantized checkpoint)
    kind: str
    layer: int | None  # decoder layer index; None for tensors outside the decoder stack
    place: str = "layer"  # layer | first | last | every: the pipeline stage(s) of non-layer tensors
    copies: int = 1  # routed experts
    active_copies: int | None = None  # experts a token runs through (top-k); None: all copies
    # False for a tensor vLLM allocates that the checkpoint does not ship (Gemma 4's V projection of a layer whose
    # values are its keys: vLLM loads K into both): in memory, not in the published parameter count
    in_checkpoint: bool = True
    # Bytes per element where vLLM fixes the tensor's dtype whatever the model's (FP32_BYTES: the float32 MoE gates
    # and score-correction biases some families build); 0: the model dtype
    fixed_bytes: int = 0

    @property
    def numel(self) -> int:
        return self.rows * self.cols * self.copies

    @property
    def active_numel(self) -> int:
        copies = self.copies if self.active_copies is None else self.active_copies
        return self.rows * self.cols * copies


@dataclass(frozen=True)
class AttentionLayer:
    """The KV cache one decoder layer keeps, per token, before tensor parallelism."""

    # full | sliding | chunked | mla | mamba (a linear-attention layer: a fixed state, no KV per token) | none (a
    # layer with no attention and no cache: Nemotron-H's MLP and MoE layers)
    kind: str
    num_kv_heads: int  # 1 for MLA (one shared latent)
    head_size: int  # K width; for MLA kv_lora_rank + qk_rope_head_dim
    head_size_v: int  # V width; 0 for MLA (no separate V)
    window: int | None = None  # sliding window or attention chunk, in tokens
    latent_value_width: int = 0  # MLA: attention output width per head over the latent (kv_lora_rank)
    # mamba: the state one request keeps, as (rows split over TP ranks, columns, groups) per tensor (vLLM's
    # MambaStateShapeCalculator), in the model dtype unless mamba_ssm_cache_dtype says otherwise. Rows made of
    # `groups` equal blocks are replicated up to one block per rank when the groups do not divide TP (Mamba2's
    # B and C groups, extra_groups_for_head_shards); groups=0: plain split.
    state: tuple[tuple[int, int, int], ...] = ()
    # Bytes per element of each state tensor when the model fixes its dtype (Nemotron-H keeps the SSM state in
    # float32); 0 or absent: the model dtype.
    state_dtype_bytes: tuple[int, ...] = ()
    # Sparse MLA (DeepSeek Sparse Attention): bytes per token of the lightning indexer's K cache, which vLLM keeps
    # beside the latent in the same block (DeepseekV32IndexerCache: index_head_dim fp8 values and one fp32 scale
    # per 128 of them, uint8 whatever the KV dtype); 0 for dense attention.
    indexer_bytes: int = 0
    indexer_width: int = 0  # index_n_heads x index_head_dim: the indexer's score FLOPs per context token / 2
    # A layer that attends over an earlier layer's KV cache and keeps none of its own (Gemma 4's last
    # num_kv_shared_layers: kv_sharing_target_layer_name); it still reads that cache when it runs.
    shares_kv: bool = False
    # Sparse MLA: bytes per token of the latent entry with a 16-bit and with an 8-bit KV cache, as the attention
    # backend vLLM picks on the device lays it out (serve_config.sparse_mla_layout; None: the plain
    # head_size x KV dtype layout).
    entry_bytes: tuple[int, int] | None = None
    # DeepSeek-V4 ("dsv4" layers): tokens per compressed entry, 4 (CSA, with the indexer) or 128 (HCA); 1 where the
    # layer keeps its sliding window only (deepseek_v4.py sizes the caches)
    compress_ratio: int = 0
    indexer_head_dim: int = 0  # DeepSeek-V4's CSA layers: the indexer's key width (its cache and compressor)
    # mamba: how many of the leading state tensors are convolution windows, which speculative decoding widens by
    # one column per draft token (MambaStateShapeCalculator's num_spec)
    conv_tensors: int = 0

    @property
    def attention_width(self) -> int:
        """K plus V width per head that attention multiplies each context token by."""
        return self.head_size + (self.latent_value_width if self.kind == "mla" else self.head_size_v)

    def bytes_per_token(self, kv_dtype_bytes: float, tp: int = 1) -> float:
        if self.kind == "dsv4":  # its compressed entry (fp8_ds_mla whatever the KV dtype) and indexer key per token
            return FP8_DS_MLA_ENTRY_BYTES / self.compress_ratio + self.indexer_bytes if self.compress_ratio > 1 else 0
        if self.entry_bytes is not None:
            sixteen_bit, eight_bit = self.entry_bytes
            return where(kv_dtype_bytes == 1, eight_bit, sixteen_bit * kv_dtype_bytes / 2) + self.indexer_bytes
        heads = self.num_kv_heads if self.kind == "mla" else max(1, self.num_kv_heads // tp)
        return heads * (self.head_size + self.head_size_v) * kv_dtype_bytes + self.indexer_bytes

    def state_shapes(self, tp: int = 1) -> list[tuple[int, int]]:
        """One TP rank's state tensors, [rows, columns] each (none for attention layers)."""
        return [(rows // tp if not groups or groups % tp == 0 else rows // groups, cols)
                for rows, cols, groups in self.state]

    def state_dtypes(self, model_dtype_bytes: float) -> list[float]:
        """Bytes per element of each state tensor."""
        fixed = self.state_dtype_bytes + (0,) * (len(self.state) - len(self.state_dtype_bytes))
        return [b or model_dtype_bytes for b in fixed]

    def state_bytes(self, state_dtype_bytes: float, tp: int = 1) -> float:
        """Bytes of one request's state on one TP rank (0 for attention layers), ``state_dtype_bytes`` being the
        model dtype's."""
        return sum(rows * cols * b for (rows, cols), b in zip(self.state_shapes(tp), self.state_dtypes(state_dtype_bytes),
                                                               strict=True))


@dataclass(frozen=True)
class VisionItem:
    """The largest item of one modality as vLLM's encoder profiling pass builds it."""

    tokens: int  # prompt placeholders it takes: the encoder output rows kept for it
    patches: int  # ViT positions it runs through the tower
    pixels: int  # values of its pixel tensor, in the model dtype
    # A video repeats it in up to this many temporal slices, as many as max_model_len holds (Qwen2-VL's dummy
    # video); 1: one slice whatever the context length.
    max_slices: int = 1

    def slices(self, max_model_len):
        """Temporal slices at this context length (qwen2_vl.py get_num_frames_with_most_features: frames while
        their tokens fit max_model_len, at most the cap, at least one)."""
        if self.max_slices == 1:
            return 1
        return maximum(1, minimum(max_model_len // self.tokens, self.max_slices))


@dataclass(frozen=True)
class VisionProfile:
    """What vLLM's encoder profiling pass feeds a vision tower (gpu_model_runner.profile_run: as many of the
    largest item as the encoder budget holds, through the tower at once), where config.json (and, for Qwen-VL,
    the processor's preprocessor configs) fixes the items' sizes."""

    image: VisionItem
    hidden: int  # the tower's width
    intermediate: int  # its MLP width (column-parallel: split over TP)
    # A block's peak per patch, in rows of each width, as the tower's code keeps them (see the builders)
    hidden_rows: int
    mlp_rows: int
    # Encoder output per placeholder, in rows of the text width (Qwen3-VL adds one per deepstack level)
    output_rows: int = 1
    video: VisionItem | None = None  # None: the tower takes images only


class Config:
    """Typed reads of a config.json dict with error messages that name the model and key."""

    def __init__(self, raw: dict, model_id: str, preprocessor: dict | None = None):
        self.raw = raw
        self.model_id = model_id
        # The processor's preprocessor_config.json (and video_preprocessor_config.json), where the model ships
        # them: {"image": {...}, "video": {...}}
        self.preprocessor = preprocessor or {}

    def get(self, key, default=None):
        return self.raw.get(key, default)

    def flag(self, key: str) -> bool:
        """A true/false key (absent or null: false); anything else is an error naming it."""
        value = self.raw.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise PlannerError(f"config.json of {self.model_id} has {key}={value!r}; expected true or false (fix the "
                               "config.json)")
        return value

    def int(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        value = self.raw.get(key, default)
        if value is None:
            raise PlannerError(f"config.json of {self.model_id} has no {key!r}; the planner needs it to size "
                               f"the model (fix or complete the config.json)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < minimum:
            raise PlannerError(f"config.json of {self.model_id} has {key}={value!r}; expected an integer >= "
                               f"{minimum} (fix the config.json)")
        return int(value)


class Inventory:
    def __init__(self):
        self.tensors: list[Tensor] = []

    def add(self, name, rows, cols, shard, kind, layer=None, place="layer", copies=1, active=None, in_checkpoint=True,
            fixed_bytes=0):
        if shard not in SHARDS or kind not in TENSOR_KINDS or place not in PLACES:
            raise ValueError(f"tensor {name}: shard {shard!r}, kind {kind!r}, place {place!r}; expected one of "
                             f"{SHARDS}, {TENSOR_KINDS}, {PLACES}")  # a builder's bug, not bad input
        self.tensors.append(Tensor(name, int(rows), int(cols), shard, kind, layer, place, copies, active,
                                   in_checkpoint, fixed_bytes))

    def linear(self, name, cols, rows, shard, layer, bias=False, copies=1, active=None, kind=None, in_checkpoint=True):
        self.add(name, rows, cols, shard, kind or ("expert" if copies > 1 or active is not None else "linear"),
                 layer, copies=copies, active=active, in_checkpoint=in_checkpoint)
        if bias:
            # A row-parallel layer's bias is replicated; column/kv biases split with their outputs.
            self.add(name + ".bias", rows, 1, "rep" if shard == "row" else shard, "bias", layer,
                     copies=copies, active=active)

    def norm(self, name, size, layer=None, place="layer", with_bias=False):
        self.add(name, size * (2 if with_bias else 1), 1, "rep", "norm", layer, place)


def attention_dims(c: Config):
    heads = c.int("num_attention_heads")
    kv = c.int("num_key_value_heads", heads)
    hidden = c.int("hidden_size")
    head_dim = c.get("head_dim") or hidden // heads
    if not isinstance(head_dim, int) or head_dim <= 0:
        raise PlannerError(f"config.json of {c.model_id} has head_dim={head_dim!r}; expected a positive integer")
    if heads % kv:
        raise PlannerError(f"config.json of {c.model_id} has {heads} attention heads and {kv} KV heads; "
                           "the heads must be a multiple of the KV heads (fix the config.json)")
    return hidden, heads, kv, head_dim


def gqa_attention(inv: Inventory, c: Config, i: int, qkv_bias: bool, o_bias: bool, qk_norm: bool, sinks=False,
                  norm_bias=False):
    hidden, heads, kv, hd = attention_dims(c)
    p = f"model.layers.{i}.self_attn"
    inv.linear(f"{p}.q_proj", hidden, heads * hd, "col", i, bias=qkv_bias)
    inv.linear(f"{p}.k_proj", hidden, kv * hd, "kv", i, bias=qkv_bias)
    inv.linear(f"{p}.v_proj", hidden, kv * hd, "kv", i, bias=qkv_bias)
    inv.linear(f"{p}.o_proj", heads * hd, hidden, "row", i, bias=o_bias)
    if qk_norm:
        inv.norm(f"{p}.q_norm", hd, i, with_bias=norm_bias)
        inv.norm(f"{p}.k_norm", hd, i, with_bias=norm_bias)
    if sinks:
        inv.add(f"{p}.sinks", heads, 1, "col", "norm", i)


def gated_mlp(inv: Inventory, prefix: str, hidden: int, inter: int, i: int, bias=False):
    inv.linear(f"{prefix}.gate_proj", hidden, inter, "col", i, bias=bias)
    inv.linear(f"{prefix}.up_proj", hidden, inter, "col", i, bias=bias)
    inv.linear(f"{prefix}.down_proj", inter, hidden, "row", i, bias=bias)


def routed_experts(inv: Inventory, prefix: str, hidden: int, inter: int, i: int, n: int, topk: int, bias=False):
    """Routed experts as FusedMoE holds them: w13 (gate+up) and w2, intermediate split over TP."""
    inv.linear(f"{prefix}.experts.gate_up_proj", hidden, 2 * inter, "col", i, bias=bias, copies=n, active=topk)
    inv.linear(f"{prefix}.experts.down_proj", inter, hidden, "row", i, bias=bias, copies=n, active=topk)


def layer_norms(inv: Inventory, i: int, hidden: int) -> None:
    """The RMSNorms before attention and before the MLP of decoder layer i."""
    inv.norm(f"model.layers.{i}.input_layernorm", hidden, i)
    inv.norm(f"model.layers.{i}.post_attention_layernorm", hidden, i)


# Families whose config class ties the LM head to the embeddings when config.json does not say (OPTConfig,
# GPT2Config, GemmaConfig, Gemma2Config, Gemma3TextConfig, Gemma3nTextConfig, Gemma4TextConfig, GraniteMoeConfig,
# CohereConfig, Cohere2Config, Ernie4_5Config, Ernie4_5_MoeConfig, Lfm2Config and Lfm2MoeConfig default
# tie_word_embeddings=True; the others False).
TIED_BY_DEFAULT = frozenset(("gemma", "opt", "gpt2", "gemma2", "gemma3", "gemma3n", "gemma4", "granitemoe", "cohere",
                             "cohere2", "ernie4_5", "ernie4_5_moe", "lfm2", "lfm2_moe", "starcoder2"))


def tied_embeddings(raw: dict, family: str) -> bool:
    """Whether the LM head shares the embedding matrix: the one rule the tensor inventory and ModelArch use."""
    # LFM2's config.json names it tie_embedding, which Lfm2Config folds into tie_word_embeddings
    return bool(raw.get("tie_word_embeddings", raw.get("tie_embedding", family in TIED_BY_DEFAULT)))


def add_embeddings(inv: Inventory, vocab: int, hidden: int, tied: bool, final_norm_bias=False, every_stage=False):
    """The embeddings, final norm and LM head: on the first and last pipeline stages, or on every stage where the
    model's code builds them unconditionally (every_stage)."""
    inv.add("model.embed_tokens", vocab, hidden, "vocab", "embedding", place="every" if every_stage else "first")
    inv.norm("model.norm", hidden, place="every" if every_stage else "last", with_bias=final_norm_bias)
    if not tied:
        inv.add("lm_head", vocab, hidden, "vocab", "embedding", place="every" if every_stage else "last")


def text_config(c: Config) -> dict:
    text = c.get("text_config")
    if not isinstance(text, dict):
        raise PlannerError(f"config.json of {c.model_id} ({c.get('architectures')}) has no text_config object "
                           "(fix the config.json)")
    merged = dict(text)
    for key in ("torch_dtype", "dtype"):
        if key not in merged and key in c.raw:
            merged[key] = c.raw[key]
    # The LM head belongs to the composite model: vLLM copies the top level's tie_word_embeddings over the text
    # config's (config/vllm.py with_hf_config), and unties it again when the checkpoint ships an lm_head.
    if "tie_word_embeddings" in c.raw:
        merged["tie_word_embeddings"] = c.raw["tie_word_embeddings"]
    return merged


def language_config(c: Config, uses_text: bool | str) -> dict:
    """The language model's keys: text_config (required when uses_text is True; used when present for
    "optional"), else the top level."""
    if uses_text is True or (uses_text == "optional" and isinstance(c.get("text_config"), dict)):
        return text_config(c)
    return c.raw
