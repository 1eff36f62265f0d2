"""LLaVA (vLLM's llava.py LlavaForConditionalGeneration): a Llama-shaped language model under a CLIP or SigLIP
vision tower built up to its deepest feature layer, and a two-linear projector into the text width. llava-hf's
config.json files leave most sizes to transformers' config classes (LlavaConfig builds its text_config and
vision_config from them), so those defaults are filled in here before anything is read."""

from __future__ import annotations

from estimator.decoders import DECODERS, decoder
from estimator.errors import PlannerError
from estimator.inventory import Config, Inventory, VisionItem, VisionProfile, text_config
from estimator.vision import vision_encoder

# transformers 5.19's defaults for the keys the planner reads, by the sub-config's model_type (LlamaConfig,
# MistralConfig, Qwen2Config; CLIPVisionConfig, SiglipVisionConfig)
TEXT_DEFAULTS = {
    "llama": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False),
    "mistral": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=8, vocab_size=32000, max_position_embeddings=131072, sliding_window=4096,
                    tie_word_embeddings=False),
    "qwen2": dict(hidden_size=4096, intermediate_size=22016, num_hidden_layers=32, num_attention_heads=32,
                  vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=False),
}
# the language model vLLM builds for a text_config of each model_type that names no architectures
TEXT_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
TEXT_FAMILIES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}
VISION_DEFAULTS = {
    "clip_vision_model": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=224, patch_size=32, num_channels=3),
    "siglip_vision_model": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, image_size=224, patch_size=16, num_channels=3),
}
# LlavaConfig without a vision_config: CLIP ViT-L/14 at 336 pixels (LLaVA-1.5's tower)
DEFAULT_TOWER = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                     num_attention_heads=16, image_size=336, patch_size=14, num_channels=3)
LLAVA_DEFAULTS = dict(vision_feature_layer=-2, vision_feature_select_strategy="default", multimodal_projector_bias=True)
# LlavaNextConfig's image_grid_pinpoints: the tile layouts (height, width) in pixels an image may be cut into
DEFAULT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def llava_config(raw: dict, model_id: str) -> tuple[dict, str]:
    """config.json with the sizes transformers' LlavaConfig fills in, and the language model's family. A text model
    or tower of another kind (Pixtral-12B's, say) is refused by name."""
    text = dict(raw.get("text_config") or {"model_type": "llama"})
    kind = text.get("model_type", "llama")
    archs = text.get("architectures") or [TEXT_ARCHITECTURES.get(kind)]
    if kind not in TEXT_DEFAULTS or archs[0] not in TEXT_FAMILIES:
        raise PlannerError(f"config.json of {model_id} puts a {kind} language model ({archs[0]}) under LLaVA's tower; "
                           f"the planner models LLaVA with {', '.join(sorted(TEXT_DEFAULTS))} language models only")
    vision = dict(raw.get("vision_config") or DEFAULT_TOWER)
    tower = vision.setdefault("model_type", "clip_vision_model")
    if tower not in VISION_DEFAULTS:
        raise PlannerError(f"config.json of {model_id} has a {tower} vision tower; the planner models LLaVA with CLIP "
                           "and SigLIP towers only")
    config = dict(LLAVA_DEFAULTS, **raw)
    if raw["architectures"][0] == "LlavaNextForConditionalGeneration":
        config.setdefault("image_grid_pinpoints", DEFAULT_PINPOINTS)
    config["text_config"] = dict(TEXT_DEFAULTS[kind], **text)
    config["vision_config"] = dict(VISION_DEFAULTS[tower], **vision)
    return config, TEXT_FAMILIES[archs[0]]


def built_layers(c: Config, layers: int) -> int:
    """The tower's layers vLLM builds: up to the deepest vision_feature_layer (llava.py _get_num_hidden_layers)."""
    feature = c.get("vision_feature_layer")
    deepest = max(feature) if isinstance(feature, list) and feature else feature
    if not isinstance(deepest, int) or isinstance(deepest, bool) or not -layers <= deepest <= layers:
        raise PlannerError(f"config.json of {c.model_id} has vision_feature_layer={feature!r}; expected layer indices "
                           f"within its tower's {layers} layers (fix the config.json)")
    return deepest + layers + 1 if deepest < 0 else deepest


def llava(c: Config, inv: Inventory, family: str):
    """LlavaForConditionalGeneration over a CLIP or SigLIP tower (clip.py, siglip.py): the tower without its post
    norm (llava.py builds it with require_post_norm=False) nor SigLIP's pooling head, CLIP with its class token and
    pre-norm, then linear_1 (column-parallel) and linear_2 (row-parallel), biased by multimodal_projector_bias."""
    return _llava(c, inv, family, anyres=False)


def llava_next(c: Config, inv: Inventory, family: str):
    """LlavaNextForConditionalGeneration (llava_next.py): LLaVA's model and a learned image_newline row, with images
    cut into tiles of the tower's size on one of image_grid_pinpoints' layouts, plus the whole image."""
    return _llava(c, inv, family, anyres=True)


def _llava(c: Config, inv: Inventory, family: str, anyres: bool):
    if family not in DECODERS:
        raise PlannerError(f"{c.model_id}: LLaVA's language model family {family} is not a decoder the planner has")
    text = Config(text_config(c), c.model_id)
    attn, extra = decoder(text, inv, family)
    v = Config(c.get("vision_config"), c.model_id)
    clip = v.get("model_type") == "clip_vision_model"
    layers = built_layers(c, v.int("num_hidden_layers"))
    prefix = "vision_tower.vision_model"
    vh = vision_encoder(inv, v, prefix, class_token=clip, conv_bias=not clip, patch_shard="rep", layers=layers)
    if clip:
        inv.add(f"{prefix}.pre_layrnorm", 2 * vh, 1, "rep", "vision", place="first")
    text_hidden, bias = text.int("hidden_size"), c.flag("multimodal_projector_bias")
    inv.add("multi_modal_projector.linear_1", text_hidden, vh + (1 if bias else 0), "col", "vision", place="first")
    inv.add("multi_modal_projector.linear_2", text_hidden, text_hidden, "row", "vision", place="first")
    if bias:
        inv.add("multi_modal_projector.linear_2.bias", text_hidden, 1, "rep", "vision", place="first")
    if anyres:
        inv.add("image_newline", text_hidden, 1, "rep", "vision", place="first")
    # The largest image is the tower's square (llava.py get_image_size_with_most_features); its placeholders are
    # the tower's positions less one under the "default" feature strategy (CLIP's class token), all under "full"
    # (BaseLlavaProcessingInfo._apply_feature_select_strategy). CLIP's block at its MLP holds the residual and the
    # norm output, then fc1's output and its activation, as SigLIP's does.
    strategy = c.get("vision_feature_select_strategy")
    if strategy not in ("default", "full"):
        raise PlannerError(f"config.json of {c.model_id} has vision_feature_select_strategy={strategy!r}; expected "
                           "'default' or 'full' (fix the config.json)")
    image, patch = v.int("image_size"), v.int("patch_size")
    positions = (image // patch) ** 2 + (1 if clip else 0)
    base = positions - (1 if strategy == "default" else 0)
    tokens, tiles = max(_anyres_features(c, image, image // patch, base)) if anyres else (base, 1)
    item = VisionItem(tokens=tokens, patches=tiles * positions, pixels=tiles * v.int("num_channels", 3) * image * image)
    profile = VisionProfile(item, hidden=vh, intermediate=v.int("intermediate_size"), hidden_rows=2, mlp_rows=2)
    return attn, dict(extra, multimodal=True, tower_modalities=("image",), vision=profile)


def _anyres_features(c: Config, tile: int, side: int, base: int) -> list[tuple[int, int]]:
    """(placeholders, tiles through the tower) of an image the size of each pinpoint, the candidates for vLLM's image
    of most features (llava_next.py get_image_size_with_most_features). Such an image is cut into the pinpoint's own
    grid of tiles (select_best_resolution fits it exactly, with nothing wasted) plus the whole image; its features are
    the grid's patches unpadded to the image's aspect ratio, one newline per row, and the whole image's
    (_get_num_unpadded_features)."""
    pinpoints = c.get("image_grid_pinpoints")
    if not isinstance(pinpoints, list) or not pinpoints or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and x >= tile for x in p) for p in pinpoints):
        raise PlannerError(f"config.json of {c.model_id} has image_grid_pinpoints={pinpoints!r}; expected [height, "
                           f"width] pairs of at least the tower's {tile} pixels (fix the config.json)")
    candidates = []
    for height, width in pinpoints:
        rows, cols = height // tile, width // tile
        current_h, current_w = side * rows, side * cols
        if width / height > current_w / current_h:
            padding = (current_h - int(round(height * (current_w / width), 7))) // 2
            current_h -= 2 * padding
        else:
            padding = (current_w - int(round(width * (current_h / height), 7))) // 2
            current_w -= 2 * padding
        candidates.append((current_h * current_w + current_h + base, rows * cols + 1))
    return candidates
