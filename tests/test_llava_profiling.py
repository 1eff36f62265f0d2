"""Issue 11: LLaVA's and LLaVA-NeXT's towers in vLLM's profiling pass. vLLM profiles them with the image of most
features: the tower's square for LLaVA, for LLaVA-NeXT the image_grid_pinpoints layout whose unpadded grid,
newlines and whole-image features are most, run as its tiles plus the whole image. Checked by hand and against
vLLM's own processing info."""

import copy
import json
from pathlib import Path

import pytest

from estimator import architecture
from estimator.errors import PlannerError
from estimator.model_source import catalog_config
from tests.conftest import run_in_vllm

SCRIPT = Path(__file__).parent / "vllm_llava_items.py"
FIXTURES = Path(__file__).parent / "fixtures" / "models"
NEXT = "llava-hf/llava-v1.6-mistral-7b-hf"
ONEVISION = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
SEQ_LEN = 2048  # fewer than 16 frames' worth of placeholders: the context length caps the dummy video


def next_with(**change) -> dict:
    config = copy.deepcopy(catalog_config(NEXT))
    config.update(change)
    return config


def onevision_with(**change) -> dict:
    config = copy.deepcopy(catalog_config(ONEVISION))
    config.update(change)
    return config


CASES = {
    "llava-1.5": catalog_config("llava-hf/llava-1.5-7b-hf"),
    "llava-siglip-full": json.loads((FIXTURES / "llava-siglip-qwen2" / "config.json").read_text()),
    "llava-defaults": json.loads((FIXTURES / "llava-defaults" / "config.json").read_text()),
    "llava-next": catalog_config(NEXT),
    # layouts that are not multiples of the tile: the grid is unpadded to the image's aspect ratio
    "llava-next-odd": next_with(image_grid_pinpoints=[[500, 800], [900, 400], [336, 336]]),
    "llava-next-full": next_with(image_grid_pinpoints=[[672, 1344], [1344, 336]],
                                 vision_feature_select_strategy="full"),
    "llava-onevision": catalog_config(ONEVISION),
    # a grid of 6 x 6 tiles' features shrinks back towards 9 tiles' worth
    "llava-onevision-large": onevision_with(image_grid_pinpoints=[[2304, 2304]]),
    "llava-onevision-defaults": {"architectures": ["LlavaOnevisionForConditionalGeneration"]},
}


def test_llava_onevision_profiles_its_1153_by_944_image_on_a_3_by_4_grid_and_16_frame_videos():
    vision = architecture.from_config(catalog_config(ONEVISION), ONEVISION).vision
    # 1152 x 1536 fits the image best: 12 tiles and the whole image, 27 x 27 SigLIP patches each; the grid's 81 x 108
    # features unpad to 81 x 98, a newline per row, and the whole image's 729
    assert (vision.image.tokens, vision.image.patches) == (81 * 98 + 81 + 729, 13 * 729)
    # a frame is one tile pooled 2 x 2 (14 x 14 placeholders); 16 frames where the context holds them
    assert vision.video.tokens == 196 and vision.video.slices(32768) == 16 and vision.video.slices(1000) == 5


def test_llava_next_mistral_runs_five_tiles_of_its_672_square():
    image = architecture.from_config(catalog_config(NEXT), NEXT).vision.image
    # a 2 x 2 grid of 24 x 24 patches (48 x 48 features, a newline per row) and the whole image's 576
    assert (image.tokens, image.patches, image.pixels) == (48 * 48 + 48 + 576, 5 * 577, 5 * 3 * 336 * 336)


@pytest.mark.vllm
def test_the_image_of_most_features_is_vllms(vllm_py):
    answers = run_in_vllm(vllm_py, SCRIPT, [{"config": config, "seq_len": SEQ_LEN} for config in CASES.values()])
    for (name, config), theirs in zip(CASES.items(), answers, strict=True):
        ours = architecture.from_config(config, name).vision
        onevision = config["architectures"][0] == "LlavaOnevisionForConditionalGeneration"
        tower = config.get("vision_config") or ({"image_size": 384, "patch_size": 14, "model_type": "siglip_vision_model"}
                                                if onevision else {"image_size": 336, "patch_size": 14})
        positions = (tower["image_size"] // tower["patch_size"]) ** 2 + (
            0 if tower.get("model_type") == "siglip_vision_model" else 1)
        assert (ours.image.tokens, ours.image.patches) == (theirs["tokens"], theirs["tiles"] * positions), name
        assert ours.image.pixels == theirs["tiles"] * 3 * tower["image_size"] ** 2, name
        if "frames" in theirs:
            assert ours.video.tokens == theirs["frame_tokens"] and ours.video.slices(SEQ_LEN) == theirs["frames"], name


def test_pinpoints_smaller_than_a_tile_are_refused():
    with pytest.raises(PlannerError, match=r"image_grid_pinpoints=\[\[200, 672\]\]; expected \[height, width\] pairs"):
        architecture.from_config(next_with(image_grid_pinpoints=[[200, 672]]), "bad/llava-next")
