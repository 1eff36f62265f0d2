"""Gemma 4 (vllm/model_executor/models/gemma4.py, gemma4_mm.py): sliding and global attention layers of different
head sizes, global layers whose values are their keys, layers that share an earlier layer's KV cache, per-layer
embeddings, an MoE block beside the dense MLP, and transformers' own vision and audio towers."""

from __future__ import annotations

from estimator.errors import PlannerError
from estimator.inventory import (
    AttentionLayer,
    Config,
    Inventory,
    add_embeddings,
    attention_dims,
    gated_mlp,
    language_config,
    routed_experts,
    text_config,
    tied_embeddings,
)

# Gemma4TextConfig's defaults where config.json leaves a key out (transformers 5.19 configuration_gemma4.py):
# a global (full-attention) layer's head size, and one full layer after every five sliding ones.
DEFAULT_GLOBAL_HEAD_DIM = 512
SLIDING_WINDOW_PATTERN = 6
GEMMA4_NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                "post_feedforward_layernorm")
MOE_NORMS = ("post_feedforward_layernorm_1", "post_feedforward_layernorm_2", "pre_feedforward_layernorm_2")


def layer_types(c: Config, n: int, full_every: int = SLIDING_WINDOW_PATTERN, last_full: bool = True) -> list[str]:
    """sliding_attention or full_attention per layer: config.json's layer_types, else one full layer every
    ``full_every``; Gemma 4 makes the last layer full whatever they say (Gemma4TextConfig), gemma-3n does not."""
    kinds = list(c.get("layer_types") or ["sliding_attention" if (i + 1) % full_every else "full_attention"
                                          for i in range(n)])
    if len(kinds) != n or set(kinds) - {"sliding_attention", "full_attention"}:
        raise PlannerError(f"config.json of {c.model_id} has layer_types {sorted(set(kinds))} for {n} layers; "
                           "expected sliding_attention or full_attention per layer (fix the config.json)")
    if last_full:
        kinds[-1] = "full_attention"
    return kinds


def first_shared_layer(c: Config, n: int) -> int:
    """The first of the last num_kv_shared_layers layers, which read an earlier layer's KV cache."""
    first = n - c.int("num_kv_shared_layers", 0, minimum=0)
    if first < 1:
        raise PlannerError(f"config.json of {c.model_id} shares the KV cache of all {n} layers "
                           f"(num_kv_shared_layers={n - first}); fix the config.json")
    return first


def global_dims(c: Config, kv: int) -> tuple[int, int]:
    """A full-attention layer's (head size, KV heads): per_layer_config when config.json carries it, else
    global_head_dim and, where values are keys (attention_k_eq_v), num_global_key_value_heads."""
    per_layer = c.get("per_layer_config")
    if isinstance(per_layer, dict) and per_layer:
        first = next(iter(per_layer.values()))
        if not isinstance(first, dict):
            raise PlannerError(f"config.json of {c.model_id} has per_layer_config={per_layer!r}; expected an object "
                               "per layer (fix the config.json)")
        layer = Config(first, c.model_id)
        return layer.int("head_dim"), layer.int("num_key_value_heads", kv)
    head = c.int("global_head_dim", DEFAULT_GLOBAL_HEAD_DIM)
    heads = c.int("num_global_key_value_heads", kv) if c.flag("attention_k_eq_v") else kv
    return head, heads


def gemma4_text(c: Config, inv: Inventory, family: str):
    n = c.int("num_hidden_layers")
    hidden, heads, kv, head = attention_dims(c)
    kinds = layer_types(c, n)
    global_head, global_kv = global_dims(c, kv)
    if heads % global_kv:
        raise PlannerError(f"config.json of {c.model_id} has {heads} attention heads and {global_kv} KV heads on its "
                           "global layers; the heads must be a multiple of the KV heads (fix the config.json)")
    first_shared = first_shared_layer(c, n)
    # a shared layer reads the last earlier layer of its own type (gemma4.py Gemma4Attention)
    orphans = sorted(set(kinds[first_shared:]) - set(kinds[:first_shared]))
    if orphans:
        raise PlannerError(f"config.json of {c.model_id} shares the KV cache of {orphans[0]} layers from layer "
                           f"{first_shared} on, but no earlier layer is of that type (fix num_kv_shared_layers)")
    k_eq_v = c.flag("attention_k_eq_v")
    window, bias = c.int("sliding_window"), c.flag("attention_bias")
    inter, double_wide = c.int("intermediate_size"), c.flag("use_double_wide_mlp")
    ple = c.int("hidden_size_per_layer_input", 0, minimum=0)
    extra = {}  # the MoE block beside the dense MLP, where config.json names experts (gemma4.py enable_moe_block)
    if c.get("num_experts") is not None:
        extra = dict(num_experts=c.int("num_experts"), experts_per_token=c.int("top_k_experts"),
                     moe_intermediate_size=c.int("moe_intermediate_size", c.get("expert_intermediate_size")),
                     moe_routing="custom",  # Gemma4Router.routing_function
                     moe_activation="gelu")  # gemma4.py: the experts run activation="gelu_tanh"
    norms = GEMMA4_NORMS + (MOE_NORMS if extra else ())
    attn = []
    for i, kind in enumerate(kinds):
        full = kind == "full_attention"
        hd, kvh = (global_head, global_kv) if full else (head, kv)
        p = f"model.layers.{i}.self_attn"
        inv.linear(f"{p}.q_proj", hidden, heads * hd, "col", i, bias=bias)
        inv.linear(f"{p}.o_proj", heads * hd, hidden, "row", i, bias=bias)
        inv.norm(f"{p}.q_norm", hd, i)
        shared = i >= first_shared
        if not shared:
            inv.linear(f"{p}.k_proj", hidden, kvh * hd, "kv", i, bias=bias)
            # vLLM's QKVParallelLinear holds a V slot even where the checkpoint ships none (values are keys)
            inv.linear(f"{p}.v_proj", hidden, kvh * hd, "kv", i, bias=bias, in_checkpoint=not (full and k_eq_v))
            inv.norm(f"{p}.k_norm", hd, i)
        attn.append(AttentionLayer("full" if full else "sliding", kvh, hd, hd, None if full else window,
                                   shares_kv=shared))
        gated_mlp(inv, f"model.layers.{i}.mlp", hidden, inter * (2 if shared and double_wide else 1), i)
        for name in norms:
            inv.norm(f"model.layers.{i}.{name}", hidden, i)
        if extra:
            count = extra["num_experts"]
            inv.add(f"model.layers.{i}.router.proj", count, hidden, "rep", "router", i)
            inv.add(f"model.layers.{i}.router.scale+per_expert_scale", hidden + count, 1, "rep", "norm", i)
            routed_experts(inv, f"model.layers.{i}", hidden, extra["moe_intermediate_size"], i, count,
                           extra["experts_per_token"])
        if ple:
            inv.linear(f"model.layers.{i}.per_layer_input_gate", hidden, ple, "rep", i)
            inv.linear(f"model.layers.{i}.per_layer_projection", ple, hidden, "rep", i)
            inv.norm(f"model.layers.{i}.post_per_layer_input_norm", hidden, i)
    vocab = c.int("vocab_size")
    add_embeddings(inv, vocab, hidden, tied_embeddings(c.raw, family), every_stage=True)
    if ple:  # per-layer embeddings: a vocabulary table as wide as all layers' inputs, and their projection
        inv.add("model.embed_tokens_per_layer", c.int("vocab_size_per_layer_input", vocab), ple * n, "vocab",
                "embedding", place="every")
        inv.add("model.per_layer_model_projection", ple * n, hidden, "col", "linear", place="every")
        inv.norm("model.per_layer_projection_norm", ple, place="every")
    return attn, extra


def gemma4_causal(c: Config, inv: Inventory, family: str):
    """Gemma4ForCausalLM: the text model alone (its keys at the top level or in text_config, gemma4.py
    _get_text_config)."""
    return gemma4_text(Config(language_config(c, "optional"), c.model_id), inv, family)


def gemma4_mm(c: Config, inv: Inventory, family: str):
    """Gemma4ForConditionalGeneration: the text model, transformers' Gemma4VisionModel and (where config.json has
    audio_config) Gemma4AudioModel, each with a projection into the text width, replicated on every GPU. The
    towers' profiling pass is not modelled (the plan says so)."""
    text = Config(text_config(c), c.model_id)
    attn, extra = gemma4_text(text, inv, family)
    text_hidden = text.int("hidden_size")
    v = Config(c.get("vision_config") or {}, c.model_id)
    _vision_tower(inv, v, text_hidden)
    modalities = ("image", "video")
    if isinstance(c.get("audio_config"), dict):
        _audio_tower(inv, Config(c.get("audio_config"), c.model_id), text_hidden)
        modalities += ("audio",)
    return attn, dict(extra, multimodal=True, tower_modalities=modalities)


def _tower(inv: Inventory, name: str, rows: int, cols: int = 1) -> None:
    inv.add(name, rows, cols, "rep", "vision", place="first")


def _vision_tower(inv: Inventory, v: Config, text_hidden: int) -> None:
    """Gemma4VisionModel (transformers modeling_gemma4.py): a patch projection and a 2-D position table, blocks
    of q/k/v/o with q and k norms, a gated MLP and four RMSNorms; then Gemma4MultimodalEmbedder's projection."""
    h, inter, heads = v.int("hidden_size"), v.int("intermediate_size"), v.int("num_attention_heads")
    kv, hd, patch = v.int("num_key_value_heads", heads), v.int("head_dim", h // heads), v.int("patch_size")
    p = "vision_tower"
    _tower(inv, f"{p}.patch_embedder.input_proj", h, 3 * patch * patch)
    _tower(inv, f"{p}.patch_embedder.position_embedding_table", 2 * v.int("position_embedding_size"), h)
    for i in range(v.int("num_hidden_layers")):
        b = f"{p}.encoder.layers.{i}"
        _tower(inv, f"{b}.self_attn.q_proj+o_proj", 2 * heads * hd, h)
        _tower(inv, f"{b}.self_attn.k_proj+v_proj", 2 * kv * hd, h)
        _tower(inv, f"{b}.self_attn.q_norm+k_norm", 2 * hd)
        _tower(inv, f"{b}.mlp.gate_proj+up_proj+down_proj", 3 * inter, h)
        _tower(inv, f"{b}.norms", 4 * h)
    _tower(inv, "embed_vision.embedding_projection", text_hidden, h)


def _audio_tower(inv: Inventory, a: Config, text_hidden: int) -> None:
    """Gemma4AudioModel (transformers modeling_gemma4.py): two 3x3 convolutions with LayerNorms, an input
    projection, conformer layers (two feed-forward halves, attention with a relative-position key projection and
    per-dimension scale, a light convolution), an output projection with a bias; then the embedder's projection."""
    h, heads, kernel = a.int("hidden_size"), a.int("num_attention_heads"), a.int("conv_kernel_size", 5)
    channels = a.get("subsampling_conv_channels") or [128, 32]
    if not (isinstance(channels, list) and len(channels) == 2 and all(isinstance(x, int) and x > 0 for x in channels)):
        raise PlannerError(f"config.json of {a.model_id} has audio_config.subsampling_conv_channels={channels!r}; "
                           "expected two "
                           "positive integers (fix the config.json)")
    first, second = channels
    out = a.int("output_proj_dims", h)
    p = "audio_tower"
    _tower(inv, f"{p}.subsample_conv_projection.layer0", first * 9 + first)  # conv (1 channel in) and its norm
    _tower(inv, f"{p}.subsample_conv_projection.layer1", second * first * 9 + second)
    _tower(inv, f"{p}.subsample_conv_projection.input_proj_linear", h, first // 4 * second)
    for i in range(a.int("num_hidden_layers")):
        b = f"{p}.layers.{i}"
        _tower(inv, f"{b}.feed_forward1+2", 2 * 2 * 4 * h, h)  # two halves of hidden -> 4 hidden -> hidden
        _tower(inv, f"{b}.self_attn.q+k+v+post+relative_k", 5 * h, h)
        _tower(inv, f"{b}.self_attn.per_dim_scale", h // heads)
        _tower(inv, f"{b}.lconv1d.linear_start+linear_end", 3 * h, h)
        _tower(inv, f"{b}.lconv1d.depthwise_conv1d", h, kernel)
        _tower(inv, f"{b}.norms", 4 * h + 2 * h + 3 * h)  # feed-forward, light-convolution and layer norms
    _tower(inv, f"{p}.output_proj", out, h + 1)
    _tower(inv, "embed_audio.embedding_projection", text_hidden, out)
