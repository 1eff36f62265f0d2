"""From a config.json to the exact tensors vLLM loads and the KV cache each attention layer keeps.

Every supported architecture is listed in ``ARCHITECTURES``; anything else fails closed. The tensor
inventory carries, per tensor, how tensor parallelism shards it (as vLLM's parallel layers do), which
pipeline stage holds it and whether the checkpoint's quantization applies to it, so parameter counts,
per-rank weight bytes and quantized sizes all come from one list.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from estimator import quantization
from estimator.errors import PlannerError
from estimator.quantization import QuantScheme
from estimator.xp import where

# How a tensor is split over tensor-parallel ranks (mirrors vLLM's parallel linear layers):
#   col / row: ColumnParallelLinear / RowParallelLinear, 1/tp each;  kv: K/V projections, split by KV head
#   and replicated once tp exceeds the KV heads;  vocab: VocabParallelEmbedding / ParallelLMHead, vocab
#   padded to a multiple of 64 then split;  rep: replicated (norms, routers, biases of row layers, MLA
#   down-projections, vision convolutions).
SHARDS = ("col", "row", "kv", "vocab", "rep")

# Keys vLLM reads (in this order, taking the minimum) for the model's maximum length
# (vllm/config/model.py, derived_max_model_len_and_key).
MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_sequence_length", "max_seq_length", "seq_len")
# RoPE types whose factor vLLM does not multiply into the derived maximum length (_get_and_verify_max_len).
ROPE_TYPES_NOT_SCALING_MAX_LEN = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


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
    place: str = "layer"  # layer | first | last: the pipeline stage of non-layer tensors
    copies: int = 1  # routed experts
    active_copies: int | None = None  # experts a token runs through (top-k); None: all copies

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
    # Sparse MLA: bytes per token of the latent entry with a 16-bit and with an 8-bit KV cache, as the attention
    # backend vLLM picks on the device lays it out (serve_config.sparse_mla_layout; None: the plain
    # head_size x KV dtype layout).
    entry_bytes: tuple[int, int] | None = None

    @property
    def attention_width(self) -> int:
        """K plus V width per head that attention multiplies each context token by."""
        return self.head_size + (self.latent_value_width if self.kind == "mla" else self.head_size_v)

    def bytes_per_token(self, kv_dtype_bytes: float, tp: int = 1) -> float:
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
    is_mla: bool = False
    multimodal: bool = False
    derived_max_model_len: int = 2048
    max_len_key: str = "max_position_embeddings"
    longrope_default_len: int | None = None  # vLLM defaults to original_max_position_embeddings for longrope
    pooling: bool = False  # built for `--runner pooling` (embeddings): no LM head, no sampler
    # Buffers the model allocates at construction per batched token, in hidden-size rows of the model dtype;
    # vLLM counts them in "Model loading took" (Qwen3-VL: one deepstack buffer per tapped vision block).
    buffer_rows_per_token: int = 0
    # Sparse MLA: the top-k token indices the indexer picks (index_topk in config.json); vLLM allocates an int32
    # [max_num_batched_tokens, index_topk] buffer for them when it builds the model (deepseek_v2.py
    # DeepseekV2Model). 0: dense attention.
    index_topk: int = 0

    @property
    def num_params(self) -> int:
        return sum(t.numel for t in self.tensors if t.kind != "derived")

    @property
    def active_params(self) -> int:
        return sum(t.active_numel for t in self.tensors if t.kind != "derived")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_sparse_mla(self) -> bool:
        return self.index_topk > 0

    @property
    def attention_layer(self) -> AttentionLayer:
        """The first layer that keeps KV per token: its page sets the block size of every group."""
        return next(a for a in self.attention if a.kind not in ("mamba", "none"))

    @property
    def state_layers(self) -> tuple[AttentionLayer, ...]:
        return tuple(a for a in self.attention if a.kind == "mamba")

    def kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        """KV bytes one token adds across all layers at TP=1 (sliding layers included, as if unbounded)."""
        return sum(a.bytes_per_token(kv_dtype_bytes) for a in self.attention)

    def default_max_model_len(self) -> int:
        return self.longrope_default_len or self.derived_max_model_len


RUNNERS = ("generate", "pooling")  # vllm/config/model.py RunnerType


def as_pooling(arch: ModelArch) -> ModelArch:
    """The model vLLM builds for `--runner pooling` (vllm/model_executor/models/adapters.py
    _create_pooling_model_cls): the same backbone with the LM head and logits processor left out, so no LM
    head weights (nor, with tied embeddings, the last stage's copy) and a pooler in place of the sampler."""
    tensors = tuple(t for t in arch.tensors if t.name not in ("lm_head", "lm_head.bias"))
    return replace(arch, tensors=tensors, tie_word_embeddings=False, pooling=True)


class _Config:
    """Typed reads of a config.json dict with error messages that name the model and key."""

    def __init__(self, raw: dict, model_id: str):
        self.raw = raw
        self.model_id = model_id

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


class _Inventory:
    def __init__(self):
        self.tensors: list[Tensor] = []

    def add(self, name, rows, cols, shard, kind, layer=None, place="layer", copies=1, active=None):
        self.tensors.append(Tensor(name, int(rows), int(cols), shard, kind, layer, place, copies, active))

    def linear(self, name, cols, rows, shard, layer, bias=False, copies=1, active=None, kind=None):
        self.add(name, rows, cols, shard, kind or ("expert" if copies > 1 or active is not None else "linear"),
                 layer, copies=copies, active=active)
        if bias:
            # A row-parallel layer's bias is replicated; column/kv biases split with their outputs.
            self.add(name + ".bias", rows, 1, "rep" if shard == "row" else shard, "bias", layer,
                     copies=copies, active=active)

    def norm(self, name, size, layer=None, place="layer", with_bias=False):
        self.add(name, size * (2 if with_bias else 1), 1, "rep", "norm", layer, place)


def _attention_dims(c: _Config):
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


def _gqa_attention(inv: _Inventory, c: _Config, i: int, qkv_bias: bool, o_bias: bool, qk_norm: bool, sinks=False):
    hidden, heads, kv, hd = _attention_dims(c)
    p = f"model.layers.{i}.self_attn"
    inv.linear(f"{p}.q_proj", hidden, heads * hd, "col", i, bias=qkv_bias)
    inv.linear(f"{p}.k_proj", hidden, kv * hd, "kv", i, bias=qkv_bias)
    inv.linear(f"{p}.v_proj", hidden, kv * hd, "kv", i, bias=qkv_bias)
    inv.linear(f"{p}.o_proj", heads * hd, hidden, "row", i, bias=o_bias)
    if qk_norm:
        inv.norm(f"{p}.q_norm", hd, i)
        inv.norm(f"{p}.k_norm", hd, i)
    if sinks:
        inv.add(f"{p}.sinks", heads, 1, "col", "norm", i)


def _gated_mlp(inv: _Inventory, prefix: str, hidden: int, inter: int, i: int, bias=False):
    inv.linear(f"{prefix}.gate_proj", hidden, inter, "col", i, bias=bias)
    inv.linear(f"{prefix}.up_proj", hidden, inter, "col", i, bias=bias)
    inv.linear(f"{prefix}.down_proj", inter, hidden, "row", i, bias=bias)


def _experts(inv: _Inventory, prefix: str, hidden: int, inter: int, i: int, n: int, topk: int, bias=False):
    """Routed experts as FusedMoE holds them: w13 (gate+up) and w2, intermediate split over TP."""
    inv.linear(f"{prefix}.experts.gate_up_proj", hidden, 2 * inter, "col", i, bias=bias, copies=n, active=topk)
    inv.linear(f"{prefix}.experts.down_proj", inter, hidden, "row", i, bias=bias, copies=n, active=topk)


def _layer_norms(inv: _Inventory, i: int, hidden: int) -> None:
    """The RMSNorms before attention and before the MLP of decoder layer i."""
    inv.norm(f"model.layers.{i}.input_layernorm", hidden, i)
    inv.norm(f"model.layers.{i}.post_attention_layernorm", hidden, i)


# Families whose transformers config class ties the LM head to the embeddings when config.json does not say
# (GemmaConfig, Gemma2Config, Gemma3TextConfig, GraniteMoeConfig and CohereConfig default tie_word_embeddings=True;
# the others False).
TIED_BY_DEFAULT = frozenset(("gemma2", "gemma3", "granitemoe", "cohere"))


def tied_embeddings(raw: dict, family: str) -> bool:
    """Whether the LM head shares the embedding matrix: the one rule the tensor inventory and ModelArch use."""
    return bool(raw.get("tie_word_embeddings", family in TIED_BY_DEFAULT))


def _embeddings(inv: _Inventory, vocab: int, hidden: int, tied: bool, final_norm_bias=False):
    inv.add("model.embed_tokens", vocab, hidden, "vocab", "embedding", place="first")
    inv.norm("model.norm", hidden, place="last", with_bias=final_norm_bias)
    if not tied:
        inv.add("lm_head", vocab, hidden, "vocab", "embedding", place="last")


# How a family's model code picks its windowed layers when config.json has no layer_types (Decoder.windows):
#   config: every layer windowed when sliding_window is set (llama.py-style, cache_config.sliding_window);
#   qwen: none unless use_sliding_window, then the layers from max_window_layers on (qwen2.py, qwen3.py);
#   alternate: the even layers (gemma2.py, gpt_oss.py);  pattern: all but every sliding_window_pattern-th
#   layer (gemma3.py, default 6).
WINDOW_RULES = ("config", "qwen", "alternate", "pattern")


def _layer_windows(c: _Config, n: int, rule: str) -> list[str]:
    """Per-layer attention kind: 'full' or 'sliding', as vLLM's model code decides it (rule: WINDOW_RULES)."""
    layer_types = c.get("layer_types")
    window = c.get("sliding_window")
    if rule == "qwen" and not c.get("use_sliding_window", False):
        return ["full"] * n
    if layer_types:
        if len(layer_types) != n:
            raise PlannerError(f"config.json of {c.model_id} lists {len(layer_types)} layer_types for {n} layers "
                               "(fix the config.json)")
        return ["sliding" if t == "sliding_attention" and window else "full" for t in layer_types]
    if rule == "qwen":
        first = c.int("max_window_layers", n, minimum=0)
        return ["sliding" if window and i >= first else "full" for i in range(n)]
    if rule == "alternate":
        return ["sliding" if i % 2 == 0 else "full" for i in range(n)]
    if rule == "pattern":
        pattern = c.int("sliding_window_pattern", 6)
        return ["full" if (i + 1) % pattern == 0 else "sliding" for i in range(n)]
    return ["sliding" if window else "full"] * n


def _gqa_layers(c: _Config, kinds: list[str]) -> list[AttentionLayer]:
    _, _, kv, hd = _attention_dims(c)
    window = c.get("sliding_window")
    return [AttentionLayer(k, kv, hd, hd, window if k == "sliding" else None) for k in kinds]


# --- families ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Experts:
    """Where a family's routed experts sit and what comes with them."""

    count: str  # the config key of the number of routed experts
    width: str = "moe_intermediate_size"  # the config key of one expert's intermediate size
    block: str = "mlp"  # the module that holds them: mlp | block_sparse_moe
    router: str = "gate"  # the router's name inside that module
    router_bias: bool = False  # a per-expert score-correction bias beside the router (GLM-4.5)
    router_bias_key: str | None = None  # ... or when this config key says so (MiniMax-M2: use_routing_bias)
    shared: str = "none"  # none | sized: one shared expert of shared_expert_intermediate_size with a one-wide
    #                       gate (Qwen2-MoE) | count: n_shared_experts experts of the routed width (GLM-4.5)
    dense: str = "none"  # which layers keep a dense MLP: none | sparse_step (mlp_only_layers and
    #                      decoder_sparse_step, Qwen) | first_k (first_k_dense_replace, GLM-4.5)


@dataclass(frozen=True)
class Decoder:
    """A decoder family as data: Llama's layer (GQA attention with q/k/v/o projections, a gated MLP, an RMSNorm
    before each) and what this family does differently. A family of this shape is one entry in DECODERS."""

    qkv_bias: str = "config"  # config (bias_key) | always | never
    o_bias: str = "config"  # config | never
    bias_key: str = "attention_bias"
    qk_norm: str = "none"  # none | head: one head wide, shared by all heads (Qwen3, Gemma 3, GLM-4.5) |
    #                        heads: every head its own (Cohere)
    qk_norm_key: str | None = None  # the config key that switches the q/k norms on; None: always there
    norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")
    norm_bias: bool = False  # LayerNorm with a bias in place of RMSNorm (Phi-3.5-MoE), final norm included
    lm_head_bias_key: str | None = None  # the config key that gives the LM head a bias (Phi-3.5-MoE)
    experts: Experts | None = None
    windows: str = "config"  # which layers are windowed without layer_types: one of WINDOW_RULES
    mlp: str = "gated"  # gated: gate, up and down projections | plain: up and down only (Nemotron's ReLU^2)


_GEMMA_NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                "post_feedforward_layernorm")
_BLOCK_SPARSE = dict(count="num_local_experts", width="intermediate_size", block="block_sparse_moe")

# family -> its decoder, as vLLM's model code builds it (vllm/model_executor/models/<family>.py)
DECODERS: dict[str, Decoder] = {
    "llama": Decoder(), "mistral": Decoder(), "granite": Decoder(), "phi3": Decoder(),
    "internlm2": Decoder(bias_key="bias"),  # fused wqkv and w1/w3 hold the same tensors as Llama's
    "qwen2": Decoder(qkv_bias="always", windows="qwen"),
    "qwen3": Decoder(qk_norm="head", windows="qwen"),
    "gemma2": Decoder(norms=_GEMMA_NORMS, windows="alternate"),
    "gemma3": Decoder(qk_norm="head", norms=_GEMMA_NORMS, windows="pattern"),
    "cohere": Decoder(qk_norm="heads", qk_norm_key="use_qk_norm", norms=("input_layernorm",)),  # parallel block
    # OLMo 2 (served through vLLM's Transformers backend): norms after attention and after the MLP, q/k norms over
    # all heads
    "olmo2": Decoder(qk_norm="heads", norms=("post_attention_layernorm", "post_feedforward_layernorm")),
    "nemotron": Decoder(mlp="plain", norm_bias=True),  # LayerNorm1P (weight and bias), ReLU^2 MLP
    "glm4": Decoder(o_bias="never", norms=("input_layernorm", "post_attention_layernorm", "post_self_attn_layernorm",
                                           "post_mlp_layernorm")),
    "mixtral": Decoder(qkv_bias="never", o_bias="never", experts=Experts(**_BLOCK_SPARSE)),
    "granitemoe": Decoder(qkv_bias="never", o_bias="never", experts=Experts(**_BLOCK_SPARSE, router="router.layer")),
    "phimoe": Decoder(norm_bias=True, lm_head_bias_key="lm_head_bias", experts=Experts(**_BLOCK_SPARSE)),
    "qwen3_moe": Decoder(o_bias="never", qk_norm="head", experts=Experts("num_experts", dense="sparse_step"),
                         windows="qwen"),
    "qwen2_moe": Decoder(qkv_bias="always", o_bias="never",
                         experts=Experts("num_experts", shared="sized", dense="sparse_step"), windows="qwen"),
    # MiniMax-M2: q/k norms over all heads, 256 routed experts with a routing bias, no shared expert
    "minimax_m2": Decoder(qk_norm="heads", experts=Experts(**dict(_BLOCK_SPARSE, router_bias_key="use_routing_bias"))),
    "glm4_moe": Decoder(o_bias="never", qk_norm="head", qk_norm_key="use_qk_norm",
                        experts=Experts("n_routed_experts", router_bias=True, shared="count", dense="first_k")),
}


def _is_moe_layer(c: _Config, e: Experts, i: int) -> bool:
    if e.dense == "sparse_step":
        return i not in set(c.get("mlp_only_layers") or []) and (i + 1) % c.int("decoder_sparse_step", 1) == 0
    if e.dense == "first_k":
        return i >= c.int("first_k_dense_replace", 0, minimum=0)
    return True


def _moe_block(c: _Config, inv: _Inventory, e: Experts, i: int, hidden: int) -> None:
    experts, topk, width = c.int(e.count), c.int("num_experts_per_tok"), c.int(e.width)
    prefix = f"model.layers.{i}.{e.block}"
    inv.add(f"{prefix}.{e.router}", experts, hidden, "rep", "router", i)
    if e.router_bias or (e.router_bias_key and c.flag(e.router_bias_key)):
        inv.add(f"{prefix}.{e.router}.e_score_correction_bias", experts, 1, "rep", "router", i)
    _experts(inv, prefix, hidden, width, i, experts, topk)
    if e.shared == "sized":
        _gated_mlp(inv, f"{prefix}.shared_expert", hidden, c.int("shared_expert_intermediate_size"), i)
        inv.add(f"{prefix}.shared_expert_gate", 1, hidden, "rep", "router", i)
    elif e.shared == "count" and c.int("n_shared_experts", 0, minimum=0):
        _gated_mlp(inv, f"{prefix}.shared_experts", hidden, width * c.int("n_shared_experts"), i)


def _decoder(c: _Config, inv: _Inventory, family: str):
    """Every family in DECODERS: dense (Llama, Qwen, Gemma, Cohere ...) and MoE (Mixtral, Qwen-MoE, GLM-4.5 ...)."""
    d = DECODERS[family]
    n = c.int("num_hidden_layers")
    hidden, heads, kv, hd = _attention_dims(c)
    config_bias = c.flag(d.bias_key)
    qkv_bias = d.qkv_bias == "always" or (d.qkv_bias == "config" and config_bias)
    o_bias = d.o_bias == "config" and config_bias
    qk_norm = d.qk_norm if d.qk_norm_key is None or c.flag(d.qk_norm_key) else "none"
    for i in range(n):
        _gqa_attention(inv, c, i, qkv_bias, o_bias, qk_norm=qk_norm == "head")
        if qk_norm == "heads":  # a norm per head, split with the heads over TP
            inv.add(f"model.layers.{i}.self_attn.q_norm", heads * hd, 1, "col", "norm", i)
            inv.add(f"model.layers.{i}.self_attn.k_norm", kv * hd, 1, "kv", "norm", i)
        if d.experts is not None and _is_moe_layer(c, d.experts, i):
            _moe_block(c, inv, d.experts, i, hidden)
        elif d.mlp == "plain":
            inv.linear(f"model.layers.{i}.mlp.up_proj", hidden, c.int("intermediate_size"), "col", i,
                       bias=c.flag("mlp_bias"))
            inv.linear(f"model.layers.{i}.mlp.down_proj", c.int("intermediate_size"), hidden, "row", i,
                       bias=c.flag("mlp_bias"))
        else:
            _gated_mlp(inv, f"model.layers.{i}.mlp", hidden, c.int("intermediate_size"), i,
                       bias=bool(c.get("mlp_bias", False)))
        for name in d.norms:
            inv.norm(f"model.layers.{i}.{name}", hidden, i, with_bias=d.norm_bias)
    vocab = c.int("vocab_size")
    _embeddings(inv, vocab, hidden, tied_embeddings(c.raw, family), final_norm_bias=d.norm_bias)
    if d.lm_head_bias_key and c.flag(d.lm_head_bias_key):
        inv.add("lm_head.bias", vocab, 1, "vocab", "bias", place="last")
    extra = {}
    if d.experts is not None:
        extra = dict(num_experts=c.int(d.experts.count), experts_per_token=c.int("num_experts_per_tok"),
                     moe_intermediate_size=c.int(d.experts.width))
    return _gqa_layers(c, _layer_windows(c, n, d.windows)), extra


def _layer_types(c: _Config, n: int, allowed: tuple[str, str], default: list[str]) -> list[str]:
    """A hybrid model's layer_types (or its default pattern), one of ``allowed`` per layer, or an error naming them."""
    kinds = c.get("layer_types") or default
    if len(kinds) != n or set(kinds) - set(allowed):
        raise PlannerError(f"config.json of {c.model_id} has layer_types {sorted(set(kinds))} for {n} layers; "
                           f"expected {allowed[0]} or {allowed[1]} per layer (fix the config.json)")
    return kinds


def _gated_delta_net(c: _Config, inv: _Inventory, i: int, hidden: int) -> AttentionLayer:
    """A Gated DeltaNet linear-attention layer (vllm/model_executor/layers/mamba/gdn/qwen_gdn_linear_attn.py): fused
    q/k/v/z and b/a input projections, a depthwise causal convolution over q/k/v, per-head dt bias and A, a gated
    RMSNorm one value head wide and the output projection; its state is the convolution window and one
    [value head, head_v x head_k] matrix per value head (MambaStateShapeCalculator.gated_delta_net_state_shape)."""
    k_heads, v_heads = c.int("linear_num_key_heads"), c.int("linear_num_value_heads")
    k_dim, v_dim, kernel = c.int("linear_key_head_dim"), c.int("linear_value_head_dim"), c.int("linear_conv_kernel_dim")
    key, value = k_heads * k_dim, v_heads * v_dim
    p = f"model.layers.{i}.linear_attn"
    inv.linear(f"{p}.in_proj_qkvz", hidden, 2 * key + 2 * value, "col", i)
    inv.linear(f"{p}.in_proj_ba", hidden, 2 * v_heads, "col", i)
    inv.add(f"{p}.conv1d", 2 * key + value, kernel, "col", "norm", i)
    inv.add(f"{p}.dt_bias+A_log", 2 * v_heads, 1, "col", "norm", i)
    inv.norm(f"{p}.norm", v_dim, i)
    inv.linear(f"{p}.out_proj", value, hidden, "row", i)
    return AttentionLayer("mamba", 0, 0, 0, state=((2 * key + value, kernel - 1, 0), (v_heads, v_dim * k_dim, 0)))


@dataclass(frozen=True)
class Mamba2:
    """A Mamba2 mixer's sizes, read from each family's own config keys."""

    inner: int  # the expanded width (heads x head_dim)
    groups: int  # B and C groups
    state: int  # SSM state size
    heads: int
    head_dim: int
    kernel: int  # convolution width
    conv_bias: bool
    proj_bias: bool
    ssm_state_bytes: int = 0  # bytes per element of the SSM state when the model fixes it (0: the model dtype)


def _mamba2(inv: _Inventory, i: int, hidden: int, m: Mamba2, prefix: str) -> AttentionLayer:
    """A Mamba2 mixer (vllm/model_executor/layers/mamba/mamba_mixer2.py): one input projection to the gate, x, the B
    and C groups and dt per head; a depthwise convolution over x, B and C; A, D and dt bias per head; a gated RMSNorm
    and the output projection. The state: the convolution window, and [head_dim x state] per head
    (MambaStateShapeCalculator.mamba2_state_shape). Parameters count the checkpoint's groups; the copies vLLM makes
    of a single group under TP (a few MB per layer) are left out of the weights."""
    inner, bc, heads, kernel = m.inner, 2 * m.groups * m.state, m.heads, m.kernel
    p = f"model.layers.{i}.{prefix}"
    inv.linear(f"{p}.in_proj", hidden, 2 * inner + bc + heads, "col", i, bias=m.proj_bias)
    inv.add(f"{p}.conv1d", inner + bc, kernel + (1 if m.conv_bias else 0), "col", "norm", i)
    inv.add(f"{p}.A+D+dt_bias", 3 * heads, 1, "col", "norm", i)
    inv.add(f"{p}.norm", inner, 1, "col", "norm", i)
    inv.linear(f"{p}.out_proj", inner, hidden, "row", i, bias=m.proj_bias)
    return AttentionLayer("mamba", 0, 0, 0, state=((inner, kernel - 1, 0), (bc, kernel - 1, m.groups),
                                                   (heads, m.head_dim * m.state, 0)),
                          state_dtype_bytes=(0, 0, m.ssm_state_bytes))


def _granite_mamba(c: _Config, hidden: int) -> Mamba2:
    return Mamba2(inner=c.int("mamba_expand", 2) * hidden, groups=c.int("mamba_n_groups", 1),
                  state=c.int("mamba_d_state"), heads=c.int("mamba_n_heads"), head_dim=c.int("mamba_d_head"),
                  kernel=c.int("mamba_d_conv", 4), conv_bias=bool(c.get("mamba_conv_bias", True)),
                  proj_bias=c.flag("mamba_proj_bias"))


def _granite_hybrid(c: _Config, inv: _Inventory, family: str):
    """Granite 4.0 (GraniteMoeHybrid): Mamba2 or attention per layer_types, then routed experts and a shared MLP
    (either may be absent), RMSNorms before each."""
    n = c.int("num_hidden_layers")
    hidden, heads, kv, hd = _attention_dims(c)
    kinds = _layer_types(c, n, ("mamba", "attention"), ["attention"] * n)
    experts = c.int("num_local_experts", 0, minimum=0)
    attn = []
    for i in range(n):
        if kinds[i] == "mamba":
            attn.append(_mamba2(inv, i, hidden, _granite_mamba(c, hidden), "mamba"))
        else:
            _gqa_attention(inv, c, i, c.flag("attention_bias"), c.flag("attention_bias"), qk_norm=False)
            attn.append(AttentionLayer("full", kv, hd, hd))
        if experts:
            _moe_block(c, inv, Experts(**dict(_BLOCK_SPARSE, router="router.layer")), i, hidden)
        shared = c.int("shared_intermediate_size", 0, minimum=0)
        if shared:
            inv.linear(f"model.layers.{i}.shared_mlp.input_linear", hidden, 2 * shared, "col", i)
            inv.linear(f"model.layers.{i}.shared_mlp.output_linear", shared, hidden, "row", i)
        _layer_norms(inv, i, hidden)
    _embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    extra = dict(num_experts=experts, experts_per_token=c.int("num_experts_per_tok"),
                 moe_intermediate_size=c.int("intermediate_size")) if experts else {}
    return attn, extra


# Nemotron-H keeps the Mamba2 SSM state in float32 unless config.json names mamba_ssm_cache_dtype
# (vllm/model_executor/models/config.py NemotronHForCausalLMConfig.DEFAULT_MAMBA_SSM_CACHE_DTYPE).
NEMOTRON_H_SSM_DTYPE = "float32"
NEMOTRON_H_LAYERS = {"M": "Mamba2", "*": "attention", "-": "MLP", "E": "MoE"}  # hybrid_override_pattern letters


def _nemotron_h(c: _Config, inv: _Inventory, family: str):
    """Nemotron-H (vllm/model_executor/models/nemotron_h.py): one mixer per layer as hybrid_override_pattern spells
    it (M Mamba2, * GQA attention, - a non-gated relu2 MLP, E routed non-gated experts with a sigmoid router and its
    score-correction bias, shared experts, optionally through a latent projection), an RMSNorm before each."""
    pattern = c.get("hybrid_override_pattern")
    n = c.int("num_hidden_layers")
    if not isinstance(pattern, str) or len(pattern) != n or set(pattern) - set(NEMOTRON_H_LAYERS):
        raise PlannerError(f"config.json of {c.model_id} has hybrid_override_pattern={pattern!r}; expected one of "
                           f"{''.join(NEMOTRON_H_LAYERS)} per layer for its {n} layers (fix the config.json)")
    hidden, heads, kv, hd = _attention_dims(c)
    ssm_dtype = c.get("mamba_ssm_cache_dtype") or NEMOTRON_H_SSM_DTYPE
    if ssm_dtype not in DTYPE_BYTES:
        raise PlannerError(f"config.json of {c.model_id} has mamba_ssm_cache_dtype={ssm_dtype!r}; expected one of "
                           f"{', '.join(DTYPE_BYTES)}")
    mamba = Mamba2(inner=c.int("mamba_num_heads") * c.int("mamba_head_dim"), groups=c.int("n_groups"),
                   state=c.int("ssm_state_size"), heads=c.int("mamba_num_heads"), head_dim=c.int("mamba_head_dim"),
                   kernel=c.int("conv_kernel"), conv_bias=bool(c.get("use_conv_bias", True)),
                   proj_bias=c.flag("use_bias"), ssm_state_bytes=DTYPE_BYTES[ssm_dtype])
    attn, extra = [], {}
    for i, kind in enumerate(pattern):
        inv.norm(f"model.layers.{i}.norm", hidden, i)
        p = f"model.layers.{i}.mixer"
        if kind == "M":
            attn.append(_mamba2(inv, i, hidden, mamba, "mixer"))
            continue
        attn.append(AttentionLayer("full", kv, hd, hd) if kind == "*" else AttentionLayer("none", 0, 0, 0))
        if kind == "*":
            _gqa_attention(inv, c, i, qkv_bias=False, o_bias=False, qk_norm=False)
        elif kind == "-":
            inv.linear(f"{p}.up_proj", hidden, c.int("intermediate_size"), "col", i, bias=c.flag("mlp_bias"))
            inv.linear(f"{p}.down_proj", c.int("intermediate_size"), hidden, "row", i, bias=c.flag("mlp_bias"))
        else:
            extra = _nemotron_moe(c, inv, p, hidden, i)
    _embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    return attn, extra


def _nemotron_moe(c: _Config, inv: _Inventory, p: str, hidden: int, i: int) -> dict:
    experts, topk, width = c.int("n_routed_experts"), c.int("num_experts_per_tok"), c.int("moe_intermediate_size")
    inv.add(f"{p}.gate", experts, hidden, "rep", "router", i)
    inv.add(f"{p}.gate.e_score_correction_bias", experts, 1, "rep", "router", i)
    latent = c.get("moe_latent_size")
    if latent is not None:
        latent = c.int("moe_latent_size")
        inv.linear(f"{p}.fc1_latent_proj", hidden, latent, "rep", i)
        inv.linear(f"{p}.fc2_latent_proj", latent, hidden, "rep", i)
    routed = latent or hidden
    inv.linear(f"{p}.experts.up_proj", routed, width, "col", i, copies=experts, active=topk)
    inv.linear(f"{p}.experts.down_proj", width, routed, "row", i, copies=experts, active=topk)
    shared = c.int("n_shared_experts", 0, minimum=0)
    if shared:
        inter = c.int("moe_shared_expert_intermediate_size") * shared
        inv.linear(f"{p}.shared_experts.up_proj", hidden, inter, "col", i)
        inv.linear(f"{p}.shared_experts.down_proj", inter, hidden, "row", i)
    return dict(num_experts=experts, experts_per_token=topk, moe_intermediate_size=width)


def _qwen3_next(c: _Config, inv: _Inventory, family: str):
    """Qwen3-Next: Gated DeltaNet layers with gated full attention every full_attention_interval layers
    (layer_types when given), and a Qwen2-MoE block (routed experts, one gated shared expert) in every layer."""
    n = c.int("num_hidden_layers")
    hidden, heads, kv, hd = _attention_dims(c)
    interval = c.int("full_attention_interval", 4)
    kinds = _layer_types(c, n, ("full_attention", "linear_attention"),
                         ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n)])
    experts = Experts("num_experts", shared="sized", dense="sparse_step")
    gate = 2 if c.get("attn_output_gate", True) is not False else 1
    attn = []
    for i in range(n):
        if kinds[i] == "linear_attention":
            attn.append(_gated_delta_net(c, inv, i, hidden))
        else:
            p = f"model.layers.{i}.self_attn"
            inv.linear(f"{p}.q_proj", hidden, gate * heads * hd, "col", i)  # queries and their output gate
            inv.linear(f"{p}.k_proj", hidden, kv * hd, "kv", i)
            inv.linear(f"{p}.v_proj", hidden, kv * hd, "kv", i)
            inv.linear(f"{p}.o_proj", heads * hd, hidden, "row", i)
            inv.norm(f"{p}.q_norm", hd, i)
            inv.norm(f"{p}.k_norm", hd, i)
            attn.append(AttentionLayer("full", kv, hd, hd))
        if _is_moe_layer(c, experts, i):
            _moe_block(c, inv, experts, i, hidden)
        else:
            _gated_mlp(inv, f"model.layers.{i}.mlp", hidden, c.int("intermediate_size"), i)
        _layer_norms(inv, i, hidden)
    _embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    return attn, dict(num_experts=c.int("num_experts"), experts_per_token=c.int("num_experts_per_tok"),
                      moe_intermediate_size=c.int("moe_intermediate_size"))


def _deepseek(c: _Config, inv: _Inventory, family: str):
    """DeepSeek-V2/V3: multi-head latent attention and MoE with shared experts."""
    n = c.int("num_hidden_layers")
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads")
    q_lora = c.get("q_lora_rank")
    kv_lora, nope, rope, v = (c.int("kv_lora_rank"), c.int("qk_nope_head_dim"), c.int("qk_rope_head_dim"),
                              c.int("v_head_dim"))
    experts, topk, moe_inter = c.int("n_routed_experts"), c.int("num_experts_per_tok"), c.int("moe_intermediate_size")
    shared = c.int("n_shared_experts", 0, minimum=0)
    first_dense, freq = c.int("first_k_dense_replace", 0, minimum=0), c.int("moe_layer_freq", 1)
    sparse = _sparse_indexer(c, n)
    for i in range(n):
        p = f"model.layers.{i}.self_attn"
        if q_lora:
            inv.linear(f"{p}.q_a_proj", hidden, q_lora, "rep", i)
            inv.norm(f"{p}.q_a_layernorm", q_lora, i)
            inv.linear(f"{p}.q_b_proj", q_lora, heads * (nope + rope), "col", i)
        else:
            inv.linear(f"{p}.q_proj", hidden, heads * (nope + rope), "col", i)
        if sparse:
            _indexer(inv, f"{p}.indexer", hidden, q_lora or hidden, sparse, i)
        inv.linear(f"{p}.kv_a_proj_with_mqa", hidden, kv_lora + rope, "rep", i)
        inv.norm(f"{p}.kv_a_layernorm", kv_lora, i)
        inv.linear(f"{p}.kv_b_proj", kv_lora, heads * (nope + v), "col", i)
        inv.linear(f"{p}.o_proj", heads * v, hidden, "row", i)
        # vLLM's MLA splits kv_b_proj into W_UK_T and W_UV (absorbed decode path), kept in the model dtype
        # beside kv_b_proj itself (vllm/model_executor/layers/attention/mla_attention.py).
        inv.add(f"{p}.mla_attn.W_UK_T+W_UV", heads * (nope + v), kv_lora, "col", "derived", i)
        if i >= first_dense and i % freq == 0:
            inv.add(f"model.layers.{i}.mlp.gate", experts, hidden, "rep", "router", i)
            if c.get("topk_method") == "noaux_tc":
                inv.add(f"model.layers.{i}.mlp.gate.e_score_correction_bias", experts, 1, "rep", "router", i)
            _experts(inv, f"model.layers.{i}.mlp", hidden, moe_inter, i, experts, topk)
            if shared:
                _gated_mlp(inv, f"model.layers.{i}.mlp.shared_experts", hidden, moe_inter * shared, i)
        else:
            _gated_mlp(inv, f"model.layers.{i}.mlp", hidden, c.int("intermediate_size"), i)
        _layer_norms(inv, i, hidden)
    _embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    indexer_bytes = sparse["head_dim"] + sparse["head_dim"] // INDEXER_QUANT_BLOCK * 4 if sparse else 0
    attn = [AttentionLayer("mla", 1, kv_lora + rope, 0, latent_value_width=kv_lora, indexer_bytes=indexer_bytes,
                           indexer_width=sparse["heads"] * sparse["head_dim"] if sparse else 0)] * n
    return attn, dict(num_experts=experts, experts_per_token=topk, moe_intermediate_size=moe_inter, is_mla=True,
                      head_dim=nope + rope, index_topk=sparse["topk"] if sparse else 0)


# The indexer's K cache quantizes index_head_dim values to fp8 in blocks of this many, one fp32 scale each
# (deepseek_v32/attention.py DeepseekV32Indexer.quant_block_size).
INDEXER_QUANT_BLOCK = 128


def _sparse_indexer(c: _Config, n: int) -> dict | None:
    """DeepSeek Sparse Attention's lightning indexer, when config.json names one (index_topk, as vLLM decides
    is_v32): its heads, head size and top-k. vLLM skips the indexer on some layers when index_topk_freq or
    index_topk_pattern say so; those layers' caches form groups of their own, which the planner does not model."""
    if c.get("index_topk") is None:
        return None
    freq, pattern = c.get("index_topk_freq", 1), c.get("index_topk_pattern")
    if freq != 1 or (pattern is not None and "S" in str(pattern)[:n]):
        raise PlannerError(f"config.json of {c.model_id} skips the sparse-attention indexer on some layers "
                           f"(index_topk_freq={freq!r}, index_topk_pattern={pattern!r}); the planner models DSA "
                           "checkpoints with an indexer on every layer only")
    return dict(heads=c.int("index_n_heads"), head_dim=c.int("index_head_dim"), topk=c.int("index_topk"))


def _indexer(inv: _Inventory, p: str, hidden: int, q_lora: int, sparse: dict, i: int) -> None:
    """One layer's lightning indexer (deepseek_v32/attention.py DeepseekV32Indexer): a replicated query
    projection from the query latent (quantized with the model), and the key and head-weight projections, which
    vLLM fuses into one GEMM kept in the model dtype (quant_config=None), with a LayerNorm on the key."""
    heads, head_dim = sparse["heads"], sparse["head_dim"]
    inv.linear(f"{p}.wq_b", q_lora, heads * head_dim, "rep", i)
    inv.linear(f"{p}.wk_weights_proj", hidden, head_dim + heads, "rep", i, kind="unquantized")
    inv.norm(f"{p}.k_norm", head_dim, i, with_bias=True)


def _gpt_oss(c: _Config, inv: _Inventory, family: str):
    n = c.int("num_hidden_layers")
    hidden, _, _, _ = _attention_dims(c)
    inter, experts = c.int("intermediate_size"), c.int("num_local_experts")
    topk = c.int("num_experts_per_tok", c.get("experts_per_token"))
    for i in range(n):
        _gqa_attention(inv, c, i, True, True, False, sinks=True)
        inv.linear(f"model.layers.{i}.mlp.router", hidden, experts, "rep", i, bias=True, kind="router")
        _experts(inv, f"model.layers.{i}.mlp", hidden, inter, i, experts, topk, bias=True)
        _layer_norms(inv, i, hidden)
    _embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    return _gqa_layers(c, _layer_windows(c, n, "alternate")), dict(num_experts=experts, experts_per_token=topk,
                                                               moe_intermediate_size=inter)


def _llama4_text(c: _Config, inv: _Inventory, family: str):
    n = c.int("num_hidden_layers")
    hidden, _, kv, hd = _attention_dims(c)
    moe_inter, dense_inter = c.int("intermediate_size"), c.int("intermediate_size_mlp")
    experts, topk = c.int("num_local_experts"), c.int("num_experts_per_tok")
    step = c.int("interleave_moe_layer_step", 1)
    for i in range(n):
        _gqa_attention(inv, c, i, bool(c.get("attention_bias", False)), False, False)  # qk norm is parameter-free
        p = f"language_model.model.layers.{i}.feed_forward"
        if (i + 1) % step == 0:
            inv.add(f"{p}.router", experts, hidden, "rep", "router", i)
            _experts(inv, p, hidden, moe_inter, i, experts, topk)
            _gated_mlp(inv, f"{p}.shared_expert", hidden, moe_inter, i)
        else:
            _gated_mlp(inv, p, hidden, dense_inter, i)
        _layer_norms(inv, i, hidden)
    _embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    chunk = c.get("attention_chunk_size")
    no_rope = c.get("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(n)]
    attn = [AttentionLayer("chunked", kv, hd, hd, chunk) if chunk and no_rope[i] else AttentionLayer("full", kv, hd, hd)
            for i in range(n)]
    return attn, dict(num_experts=experts, experts_per_token=topk, moe_intermediate_size=moe_inter)


def _vision_encoder(inv: _Inventory, v: _Config, prefix: str, class_token: bool, conv_bias: bool):
    """A ViT encoder (SigLIP, Llama 4): patch embedding, positions, pre-LN blocks with biased linears."""
    hidden, inter, layers = v.int("hidden_size"), v.int("intermediate_size"), v.int("num_hidden_layers")
    patch, image, chans = v.int("patch_size"), v.int("image_size"), v.int("num_channels", 3)
    patches = (image // patch) ** 2 + (1 if class_token else 0)
    inv.add(f"{prefix}.patch_embedding", hidden, chans * patch * patch + (1 if conv_bias else 0), "rep", "vision",
            place="first")
    inv.add(f"{prefix}.position_embedding", patches, hidden, "rep", "vision", place="first")
    if class_token:
        inv.add(f"{prefix}.class_embedding", hidden, 1, "rep", "vision", place="first")
    for i in range(layers):
        for proj in ("q_proj", "k_proj", "v_proj"):
            inv.add(f"{prefix}.layers.{i}.self_attn.{proj}", hidden, hidden + 1, "col", "vision", place="first")
        inv.add(f"{prefix}.layers.{i}.self_attn.o_proj", hidden, hidden, "row", "vision", place="first")
        inv.add(f"{prefix}.layers.{i}.mlp.fc1", inter, hidden + 1, "col", "vision", place="first")
        inv.add(f"{prefix}.layers.{i}.mlp.fc2", hidden, inter, "row", "vision", place="first")
        inv.add(f"{prefix}.layers.{i}.biases", 2 * hidden, 1, "rep", "vision", place="first")  # o_proj, fc2
        inv.add(f"{prefix}.layers.{i}.norms", 4 * hidden, 1, "rep", "vision", place="first")  # two LayerNorms
    return hidden


def _text_and_vision(c: _Config, inv: _Inventory, text_builder, family: str, tower: str, class_token: bool,
                     conv_bias: bool):
    """A multimodal checkpoint's language model (from text_config) and its ViT tower (from vision_config)."""
    text = _Config(_text_config(c), c.model_id)
    attn, extra = text_builder(text, inv, family)
    v = _Config(c.get("vision_config") or {}, c.model_id)
    vh = _vision_encoder(inv, v, tower, class_token=class_token, conv_bias=conv_bias)
    return text, v, vh, attn, dict(extra, multimodal=True)


def _gemma3_mm(c: _Config, inv: _Inventory, family: str):
    text, _, vh, attn, extra = _text_and_vision(c, inv, _decoder, "gemma3", "vision_tower.vision_model",
                                                class_token=False, conv_bias=True)
    inv.add("vision_tower.vision_model.post_layernorm", 2 * vh, 1, "rep", "vision", place="first")
    inv.add("multi_modal_projector.mm_input_projection_weight", text.int("hidden_size"), vh, "rep", "vision",
            place="first")
    inv.add("multi_modal_projector.mm_soft_emb_norm", vh, 1, "rep", "vision", place="first")
    return attn, extra


def _llama4_mm(c: _Config, inv: _Inventory, family: str):
    text, v, vh, attn, extra = _text_and_vision(c, inv, _llama4_text, "llama4", "vision_model", class_token=True,
                                                conv_bias=False)
    inv.add("vision_model.layernorm_pre+post", 4 * vh, 1, "rep", "vision", place="first")
    ratio = float(v.get("pixel_shuffle_ratio", 0.5))
    shuffled = int(vh / (ratio * ratio))
    proj_in, proj_out = v.int("projector_input_dim"), v.int("projector_output_dim")
    inv.add("vision_model.vision_adapter.mlp.fc1", proj_in, shuffled, "col", "vision", place="first")
    inv.add("vision_model.vision_adapter.mlp.fc2", proj_out, proj_in, "row", "vision", place="first")
    inv.add("multi_modal_projector.linear_1", text.int("hidden_size"), v.int("vision_output_dim"), "rep", "vision",
            place="first")
    return attn, extra


def _qwen_vision(inv: _Inventory, v: _Config, text_hidden: int, qwen3: bool) -> None:
    """The Qwen2.5-VL and Qwen3-VL vision towers (vllm/model_executor/models/qwen2_5_vl.py, qwen3_vl.py): a 3-D
    patch convolution, pre-norm blocks with a fused biased QKV and a biased MLP (gated SiLU in Qwen2.5-VL, GELU
    in Qwen3-VL), then a merger MLP over 2x2 merged patches into the text width; Qwen3-VL adds learned positions
    and a 'deepstack' merger per tapped block. Linear layers split over TP as vLLM's default mm_encoder_tp_mode
    'weights' does."""
    h, inter, depth = v.int("hidden_size"), v.int("intermediate_size"), v.int("depth")
    patch, temporal = v.int("patch_size"), v.int("temporal_patch_size", 2)
    chans = v.int("in_channels", v.get("in_chans", 3))
    merged = h * v.int("spatial_merge_size", 2) ** 2
    out = v.int("out_hidden_size", text_hidden)
    norm = 2 * h if qwen3 else h  # LayerNorm (weight, bias) in Qwen3-VL; RMSNorm in Qwen2.5-VL
    p = "visual"
    inv.add(f"{p}.patch_embed.proj", h, chans * temporal * patch * patch + (1 if qwen3 else 0), "rep", "vision",
            place="first")
    if qwen3:
        inv.add(f"{p}.pos_embed", v.int("num_position_embeddings"), h, "rep", "vision", place="first")
    for i in range(depth):
        b = f"{p}.blocks.{i}"
        inv.add(f"{b}.norm1+norm2", 2 * norm, 1, "rep", "vision", place="first")
        inv.add(f"{b}.attn.qkv", 3 * h, h + 1, "col", "vision", place="first")
        inv.add(f"{b}.attn.proj", h, h, "row", "vision", place="first")
        if qwen3:
            inv.add(f"{b}.mlp.linear_fc1", inter, h + 1, "col", "vision", place="first")
        else:
            inv.add(f"{b}.mlp.gate_up_proj", 2 * inter, h + 1, "col", "vision", place="first")
        inv.add(f"{b}.mlp.down", h, inter, "row", "vision", place="first")
        inv.add(f"{b}.biases", 2 * h, 1, "rep", "vision", place="first")  # attn.proj and the MLP's output
    mergers = [("merger", norm)] + [(f"deepstack_merger_list.{k}", 2 * merged)
                                    for k in range(len(v.get("deepstack_visual_indexes") or []) if qwen3 else 0)]
    for name, norm_size in mergers:
        inv.add(f"{p}.{name}.norm", norm_size, 1, "rep", "vision", place="first")
        inv.add(f"{p}.{name}.fc1", merged, merged + 1, "col", "vision", place="first")
        inv.add(f"{p}.{name}.fc2", out, merged, "row", "vision", place="first")
        inv.add(f"{p}.{name}.fc2.bias", out, 1, "rep", "vision", place="first")


def _qwen_vl(c: _Config, inv: _Inventory, family: str):
    """Qwen2.5-VL (text keys at the top level, or in text_config) and Qwen3-VL (dense and MoE)."""
    text = _Config(_language_config(c, "optional"), c.model_id)
    attn, extra = _decoder(text, inv, family)
    _qwen_vision(inv, _Config(c.get("vision_config") or {}, c.model_id), text.int("hidden_size"),
                 qwen3=family != "qwen2")
    # Qwen3VLForConditionalGeneration.__init__ allocates deepstack_input_embeds: one [max_num_batched_tokens,
    # text hidden] tensor per tapped block (vllm/model_executor/models/qwen3_vl.py).
    deepstack = len((c.get("vision_config") or {}).get("deepstack_visual_indexes") or []) if family != "qwen2" else 0
    return attn, dict(extra, multimodal=True, buffer_rows_per_token=deepstack)


def _mistral3(c: _Config, inv: _Inventory, family: str):
    """Mistral 3 (Mistral-Small-3.1/3.2): the Mistral decoder and the Pixtral vision encoder (vllm/model_executor/
    models/mistral3.py, pixtral.py PixtralHFVisionModel): a bias-free patch convolution, RMSNorm pre-norm blocks with
    fused QKV and a gated SiLU MLP, every block up to vision_feature_layer built; then a projector: RMSNorm, a 2x2
    patch merger and two linears into the text width."""
    text = _Config(_text_config(c), c.model_id)
    attn, extra = _decoder(text, inv, family)
    v = _Config(c.get("vision_config") or {}, c.model_id)
    h, inter, layers = v.int("hidden_size"), v.int("intermediate_size"), v.int("num_hidden_layers")
    patch, chans = v.int("patch_size"), v.int("num_channels", 3)
    feature = c.get("vision_feature_layer", -1)
    deepest = max(feature) if isinstance(feature, list) and feature else feature
    if not isinstance(deepest, int) or isinstance(deepest, bool):
        raise PlannerError(f"config.json of {c.model_id} has vision_feature_layer={feature!r}; expected an integer "
                           "or a list of integers (fix the config.json)")
    built = deepest + layers + 1 if deepest < 0 else deepest  # vLLM's get_layer_index
    p = "vision_tower"
    inv.add(f"{p}.patch_conv", h, chans * patch * patch, "rep", "vision", place="first")
    inv.add(f"{p}.ln_pre", h, 1, "rep", "vision", place="first")
    for i in range(built):
        b = f"{p}.transformer.layers.{i}"
        inv.add(f"{b}.attention_norm+ffn_norm", 2 * h, 1, "rep", "vision", place="first")
        inv.add(f"{b}.attention.qkv_proj", 3 * h, h, "col", "vision", place="first")
        inv.add(f"{b}.attention.o_proj", h, h, "row", "vision", place="first")
        inv.add(f"{b}.feed_forward.gate_up_proj", 2 * inter, h, "col", "vision", place="first")
        inv.add(f"{b}.feed_forward.down_proj", h, inter, "row", "vision", place="first")
    text_hidden, bias = text.int("hidden_size"), 1 if c.flag("multimodal_projector_bias") else 0
    merge = c.int("spatial_merge_size", 2)
    m = "multi_modal_projector"
    inv.add(f"{m}.norm", h, 1, "rep", "vision", place="first")
    inv.add(f"{m}.patch_merger.merging_layer", h, h * merge * merge, "rep", "vision", place="first")
    inv.add(f"{m}.linear_1", text_hidden, h + bias, "col", "vision", place="first")
    inv.add(f"{m}.linear_2", text_hidden, text_hidden, "row", "vision", place="first")
    if bias:
        inv.add(f"{m}.linear_2.bias", text_hidden, 1, "rep", "vision", place="first")
    return attn, dict(extra, multimodal=True)


Builder = Callable[[_Config, _Inventory, str], tuple]

# architectures[0] of config.json -> (family, builder, uses text_config: True, False or "optional")
ARCHITECTURES: dict[str, tuple[str, Builder, bool | str]] = {
    "LlamaForCausalLM": ("llama", _decoder, False),
    "MistralForCausalLM": ("mistral", _decoder, False),
    "Qwen2ForCausalLM": ("qwen2", _decoder, False),
    "Qwen3ForCausalLM": ("qwen3", _decoder, False),
    "GraniteForCausalLM": ("granite", _decoder, False),
    "Phi3ForCausalLM": ("phi3", _decoder, False),
    "InternLM2ForCausalLM": ("internlm2", _decoder, False),
    "CohereForCausalLM": ("cohere", _decoder, False),
    "Gemma2ForCausalLM": ("gemma2", _decoder, False),
    "Gemma3ForCausalLM": ("gemma3", _decoder, False),
    "Gemma3ForConditionalGeneration": ("gemma3", _gemma3_mm, True),
    "MixtralForCausalLM": ("mixtral", _decoder, False),
    "GraniteMoeForCausalLM": ("granitemoe", _decoder, False),
    "PhiMoEForCausalLM": ("phimoe", _decoder, False),
    "Qwen2MoeForCausalLM": ("qwen2_moe", _decoder, False),
    "Qwen3MoeForCausalLM": ("qwen3_moe", _decoder, False),
    "Glm4MoeForCausalLM": ("glm4_moe", _decoder, False),
    "MiniMaxM2ForCausalLM": ("minimax_m2", _decoder, False),
    "DeepseekV2ForCausalLM": ("deepseek", _deepseek, False),
    "DeepseekV3ForCausalLM": ("deepseek", _deepseek, False),
    # DeepSeek Sparse Attention: GLM-5's glm_moe_dsa runs vLLM's same DeepSeek-V3.2 model code
    # (vllm/models/deepseek_v32/__init__.py).
    "DeepseekV32ForCausalLM": ("deepseek", _deepseek, False),
    "GlmMoeDsaForCausalLM": ("deepseek", _deepseek, False),
    "GptOssForCausalLM": ("gpt_oss", _gpt_oss, False),
    "Llama4ForConditionalGeneration": ("llama4", _llama4_mm, True),
    "Qwen2_5_VLForConditionalGeneration": ("qwen2", _qwen_vl, "optional"),
    "Qwen3VLForConditionalGeneration": ("qwen3", _qwen_vl, True),
    "Qwen3VLMoeForConditionalGeneration": ("qwen3_moe", _qwen_vl, True),
    "Mistral3ForConditionalGeneration": ("mistral", _mistral3, True),
    "Olmo2ForCausalLM": ("olmo2", _decoder, False),
    "NemotronForCausalLM": ("nemotron", _decoder, False),
    "Glm4ForCausalLM": ("glm4", _decoder, False),
    "GraniteMoeHybridForCausalLM": ("granitemoehybrid", _granite_hybrid, False),
    "Qwen3NextForCausalLM": ("qwen3_next", _qwen3_next, False),
    "NemotronHForCausalLM": ("nemotron_h", _nemotron_h, False),
}


# Architectures vLLM served once and has since removed, with the last version that served each (vLLM 0.32's
# model_executor/models/registry.py _PREVIOUSLY_SUPPORTED_MODELS; tests check the two agree). Llama 3.2 Vision
# (Mllama) went with the V0 engine's encoder-decoder support.
VLLM_REFERENCE_VERSION = "0.32.0"  # the vLLM whose behaviour the planner follows (serve_config re-exports it)
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


def _text_config(c: _Config) -> dict:
    text = c.get("text_config")
    if not isinstance(text, dict):
        raise PlannerError(f"config.json of {c.model_id} ({c.get('architectures')}) has no text_config object "
                           "(fix the config.json)")
    merged = dict(text)
    for key in ("torch_dtype", "dtype", "tie_word_embeddings"):
        if key not in merged and key in c.raw:
            merged[key] = c.raw[key]
    return merged


def _language_config(c: _Config, uses_text: bool | str) -> dict:
    """The language model's keys: text_config (required when uses_text is True; used when present for
    "optional"), else the top level."""
    if uses_text is True or (uses_text == "optional" and isinstance(c.get("text_config"), dict)):
        return _text_config(c)
    return c.raw


def _derived_max_len(text: dict, family: str) -> tuple[int, str, int | None]:
    present = [(text[k], k) for k in MAX_LEN_KEYS if isinstance(text.get(k), (int, float)) and text[k] > 0]
    if not present:
        return 2048, "default (no length key in config.json)", None
    length, key = min(present)
    rope = text.get("rope_scaling") or text.get("rope_parameters")
    longrope_len = None
    if isinstance(rope, dict) and family != "gemma3":
        rope_type = rope.get("rope_type", rope.get("type"))
        if rope_type == "longrope":
            longrope_len = int(text.get("original_max_position_embeddings") or length)
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
    "conv_kernel", "moe_shared_expert_intermediate_size", "moe_latent_size"))
BOOL_KEYS = frozenset(("tie_word_embeddings", "use_sliding_window", "attention_bias", "mlp_bias", "desc_act", "sym",
                       "use_bias", "use_conv_bias",
                       "zero_point", "norm_topk_prob", "use_qk_norm", "lm_head_bias", "use_routing_bias",
                       "multimodal_projector_bias", "mamba_proj_bias", "mamba_conv_bias"))
STRING_LIST_KEYS = frozenset(("architectures", "layer_types"))
DICT_KEYS = frozenset(("rope_scaling", "rope_parameters", "quantization_config", "text_config", "vision_config"))
NUMBER_KEYS = frozenset(("rope_theta", "factor", "partial_rotary_factor", "low_freq_factor", "high_freq_factor",
                         "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "rms_norm_eps",
                         "layer_norm_eps", "routed_scaling_factor"))


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


def from_config(raw: dict, model_id: str) -> ModelArch:
    """Read a config.json dict into a ModelArch, or raise PlannerError naming what is wrong."""
    if not isinstance(raw, dict):
        raise PlannerError(f"config.json of {model_id} is not a JSON object (fix the config.json)")
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
    c = _Config(raw, model_id)
    text = _Config(_language_config(c, uses_text), model_id)
    inv = _Inventory()
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
    inter = text.get("intermediate_size_mlp") or text.get("intermediate_size") or 0
    return ModelArch(
        architecture=arch, model_type=str(raw.get("model_type", family)), hidden_size=hidden,
        num_layers=text.int("num_hidden_layers"), vocab_size=text.int("vocab_size"), num_heads=heads,
        num_kv_heads=kv, head_dim=int(hd), intermediate_size=int(inter), dtype=dtype,
        tie_word_embeddings=tied_embeddings(text.raw, family),
        tensors=tuple(inv.tensors), attention=tuple(attention),
        quant=quantization.from_config(raw.get("quantization_config") or text.get("quantization_config")),
        derived_max_model_len=max_len, max_len_key=key, longrope_default_len=longrope_len, **extra,
    )
