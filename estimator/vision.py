"""Multimodal checkpoints: the language model and its vision tower (SigLIP, Llama 4, Qwen-VL, GLM-4V, Pixtral,
MoonViT; LLaVA's CLIP in llava.py)."""

from __future__ import annotations

import math

from estimator.decoders import decoder, deepseek, llama4_text
from estimator.errors import PlannerError
from estimator.hybrid import qwen3_next
from estimator.inventory import Config, Inventory, VisionItem, VisionProfile, language_config, text_config

# The rotary table of a Qwen-VL or GLM-4V tower: get_rope(head_size=head_dim, max_position=8192,
# partial_rotary_factor 0.5) (qwen2_vl.py, qwen2_5_vl.py, qwen3_vl.py, glm4_1v.py), in the model dtype
TOWER_ROPE_POSITIONS = 8192
TOWER_ROPE_FRACTION = 0.5
COMPLEX64_BYTES = 8  # Llama 4's vision table is complex (mllama4.py: get_rope(..., dtype=torch.complex64))


def tower_rope(head_dim: int) -> tuple[tuple[int, None], ...]:
    """The Qwen-VL and GLM-4V towers' rotary table: 8192 positions of half a head."""
    return ((TOWER_ROPE_POSITIONS * int(head_dim * TOWER_ROPE_FRACTION), None),)


def vision_encoder(inv: Inventory, v: Config, prefix: str, class_token: bool, conv_bias: bool, patch_shard: str,
                   layers: int | None = None):
    """A ViT encoder (SigLIP, CLIP, Llama 4): patch embedding, positions, pre-LN blocks with biased linears, the first
    ``layers`` of them (all by default). SigLIP's and CLIP's patch embedding is a convolution (replicated); Llama
    4's unfolds patches into a column-parallel linear (mllama4.py Llama4UnfoldConvolution)."""
    hidden, inter = v.int("hidden_size"), v.int("intermediate_size")
    layers = v.int("num_hidden_layers") if layers is None else layers
    patch, image, chans = v.int("patch_size"), v.int("image_size"), v.int("num_channels", 3)
    patches = (image // patch) ** 2 + (1 if class_token else 0)
    inv.add(f"{prefix}.patch_embedding", hidden, chans * patch * patch + (1 if conv_bias else 0),
            patch_shard, "vision", place="first")
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


def built_layers(c: Config, layers: int, default: int | None = None) -> int:
    """The tower layers vLLM builds: up to the deepest vision_feature_layer (vLLM's get_layer_index, as llava.py's
    _get_num_hidden_layers and mistral3.py use it); ``default`` where config.json leaves the key out."""
    feature = c.get("vision_feature_layer", default)
    deepest = max(feature) if isinstance(feature, list) and feature else feature
    if not isinstance(deepest, int) or isinstance(deepest, bool) or not -layers <= deepest <= layers:
        raise PlannerError(f"config.json of {c.model_id} has vision_feature_layer={feature!r}; expected an integer or a "
                           f"list of integers, layer indices within its tower's {layers} layers (fix the config.json)")
    return deepest + layers + 1 if deepest < 0 else deepest


def text_and_vision(c: Config, inv: Inventory, text_builder, family: str, tower: str, class_token: bool,
                     conv_bias: bool, patch_shard: str):
    """A multimodal checkpoint's language model (from text_config) and its ViT tower (from vision_config)."""
    text = Config(text_config(c), c.model_id)
    attn, extra = text_builder(text, inv, family)
    v = Config(c.get("vision_config") or {}, c.model_id)
    vh = vision_encoder(inv, v, tower, class_token=class_token, conv_bias=conv_bias, patch_shard=patch_shard)
    return text, v, vh, attn, dict(extra, multimodal=True, tower_modalities=("image",))


def gemma3_mm(c: Config, inv: Inventory, family: str):
    text, _, vh, attn, extra = text_and_vision(c, inv, decoder, "gemma3", "vision_tower.vision_model",
                                                class_token=False, conv_bias=True, patch_shard="rep")
    inv.add("vision_tower.vision_model.post_layernorm", 2 * vh, 1, "rep", "vision", place="first")
    inv.add("multi_modal_projector.mm_input_projection_weight", text.int("hidden_size"), vh, "rep", "vision",
            place="first")
    inv.add("multi_modal_projector.mm_soft_emb_norm", vh, 1, "rep", "vision", place="first")
    # One image is the tower's native square (pan-and-scan, which adds crops, is off by default in vLLM), pooled
    # to mm_tokens_per_image placeholders (gemma3_mm.py get_num_image_tokens).
    v = Config(c.get("vision_config") or {}, c.model_id)
    side = v.int("image_size") // v.int("patch_size")
    # SigLIP's block at its MLP (siglip.py SiglipEncoderLayer, SiglipMLP) holds the residual stream (added in
    # place) and the norm output, then fc1's output and its activation.
    image = VisionItem(tokens=c.int("mm_tokens_per_image", 256), patches=side * side,
                       pixels=v.int("num_channels", 3) * v.int("image_size") ** 2)
    profile = VisionProfile(image, hidden=vh, intermediate=v.int("intermediate_size"), hidden_rows=2, mlp_rows=2)
    return attn, dict(extra, vision=profile)


def llama4_mm(c: Config, inv: Inventory, family: str):
    text, v, vh, attn, extra = text_and_vision(c, inv, llama4_text, "llama4", "vision_model", class_token=True,
                                                conv_bias=False, patch_shard="col")
    inv.add("vision_model.layernorm_pre+post", 4 * vh, 1, "rep", "vision", place="first")
    ratio = float(v.get("pixel_shuffle_ratio", 0.5))
    shuffled = int(vh / (ratio * ratio))
    proj_in, proj_out = v.int("projector_input_dim"), v.int("projector_output_dim")
    inv.add("vision_model.vision_adapter.mlp.fc1", proj_in, shuffled, "col", "vision", place="first")
    inv.add("vision_model.vision_adapter.mlp.fc2", proj_out, proj_in, "row", "vision", place="first")
    inv.add("multi_modal_projector.linear_1", text.int("hidden_size"), v.int("vision_output_dim"), "col", "vision",
            place="first")  # a column-parallel linear (mllama4.py Llama4MultiModalProjector)
    # its rotary table: one complex row per patch and the class token, half a head wide (mllama4.py)
    patches = (v.int("image_size") // v.int("patch_size")) ** 2 + 1
    rope = ((patches * int(vh // v.int("num_attention_heads") * TOWER_ROPE_FRACTION), COMPLEX64_BYTES),)
    return attn, dict(extra, vision=_llama4_profile(c, v, ratio), tower_rope_tables=rope)


# transformers' Llama4ImageProcessor: at most this many tiles of one image (max_patches), where the processor's
# preprocessor_config.json does not say
LLAMA4_MAX_TILES = 16


def _llama4_profile(c: Config, v: Config, ratio: float) -> VisionProfile:
    """vLLM profiles Llama 4's tower with the image of most features (mllama4.py
    get_image_size_with_most_features): max_patches tiles stacked 16:1, which the processor keeps as that many
    image_size tiles plus the global thumbnail every multi-tile image gets. Each tile runs image_size / patch_size
    squared patches and a class token through the ViT and leaves (patches x ratio^2) placeholders after the pixel
    shuffle (get_patch_per_chunk). The ViT block at its MLP (Llama4VisionEncoderLayer) holds the residual and the
    norm output, then fc1's output and its GELU."""
    processor = c.preprocessor.get("image") or {}
    tiles = processor.get("max_patches", LLAMA4_MAX_TILES)
    if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles <= 0:
        raise PlannerError(f"preprocessor_config.json of {c.model_id} has max_patches={tiles!r}; expected a "
                           "positive integer (fix the preprocessor_config.json)")
    chunks = tiles + 1 if tiles > 1 else 1
    size, patch = v.int("image_size"), v.int("patch_size")
    if size % patch:  # vLLM asserts it (get_patch_per_chunk)
        raise PlannerError(f"config.json of {c.model_id} has a vision image_size of {size}, not a multiple of its "
                           f"patch_size {patch} (fix the config.json)")
    side = size // patch
    per_chunk = side * side // int(round(1 / (ratio * ratio)))
    image = VisionItem(tokens=chunks * per_chunk, patches=chunks * (side * side + 1),
                       pixels=chunks * v.int("num_channels", 3) * size ** 2)
    return VisionProfile(image, hidden=v.int("hidden_size"), intermediate=v.int("intermediate_size"), hidden_rows=2,
                         mlp_rows=2)


def _qwen_tower_sizes(v: Config, text_hidden: int, tower: str) -> tuple[int, int, int]:
    """(width, MLP width, output width) of a Qwen-VL tower ("qwen2_vl", "qwen2_5_vl" or "qwen3_vl"). Qwen2-VL
    names its width embed_dim, its MLP by mlp_ratio, and its output (the text width) hidden_size (qwen2_vl.py
    Qwen2VisionTransformer); the later towers name their width hidden_size and their output out_hidden_size."""
    if tower == "qwen2_vl":
        width = v.int("embed_dim")
        ratio = v.get("mlp_ratio", 4)  # a finite number: architecture.check_kinds has refused any other kind
        if ratio <= 0:
            raise PlannerError(f"config.json of {v.model_id} has vision_config.mlp_ratio={ratio!r}; expected a "
                               "positive number (fix the config.json)")
        return width, int(width * ratio), v.int("hidden_size", text_hidden)
    return v.int("hidden_size"), v.int("intermediate_size"), v.int("out_hidden_size", text_hidden)


def _qwen_vision(inv: Inventory, v: Config, text_hidden: int, tower: str) -> None:
    """The Qwen-VL vision towers (vllm/model_executor/models/qwen2_vl.py, qwen2_5_vl.py, qwen3_vl.py): a 3-D patch
    convolution, pre-norm blocks with a fused biased QKV and a biased MLP (QuickGELU fc1/fc2 in Qwen2-VL, gated
    SiLU in Qwen2.5-VL, GELU fc1/fc2 in Qwen3-VL), then a merger MLP over 2x2 merged patches into the text width;
    Qwen3-VL adds learned positions and a 'deepstack' merger per tapped block. Linear layers split over TP as
    vLLM's default mm_encoder_tp_mode 'weights' does."""
    h, inter, out = _qwen_tower_sizes(v, text_hidden, tower)
    depth, patch, temporal = v.int("depth"), v.int("patch_size"), v.int("temporal_patch_size", 2)
    chans = v.int("in_channels", v.get("in_chans", 3))
    merged = h * v.int("spatial_merge_size", 2) ** 2
    qwen3 = tower == "qwen3_vl"
    norm = h if tower == "qwen2_5_vl" else 2 * h  # RMSNorm in Qwen2.5-VL; LayerNorm (weight, bias) in the others
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
        if tower == "qwen2_5_vl":
            inv.add(f"{b}.mlp.gate_up_proj", 2 * inter, h + 1, "col", "vision", place="first")
        else:
            inv.add(f"{b}.mlp.fc1", inter, h + 1, "col", "vision", place="first")
        inv.add(f"{b}.mlp.down", h, inter, "row", "vision", place="first")
        inv.add(f"{b}.biases", 2 * h, 1, "rep", "vision", place="first")  # attn.proj and the MLP's output
    mergers = [("merger", norm)] + [(f"deepstack_merger_list.{k}", 2 * merged)
                                    for k in range(len(v.get("deepstack_visual_indexes") or []) if qwen3 else 0)]
    for name, norm_size in mergers:
        inv.add(f"{p}.{name}.norm", norm_size, 1, "rep", "vision", place="first")
        inv.add(f"{p}.{name}.fc1", merged, merged + 1, "col", "vision", place="first")
        inv.add(f"{p}.{name}.fc2", out, merged, "row", "vision", place="first")
        inv.add(f"{p}.{name}.fc2.bias", out, 1, "rep", "vision", place="first")


# vLLM's cap on a dummy video's frames (qwen2_vl.py _MAX_FRAMES_PER_VIDEO), and the aspect ratio the Qwen-VL
# processors accept (transformers' smart_resize MAX_RATIO, which get_image_size_with_most_features keeps within).
MAX_FRAMES_PER_VIDEO = 14
MAX_ASPECT_RATIO = 200


def processor_max_pixels(processor: dict | None, model_id: str, name: str) -> int | None:
    """The most pixels a Qwen-VL processor keeps of one image (or one frame pair): max_pixels, else
    size.longest_edge (transformers' Qwen2VLImageProcessor lets max_pixels override size); None when the processor
    config names neither."""
    if not isinstance(processor, dict):
        return None
    value = processor.get("max_pixels")
    if value is None and isinstance(processor.get("size"), dict):
        value = processor["size"].get("longest_edge")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PlannerError(f"{name} of {model_id} has a largest size of {value!r} pixels; expected a positive "
                           f"integer (fix the {name})")
    return value


def most_features(max_pixels: int, unit: int) -> int:
    """Placeholders of the image with the most features within max_pixels (qwen2_vl.py
    get_image_size_with_most_features): the largest count of unit x unit squares whose closest factor pair keeps
    the aspect ratio within MAX_ASPECT_RATIO; the processor keeps that image as it is."""
    for tokens in range(max_pixels // (unit * unit), 0, -1):
        rows = next(d for d in range(math.isqrt(tokens), 0, -1) if tokens % d == 0)
        if tokens // rows / rows <= MAX_ASPECT_RATIO:
            return tokens
    return 0


def _qwen_profile(c: Config, v: Config, tower: str, text_hidden: int) -> VisionProfile | None:
    """The items vLLM profiles a Qwen-VL tower with. Qwen2-VL and Qwen2.5-VL (which shares Qwen2-VL's processing
    info): the largest image, and a video of it repeated in
    as many 2-frame slices as max_model_len holds, at most 14 frames. Qwen3-VL: the largest image, and a 2-frame
    video at the video processor's pixel limit (qwen3_vl.py get_max_video_tokens). None when the processor
    config is not at hand."""
    image_max = processor_max_pixels(c.preprocessor.get("image"), c.model_id, "preprocessor_config.json")
    if image_max is None:
        return None
    patch, merge, temporal = v.int("patch_size"), v.int("spatial_merge_size", 2), v.int("temporal_patch_size", 2)
    unit, chans = patch * merge, v.int("in_channels", v.get("in_chans", 3))

    def item(tokens: int, max_slices: int = 1) -> VisionItem:
        # pixel values are [patches, channels x temporal_patch_size x patch x patch]
        patches = tokens * merge * merge
        return VisionItem(tokens, patches, patches * chans * temporal * patch * patch, max_slices)

    image = item(most_features(image_max, unit))
    qwen3 = tower == "qwen3_vl"
    if not qwen3:
        video = item(image.tokens, -(-MAX_FRAMES_PER_VIDEO // temporal))
    else:
        config = c.preprocessor.get("video")
        video_max = processor_max_pixels(config, c.model_id, "video_preprocessor_config.json")
        frames = Config(config or {}, c.model_id).int("temporal_patch_size", temporal)
        video = item(most_features(video_max // frames, unit)) if video_max is not None else None
    deepstack = len(v.get("deepstack_visual_indexes") or []) if qwen3 else 0
    # A block at its MLP (qwen2_vl.py Qwen2VisionBlock, qwen2_5_vl.py Qwen2_5_VisionBlock, qwen3_vl.py
    # Qwen3_VisionBlock) holds the residual stream and the norm output, then the gated MLP's gate_up output and SiLU
    # product (Qwen2.5-VL) or fc1's output and its activation (Qwen2-VL's QuickGELU, Qwen3-VL's GELU).
    width, inter, _ = _qwen_tower_sizes(v, text_hidden, tower)
    return VisionProfile(image, hidden=width, intermediate=inter, hidden_rows=2,
                         mlp_rows=3 if tower == "qwen2_5_vl" else 2, output_rows=1 + deepstack, video=video)


def qwen2_vl(c: Config, inv: Inventory, family: str):
    """Qwen2-VL: the Qwen2 decoder (text keys at the top level, or in text_config) under Qwen2-VL's tower."""
    return _qwen_vl(c, inv, family, "qwen2_vl")


def qwen_vl(c: Config, inv: Inventory, family: str):
    """Qwen2.5-VL (text keys at the top level, or in text_config), Qwen3-VL (dense and MoE) and Qwen3.5 (the hybrid
    Qwen3-Next decoder, dense or MoE, under Qwen3-VL's tower: qwen3_5.py Qwen3_5ForConditionalGeneration)."""
    return _qwen_vl(c, inv, family, "qwen2_5_vl" if family == "qwen2" else "qwen3_vl")


def _qwen_vl(c: Config, inv: Inventory, family: str, tower: str):
    text = Config(language_config(c, "optional"), c.model_id)
    attn, extra = (qwen3_next if family.startswith("qwen3_5") else decoder)(text, inv, family)
    v = Config(c.get("vision_config") or {}, c.model_id)
    qwen3 = tower == "qwen3_vl"
    _qwen_vision(inv, v, text.int("hidden_size"), tower)
    # Qwen3VLForConditionalGeneration.__init__ allocates deepstack_input_embeds: one [max_num_batched_tokens,
    # text hidden] tensor per tapped block (vllm/model_executor/models/qwen3_vl.py).
    deepstack = len(v.get("deepstack_visual_indexes") or []) if qwen3 else 0
    width = _qwen_tower_sizes(v, text.int("hidden_size"), tower)[0]
    return attn, dict(extra, multimodal=True, tower_modalities=("image", "video"), buffer_rows_per_token=deepstack,
                      vision=_qwen_profile(c, v, tower, text.int("hidden_size")),
                      tower_rope_tables=tower_rope(width // v.int("num_heads")))



def _gated_blocks(inv: Inventory, prefix: str, count: int, h: int, mlp: int, names: tuple[str, ...]) -> None:
    """ViT blocks of two norms, a fused bias-free QKV and a gated bias-free MLP ``mlp`` wide, split over TP (Pixtral's
    and GLM-4V's), under their modules' names: (norms, qkv, output, gate_up, down)."""
    norms, qkv, out, gate_up, down = names
    for i in range(count):
        b = f"{prefix}.{i}"
        inv.add(f"{b}.{norms}", 2 * h, 1, "rep", "vision", place="first")
        inv.add(f"{b}.{qkv}", 3 * h, h, "col", "vision", place="first")
        inv.add(f"{b}.{out}", h, h, "row", "vision", place="first")
        inv.add(f"{b}.{gate_up}", 2 * mlp, h, "col", "vision", place="first")
        inv.add(f"{b}.{down}", h, mlp, "row", "vision", place="first")

def glm4v(c: Config, inv: Inventory, family: str):
    """GLM-4.1V and GLM-4.5V/4.6V (glm4_1v.py Glm4vForConditionalGeneration, Glm4vMoeForConditionalGeneration): GLM-4's
    dense or GLM-4.5's MoE language model (text_config) under GLM-4V's tower: a biased 3D patch convolution, a learned
    position table of the native image's patches, RMSNorm blocks of a fused bias-free QKV and a gated MLP as wide as
    the tower's output (out_hidden_size, not intermediate_size), split over TP; a biased 2D convolution merging 2 x 2
    patches into the text width, then the merger (a linear, a LayerNorm and a gated MLP of intermediate_size). The
    tower's profiling items come from the checkpoint's processor limits, which the planner does not read: not
    modelled, and the plan says so."""
    text = Config(text_config(c), c.model_id)
    attn, extra = decoder(text, inv, family)
    v = Config(c.get("vision_config") or {}, c.model_id)
    h, out, inter = v.int("hidden_size"), v.int("out_hidden_size"), v.int("intermediate_size")
    patch, image = v.int("patch_size"), v.int("image_size")
    temporal, chans, merge = v.int("temporal_patch_size", 2), v.int("in_channels", 3), v.int("spatial_merge_size", 2)
    p = "visual"
    inv.add(f"{p}.patch_embed.proj", h, chans * temporal * patch * patch + 1, "rep", "vision", place="first")
    inv.add(f"{p}.embeddings.position_embedding", (image // patch) ** 2, h, "rep", "vision", place="first")
    inv.add(f"{p}.post_conv_layernorm+post_layernorm", 2 * h, 1, "rep", "vision", place="first")
    _gated_blocks(inv, f"{p}.blocks", v.int("depth"), h, out,
                  ("norm1+norm2", "attn.qkv", "attn.proj", "mlp.gate_up_proj", "mlp.down_proj"))
    inv.add(f"{p}.downsample", out, h * merge * merge + 1, "rep", "vision", place="first")
    m = f"{p}.merger"
    inv.add(f"{m}.proj", out, out, "col", "vision", place="first")
    inv.add(f"{m}.post_projection_norm", 2 * out, 1, "rep", "vision", place="first")
    inv.add(f"{m}.gate_up_proj", 2 * inter, out, "col", "vision", place="first")
    inv.add(f"{m}.down_proj", out, inter, "row", "vision", place="first")
    return attn, dict(extra, multimodal=True, tower_modalities=("image", "video"),
                      tower_rope_tables=tower_rope(h // v.int("num_heads")))

def mistral3(c: Config, inv: Inventory, family: str):
    """Mistral 3 (Mistral-Small-3.1/3.2): the Mistral decoder and the Pixtral vision encoder (vllm/model_executor/
    models/mistral3.py, pixtral.py PixtralHFVisionModel): a bias-free patch convolution, RMSNorm pre-norm blocks with
    fused QKV and a gated SiLU MLP, every block up to vision_feature_layer built; then a projector: RMSNorm, a 2x2
    patch merger and two linears into the text width."""
    text = Config(text_config(c), c.model_id)
    attn, extra = decoder(text, inv, family)
    v = Config(c.get("vision_config") or {}, c.model_id)
    h, inter, layers = v.int("hidden_size"), v.int("intermediate_size"), v.int("num_hidden_layers")
    patch, chans = v.int("patch_size"), v.int("num_channels", 3)
    built = built_layers(c, layers, default=-1)
    p = "vision_tower"
    inv.add(f"{p}.patch_conv", h, chans * patch * patch, "rep", "vision", place="first")
    inv.add(f"{p}.ln_pre", h, 1, "rep", "vision", place="first")
    _gated_blocks(inv, f"{p}.transformer.layers", built, h, inter, ("attention_norm+ffn_norm", "attention.qkv_proj",
                                                                   "attention.o_proj", "feed_forward.gate_up_proj",
                                                                   "feed_forward.down_proj"))
    text_hidden, bias = text.int("hidden_size"), 1 if c.flag("multimodal_projector_bias") else 0
    merge = c.int("spatial_merge_size", 2)
    m = "multi_modal_projector"
    inv.add(f"{m}.norm", h, 1, "rep", "vision", place="first")
    inv.add(f"{m}.patch_merger.merging_layer", h, h * merge * merge, "rep", "vision", place="first")
    inv.add(f"{m}.linear_1", text_hidden, h + bias, "col", "vision", place="first")
    inv.add(f"{m}.linear_2", text_hidden, text_hidden, "row", "vision", place="first")
    if bias:
        inv.add(f"{m}.linear_2.bias", text_hidden, 1, "rep", "vision", place="first")
    # The largest image is image_size square (pixtral.py PixtralHFEncoderInfo): one patch per patch_size, one
    # placeholder per merged square of them. Pixtral's block at its MLP (pixtral.py
    # PixtralHFTransformerBlock) holds its input, the attention output (still named r), their sum h and h's norm,
    # then gate_up's two halves and their SiLU product.
    image = v.int("image_size")
    item = VisionItem(tokens=(image // (patch * merge)) ** 2, patches=(image // patch) ** 2, pixels=chans * image * image)
    profile = VisionProfile(item, hidden=h, intermediate=inter, hidden_rows=4,
                            mlp_rows=3)
    return attn, dict(extra, multimodal=True, tower_modalities=("image",), vision=profile)


# What vLLM builds MoonViT with where Kimi-K2.5's vision_config leaves a size out: transformers 5.19's
# Kimi_K25VisionConfig defaults, which vLLM's config class for the model is (kimi_k25.py get_hf_config); the
# legacy init_pos_emb_* keys win where a checkpoint has them (kimi_k25_vit.py _get_pos_emb_size).
MOONVIT_DEFAULTS = {"patch_size": 14, "pos_emb_height": 64, "pos_emb_width": 64, "num_attention_heads": 16,
                    "num_hidden_layers": 27, "hidden_size": 1152, "intermediate_size": 4304}
MOONVIT_CHANNELS = 3  # MoonVision3dPatchEmbed's in_dim: RGB


def kimi_k25(c: Config, inv: Inventory, family: str):
    """Kimi-K2.5 (kimi_k25.py KimiK25ForConditionalGeneration): Kimi-K2's DeepSeek-V3 language model, from
    text_config, under MoonViT (kimi_k25_vit.py MoonViT3dPretrainedModel): a patch convolution and a learned
    position table (replicated), pre-norm blocks of a fused QKV and a two-layer MLP split over TP (row-parallel
    biases replicated), a final norm; then the projector, replicated: a LayerNorm and two biased linears from the
    merged patches into the text width ("patchmerger"), or two bias-free ones and an RMSNorm ("patchmergerv2").
    vLLM never quantizes the tower under compressed-tensors (_maybe_ignore_quant_config), and the planner keeps
    every tower in the model dtype. Its modality is vLLM's "vision_chunk" (images and video chunks alike), so
    --limit-mm-per-prompt '{"vision_chunk": 0}' or --language-model-only leaves the tower out. The tower's
    profiling pass depends on the checkpoint's media processor limits (in_patch_limit), which the planner does not
    read: it is not modelled, and the plan says so."""
    text = Config(text_config(c), c.model_id)
    attn, extra = deepseek(text, inv, family)
    v = Config(dict(MOONVIT_DEFAULTS, **(c.get("vision_config") or {})), c.model_id)
    h, inter, patch = v.int("hidden_size"), v.int("intermediate_size"), v.int("patch_size")
    qkv = v.int("qkv_hidden_size") if v.get("qkv_hidden_size") else h
    if qkv % v.int("num_attention_heads"):
        raise PlannerError(f"config.json of {c.model_id} has a vision qkv width of {qkv}, not a multiple of its "
                           f"{v.int('num_attention_heads')} heads (fix the config.json)")
    rms = v.get("norm_type", "layernorm") == "rmsnorm"
    attn_bias, linear_bias = v.get("attn_bias", True) is not False, v.get("linear_bias", True) is not False
    conv_bias = v.get("patch_embed_proj_bias", True) is not False
    height = v.int("init_pos_emb_height") if v.get("init_pos_emb_height") else v.int("pos_emb_height")
    width = v.int("init_pos_emb_width") if v.get("init_pos_emb_width") else v.int("pos_emb_width")
    p = "vision_tower"
    inv.add(f"{p}.patch_embed.proj", h, MOONVIT_CHANNELS * patch * patch + (1 if conv_bias else 0), "rep",
            "vision", place="first")
    inv.add(f"{p}.patch_embed.pos_emb", height * width, h, "rep", "vision", place="first")
    norm = h if rms else 2 * h
    for i in range(v.int("num_hidden_layers")):
        b = f"{p}.encoder.blocks.{i}"
        inv.add(f"{b}.norm0+norm1", 2 * norm, 1, "rep", "vision", place="first")
        inv.add(f"{b}.wqkv", 3 * qkv, h + (1 if attn_bias else 0), "col", "vision", place="first")
        inv.add(f"{b}.wo", h, qkv, "row", "vision", place="first")
        inv.add(f"{b}.mlp.fc0", inter, h + (1 if linear_bias else 0), "col", "vision", place="first")
        inv.add(f"{b}.mlp.fc1", h, inter, "row", "vision", place="first")
        row_biases = (h if attn_bias else 0) + (h if linear_bias else 0)  # wo's and fc1's, replicated
        if row_biases:
            inv.add(f"{b}.row_biases", row_biases, 1, "rep", "vision", place="first")
    inv.add(f"{p}.encoder.final_layernorm", norm, 1, "rep", "vision", place="first")
    merge = v.get("merge_kernel_size", [2, 2])
    if not (isinstance(merge, list) and len(merge) == 2 and all(isinstance(k, int) and k > 0 for k in merge)):
        raise PlannerError(f"config.json of {c.model_id} has a vision merge_kernel_size of {merge!r}; expected two "
                           "positive integers (fix the config.json)")
    merged, text_hidden = h * merge[0] * merge[1], text.int("hidden_size")
    m = "mm_projector"
    if v.get("mm_projector_type", "patchmerger") == "patchmergerv2":
        inv.add(f"{m}.linear_1", merged, merged, "rep", "vision", place="first")
        inv.add(f"{m}.linear_2", text_hidden, merged, "rep", "vision", place="first")
        inv.add(f"{m}.post_norm", text_hidden, 1, "rep", "vision", place="first")
    else:
        inv.add(f"{m}.pre_norm", 2 * h, 1, "rep", "vision", place="first")
        inv.add(f"{m}.linear_1", merged, merged + 1, "rep", "vision", place="first")
        inv.add(f"{m}.linear_2", text_hidden, merged + 1, "rep", "vision", place="first")
    return attn, dict(extra, multimodal=True, tower_modalities=("vision_chunk",))
