"""InternVL (vLLM's internvl.py InternVLChatModel, OpenGVLab's InternVL 2.5, 3 and 3.5): a decoder from llm_config
under InternViT (intern_vit.py), whose output is pixel-shuffled into a quarter of the tokens and projected by mlp1.
Images are cut into up to max_dynamic_patch tiles of the tower's size, plus a thumbnail; with a Qwen language model
vLLM takes videos too, one tile per frame."""

from __future__ import annotations

from estimator.decoders import decoder
from estimator.errors import PlannerError
from estimator.inventory import Config, Inventory, VisionItem, VisionProfile, text_config

# InternVisionConfig's and InternVLChatConfig's defaults (OpenGVLab's configuration_intern_vit.py and
# configuration_internvl_chat.py, the remote code vLLM loads) for the keys the planner reads
VISION_DEFAULTS = dict(num_channels=3, patch_size=14, image_size=224, qkv_bias=False, hidden_size=3200,
                       num_attention_heads=25, intermediate_size=12800, qk_normalization=True, num_hidden_layers=48,
                       norm_type="rms_norm")
CHAT_DEFAULTS = dict(select_layer=-1, downsample_ratio=0.5, dynamic_image_size=False, use_thumbnail=False,
                     min_dynamic_patch=1, max_dynamic_patch=6)
# Text models whose tokenizer vLLM finds a video token in (internvl.py InternVLProcessingInfo.ctx_video_token)
VIDEO_TEXT_TYPES = frozenset(("qwen2", "qwen3", "qwen3_moe", "gpt_oss"))
# no cap on a video's frames: vLLM's dummy video has as many as max_model_len holds (get_num_frames_with_most_features)
UNCAPPED = 2 ** 31
# the TP sizes beyond 1 models are laid out over; InternViT's attention splits over TP only where its heads divide
TP_SIZES = (2, 4, 8)


def internvl_config(raw: dict, model_id: str, families: dict[str, str]) -> tuple[dict, str]:
    """config.json with llm_config as the text_config vLLM reads it as (transformers_utils/config.py maps llm_config
    to text_config), the remote config classes' defaults filled in, and the language model's family (``families``:
    the architectures whose model is the decoder table's, by family)."""
    llm = raw.get("llm_config")
    if not isinstance(llm, dict):
        raise PlannerError(f"config.json of {model_id} (InternVLChatModel) has no llm_config object (fix the "
                           "config.json)")
    arch = (llm.get("architectures") or [None])[0]
    if arch not in families:
        raise PlannerError(f"config.json of {model_id} puts a {arch} language model under InternViT; the planner "
                           f"models InternVL with {', '.join(sorted(families))} language models only")
    config = dict(CHAT_DEFAULTS, **{k: v for k, v in raw.items() if k != "llm_config"})
    config["text_config"] = llm
    config["vision_config"] = dict(VISION_DEFAULTS, **(raw.get("vision_config") or {}))
    return config, families[arch]


def internvl(c: Config, inv: Inventory, family: str):
    """InternVLChatModel: the decoder, InternViT up to select_layer, and mlp1 (a LayerNorm and two biased linears,
    replicated: plain nn.Linear). An InternViT block is a fused QKV (biased by qkv_bias), full-width q/k RMSNorms
    (qk_normalization), a biased output projection, a biased fc1/fc2 MLP, two norms (LayerNorm or RMSNorm by
    norm_type) and two layer-scale vectors. Its attention splits over TP only where TP divides its heads (else it is
    replicated: InternViT-6B's 25 heads); its MLP always splits."""
    text = Config(text_config(c), c.model_id)
    attn, extra = decoder(text, inv, family)
    v = Config(c.get("vision_config"), c.model_id)
    h, heads, inter = v.int("hidden_size"), v.int("num_attention_heads"), v.int("intermediate_size")
    layers, patch, image = v.int("num_hidden_layers"), v.int("patch_size"), v.int("image_size")
    if h % heads:
        raise PlannerError(f"config.json of {c.model_id} has an InternViT {h} wide with {heads} heads; the width "
                           "must be a multiple of the heads (fix the config.json)")
    split = [heads % tp == 0 for tp in TP_SIZES]
    if any(split) and not all(split):
        raise PlannerError(f"{c.model_id}: InternViT's {heads} attention heads split over some TP sizes and not "
                           "others, which the planner does not model (InternViT-300M's 16 and 6B's 25 are)")
    col, row = ("col", "row") if all(split) else ("rep", "rep")
    select = c.get("select_layer")
    if not isinstance(select, int) or isinstance(select, bool) or not -layers <= select < layers:
        raise PlannerError(f"config.json of {c.model_id} has select_layer={select!r}; expected a layer index within "
                           f"its tower's {layers} layers (fix the config.json)")
    built = layers + select + 1 if select < 0 else select + 1  # internvl.py _init_vision_model
    norm_bias = {"layer_norm": True, "rms_norm": False}.get(v.get("norm_type"))
    if norm_bias is None:
        raise PlannerError(f"config.json of {c.model_id} has norm_type={v.get('norm_type')!r}; expected "
                           "'layer_norm' or 'rms_norm' (fix the config.json)")
    qkv_bias, qk_norm = v.flag("qkv_bias"), v.flag("qk_normalization")
    chans, positions = v.int("num_channels", 3), (image // patch) ** 2 + 1
    p = "vision_model"
    inv.add(f"{p}.embeddings.class_embedding", h, 1, "rep", "vision", place="first")
    inv.add(f"{p}.embeddings.patch_embedding", h, chans * patch * patch + 1, "rep", "vision", place="first")
    inv.add(f"{p}.embeddings.position_embedding", positions, h, "rep", "vision", place="first")
    for i in range(built):
        b = f"{p}.encoder.layers.{i}"
        inv.add(f"{b}.attn.qkv", 3 * h, h + (1 if qkv_bias else 0), col, "vision", place="first")
        if qk_norm:
            inv.add(f"{b}.attn.q_norm+k_norm", 2 * h, 1, "rep", "vision", place="first")
        inv.add(f"{b}.attn.proj", h, h, row, "vision", place="first")
        inv.add(f"{b}.mlp.fc1", inter, h + 1, "col", "vision", place="first")
        inv.add(f"{b}.mlp.fc2", h, inter, "row", "vision", place="first")
        inv.add(f"{b}.biases", 2 * h, 1, "rep", "vision", place="first")  # proj's and fc2's
        inv.add(f"{b}.norm1+norm2", 2 * h * (2 if norm_bias else 1), 1, "rep", "vision", place="first")
        inv.add(f"{b}.ls1+ls2", 2 * h, 1, "rep", "vision", place="first")
    ratio = c.get("downsample_ratio")
    if ratio not in (0.5, 0.25):
        raise PlannerError(f"config.json of {c.model_id} has downsample_ratio={ratio!r}; expected 0.5 or 0.25, the "
                           "pixel shuffles InternVL runs (fix the config.json)")
    shuffled, text_hidden = h * int(1 / ratio) ** 2, text.int("hidden_size")
    inv.add("mlp1.0", 2 * shuffled, 1, "rep", "vision", place="first")  # its LayerNorm
    inv.add("mlp1.1", text_hidden, shuffled + 1, "rep", "vision", place="first")
    inv.add("mlp1.3", text_hidden, text_hidden + 1, "rep", "vision", place="first")
    per_tile = int((image // patch) ** 2 * ratio ** 2)
    tiles = _most_tiles(c)
    # InternViT's block at its MLP (InternVisionEncoderLayer) holds the residual and the norm output, then fc1's
    # output and its activation
    image_item = VisionItem(tokens=tiles * per_tile, patches=tiles * positions, pixels=tiles * chans * image * image)
    video = None
    if text.get("model_type") in VIDEO_TEXT_TYPES:
        # a frame is one tile of the tower's size, no thumbnail (internvl.py InternVLDummyInputsBuilder)
        video = VisionItem(tokens=per_tile, patches=positions, pixels=chans * image * image, max_slices=UNCAPPED)
    profile = VisionProfile(image_item, hidden=h, intermediate=inter, hidden_rows=2, mlp_rows=2, video=video)
    modalities = ("image", "video") if video else ("image",)
    return attn, dict(extra, multimodal=True, tower_modalities=modalities, vision=profile)


def _most_tiles(c: Config) -> int:
    """Tiles of vLLM's image of most features (BaseInternVLProcessingInfo.get_image_size_with_most_features): as
    many as max_dynamic_patch allows where dynamic_image_size is on (the layout n x 1 always exists), and the
    thumbnail use_thumbnail adds to any image of more than one (calculate_internvl_targets); one otherwise."""
    blocks = c.int("max_dynamic_patch") if c.flag("dynamic_image_size") else 1
    if blocks < c.int("min_dynamic_patch") and c.flag("dynamic_image_size"):
        raise PlannerError(f"config.json of {c.model_id} has min_dynamic_patch above max_dynamic_patch (fix the "
                           "config.json)")
    return blocks + (1 if c.flag("use_thumbnail") and blocks != 1 else 0)
