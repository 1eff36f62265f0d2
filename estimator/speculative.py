"""Speculative decoding (`--speculative-config`), as vLLM 0.32 serves it: what it adds to a GPU's memory.

Two methods are modelled. ``mtp`` drafts with the multi-token-prediction layers a checkpoint ships beside its
decoder (DeepSeek-V3/R1/V3.2, GLM-4.5 to 4.7 and GLM-5, Qwen3-Next, Qwen3.5); ``ngram`` drafts on the CPU from
the prompt. Either way every decode step verifies 1 + num_speculative_tokens tokens per request, so linear-
attention layers keep one more convolution column and one more state block per draft token
(MambaSpec.num_speculative_blocks; MambaStateShapeCalculator's num_spec), and vLLM captures CUDA graphs for
those wider decode batches. MTP adds the draft layers' weights, their KV cache (the drafter's attention layers
join the target's KV cache groups: kv_cache_utils._uses_trailing_mtp_layers) and the drafter's buffers, and the
profiling pass runs the rejection sampler. Drafts from a separate model (eagle, eagle3, draft_model, ...) are
not modelled: their weights come from another checkpoint.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from estimator.decoders import decoder, deepseek
from estimator.errors import PlannerError
from estimator.hybrid import qwen3_next
from estimator.inventory import VLLM_REFERENCE_VERSION, AttentionLayer, Config, Inventory, Tensor, language_config
from estimator.validate import json_object

FLAG = "--speculative-config"
EXAMPLE = "'{\"method\": \"mtp\", \"num_speculative_tokens\": 1}'"
METHODS = ("mtp", "ngram")
# Method names vLLM still takes for MTP and maps to "mtp" with a deprecation warning (config/speculative.py
# MTPModelTypes), those of the families the planner models.
MTP_ALIASES = ("deepseek_mtp", "glm4_moe_mtp", "qwen3_next_mtp", "qwen3_5_mtp")
# SpeculativeConfig fields the planner reads; ngram's lookup window changes no memory but is part of the flag.
SETTINGS = ("method", "num_speculative_tokens", "prompt_lookup_min", "prompt_lookup_max")
NGRAM_ONLY = ("prompt_lookup_min", "prompt_lookup_max")

# The families whose MTP layers the planner builds: config.json's key for their count (and the count vLLM assumes
# without it), and how the draft joins the target's hidden state to the next token's embedding.
#   eh_proj: DeepSeek and GLM (deepseek_mtp.py, glm4_moe_mtp.py): enorm and hnorm, an nn.Linear(2H, H) that vLLM
#     builds unsharded and unquantized, the decoder layer, and the shared head's norm.
#   fc: Qwen3-Next and Qwen3.5 (qwen3_next_mtp.py, qwen3_5_mtp.py): two pre-fc norms, a ColumnParallelLinear(2H, H)
#     quantized with the checkpoint, the decoder layers (full attention), and a final norm.
MTP_FAMILIES = {
    "deepseek": ("num_nextn_predict_layers", 0, "eh_proj"),
    "glm4_moe": ("num_nextn_predict_layers", 0, "eh_proj"),
    "qwen3_next": ("num_nextn_predict_layers", 1, "fc"),
    "qwen3_5": ("mtp_num_hidden_layers", 0, "fc"),
    "qwen3_5_moe": ("mtp_num_hidden_layers", 0, "fc"),
}
# Families whose MTP layer vLLM 0.32 builds as layer 0 (SpeculativeConfig.hf_config_override sets the drafter's
# num_hidden_layers to 0 for glm4_moe_lite): it is then dense wherever the target's layer 0 is (first_k_dense_replace),
# and the drafter stops as it is built ("No Glm4MoE layer found in model.layers.", glm4_moe.py)
MTP_BUILT_AS_LAYER_0 = ("glm4_moe_lite",)
# The decoder builder of each of those families (a multimodal checkpoint's drafter is its language model's layer).
MTP_BUILDERS = {"deepseek": deepseek, "glm4_moe": decoder, "qwen3_next": qwen3_next, "qwen3_5": qwen3_next,
                "qwen3_5_moe": qwen3_next}
# The drafter's persistent [max_num_batched_tokens, hidden] buffers in the model dtype: its hidden states and
# input embeddings (v1/spec_decode/llm_base_proposer.py SpecDecodeBaseProposer.__init__).
DRAFTER_BUFFER_ROWS = 2


def speculative_settings(value, label: str = FLAG) -> tuple[tuple[str, object], ...]:
    """--speculative-config as vLLM takes it (a JSON object of SpeculativeConfig fields), checked, as sorted
    (key, value) pairs with MTP's deprecated method names spelled "mtp"."""
    value = json_object(label, value, f"the speculative method and its draft length, e.g. {EXAMPLE}")
    if not value:  # left out, or an empty object (as a stored run without drafting keeps it)
        return ()
    unknown = sorted(set(value) - set(SETTINGS))
    if unknown:
        raise PlannerError(f"{label}: {', '.join(map(str, unknown))} is not modelled by the planner; it takes "
                           f"{', '.join(SETTINGS)} (a draft from a separate model is not modelled)")
    method = value.get("method")
    method = "mtp" if method in MTP_ALIASES else method
    if method not in METHODS:
        raise PlannerError(f"{label}: method {method!r} is not modelled; the planner models mtp (the checkpoint's "
                           "own MTP layers) and ngram; drafts from a separate model (eagle, eagle3, draft_model) "
                           "are not")
    for key in ("num_speculative_tokens",) + (NGRAM_ONLY if method == "ngram" else ()):
        number = value.get(key, 1 if key != "num_speculative_tokens" else None)
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise PlannerError(f"{label}: {key} is {number!r}; expected a whole number >= 1")
    misplaced = sorted(set(value) & set(NGRAM_ONLY)) if method != "ngram" else []
    if misplaced:
        raise PlannerError(f"{label}: {', '.join(misplaced)} applies to the ngram method only; leave it out")
    if value.get("prompt_lookup_min", 1) > value.get("prompt_lookup_max", value.get("prompt_lookup_min", 1)):
        raise PlannerError(f"{label}: prompt_lookup_min {value['prompt_lookup_min']} is above prompt_lookup_max "
                           f"{value['prompt_lookup_max']}, which vLLM refuses")
    return tuple(sorted(dict(value, method=method).items()))


def speculative_json(pairs) -> str:
    """The --speculative-config value for (key, value) pairs."""
    return json.dumps(dict(pairs), separators=(",", ":"))


def draft_tokens(pairs) -> int:
    """Tokens drafted per request and step (0: no speculative decoding)."""
    return int(dict(pairs).get("num_speculative_tokens", 0))


def method(pairs) -> str | None:
    return dict(pairs).get("method")


# --- the checkpoint's MTP layers ---------------------------------------------------------------------------------


def build_mtp(raw: dict, model_id: str, family: str, uses_text) -> tuple[tuple[Tensor, ...],
                                                                          tuple[AttentionLayer, ...]]:
    """The MTP layers' tensors and KV layers (none for a family without them): the family's own decoder layer at
    the indices after the last (deepseek_mtp.py builds DeepseekV2DecoderLayer at model.layers.61 of DeepSeek-V3,
    MoE like its neighbours; Qwen's MTP layers are full attention whatever the pattern), plus the module that feeds
    it. Tensors keep the checkpoint's names (model.layers.61.*, mtp.layers.0.*), so its quantization rules apply
    to them as vLLM applies them."""
    if family not in MTP_FAMILIES:
        return (), ()
    key, default, fusion = MTP_FAMILIES[family]
    text = dict(language_config(Config(raw, model_id), uses_text))  # a copy: the decoder is built from raw too
    # vLLM reads the count at the top level, then in text_config
    count = raw.get(key, text.get(key))
    count = default if count is None else max(int(count), 0)
    if not count:
        return (), ()
    c = Config(text, model_id)
    n, hidden = c.int("num_hidden_layers"), c.int("hidden_size")
    text["num_hidden_layers"] = n + count
    if fusion == "fc":  # the decoder's own layers are built only to be dropped: their kinds do not matter
        text["layer_types"] = ["linear_attention"] * n + ["full_attention"] * count
    built = Inventory()
    attention, _ = MTP_BUILDERS[family](Config(text, model_id), built, family)
    inv = Inventory()
    inv.tensors = [t for t in built.tensors if t.layer is not None and t.layer >= n]
    if fusion == "eh_proj":
        for i in range(n, n + count):
            inv.linear(f"model.layers.{i}.eh_proj", 2 * hidden, hidden, "rep", i, kind="unquantized")
            inv.norm(f"model.layers.{i}.enorm+hnorm+shared_head.norm", 3 * hidden, i)
        return tuple(inv.tensors), tuple(attention[n:])
    inv.linear("mtp.fc", 2 * hidden, hidden, "col", n)
    inv.norm("mtp.pre_fc_norm_hidden+pre_fc_norm_embedding+norm", 3 * hidden, n)
    # the checkpoint's names: Qwen keeps its MTP layers under mtp.layers.<j>
    return tuple(replace(t, name=re.sub(r"^model\.layers\.(\d+)\.", lambda m: f"mtp.layers.{int(m.group(1)) - n}.",
                                         t.name)) for t in inv.tensors), tuple(attention[n:])


def served(arch, pairs):
    """The model as vLLM serves it with this --speculative-config: MTP's layers and KV layers after the target's
    (the last pipeline stage holds them), and each linear-attention layer's convolution window num_speculative_tokens
    columns wider (MambaStateShapeCalculator: conv_kernel - 1 + num_spec). ``arch`` must be the model as built."""
    if not pairs:
        return arch
    k, how = draft_tokens(pairs), method(pairs)
    if arch.num_speculative_tokens:
        raise PlannerError("internal: speculative decoding applied twice to one model")
    if how == "mtp" and not arch.draft_attention:
        families = ", ".join(sorted(MTP_FAMILIES))
        why = (f"its config.json names no MTP layers ({MTP_FAMILIES[arch.family][0]})" if arch.family in MTP_FAMILIES
               else f"the planner models MTP for the {families} families only")
        raise PlannerError(f"{FLAG}: method mtp needs the checkpoint's own MTP layers, and {arch.architecture} has "
                           f"none the planner knows of: {why}; use method ngram or leave {FLAG} out")
    if how == "mtp" and arch.model_type in MTP_BUILT_AS_LAYER_0 and not any(
            t.kind == "expert" and t.layer == 0 for t in arch.tensors):
        raise PlannerError(f"{FLAG}: vLLM {VLLM_REFERENCE_VERSION} builds {arch.architecture}'s MTP layer as layer 0, "
                           "which this checkpoint's first_k_dense_replace makes dense, and then fails to start (No "
                           f"Glm4MoE layer found); use method ngram or leave {FLAG} out")
    attention = tuple(widened(a, k) for a in arch.attention)
    tensors = arch.tensors
    if how == "mtp":
        attention += arch.draft_attention  # attention layers (full or MLA): no state to widen
        tensors += arch.draft_tensors
    return replace(arch, attention=attention, tensors=tensors, num_speculative_tokens=k,
                   speculative_method=how)


def widened(a: AttentionLayer, k: int) -> AttentionLayer:
    """A linear-attention layer's state with its convolution windows k columns wider."""
    if not a.conv_tensors:
        return a
    state = tuple((rows, cols + k, groups) if index < a.conv_tensors else (rows, cols, groups)
                  for index, (rows, cols, groups) in enumerate(a.state))
    return replace(a, state=state)
