"""Issue 11: InternVL (InternVLChatModel) under its InternViT tower: parameters by hand, the profiling image and
video against vLLM's own processing info, and the configs the planner refuses."""

import copy
import json
from pathlib import Path

import pytest

from estimator import architecture
from estimator.errors import PlannerError
from estimator.memory import shard_fraction
from estimator.model_source import catalog_config
from tests.conftest import run_in_vllm

SCRIPT = Path(__file__).parent / "vllm_internvl_items.py"
TOWER_6B = json.loads((Path(__file__).parent / "fixtures" / "models" / "internvl-6b-tower" / "config.json").read_text())


def with_change(model: str, **change) -> dict:
    config = copy.deepcopy(catalog_config(model))
    config.update(change)
    return config


def test_internvl3_8b_is_qwen25_7b_under_internvit_300m():
    """InternVL3-8B: Qwen2.5-7B with 151,674 vocabulary rows, InternViT-300M's 24 blocks of 12,598,272 parameters
    and its 1,653,760 embedding parameters, and mlp1 (a LayerNorm over 4 x 1024 and two biased linears): the hub's
    7.94B. One image of most features is 12 tiles and the thumbnail, 256 placeholders each."""
    arch = architecture.from_config(catalog_config("OpenGVLab/InternVL3-8B"), "OpenGVLab/InternVL3-8B")
    text = 7_615_616_512 - (152_064 - 151_674) * 3584 * 2
    mlp1 = 2 * 4096 + 3584 * 4097 + 3584 * 3585
    assert arch.num_params == text + 24 * 12_598_272 + 1_653_760 + mlp1 == 7_944_373_760
    assert (arch.vision.image.tokens, arch.vision.image.patches) == (13 * 256, 13 * 1025)
    assert arch.vision.video.tokens == 256 and arch.tower_modalities == ("image", "video")


def test_internvit_6b_attention_stays_whole_where_tp_cannot_split_its_25_heads():
    arch = architecture.from_config(TOWER_6B, "internvl-6b-tower")
    qkv = next(t for t in arch.tensors if t.name.endswith("encoder.layers.0.attn.qkv"))
    fc1 = next(t for t in arch.tensors if t.name.endswith("encoder.layers.0.mlp.fc1"))
    assert shard_fraction(qkv, arch, 4) == 1 and shard_fraction(fc1, arch, 4) == 0.25
    # select_layer -2 of 3 blocks: two built
    assert len([t for t in arch.tensors if t.name.endswith(".attn.qkv")]) == 2


@pytest.mark.vllm
def test_the_image_and_video_of_most_features_are_vllms(vllm_py):
    cases = [("OpenGVLab/InternVL3-8B", catalog_config("OpenGVLab/InternVL3-8B"), 32768),
             ("OpenGVLab/InternVL3-38B", catalog_config("OpenGVLab/InternVL3-38B"), 8192),
             ("one tile, no thumbnail", TOWER_6B, 4096),
             ("six tiles without thumbnail", with_change("OpenGVLab/InternVL3_5-8B", max_dynamic_patch=6,
                                                         use_thumbnail=False), 16384)]
    answers = run_in_vllm(vllm_py, SCRIPT, [{"config": config, "seq_len": seq_len} for _, config, seq_len in cases])
    for (name, config, seq_len), theirs in zip(cases, answers, strict=True):
        vision = architecture.from_config(config, name).vision
        positions = (theirs["image_size"] // config["vision_config"]["patch_size"]) ** 2 + 1
        assert (vision.image.tokens, vision.image.patches) == (theirs["tokens"], theirs["tiles"] * positions), name
        assert (vision.video is not None) == theirs["video"], name
        if theirs["video"]:
            assert vision.video.tokens == theirs["frame_tokens"] and vision.video.patches == positions, name
            assert vision.video.slices(seq_len) == theirs["frames"], name


@pytest.mark.parametrize("change,message", [
    ({"llm_config": {"architectures": ["GptOssForCausalLM"]}}, "puts a GptOssForCausalLM language model under "
                                                               "InternViT"),
    ({"select_layer": -30}, "select_layer=-30; expected a layer index within its tower's 24 layers"),
    ({"downsample_ratio": 0.3}, "downsample_ratio=0.3"),
    ({"vision_config": {"num_attention_heads": 12, "hidden_size": 1200}}, "InternViT's 12 attention heads split "
                                                                          "over some TP sizes and not others"),
    ({"vision_config": {"norm_type": "batch_norm", "hidden_size": 1024, "num_attention_heads": 16}},
     "norm_type='batch_norm'"),
])
def test_an_internvl_the_planner_cannot_model_is_refused_by_name(change, message):
    config = with_change("OpenGVLab/InternVL3-8B", **change)
    if "vision_config" in change:
        config["vision_config"] = dict(catalog_config("OpenGVLab/InternVL3-8B")["vision_config"],
                                       **change["vision_config"])
    with pytest.raises(PlannerError, match=message):
        architecture.from_config(config, "bad/internvl")


def test_the_serve_command_trusts_the_remote_code_internvl_configs_need():
    """vLLM reads InternVL's and InternLM2's config.json through the checkpoint's own code: without
    --trust-remote-code `vllm serve` stops before loading anything. Other models get no such flag."""
    from estimator.plan import PlanRequest, make_plan

    for model in ("OpenGVLab/InternVL3-8B", "internlm/internlm2_5-7b-chat"):
        assert make_plan(PlanRequest(model=model, gpu="L40S")).serve_argv[-1] == "--trust-remote-code"
    assert "--trust-remote-code" not in make_plan(PlanRequest(model="Qwen/Qwen3-8B", gpu="L40S")).serve_argv
