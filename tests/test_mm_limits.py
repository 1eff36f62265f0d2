"""Issue 11: --limit-mm-per-prompt and --language-model-only, as vLLM 0.32 applies them: the encoder profiling pass
takes the modality with the largest item among those a prompt may carry and no more items than the limit allows;
with every modality of the tower at 0 the tower is not built at all (no weights, no pass)."""

import dataclasses
import json

import pytest
from click.testing import CliRunner

from estimator.cli import main
from estimator.errors import PlannerError
from estimator.memory import encoder_items, encoder_profile_bytes
from estimator.plan import PlanRequest, make_plan
from tests.conftest import tensor_weights

QWEN25 = "Qwen/Qwen2.5-VL-7B-Instruct"
GEMMA = "google/gemma-3-4b-it"


def plan(model=QWEN25, **flags):
    return make_plan(PlanRequest(model=model, gpu="H100", **flags))


def test_a_zero_video_limit_profiles_the_largest_image_instead():
    video = plan()
    image = plan(limit_mm_per_prompt='{"video": 0}')
    assert image.config.mm_limit("video") == 0 and image.config.mm_limit("image") == 999
    # one 16,384-placeholder image (the encoder budget holds one) in place of the 7-slice video
    held, tower = encoder_profile_bytes(image.arch, image.config)
    assert held == (65536 * 1176 + 16384 * 3584) * 2 and tower == 65536 * (2 * 1280 + 3 * 3420) * 2
    assert encoder_profile_bytes(video.arch, video.config) == (7 * held, 7 * tower)
    assert image.memory.per_gpu.kv_cache_gib > video.memory.per_gpu.kv_cache_gib + 10
    assert image.serve_argv[-2:] == ["--limit-mm-per-prompt", '{"video":0}']
    # a zero image limit leaves the video, the larger item anyway
    assert plan(limit_mm_per_prompt={"image": 0}).memory.per_gpu == video.memory.per_gpu


def test_with_every_tower_modality_at_zero_the_tower_is_not_built():
    full = plan(max_model_len=32768)
    for flags in (dict(limit_mm_per_prompt={"image": 0, "video": {"count": 0}}), dict(language_model_only=True)):
        text = plan(max_model_len=32768, **flags)
        assert text.arch.vision is None and not text.arch.multimodal
        vision_params = sum(t.numel for t in full.arch.tensors if t.kind == "vision")
        assert vision_params == 676_550_144  # Qwen2.5-VL's ViT and merger
        assert full.arch.num_params - text.arch.num_params == vision_params
        # and the tower's rotary table: 8,192 positions of half a head (its 1,280 width over 16 heads), in bf16
        assert tensor_weights(full) - tensor_weights(text) == \
            vision_params * 2 + 8192 * 40 * 2
        assert encoder_profile_bytes(text.arch, text.config) == (0, 0)
        assert text.memory.per_gpu.activation_gib < full.memory.per_gpu.activation_gib
        assert not any("vision encoder" in w for w in text.warnings)
    assert plan(language_model_only=True).serve_argv[-1] == "--language-model-only"
    assert plan(limit_mm_per_prompt={"image": 0, "video": 0}).serve_argv[-1] == '{"image":0,"video":0}'


def test_the_limit_caps_the_items_a_prompt_carries():
    # Gemma 3's 256-placeholder images: 32 fill an 8,192-token budget, unless 8 prompts of 2 images hold fewer
    flags = dict(max_model_len=8192, max_num_batched_tokens=8192)
    assert encoder_items(plan(GEMMA, max_num_seqs=8, **flags).config, 256) == 32
    capped = plan(GEMMA, max_num_seqs=8, limit_mm_per_prompt='{"image": 2}', **flags)
    assert encoder_items(capped.config, 256, capped.config.mm_limit("image")) == 16
    held, tower = encoder_profile_bytes(capped.arch, capped.config)
    assert tower == 16 * 4096 * (2 * 1152 + 2 * 4304) * 2
    # Gemma 3's tower takes images only: a video limit leaves it as it is
    assert plan(GEMMA, limit_mm_per_prompt={"video": 0}).arch.vision is not None


def test_a_tower_kept_for_a_modality_the_plan_has_no_item_for_runs_no_pass():
    # a Qwen3-VL without its video processor config: images off, videos on, so vLLM keeps the tower, but the only
    # item the plan knows is off
    base = plan("Qwen/Qwen3-VL-8B-Instruct", max_model_len=32768, limit_mm_per_prompt={"image": 0})
    no_video = dataclasses.replace(base.arch, vision=dataclasses.replace(base.arch.vision, video=None))
    assert base.arch.vision is not None and encoder_profile_bytes(base.arch, base.config) != (0, 0)
    assert encoder_profile_bytes(no_video, base.config) == (0, 0)


def test_on_a_text_only_model_the_flags_change_nothing_and_the_plan_says_so():
    base = plan("Qwen/Qwen3-8B")
    limited = plan("Qwen/Qwen3-8B", limit_mm_per_prompt={"image": 0})
    assert limited.memory.per_gpu == base.memory.per_gpu
    assert "--limit-mm-per-prompt has no effect: Qwen3ForCausalLM takes text only" in limited.warnings


@pytest.mark.parametrize("value,message", [
    ("{image: 2}", "--limit-mm-per-prompt '{image: 2}' is not JSON; give counts per modality, e.g. "
                   "'{\"image\": 2, \"video\": 0}'"),
    ("[2]", "--limit-mm-per-prompt [2] is not a JSON object; give counts per modality, e.g. "
            "'{\"image\": 2, \"video\": 0}'"),
    ('{"image": -1}', "--limit-mm-per-prompt: image -> -1; expected a count >= 0 of items per prompt"),
    ('{"image": true}', "--limit-mm-per-prompt: image -> True; expected a count >= 0 of items per prompt"),
    ('{"image": {"count": 1, "width": 512}}', "--limit-mm-per-prompt: image sets width for vLLM's dummy items, "
                                              "which changes the profiled item; the planner does not model it: "
                                              "give a count only"),
    ('{"video": {"fps": 2}}', "--limit-mm-per-prompt: video has options ['fps']; expected a count"),
])
def test_a_bad_limit_is_one_clear_line(value, message):
    with pytest.raises(PlannerError) as err:
        PlanRequest(model=QWEN25, limit_mm_per_prompt=value)
    assert str(err.value) == message
    result = CliRunner().invoke(main, ["plan", "--model", QWEN25, "--limit-mm-per-prompt", value])
    assert result.exit_code == 1 and result.output == f"Error: {message}\n"


def test_the_cli_takes_both_flags_and_a_profile_keeps_them(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["plan", "--model", QWEN25, "--gpu", "L40S", "--max-model-len", "16384",
                                  "--limit-mm-per-prompt", '{"image": 4, "video": 0}', "--json"])
    assert result.exit_code == 0, result.output
    planned = json.loads(result.output)
    assert planned["serve"]["argv"][-2:] == ["--limit-mm-per-prompt", '{"image":4,"video":0}']
    out = tmp_path / "out"
    generated = runner.invoke(main, ["generate", "--model", QWEN25, "--gpu", "L40S", "--max-model-len", "16384",
                                     "--limit-mm-per-prompt", '{"image": 4, "video": 0}', "--language-model-only",
                                     "--output-dir", str(out)])
    assert generated.exit_code == 0, generated.output
    again = json.loads(runner.invoke(main, ["plan", "--profile", str(out / "profile.yaml"), "--json"]).output)
    assert again["serve"]["argv"][-3:] == ["--limit-mm-per-prompt", '{"image":4,"video":0}',
                                           "--language-model-only"]


def test_a_profile_may_give_the_limits_as_a_mapping(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(f"schema_version: 1\nflags:\n  model: {QWEN25}\n  gpu: H100\n  limit_mm_per_prompt:\n"
                    "    video: 0\n")
    result = CliRunner().invoke(main, ["plan", "--profile", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["config"]["limit_mm_per_prompt"] == {"video": 0}


def test_a_stored_run_is_planned_again_with_its_limits():
    from calibrate.observations import plan_of
    from store.records import RunRecord

    config = {"max_model_len": 32768, "limit_mm_per_prompt": {"image": 0, "video": 0}, "runner": "generate"}
    run = RunRecord(model=QWEN25, benchmark="serve", config=config, gpu="H100", num_gpus=1,
                    workload={"input_len": 1000, "output_len": 100, "concurrency": 4})
    again = plan_of(run)
    assert again.arch.vision is None and again.config.limit_mm_per_prompt == (("image", 0), ("video", 0))
