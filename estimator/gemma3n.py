"""gemma-3n (vllm/model_executor/models/gemma3n.py, gemma3n_mm.py): Gemma's sliding and global attention with layers
that share an earlier layer's KV cache, per-layer embeddings, AltUp's parallel streams, the LAuReL low-rank
residual, an MLP width per layer; and transformers' USM audio encoder. Its image tower is timm's MobileNet-V5,
whose parameters the planner cannot count: plans limit images to 0 per prompt, which leaves that tower out."""

from __future__ import annotations

from estimator.errors import PlannerError
from estimator.gemma4 import first_shared_layer, layer_types
from estimator.inventory import (
    AttentionLayer,
    Config,
    Inventory,
    add_embeddings,
    attention_dims,
    gated_mlp,
    language_config,
    text_config,
    tied_embeddings,
)

GEMMA3N_NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                 "post_feedforward_layernorm", "post_per_layer_input_norm", "altup.router_norm",
                 "laurel.post_laurel_norm")
FULL_EVERY = 5  # Gemma3nTextConfig's default layer_types: one global layer after every four sliding ones


def widths(c: Config, n: int) -> list[int]:
    """The MLP's width per layer: one for all, or a list with one per layer."""
    value = c.get("intermediate_size")
    if isinstance(value, list):
        if len(value) != n:
            raise PlannerError(f"config.json of {c.model_id} lists {len(value)} intermediate sizes for {n} layers "
                               "(fix the config.json)")
        return value
    return [c.int("intermediate_size")] * n


def gemma3n_text(c: Config, inv: Inventory, family: str):
    n = c.int("num_hidden_layers")
    hidden, heads, kv, hd = attention_dims(c)
    kinds = layer_types(c, n, FULL_EVERY, last_full=False)
    first_shared = first_shared_layer(c, n)
    streams, rank, ple = c.int("altup_num_inputs"), c.int("laurel_rank"), c.int("hidden_size_per_layer_input")
    window, bias = c.int("sliding_window"), c.flag("attention_bias")
    attn = []
    for i, (kind, inter) in enumerate(zip(kinds, widths(c, n), strict=True)):
        p = f"model.layers.{i}"
        shared = i >= first_shared
        inv.linear(f"{p}.self_attn.q_proj", hidden, heads * hd, "col", i, bias=bias)
        inv.linear(f"{p}.self_attn.o_proj", heads * hd, hidden, "row", i, bias=bias)
        inv.norm(f"{p}.self_attn.q_norm", hd, i)
        if not shared:
            inv.linear(f"{p}.self_attn.k_proj", hidden, kv * hd, "kv", i, bias=bias)
            inv.linear(f"{p}.self_attn.v_proj", hidden, kv * hd, "kv", i, bias=bias)
            inv.norm(f"{p}.self_attn.k_norm", hd, i)
        sliding = kind == "sliding_attention"
        attn.append(AttentionLayer("sliding" if sliding else "full", kv, hd, hd, window if sliding else None,
                                   shares_kv=shared))
        gated_mlp(inv, f"{p}.mlp", hidden, inter, i)
        # AltUp: a router over the streams and the coefficients that predict and correct them
        inv.linear(f"{p}.altup.modality_router", hidden, streams, "rep", i)
        inv.linear(f"{p}.altup.correction_coefs+prediction_coefs", streams, streams + streams * streams, "rep", i)
        inv.add(f"{p}.altup.correct_output_scale", hidden, 1, "rep", "norm", i)
        inv.linear(f"{p}.laurel.linear_left", hidden, rank, "col", i)
        inv.linear(f"{p}.laurel.linear_right", rank, hidden, "row", i)
        inv.linear(f"{p}.per_layer_input_gate", hidden, ple, "rep", i)
        inv.linear(f"{p}.per_layer_projection", ple, hidden, "rep", i)
        for name in GEMMA3N_NORMS:
            inv.norm(f"{p}.{name}", hidden, i)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family), every_stage=True)
    inv.add("model.embed_tokens_per_layer", c.int("vocab_size_per_layer_input"), ple * n, "vocab", "embedding",
            place="every")
    inv.add("model.per_layer_model_projection", ple * n, hidden, "col", "linear", place="every")
    inv.norm("model.per_layer_projection_norm", ple, place="every")
    # the extra streams' projections in (first stage) and out (last stage), gathered column-parallel linears
    inv.add("model.altup_projections", (streams - 1) * hidden, hidden, "col", "linear", place="every")
    inv.add("model.altup_unembed_projections", (streams - 1) * hidden, hidden, "col", "linear", place="every")
    return attn, {}


def gemma3n_causal(c: Config, inv: Inventory, family: str):
    """Gemma3nForCausalLM: the text model alone."""
    return gemma3n_text(Config(language_config(c, "optional"), c.model_id), inv, family)


def gemma3n_mm(c: Config, inv: Inventory, family: str):
    """Gemma3nForConditionalGeneration: the text model, the audio encoder with its embedder; the image tower is
    not sized (unsized_modality)."""
    text = Config(text_config(c), c.model_id)
    attn, extra = gemma3n_text(text, inv, family)
    _audio(inv, Config(c.get("audio_config") or {}, c.model_id), text.int("hidden_size"))
    return attn, dict(extra, multimodal=True, tower_modalities=("audio",), unsized_modality="image")


def _audio(inv: Inventory, a: Config, text_hidden: int) -> None:
    """transformers' Gemma3nAudioEncoder (modeling_gemma3n.py; vLLM builds it with AutoModel.from_config) and vLLM's
    Gemma3nMultimodalEmbedder: two convolutions over (time, mel) with their norms and an input projection of what
    they leave of the mel axis; conformer layers of two feed-forward halves, attention with a relative-position
    projection and a per-dimension scale, a light convolution; then a soft-token vocabulary and a projection."""
    h, heads, kernel = a.int("hidden_size"), a.int("conf_num_attention_heads"), a.int("conf_conv_kernel_size")
    channels = a.get("sscp_conv_channel_size")
    kernels, strides = a.get("sscp_conv_kernel_size"), a.get("sscp_conv_stride_size")
    shapes = (channels, kernels, strides)
    if not (isinstance(channels, list) and len(channels) == 2 and all(isinstance(x, list) and len(x) == 2
                                                                      for x in (kernels or []) + (strides or []))
            and len(kernels) == 2 and len(strides) == 2):
        raise PlannerError(f"config.json of {a.model_id} has audio_config sscp_conv sizes {shapes!r}; expected two "
                           "channel counts and two [height, width] kernels and strides (fix the config.json)")
    mel, previous = a.int("input_feat_size"), 1
    for out, (kh, kw), (_, sw) in zip(channels, kernels, strides, strict=True):
        inv.add(f"audio_tower.subsample_conv_projection.conv.{out}", out, previous * kh * kw + 1, "rep", "vision",
                place="first")  # the kernel and its norm
        mel, previous = (mel + 2 - kw) // sw + 1, out  # one column of padding each side of the mel axis
    inv.add("audio_tower.subsample_conv_projection.input_proj_linear", h, previous * mel, "rep", "vision",
            place="first")
    for i in range(a.int("conf_num_hidden_layers")):
        b = f"audio_tower.conformer.{i}"
        inv.add(f"{b}.ffw_layer_start+end", 2 * 2 * 4 * h, h, "rep", "vision", place="first")
        inv.add(f"{b}.attention.q+k+v+post+pos_proj", 5 * h, h, "rep", "vision", place="first")
        inv.add(f"{b}.attention.attn.per_dim_scale", h // heads, 1, "rep", "vision", place="first")
        inv.add(f"{b}.lconv1d.linear_start+linear_end", 3 * h, h, "rep", "vision", place="first")
        inv.add(f"{b}.lconv1d.depthwise_conv1d", h, kernel, "rep", "vision", place="first")
        inv.add(f"{b}.norms", 9 * h, 1, "rep", "vision", place="first")  # 2 + 2 feed-forward, 2 attention, 2 conv, 1
    inv.add("embed_audio.embedding", a.int("vocab_size"), h, "vocab", "vision", place="first")
    inv.add("embed_audio.hard_embedding_norm+soft_embedding_norm", 2 * h, 1, "rep", "vision", place="first")
    inv.add("embed_audio.embedding_projection", text_hidden, h, "row", "vision", place="first")
