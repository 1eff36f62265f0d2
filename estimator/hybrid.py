"""Hybrid models: linear-attention and convolution layers (Gated DeltaNet, Kimi Delta Attention, Mamba and Mamba2,
LFM2's short convolutions) that keep a fixed state per request beside full or latent attention (Qwen3-Next,
Kimi-Linear, Granite 4.0, Nemotron-H, LFM2, Jamba)."""

from __future__ import annotations

from dataclasses import dataclass

from estimator.decoders import BLOCK_SPARSE, Experts, is_moe_layer, mla_attention, mla_layer, moe_block, topk_routing
from estimator.errors import PlannerError
from estimator.inventory import (
    DTYPE_BYTES,
    FP32_BYTES,
    AttentionLayer,
    Config,
    Inventory,
    add_embeddings,
    attention_dims,
    gated_mlp,
    gqa_attention,
    layer_norms,
    routed_experts,
    tied_embeddings,
)


def layer_kinds(c: Config, n: int, allowed: tuple[str, str], default: list[str]) -> list[str]:
    """A hybrid model's layer_types (or its default pattern), one of ``allowed`` per layer, or an error naming them."""
    kinds = c.get("layer_types") or default
    if len(kinds) != n or set(kinds) - set(allowed):
        raise PlannerError(f"config.json of {c.model_id} has layer_types {sorted(set(kinds))} for {n} layers; "
                           f"expected {allowed[0]} or {allowed[1]} per layer (fix the config.json)")
    return kinds


def state_dtype_bytes(c: Config, key: str, default: str | None) -> int:
    """Bytes per element of a linear-attention state whose dtype config.json names under ``key`` (else
    ``default``; None: the model dtype, 0)."""
    dtype = c.get(key) or default
    if dtype is None:
        return 0
    if dtype not in DTYPE_BYTES:
        raise PlannerError(f"config.json of {c.model_id} has {key}={dtype!r}; expected one of "
                           f"{', '.join(DTYPE_BYTES)} (fix the config.json)")
    return DTYPE_BYTES[dtype]


def gated_delta_net(c: Config, inv: Inventory, i: int, hidden: int, ssm_state_bytes: int = 0) -> AttentionLayer:
    """A Gated DeltaNet linear-attention layer (vllm/model_executor/layers/mamba/gdn/qwen_gdn_linear_attn.py): fused
    q/k/v/z and b/a input projections, a depthwise causal convolution over q/k/v, per-head dt bias and A, a gated
    RMSNorm one value head wide and the output projection; its state is the convolution window and one
    [value head, head_v x head_k] matrix per value head (MambaStateShapeCalculator.gated_delta_net_state_shape),
    the latter in ``ssm_state_bytes`` per element when the model fixes its dtype (0: the model dtype)."""
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
    return AttentionLayer("mamba", 0, 0, 0, state=((2 * key + value, kernel - 1, 0), (v_heads, v_dim * k_dim, 0)),
                          state_dtype_bytes=(0, ssm_state_bytes) if ssm_state_bytes else (), conv_tensors=1)


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


def mamba2(inv: Inventory, i: int, hidden: int, m: Mamba2, prefix: str, gated_norm: bool = True) -> AttentionLayer:
    """A Mamba2 mixer (vllm/model_executor/layers/mamba/mamba_mixer2.py): one input projection to the gate, x, the B
    and C groups and dt per head; a depthwise convolution over x, B and C; A, D and dt bias per head; a gated RMSNorm
    and the output projection. The state: the convolution window, and [head_dim x state] per head
    (MambaStateShapeCalculator.mamba2_state_shape). The B and C groups' rows split over TP only where TP divides
    the groups; otherwise each rank holds one whole group (extra_groups_for_head_shards), shard "groups". Without
    ``gated_norm`` (Falcon-H1's mamba_rms_norm false) the gated RMSNorm has no weight (Mixer2RMSNormGated)."""
    inner, bc, heads, kernel = m.inner, 2 * m.groups * m.state, m.heads, m.kernel
    p = f"model.layers.{i}.{prefix}"
    inv.linear(f"{p}.in_proj", hidden, 2 * inner + heads, "col", i, bias=m.proj_bias)
    inv.linear(f"{p}.in_proj.B+C", hidden, bc, "groups", i, bias=m.proj_bias)
    inv.add(f"{p}.conv1d", inner, kernel + (1 if m.conv_bias else 0), "col", "norm", i)
    inv.add(f"{p}.conv1d.B+C", bc, kernel + (1 if m.conv_bias else 0), "groups", "norm", i)
    inv.add(f"{p}.A+D+dt_bias", 3 * heads, 1, "col", "norm", i)
    if gated_norm:
        inv.add(f"{p}.norm", inner, 1, "col", "norm", i)
    inv.linear(f"{p}.out_proj", inner, hidden, "row", i, bias=m.proj_bias)
    return AttentionLayer("mamba", 0, 0, 0, state=((inner, kernel - 1, 0), (bc, kernel - 1, m.groups),
                                                   (heads, m.head_dim * m.state, 0)),
                          state_dtype_bytes=(0, 0, m.ssm_state_bytes), conv_tensors=2)


def _granite_mamba(c: Config, hidden: int) -> Mamba2:
    return Mamba2(inner=c.int("mamba_expand", 2) * hidden, groups=c.int("mamba_n_groups", 1),
                  state=c.int("mamba_d_state"), heads=c.int("mamba_n_heads"), head_dim=c.int("mamba_d_head"),
                  kernel=c.int("mamba_d_conv", 4), conv_bias=bool(c.get("mamba_conv_bias", True)),
                  proj_bias=c.flag("mamba_proj_bias"))


def granite_hybrid(c: Config, inv: Inventory, family: str):
    """Granite 4.0 (GraniteMoeHybrid): Mamba2 or attention per layer_types, then routed experts and a shared MLP
    (either may be absent), RMSNorms before each."""
    n = c.int("num_hidden_layers")
    hidden, heads, kv, hd = attention_dims(c)
    kinds = layer_kinds(c, n, ("mamba", "attention"), ["attention"] * n)
    experts = c.int("num_local_experts", 0, minimum=0)
    attn = []
    for i in range(n):
        if kinds[i] == "mamba":
            attn.append(mamba2(inv, i, hidden, _granite_mamba(c, hidden), "mamba"))
        else:
            gqa_attention(inv, c, i, c.flag("attention_bias"), c.flag("attention_bias"), qk_norm=False)
            attn.append(AttentionLayer("full", kv, hd, hd))
        if experts:
            moe_block(c, inv, Experts(**dict(BLOCK_SPARSE, router="router.layer")), i, hidden)
        shared = c.int("shared_intermediate_size", 0, minimum=0)
        if shared:
            inv.linear(f"model.layers.{i}.shared_mlp.input_linear", hidden, 2 * shared, "col", i)
            inv.linear(f"model.layers.{i}.shared_mlp.output_linear", shared, hidden, "row", i)
        layer_norms(inv, i, hidden)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    extra = dict(num_experts=experts, experts_per_token=c.int("num_experts_per_tok"),
                 moe_intermediate_size=c.int("intermediate_size")) if experts else {}
    return attn, extra


def falcon_h1(c: Config, inv: Inventory, family: str):
    """Falcon-H1 (falcon_h1.py FalconH1ParallelHybrid): every layer runs GQA attention and a Mamba2 mixer side by
    side on the same input, then an MLP. vLLM registers each layer's mixer as a layer of its own, index
    num_hidden_layers + i ("all attention/ssm layers must have different index"), and so does the planner: layers
    0..L-1 hold the attention, the MLP and the norms, layers L..2L-1 the mixers. The mixer's width is mamba_d_ssm,
    or mamba_expand x hidden_size where that is null; its gated norm has a weight only with mamba_rms_norm."""
    n = c.int("num_hidden_layers")
    hidden, heads, kv, hd = attention_dims(c)
    inner = c.int("mamba_d_ssm") if c.get("mamba_d_ssm") is not None else c.int("mamba_expand", 2) * hidden
    mixer = Mamba2(inner=inner, groups=c.int("mamba_n_groups", 1), state=c.int("mamba_d_state"),
                   heads=c.int("mamba_n_heads"), head_dim=c.int("mamba_d_head"), kernel=c.int("mamba_d_conv", 4),
                   conv_bias=bool(c.get("mamba_conv_bias", True)), proj_bias=c.flag("mamba_proj_bias"))
    if mixer.heads * mixer.head_dim != inner:
        raise PlannerError(f"config.json of {c.model_id} has mamba_n_heads x mamba_d_head = "
                           f"{mixer.heads * mixer.head_dim}, not the mixer's width {inner}; fix the config.json")
    attn = []
    for i in range(n):
        gqa_attention(inv, c, i, False, False, qk_norm=False)  # FalconH1AttentionDecoderLayer: no biases
        attn.append(AttentionLayer("full", kv, hd, hd))
        gated_mlp(inv, f"model.layers.{i}.feed_forward", hidden, c.int("intermediate_size"), i)
        inv.norm(f"model.layers.{i}.input_layernorm", hidden, i)
        inv.norm(f"model.layers.{i}.pre_ff_layernorm", hidden, i)
    mixers = [mamba2(inv, n + i, hidden, mixer, "mamba", gated_norm=c.flag("mamba_rms_norm")) for i in range(n)]
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    return attn + mixers, dict(num_layers=2 * n)


# Nemotron-H keeps the Mamba2 SSM state in float32 unless config.json names mamba_ssm_cache_dtype
# (vllm/model_executor/models/config.py NemotronHForCausalLMConfig.DEFAULT_MAMBA_SSM_CACHE_DTYPE).
NEMOTRON_H_SSM_DTYPE = "float32"
NEMOTRON_H_LAYERS = {"M": "Mamba2", "*": "attention", "-": "MLP", "E": "MoE"}  # hybrid_override_pattern letters


def nemotron_h(c: Config, inv: Inventory, family: str):
    """Nemotron-H (vllm/model_executor/models/nemotron_h.py): one mixer per layer as hybrid_override_pattern spells
    it (M Mamba2, * GQA attention, - a non-gated relu2 MLP, E routed non-gated experts with a sigmoid router and its
    score-correction bias, shared experts, optionally through a latent projection), an RMSNorm before each."""
    pattern = c.get("hybrid_override_pattern")
    n = c.int("num_hidden_layers")
    if not isinstance(pattern, str) or len(pattern) != n or set(pattern) - set(NEMOTRON_H_LAYERS):
        raise PlannerError(f"config.json of {c.model_id} has hybrid_override_pattern={pattern!r}; expected one of "
                           f"{''.join(NEMOTRON_H_LAYERS)} per layer for its {n} layers (fix the config.json)")
    hidden, heads, kv, hd = attention_dims(c)
    ssm_bytes = state_dtype_bytes(c, "mamba_ssm_cache_dtype", NEMOTRON_H_SSM_DTYPE)
    mamba = Mamba2(inner=c.int("mamba_num_heads") * c.int("mamba_head_dim"), groups=c.int("n_groups"),
                   state=c.int("ssm_state_size"), heads=c.int("mamba_num_heads"), head_dim=c.int("mamba_head_dim"),
                   kernel=c.int("conv_kernel"), conv_bias=bool(c.get("use_conv_bias", True)),
                   proj_bias=c.flag("use_bias"), ssm_state_bytes=ssm_bytes)
    attn, extra = [], {}
    no_cache = AttentionLayer("none", 0, 0, 0)
    for i, kind in enumerate(pattern):
        inv.norm(f"model.layers.{i}.norm", hidden, i)
        p = f"model.layers.{i}.mixer"
        if kind == "M":
            attn.append(mamba2(inv, i, hidden, mamba, "mixer"))
        elif kind == "*":
            gqa_attention(inv, c, i, qkv_bias=False, o_bias=False, qk_norm=False)
            attn.append(AttentionLayer("full", kv, hd, hd))
        elif kind == "-":
            inter = c.int("intermediate_size")
            inv.linear(f"{p}.up_proj", hidden, inter, "col", i, bias=c.flag("mlp_bias"))
            inv.linear(f"{p}.down_proj", inter, hidden, "row", i, bias=c.flag("mlp_bias"))
            attn.append(no_cache)
        else:
            extra = _nemotron_moe(c, inv, p, hidden, i)
            attn.append(no_cache)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    return attn, extra


def _nemotron_moe(c: Config, inv: Inventory, p: str, hidden: int, i: int) -> dict:
    experts, topk, width = c.int("n_routed_experts"), c.int("num_experts_per_tok"), c.int("moe_intermediate_size")
    inv.add(f"{p}.gate", experts, hidden, "rep", "router", i)
    # float32 (nemotron_h.py); its gate is float32 too where no Hopper or Blackwell router kernel runs it
    # (GateLinear force_fp32_compute), which the GPU-independent inventory leaves in the model dtype
    inv.add(f"{p}.gate.e_score_correction_bias", experts, 1, "rep", "router", i, fixed_bytes=FP32_BYTES)
    latent = c.int("moe_latent_size") if c.get("moe_latent_size") is not None else None
    if latent:
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
    # nemotron_h.py: renormalize=config.norm_topk_prob (NemotronHConfig's default: true)
    return dict(num_experts=experts, experts_per_token=topk, moe_intermediate_size=width,
                moe_routing=topk_routing(c, True))


def qwen3_next(c: Config, inv: Inventory, family: str):
    """Qwen3-Next and Qwen3.5 (vllm/model_executor/models/qwen3_next.py, qwen3_5.py): Gated DeltaNet layers with
    gated full attention every full_attention_interval layers (layer_types when given). Qwen3-Next has a Qwen2-MoE
    block (routed experts, one gated shared expert) where mlp_only_layers and decoder_sparse_step put one; Qwen3.5-MoE
    has it in every layer and dense Qwen3.5 a gated MLP. Either may scale each sublayer's output (layer_scale); Qwen3.5
    keeps the linear-attention state in the dtype config.json names (mamba_ssm_dtype, models/config.py
    Qwen3_5ForConditionalGenerationConfig)."""
    n = c.int("num_hidden_layers")
    hidden, heads, kv, hd = attention_dims(c)
    interval = c.int("full_attention_interval", 4)
    kinds = layer_kinds(c, n, ("full_attention", "linear_attention"),
                         ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n)])
    experts = None if family == "qwen3_5" else Experts(
        "num_experts", shared="sized", dense="sparse_step" if family == "qwen3_next" else "none")
    gate = 2 if c.get("attn_output_gate", True) is not False else 1
    ssm_bytes = 0 if family == "qwen3_next" else state_dtype_bytes(c, "mamba_ssm_dtype", None)
    attn = []
    for i in range(n):
        if kinds[i] == "linear_attention":
            attn.append(gated_delta_net(c, inv, i, hidden, ssm_bytes))
        else:
            p = f"model.layers.{i}.self_attn"
            inv.linear(f"{p}.q_proj", hidden, gate * heads * hd, "col", i)  # queries and their output gate
            inv.linear(f"{p}.k_proj", hidden, kv * hd, "kv", i)
            inv.linear(f"{p}.v_proj", hidden, kv * hd, "kv", i)
            inv.linear(f"{p}.o_proj", heads * hd, hidden, "row", i)
            inv.norm(f"{p}.q_norm", hd, i)
            inv.norm(f"{p}.k_norm", hd, i)
            attn.append(AttentionLayer("full", kv, hd, hd))
        if experts is not None and is_moe_layer(c, experts, i):
            moe_block(c, inv, experts, i, hidden)
        else:
            gated_mlp(inv, f"model.layers.{i}.mlp", hidden, c.int("intermediate_size"), i)
        layer_norms(inv, i, hidden)
        if c.flag("layer_scale"):
            inv.add(f"model.layers.{i}.attn_layer_scale+ffn_layer_scale", 2 * hidden, 1, "rep", "norm", i)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    if experts is None:
        return attn, {}
    return attn, dict(num_experts=c.int("num_experts"), experts_per_token=c.int("num_experts_per_tok"),
                      moe_intermediate_size=c.int("moe_intermediate_size"))


# Kimi K3's features that vLLM's Kimi-Linear class also builds (kimi_k3/nvidia/model.py), which change a layer's
# tensors: the planner models Kimi-Linear's own layout and refuses a config that names any of them
KIMI_K3_KEYS = ("routed_expert_hidden_size", "attn_res_block_size", "mla_use_output_gate")
# KimiMoE pads each TP rank's expert intermediate size up to this (min_moe_intermediate_per_partition's default)
KIMI_MIN_EXPERT_INTERMEDIATE_PER_RANK = 256
KIMI_EXPERTS = Experts("num_experts", topk="num_experts_per_token", block="block_sparse_moe", router_bias=True,
                       shared="count", shared_count="num_shared_experts")


def kimi_delta_attention(c: Config, inv: Inventory, i: int, hidden: int) -> AttentionLayer:
    """A Kimi Delta Attention layer (mamba/gdn/kimi_gdn_linear_attn.py KimiGatedDeltaNetAttention): q, k, v and
    the per-head beta projected from the hidden state and split over TP, a low-rank forget gate (f_a replicated,
    f_b split) and output gate (g_a, g_b likewise), one float32 depthwise convolution over q, k and v, float32
    A_log per head and dt_bias per channel, a gated RMSNorm one head wide and the output projection. Its state is
    the convolution window over q, k and v in the model dtype and one [head_dim x head_dim] float32 matrix per
    head (MambaStateShapeCalculator.kda_state_shape, MambaStateDtypeCalculator.kda_state_dtype)."""
    kda = Config(c.get("linear_attn_config") or {}, c.model_id)
    heads, dim, kernel = kda.int("num_heads"), kda.int("head_dim"), kda.int("short_conv_kernel_size")
    width = heads * dim
    p = f"model.layers.{i}.self_attn"
    for proj in ("q_proj", "k_proj", "v_proj", "f_b_proj", "g_b_proj"):
        inv.linear(f"{p}.{proj}", dim if proj.endswith("_b_proj") else hidden, width, "col", i)
    inv.linear(f"{p}.b_proj", hidden, heads, "col", i)
    inv.linear(f"{p}.f_a_proj", hidden, dim, "rep", i)
    inv.linear(f"{p}.g_a_proj", hidden, dim, "rep", i)
    inv.add(f"{p}.q_conv1d+k_conv1d+v_conv1d", 3 * width, kernel, "col", "norm", i, fixed_bytes=FP32_BYTES)
    inv.add(f"{p}.A_log", heads, 1, "col", "norm", i, fixed_bytes=FP32_BYTES)
    inv.add(f"{p}.dt_bias", width, 1, "col", "norm", i, fixed_bytes=FP32_BYTES)
    inv.norm(f"{p}.o_norm", dim, i)
    inv.linear(f"{p}.o_proj", width, hidden, "row", i)
    return AttentionLayer("mamba", 0, 0, 0, state=((3 * width, kernel - 1, 0), (heads, dim * dim, 0)),
                          state_dtype_bytes=(0, FP32_BYTES), conv_tensors=1)


def kimi_linear(c: Config, inv: Inventory, family: str):
    """Kimi-Linear (vLLM's KimiLinearForCausalLM, kimi_k3/nvidia/model.py, config class configs/kimi_linear.py):
    Kimi Delta Attention on the layers linear_attn_config's kda_layers name (counted from 1), DeepSeek's latent
    attention (MLA, without rotary embeddings) on the others; a dense MLP on the first first_k_dense_replace
    layers, then routed experts with a float32 score-correction bias beside num_shared_experts shared ones
    (KimiMoE), the top-k weights renormalized where moe_renormalize says so (its default: true)."""
    named = [key for key in KIMI_K3_KEYS if c.get(key)]
    if named or (c.get("linear_attn_config") or {}).get("use_full_rank_gate"):
        raise PlannerError(f"config.json of {c.model_id} uses Kimi K3's {', '.join(named) or 'use_full_rank_gate'}; "
                           "the planner models Kimi-Linear's layout only")
    n, hidden = c.int("num_hidden_layers"), c.int("hidden_size")
    kda = Config(c.get("linear_attn_config") or {}, c.model_id).get("kda_layers")
    if not isinstance(kda, list) or not all(isinstance(k, int) and 1 <= k <= n for k in kda):
        raise PlannerError(f"config.json of {c.model_id} has linear_attn_config.kda_layers={kda!r}; expected the "
                           f"Kimi Delta Attention layers as numbers from 1 to {n} (fix the config.json)")
    first_dense, freq = c.int("first_k_dense_replace", 0, minimum=0), c.int("moe_layer_freq", 1)
    experts = c.get("num_experts") is not None
    attn = []
    for i in range(n):
        if i + 1 in kda:
            attn.append(kimi_delta_attention(c, inv, i, hidden))
        else:
            mla_attention(c, inv, i)
            attn.append(mla_layer(c))
        if experts and i >= first_dense and i % freq == 0:
            moe_block(c, inv, KIMI_EXPERTS, i, hidden)
        else:
            gated_mlp(inv, f"model.layers.{i}.mlp", hidden, c.int("intermediate_size"), i)
        layer_norms(inv, i, hidden)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    nope, rope, v = c.int("qk_nope_head_dim"), c.int("qk_rope_head_dim"), c.int("v_head_dim")
    extra = dict(is_mla=True, mla_kv_up_dim=nope + v, head_dim=nope + rope)
    if not experts:
        return attn, extra
    return attn, dict(extra, num_experts=c.int("num_experts"), experts_per_token=c.int("num_experts_per_token"),
                      moe_intermediate_size=c.int("moe_intermediate_size"),
                      moe_routing="renormalize" if c.get("moe_renormalize", True) is not False else "plain",
                      moe_min_intermediate_per_rank=KIMI_MIN_EXPERT_INTERMEDIATE_PER_RANK)


LFM2_EXPERTS = Experts("num_experts", block="feed_forward", router_bias_key="use_expert_bias")


def lfm2_mlp_width(c: Config) -> int:
    """The SwiGLU width vLLM builds for LFM2 (lfm2.py Lfm2MLP): with block_auto_adjust_ff_dim, two thirds of
    intermediate_size, times block_ffn_dim_multiplier, rounded up to a multiple of block_multiple_of."""
    width = c.int("intermediate_size")
    if c.get("block_auto_adjust_ff_dim", False) is not True:
        return width
    width = int(2 * width / 3)
    if c.get("block_ffn_dim_multiplier") is not None:
        width = int(float(c.get("block_ffn_dim_multiplier")) * width)
    multiple = c.int("block_multiple_of")
    return -(-width // multiple) * multiple


def lfm2(c: Config, inv: Inventory, family: str):
    """LFM2 (lfm2.py Lfm2ForCausalLM): a gated short convolution (ShortConv: in_proj to its gates and input, a
    depthwise convolution of conv_L_cache taps, out_proj, all biased where conv_bias says so) on the layers
    layer_types calls conv, GQA attention with q/k norms one head wide on the full_attention ones; each layer a
    SwiGLU MLP (lfm2_mlp_width) and two norms, the final norm embedding_norm. A convolution layer's state is its
    window: conv_dim channels x (conv_L_cache - 1) in the model dtype (MambaStateShapeCalculator.
    short_conv_state_shape). LFM2-MoE (lfm2_moe.py Lfm2MoeForCausalLM) convolves the hidden width itself, keeps
    intermediate_size's dense MLP on its first num_dense_layers and routed experts on the rest (a router in the
    model dtype, and a float32 score-correction bias where use_expert_bias says so), no shared expert."""
    n, hidden = c.int("num_hidden_layers"), c.int("hidden_size")
    kinds = layer_kinds(c, n, ("full_attention", "conv"), ["full_attention"] * n)
    _, heads, kv, hd = attention_dims(c)
    moe = family == "lfm2_moe"
    conv, taps, bias = hidden if moe else c.int("conv_dim"), c.int("conv_L_cache"), c.flag("conv_bias")
    mlp = c.int("intermediate_size") if moe else lfm2_mlp_width(c)
    dense = c.int("num_dense_layers", 0, minimum=0) if moe else n
    attn = []
    for i in range(n):
        if kinds[i] == "conv":
            p = f"model.layers.{i}.conv"
            inv.linear(f"{p}.in_proj", hidden, 3 * conv, "col", i, bias=bias)
            inv.add(f"{p}.conv", conv, taps + (1 if bias else 0), "col", "norm", i)
            inv.linear(f"{p}.out_proj", conv, hidden, "row", i, bias=bias)
            # (not widened for draft tokens: Lfm2ForCausalLM passes no num_spec to the calculator)
            attn.append(AttentionLayer("mamba", 0, 0, 0, state=((conv, taps - 1, 0),)))
        else:
            gqa_attention(inv, c, i, qkv_bias=False, o_bias=False, qk_norm=True)
            attn.append(AttentionLayer("full", kv, hd, hd))
        if i < dense:
            gated_mlp(inv, f"model.layers.{i}.feed_forward", hidden, mlp, i)
        else:
            moe_block(c, inv, LFM2_EXPERTS, i, hidden)
        layer_norms(inv, i, hidden)  # operator_norm and ffn_norm
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))  # its norm: embedding_norm
    if not moe:
        return attn, {"mlp_width": mlp}
    return attn, dict(num_experts=c.int("num_experts"), experts_per_token=c.int("num_experts_per_tok"),
                      moe_intermediate_size=c.int("moe_intermediate_size"), moe_routing=topk_routing(c, True))


def mamba1(inv: Inventory, i: int, hidden: int, c: Config, prefix: str) -> AttentionLayer:
    """A Mamba (v1) mixer as Jamba builds it (vllm/model_executor/layers/mamba/mamba_mixer.py MambaMixer with
    use_rms_norm): the gate-and-x input projection, a depthwise convolution over x, x_proj to dt, B and C (row-parallel)
    and dt_proj back (column-parallel, biased), A (float32) and D per channel, RMSNorms over dt, B and C, and the
    output projection. The state: the convolution window and [inner x state] (MambaStateShapeCalculator
    .mamba1_state_shape), in the model dtype."""
    inner, state = c.int("mamba_expand", 2) * hidden, c.int("mamba_d_state", 16)
    kernel, rank = c.int("mamba_d_conv", 4), c.get("mamba_dt_rank", "auto")
    rank = -(-hidden // 16) if rank == "auto" else c.int("mamba_dt_rank")  # JambaConfig: ceil(hidden / 16)
    proj_bias, conv_bias = c.flag("mamba_proj_bias"), c.get("mamba_conv_bias", True) is not False
    p = f"model.layers.{i}.{prefix}"
    # MambaMixer builds its linears without the quant_config: a quantized checkpoint keeps them in the model dtype
    inv.linear(f"{p}.in_proj", hidden, 2 * inner, "col", i, bias=proj_bias, kind="unquantized")
    inv.add(f"{p}.conv1d", inner, kernel + (1 if conv_bias else 0), "col", "norm", i)
    inv.linear(f"{p}.x_proj", inner, rank + 2 * state, "row", i, kind="unquantized")
    inv.linear(f"{p}.dt_proj", rank, inner, "col", i, bias=True, kind="unquantized")
    inv.add(f"{p}.A", inner, state, "col", "norm", i, fixed_bytes=FP32_BYTES)
    inv.add(f"{p}.D", inner, 1, "col", "norm", i)
    inv.add(f"{p}.dt_layernorm+b_layernorm+c_layernorm", rank + 2 * state, 1, "rep", "norm", i)
    inv.linear(f"{p}.out_proj", inner, hidden, "row", i, bias=proj_bias, kind="unquantized")
    # (mamba1_state_shape takes no draft tokens: the window is not widened for speculative decoding)
    return AttentionLayer("mamba", 0, 0, 0, state=((inner, kernel - 1, 0), (inner, state, 0)))


def jamba(c: Config, inv: Inventory, family: str):
    """Jamba (vllm/model_executor/models/jamba.py): an attention layer every attn_layer_period layers from
    attn_layer_offset (GQA without biases or positional encoding), Mamba layers elsewhere; routed experts (a router
    in the model dtype, top-k weights not renormalized) every expert_layer_period layers from expert_layer_offset, a
    gated MLP elsewhere; RMSNorms before each (JambaConfig's layers_block_type and layers_num_experts)."""
    n, hidden = c.int("num_hidden_layers"), c.int("hidden_size")
    _, _, kv, hd = attention_dims(c)
    attn_period, attn_offset = c.int("attn_layer_period", 8), c.int("attn_layer_offset", 4, minimum=0)
    expert_period, expert_offset = c.int("expert_layer_period", 2), c.int("expert_layer_offset", 1, minimum=0)
    experts, topk, inter = c.int("num_experts", 16), c.int("num_experts_per_tok", 2), c.int("intermediate_size")
    attn = []
    for i in range(n):
        if i % attn_period == attn_offset:
            gqa_attention(inv, c, i, qkv_bias=False, o_bias=False, qk_norm=False)
            attn.append(AttentionLayer("full", kv, hd, hd))
        else:
            attn.append(mamba1(inv, i, hidden, c, "mamba"))
        p = f"model.layers.{i}.feed_forward"
        if experts > 1 and i % expert_period == expert_offset:
            inv.add(f"{p}.router", experts, hidden, "rep", "router", i)
            routed_experts(inv, p, hidden, inter, i, experts, topk)
        else:
            gated_mlp(inv, p, hidden, inter, i)
        inv.norm(f"model.layers.{i}.input_layernorm", hidden, i)
        inv.norm(f"model.layers.{i}.pre_ff_layernorm", hidden, i)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    extra = dict(num_experts=experts, experts_per_token=topk, moe_intermediate_size=inter,
                 moe_routing="plain") if experts > 1 else {}
    return attn, extra
