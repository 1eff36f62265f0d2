"""LLaVA (vLLM's llava.py LlavaForConditionalGeneration): a Llama-shaped language model under a CLIP or SigLIP
vision tower built up to its deepest feature layer, and a two-linear projector into the text width. llava-hf's
config.json files leave most sizes to transformers' config classes (LlavaConfig builds its text_config and
vision_config from them), so those defaults are filled in here before anything is read."""

from __future__ import annotations

import math

from estimator.decoders import decoder
from estimator.errors import PlannerError
from estimator.inventory import Config, Inventory, VisionItem, VisionProfile, text_config
from estimator.vision import built_layers, vision_encoder

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
# ... and, the other way, each of those architectures' decoder family (named as its model_type)
TEXT_FAMILIES = {arch: kind for kind, arch in TEXT_ARCHITECTURES.items()}
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
# LlavaOnevisionConfig's defaults: a Qwen2 decoder under SigLIP so400m at 384 pixels, every layer used, all its
# positions as features, tiles of 384 in grids of up to 6 x 6
ONEVISION_DEFAULTS = dict(vision_feature_layer=-1, vision_feature_select_strategy="full",
                          image_grid_pinpoints=[[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)])
ONEVISION_TOWER = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                       num_hidden_layers=26, num_attention_heads=16, image_size=384, patch_size=14, num_channels=3)
# llava_onevision.py: the dummy image vLLM profiles with (get_image_size_with_most_features, "found via processor
# tests"), a video's frames at most (_MAX_FRAMES_PER_VIDEO) and the stride its frames' features are pooled with
# where the config has no spatial_pool_stride
ONEVISION_IMAGE = (944, 1153)  # height, width
ONEVISION_MAX_FRAMES = 16
ONEVISION_POOL_STRIDE = 2


def llava_config(raw: dict, model_id: str) -> tuple[dict, str]:
    """config.json with the sizes transformers' LlavaConfig fills in, and the language model's family. A text model
    or tower of another kind (Pixtral-12B's, say) is refused by name."""
    onevision = raw["architectures"][0] == "LlavaOnevisionForConditionalGeneration"
    text = dict(raw.get("text_config") or {"model_type": "qwen2" if onevision else "llama"})
    kind = text.get("model_type", "llama")
    archs = text.get("architectures") or [TEXT_ARCHITECTURES.get(kind)]
    if kind not in TEXT_DEFAULTS or archs[0] not in TEXT_FAMILIES:
        raise PlannerError(f"config.json of {model_id} puts a {kind} language model ({archs[0]}) under LLaVA's tower; "
                           f"the planner models LLaVA with {', '.join(sorted(TEXT_DEFAULTS))} language models only")
    vision = dict(raw.get("vision_config") or (ONEVISION_TOWER if onevision else DEFAULT_TOWER))
    tower = vision.setdefault("model_type", "clip_vision_model")
    if tower not in VISION_DEFAULTS:
        raise PlannerError(f"config.json of {model_id} has a {tower} vision tower; the planner models LLaVA with CLIP "
                           "and SigLIP towers only")
    config = {**LLAVA_DEFAULTS, **(ONEVISION_DEFAULTS if onevision else {}), **raw}
    if raw["architectures"][0] == "LlavaNextForConditionalGeneration":
        config.setdefault("image_grid_pinpoints", DEFAULT_PINPOINTS)
    config["text_config"] = dict(TEXT_DEFAULTS[kind], **text)
    config["vision_config"] = dict(VISION_DEFAULTS[tower], **vision)
    return config, TEXT_FAMILIES[archs[0]]


def llava(c: Config, inv: Inventory, family: str):
    """LlavaForConditionalGeneration over a CLIP or SigLIP tower (clip.py, siglip.py): the tower without its post
    norm (llava.py builds it with require_post_norm=False) nor SigLIP's pooling head, CLIP with its class token and
    pre-norm, then linear_1 (column-parallel) and linear_2 (row-parallel), biased by multimodal_projector_bias."""
    return _llava(c, inv, family, anyres=False)


def llava_next(c: Config, inv: Inventory, family: str):
    """LlavaNextForConditionalGeneration (llava_next.py): LLaVA's model and a learned image_newline row, with images
    cut into tiles of the tower's size on one of image_grid_pinpoints' layouts, plus the whole image."""
    return _llava(c, inv, family, anyres=True)


def llava_onevision(c: Config, inv: Inventory, family: str):
    """LlavaOnevisionForConditionalGeneration (llava_onevision.py): LLaVA-NeXT's model with a replicated projector
    (plain nn.Linear), profiled with a fixed 1153 x 944 image cut on the pinpoint layout that fits it best, and
    taking videos: up to 16 frames of one tile each, their features pooled 2 x 2."""
    return _llava(c, inv, family, anyres=True, onevision=True)


def _llava(c: Config, inv: Inventory, family: str, anyres: bool, onevision: bool = False):
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
    col, row = ("rep", "rep") if onevision else ("col", "row")
    inv.add("multi_modal_projector.linear_1", text_hidden, vh + (1 if bias else 0), col, "vision", place="first")
    inv.add("multi_modal_projector.linear_2", text_hidden, text_hidden, row, "vision", place="first")
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
    chans = v.int("num_channels", 3)
    if onevision:
        tokens, tiles = _anyres_features(c, image, image // patch, base, *ONEVISION_IMAGE, onevision=True)
    elif anyres:
        tokens, tiles = max(_anyres_features(c, image, image // patch, base, height, width)
                            for height, width in _pinpoints(c, image))
    else:
        tokens, tiles = base, 1
    item = VisionItem(tokens=tokens, patches=tiles * positions, pixels=tiles * chans * image * image)
    video = None
    if onevision:
        # a frame is one tile whose features are pooled spatial_pool_stride x spatial_pool_stride (_get_num_frame_tokens;
        # the video's one newline token is left out)
        pooled = -(-(image // patch) // c.int("spatial_pool_stride", ONEVISION_POOL_STRIDE))
        video = VisionItem(tokens=pooled * pooled, patches=positions, pixels=chans * image * image,
                           max_slices=ONEVISION_MAX_FRAMES)
    profile = VisionProfile(item, hidden=vh, intermediate=v.int("intermediate_size"), hidden_rows=2, mlp_rows=2,
                            video=video)
    modalities = ("image", "video") if onevision else ("image",)
    return attn, dict(extra, multimodal=True, tower_modalities=modalities, vision=profile)


def _pinpoints(c: Config, tile: int) -> list[tuple[int, int]]:
    pinpoints = c.get("image_grid_pinpoints")
    if not isinstance(pinpoints, list) or not pinpoints or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and x >= tile for x in p) for p in pinpoints):
        raise PlannerError(f"config.json of {c.model_id} has image_grid_pinpoints={pinpoints!r}; expected [height, "
                           f"width] pairs of at least the tower's {tile} pixels (fix the config.json)")
    return [(height, width) for height, width in pinpoints]


def select_best_resolution(height: int, width: int, pinpoints: list[tuple[int, int]]) -> tuple[int, int]:
    """The layout an image is resized into (transformers' image_processing_utils.select_best_resolution): the one
    keeping most of its pixels, then wasting fewest."""
    best, most, least = None, 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = w * h - effective
        if effective > most or (effective == most and wasted < least):
            best, most, least = (h, w), effective, wasted
    return best


def _anyres_features(c: Config, tile: int, side: int, base: int, height: int, width: int,
                     onevision: bool = False) -> tuple[int, int]:
    """(placeholders, tiles through the tower) of a height x width image (llava_next.py get_num_image_tokens,
    _get_num_unpadded_features): it is cut into the grid of tiles of the layout that fits it best, plus the whole
    image; its features are the grid's patches unpadded to the image's aspect ratio, one newline per row, and the
    whole image's. LLaVA-NeXT profiles with an image the size of each pinpoint in turn (itself the best fit) and
    keeps the one of most features; LLaVA-OneVision with a fixed image, and it shrinks a grid of more than 1.1 x 9
    tiles' worth of features back to that (llava_onevision.py _get_num_unpadded_features)."""
    rows, cols = (x // tile for x in select_best_resolution(height, width, _pinpoints(c, tile)))
    current_h, current_w = side * rows, side * cols
    if width / height > current_w / current_h:
        padding = (current_h - int(round(height * (current_w / width), 7))) // 2
        current_h -= 2 * padding
    else:
        padding = (current_w - int(round(width * (current_h / height), 7))) // 2
        current_w -= 2 * padding
    unpadded, newlines = current_h * current_w, current_h
    if onevision:
        ratio = math.sqrt(current_h * current_w / (9 * side ** 2))
        if ratio > 1.1:
            unpadded, newlines = int(current_h // ratio) * int(current_w // ratio), int(current_h // ratio)
    return unpadded + newlines + base, rows * cols + 1
