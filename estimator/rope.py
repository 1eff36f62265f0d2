"""The rotary-embedding caches vLLM allocates when it builds a model: each distinct get_rope() call keeps a
[positions, rotary_dim] cos/sin table for the process's life (vllm/model_executor/layers/rotary_embedding,
_ROPE_DICT shares one table among the layers that ask for the same one). "Model loading took" counts them, and on
some models they are far from small: Llama 4 Scout's 10,485,760 positions x 128 in bf16 is 2.5 GiB on every GPU,
Gemma 3's linearly scaled global table 8 x its 131,072 positions.

The vision towers' own rotary tables (a few thousand positions) are left out.
"""

from __future__ import annotations

import math

from estimator.errors import PlannerError

# How many positions each rope type's table holds, as vLLM 0.32's classes compute it (rotary_embedding/*.py):
# max_position (the model's max_position_embeddings), original (rope_parameters'
# original_max_position_embeddings) and factor.
_POSITIONS = {
    "default": lambda max_position, original, factor: max_position,  # RotaryEmbedding
    "llama3": lambda max_position, original, factor: max_position,  # Llama3RotaryEmbedding
    "dynamic": lambda max_position, original, factor: max_position,  # DynamicNTK{Scaling,Alpha}RotaryEmbedding
    "ntk": lambda max_position, original, factor: max_position,  # NTKScalingRotaryEmbedding
    "linear": lambda max_position, original, factor: max_position * factor,  # LinearScalingRotaryEmbedding
    "yarn": lambda max_position, original, factor: original * factor,  # YaRNScalingRotaryEmbedding
    "deepseek_yarn": lambda max_position, original, factor: original * factor,  # DeepseekScalingRotaryEmbedding
    "longrope": lambda max_position, original, factor: original + max_position,  # short and long tables
    # Gemma 4's global layers (gemma4_rope.py Gemma4RotaryEmbedding): the whole head is in the table, the
    # unrotated part as an identity rotation
    "proportional": lambda max_position, original, factor: max_position,
}
_ALIASES = {"mrope": "default", "su": "longrope"}  # transformers' older names (vLLM's patch_rope_parameters)
# Qwen2's decoder builds multimodal RoPE over 4 x max_position positions (video indices may exceed the token
# count; qwen2.py get_rope's mrope_positions_factor); Qwen3-VL over 1 x without video pruning (qwen3_vl.py).
MROPE_POSITIONS_FACTOR = {"qwen2": 4}
# Cohere's attention sizes its table by model_max_length where config.json has one, else max_position_embeddings
# (commandr.py CohereAttention)
MODEL_MAX_LENGTH_FIRST = frozenset(("cohere", "cohere2"))
MIMO_DEFAULT_ROPE_THETA = 1_000_000  # mimo_v2.py: getattr(config, "rope_theta", 1000000)


# Config classes that drop a top-level original_max_position_embeddings (transformers 5's PhimoeConfig declares
# no such field; its rope standardization then takes max_position_embeddings): vLLM sees the scaled length.
IGNORES_TOP_LEVEL_ORIGINAL = frozenset(("phimoe",))


def rope_parameters(text: dict, family: str = "") -> dict:
    """The rope parameters as vLLM reads them from a config.json (its patch_rope_parameters): rope_scaling (or
    rope_parameters) with rope_type resolved and partial_rotary_factor and the original length folded in."""
    raw = text.get("rope_parameters") if isinstance(text.get("rope_parameters"), dict) else None
    params = dict(raw if raw is not None else (text.get("rope_scaling") or {}))
    kind = params.get("rope_type") or params.get("type") or "default"
    params["rope_type"] = _ALIASES.get(kind, kind)
    for key in ("partial_rotary_factor", "original_max_position_embeddings"):
        if key not in params and text.get(key) is not None:
            params[key] = text[key]
    if family in IGNORES_TOP_LEVEL_ORIGINAL and "original_max_position_embeddings" not in (text.get("rope_scaling")
                                                                                          or {}):
        params.pop("original_max_position_embeddings", None)
    return params


def longrope_default_len(text: dict, family: str) -> int | None:
    """vLLM's default max_model_len for a LongRoPE model: the original length it sees (config/model.py
    _get_and_verify_max_len); None for other rope types."""
    params = rope_parameters(text, family)
    if params["rope_type"] != "longrope":
        return None
    return int(params.get("original_max_position_embeddings") or text.get("max_position_embeddings") or 2048)


def _parameter_sets(text: dict, family: str) -> list[tuple[str | None, dict]]:
    """(layer type, parameters) per table: a config whose rope_parameters are keyed by layer type (transformers
    v5's Gemma 3 and Gemma 4: sliding_attention, full_attention) has one per type."""
    raw = text.get("rope_parameters")
    if isinstance(raw, dict) and raw and all(isinstance(v, dict) for v in raw.values()):
        return [(kind, rope_parameters(dict(text, rope_parameters=v), family)) for kind, v in raw.items()]
    return [(None, rope_parameters(text, family))]


def table_elements(params: dict, head_size: int, max_position: int, model_id: str,
                   mrope_positions_factor: int = 1) -> int:
    """Elements of one get_rope() table: its positions times its rotary dimension."""
    kind = params["rope_type"]
    if kind not in _POSITIONS:
        raise PlannerError(f"config.json of {model_id} has rope type {kind!r}, which the planner does not know "
                           f"(known: {', '.join(sorted(_POSITIONS))}); vLLM refuses unknown rope types too")
    rotary_dim = params.get("rope_dim") or int(head_size * float(params.get("partial_rotary_factor", 1.0)))
    if kind == "proportional":
        rotary_dim = head_size
    factor = float(params.get("factor") or 1.0)
    original = int(params.get("original_max_position_embeddings") or max_position)
    if "mrope_section" in params and kind in ("default", "yarn"):
        max_position, original = max_position * mrope_positions_factor, original * mrope_positions_factor
    positions = _POSITIONS[kind](max_position, original, factor)
    return math.ceil(positions) * rotary_dim  # torch.arange of a float length rounds up


def rope_tables(text: dict, family: str, head_size: int, model_id: str,
                head_sizes: dict[str, int] | None = None) -> tuple[tuple[int, int | None], ...]:
    """(elements, bytes per element or None for the model dtype) of each table the decoder's attention layers
    build. ``head_size`` is what vLLM passes as the rope's head size (qk_rope_head_dim for MLA); ``head_sizes``
    that of the layers of each type, where rope_parameters are keyed by layer type and the types' heads differ
    (Gemma 4's global layers)."""
    if family in ("nemotron_h", "kimi_linear", "opt", "gpt2", "jamba") or (family == "granitemoehybrid"
                                                   and text.get("position_embedding_type") != "rope"):
        # no rotary encoding in the attention layers: OPT's and GPT-2's positions are learned tables, Jamba has none,
        # and Kimi-Linear's MLA builds no rotary embedding (its MultiHeadLatentAttention's use_rope is left false,
        # kimi_k3/nvidia/mla.py)
        return ()
    max_position = int(text.get("max_position_embeddings") or 8192)
    if family in MODEL_MAX_LENGTH_FIRST and isinstance(text.get("model_max_length"), int) \
            and text["model_max_length"] > 0:
        max_position = text["model_max_length"]
    factor = MROPE_POSITIONS_FACTOR.get(family, 1)
    tables = []
    for layer_type, params in _parameter_sets(text, family):
        if family == "minimax_m2" and "partial_rotary_factor" not in params and text.get("rotary_dim"):
            params["partial_rotary_factor"] = int(text["rotary_dim"]) / head_size  # minimax_m2.py
        if family == "glm4":  # glm4.py: half the head rotates unless the config says otherwise
            params.setdefault("partial_rotary_factor", 0.5)
        size = (head_sizes or {}).get(layer_type, head_size)
        tables.append(table_elements(params, size, max_position, model_id, factor))
    if family == "mimo_v2":
        # mimo_v2.py: each attention type asks for a default rope of its own base and head size (rope_theta,
        # swa_rope_theta); layers asking for the same one share it
        theta = text.get("rope_theta", MIMO_DEFAULT_ROPE_THETA)
        kinds = {(int(text["head_dim"]), theta), (int(text.get("swa_head_dim") or text["head_dim"]),
                                                   text.get("swa_rope_theta", theta))}
        default = dict(rope_parameters(text, family), rope_type="default")  # (partial_rotary_factor folded in)
        tables = [table_elements(default, size, max_position, model_id) for size, _ in sorted(kinds, key=str)]
    if family == "gemma3" and text.get("rope_local_base_freq") is not None and len(tables) == 1:
        # the sliding layers' own unscaled table (gemma3.py: rope_local_base_freq, no scaling)
        tables.append(table_elements({"rope_type": "default"}, head_size, max_position, model_id))
    if family == "deepseek" and text.get("index_topk"):
        # the sparse indexer's table: the same rope with the other rotation style (deepseek_v2.py), a table of its
        # own unless the indexer interleaves as the latent attention does
        if not text.get("indexer_rope_interleave"):
            tables.append(tables[0])
    # gpt-oss builds its rope in float32 (gpt_oss.py get_rope(dtype=torch.float32))
    dtype = 4 if family == "gpt_oss" else None
    return tuple((elements, dtype) for elements in tables)
