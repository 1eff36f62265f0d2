"""Issue 11: Llama 4's tower in vLLM's profiling pass. vLLM profiles it with the image of most features (max_patches
tiles stacked 16:1), which runs as the tiles plus a global thumbnail; each tile leaves (image_size / patch_size)^2 /
4 placeholders after the pixel shuffle. Checked by hand and against vLLM's and transformers' own tiling code."""

import copy
from pathlib import Path

import pytest

from estimator.errors import PlannerError
from estimator.gpus import GIB
from estimator.memory import encoder_items, encoder_profile_bytes
from estimator.model_source import catalog_config
from estimator.plan import PlanRequest, make_plan
from tests.conftest import run_in_vllm, write_config

SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
NOT_MODELLED = "the vision encoder's profiling activations are not modelled"


def test_scout_is_profiled_with_seventeen_tiles_of_its_largest_image():
    plan = make_plan(PlanRequest(model=SCOUT, gpu="H100", num_gpus=4, tensor_parallel_size=4))
    image = plan.arch.vision.image
    # transformers' default of 16 tiles (the catalog carries no preprocessor config) plus the thumbnail: 17
    # chunks of 336 x 336 pixels, each 24 x 24 patches and a class token, 144 placeholders after the shuffle
    assert (image.tokens, image.patches, image.pixels) == (17 * 144, 17 * 577, 17 * 3 * 336 * 336)
    # the encoder budget (8,192 batched tokens) holds three such images; their pixels and the 5120-wide text
    # model's rows for their placeholders stay; the block at its MLP holds 2 x 1408 and 2 x 5632 / 4 per patch
    assert encoder_items(plan.config, image.tokens) == 3
    held = 3 * (17 * 3 * 336 * 336 + 17 * 144 * 5120) * 2
    tower = 3 * 17 * 577 * (2 * 1408 + 2 * 5632 / 4) * 2
    assert encoder_profile_bytes(plan.arch, plan.config) == (held, tower)
    assert not any(NOT_MODELLED in w for w in plan.warnings)
    assert plan.memory.per_gpu.activation_gib * GIB >= held + tower


def _scout_with(tmp_path, name: str, processor: dict | None, image_size: int = 336, num_channels: int | None = 3):
    config = copy.deepcopy(catalog_config(SCOUT))
    config["vision_config"].update(image_size=image_size, num_channels=num_channels)
    if num_channels is None:
        del config["vision_config"]["num_channels"]
    directory = write_config(tmp_path / name, config)
    if processor is not None:
        (directory / "preprocessor_config.json").write_text(__import__("json").dumps(processor))
    return make_plan(PlanRequest(model=str(directory), gpu="H100", num_gpus=4, tensor_parallel_size=4))


def test_the_processor_config_sets_the_tiles(tmp_path):
    one = _scout_with(tmp_path, "one", {"max_patches": 1})
    assert (one.arch.vision.image.tokens, one.arch.vision.image.patches) == (144, 577)  # one tile, no thumbnail
    six = _scout_with(tmp_path, "six", {"max_patches": 6}, image_size=448)
    assert (six.arch.vision.image.tokens, six.arch.vision.image.patches) == (7 * 256, 7 * 1025)
    # two tiles: both and the thumbnail; a 350-pixel tile of 14-pixel patches: 25 x 25 = 625 patches, 156
    # placeholders after the 2 x 2 shuffle (vLLM floors them); one-channel pixels
    two = _scout_with(tmp_path, "two", {"max_patches": 2}, image_size=350, num_channels=1)
    assert (two.arch.vision.image.tokens, two.arch.vision.image.patches) == (3 * 156, 3 * 626)
    assert two.arch.vision.image.pixels == 3 * 1 * 350 * 350
    # Llama4VisionConfig's default of 3 channels where config.json names none
    default = _scout_with(tmp_path, "channels", None, num_channels=None)
    assert default.arch.vision.image.pixels == 17 * 3 * 336 * 336
    with pytest.raises(PlannerError, match="image_size of 340, not a multiple of its patch_size 14"):
        _scout_with(tmp_path, "ragged", None, image_size=340)
    for bad in (0, "16", True, 2.5):
        with pytest.raises(PlannerError, match=f"max_patches={bad!r}; expected a positive integer"):
            _scout_with(tmp_path, f"bad-{bad}", {"max_patches": bad})


@pytest.mark.vllm
def test_tiles_match_vllm(vllm_py, tmp_path):
    cases = [(None, 336), ({"max_patches": 1}, 336), ({"max_patches": 2}, 350), ({"max_patches": 6}, 448),
             ({"max_patches": 9}, 336)]
    plans = [_scout_with(tmp_path, f"case{i}", processor, size) for i, (processor, size) in enumerate(cases)]
    reference = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_llama4_items.py",
                            [{"vision_config": {"image_size": size, "patch_size": 14, "pixel_shuffle_ratio": 0.5},
                              "max_patches": (processor or {}).get("max_patches", 16)} for processor, size in cases])
    for plan, (_, size), ref in zip(plans, cases, reference, strict=True):
        side = size // 14
        assert plan.arch.vision.image.tokens == ref["chunks"] * ref["per_chunk"]
        assert plan.arch.vision.image.patches == ref["chunks"] * (side * side + 1)
