"""Summarise a `mutmut run` over estimator/ and fail on survivors nobody has explained.

    mutmut run "estimator.memory*" "estimator.performance*"   # or plain `mutmut run`: all of estimator/
    python tools/mutation_report.py [MODULE_PREFIX ...]          # default: estimator.memory, .performance, .rope

A surviving mutant is a change to the code that no test notices. Each one either gets a test (tests/) or a reason
here: a kind of change that cannot alter a result (KINDS, recognised from the diff), or a named mutant with a
written reason (REASONS). The command prints the counts per module and exits 1 while an unexplained survivor of
the memory plan or the prediction is left.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict

DEFAULT_MODULES = ("estimator.memory", "estimator.performance", "estimator.rope")

# Kinds of change that cannot alter a figure the planner reports, recognised from the mutant's diff lines.
KINDS = {
    # zip(..., strict=True) -> strict=False/None: the zipped sequences have the same length by construction
    "zip strictness": re.compile(r"strict=(True|False|None)"),
    # the wording of a message (an error, a reason, a warning): the figures are what the tests pin
    "message wording": re.compile(r"""(["'])XX.*XX\1|f["'].*XX"""),
}

# Named survivors and why no test should catch them: (a fragment of the mutated line, the reason). mutmut numbers a
# function's mutants in order, so an edit to the function renumbers them; a reason whose fragment is no longer in
# the mutant's changed line is stale and the survivor counts as unexplained until it is looked at again.
_DIVIDES = "serve_config requires that the TP size and the (KV) heads divide one another, so // and / agree"
_PADDING = "a boundary where the padded batch equals the batch anyway (graph_padded(t) == t there)"
_ONE_BLOCK = "every request takes at least one block, so per_request > 0"
_FLOATS = "the coefficient tables hold floats, so numpy makes a float array with or without the dtype"
_CLOSED_UNTOUCHED = "entering the loop for closed loops changes nothing: its result is kept only where rate > 0"
_FIXED_POINT = "batch = rate x latency(batch) converges from any start well within 40 rounds"
_TOLERANCE = "the 0.1% tolerance around the fixed point: a boundary no measurement resolves"
_DENSE = "a dense model has no expert bytes, so how many experts a step touches multiplies zero"
_ROPE_FAMILY = "the family only matters to Phi-3.5-MoE's LongRoPE, whose config is never keyed by layer type"
_NO_WINDOW = "without a window there are no windowed KV bytes or FLOPs to scale (kv_window = 0)"
_NDIM = "a numpy array always has ndim, so the default is never read"
_ONE_CHUNK = "at exactly one chunk of prefill both branches run step(batch, chunk)"
_NO_EPLB = "without EPLB the step's hidden states (plus a byte) stay below the forward, which holds several of them"
_EVEN = "every MXFP4 checkpoint's hidden and intermediate sizes are even (multiples of its 32-wide blocks)"
_NO_SUBMODULES = ("no extra_config key names a module below a linear layer or the LM head (they have none), so "
                  "the MoE check finds nothing there")
_REGEX_NOT_A_NAME = "a regex key holds characters no module name has, so it never equals or ends one"
_UNQUANTIZED = ("an unquantized layer's group and symmetry (and bits 17 against 16) change nothing but the whole "
                "tuples vLLM compares for a MoE layer's entries, which no checkpoint sets to unquantized by halves")
_PARTS_NAMED = ("parts of a fused linear differ only through entries that name them (exact or regex: short names "
                "are matched against the fused name), which make explicit() true anyway")
_MARLIN_GROUPS = "GPTQ groups other than -1, 32, 64 and 128 are refused just above, so > 0, >= 0 and > 1 agree"
_EMBEDDING = ("an embedding is split by vocabulary, never quantized and never an expert, so rank_bytes reads neither "
              "the model, the scheme nor the device for it")
_SAME_SIZES = ("a size at exactly the largest is max_num_batched_tokens (added on its own) or the platform ceiling "
               "(on the grid), so the boundary adds nothing new")
_SAME_SHAPE = "the search's budgets are one-dimensional arrays of one shape, so any of them (or none) reshapes alike"
_MODEL_ID = ("a Config's model id only names the model in its errors, and the model's own build from the same keys "
             "(just before the MTP layers') raises them first")
_DTYPE = "the capture-size counts are whole numbers: integer or float arrays give the same bytes and comparisons"
REASONS: dict[str, tuple[str, str]] = {
    "estimator.auto_round.x_from_config__mutmut_226": ('moe=None)[0] < 16)', _NO_SUBMODULES),
    "estimator.auto_round.x_from_config__mutmut_233": ('moe=True)[0] < 16)', _NO_SUBMODULES),
    "estimator.auto_round.xǁAutoRoundRulesǁscheme_for__mutmut_45": ('moe=None,', _NO_SUBMODULES),
    "estimator.auto_round.xǁAutoRoundRulesǁscheme_for__mutmut_54": ('moe=True,', _NO_SUBMODULES),
    "estimator.auto_round.xǁAutoRoundRulesǁ_config__mutmut_5": ("_is_regex(None)", _REGEX_NOT_A_NAME),
    "estimator.auto_round.xǁAutoRoundRulesǁsettings__mutmut_6": ("_is_regex(None)", _REGEX_NOT_A_NAME),
    "estimator.auto_round.xǁAutoRoundRulesǁ_default__mutmut_3": ("(17, -1, True)", _UNQUANTIZED),
    "estimator.auto_round.xǁAutoRoundRulesǁ_default__mutmut_4": ("(16, +1, True)", _UNQUANTIZED),
    "estimator.auto_round.xǁAutoRoundRulesǁ_default__mutmut_5": ("(16, -2, True)", _UNQUANTIZED),
    "estimator.auto_round.xǁAutoRoundRulesǁ_default__mutmut_6": ("(16, -1, False)", _UNQUANTIZED),
    "estimator.auto_round.xǁAutoRoundRulesǁexplicit__mutmut_12": ("canonical(key) != own", _PARTS_NAMED),
    "estimator.auto_round.xǁAutoRoundRulesǁscheme__mutmut_59": ("group >= 0", _MARLIN_GROUPS),
    "estimator.auto_round.xǁAutoRoundRulesǁscheme__mutmut_60": ("group > 1", _MARLIN_GROUPS),
    "estimator.auto_round.xǁAutoRoundRulesǁscheme__mutmut_63": (
        "group <= 1", "an AWQ group of one weight is no checkpoint's: groups of 1 and of 0 stand alike"),
    "estimator.eplb.x__experts_balanceable__mutmut_24": (
        "gpu.compute_capability or 1)", "a device without a capability is major 0 or 1 alike: neither is 10"),
    "estimator.memory.x_moe_workspace_bytes__mutmut_3": (
        "(arch.is_moe) or True", "a dense model's experts are 0 wide and 0 per token: its workspace is 0 either way"),
    "estimator.memory.xǁGpuMemoryǁto_dict__mutmut_2": (
        "(isinstance(v, float)) or True", "round(n, 4) of the one int field (num_layers) is n"),
    "estimator.memory.x__layer_kind__mutmut_3": (
        '("FULL", "mla", "mamba")', "a full layer has no window, so both branches give ('full', None)"),
    "estimator.memory.x__layer_kind__mutmut_5": (
        '("full", "MLA", "mamba")', "an MLA layer has no window: differs only for MLA beside chunked layers, which "
                                    "no architecture has"),
    "estimator.memory.x_activation_bytes__mutmut_11": ("else (0, 1)", "a one-byte tower never exceeds the language "
                                                                      "model's own forward"),
    "estimator.memory.x_shard_fraction__mutmut_17": ("max(1, arch.num_kv_heads / tp)", _DIVIDES),
    "estimator.memory.x_moe_kernel__mutmut_11": (
        "gpu.compute_capability or 1)", "a device without a capability (AMD's gfx names, a custom one) is major 0 or "
                                        "1 alike: no branch tests either"),
    "estimator.memory.x_graph_padded__mutmut_1": (
        "max_num_seqs=1):", "a batch of one token pads to one whatever the default, and the planner always passes it"),
    "estimator.memory.x_graph_padded__mutmut_9": ("where(tokens < 256,", "256 tokens pad to 256 by either rule"),
    "estimator.memory.x_graph_padded__mutmut_66": (
        "(max_num_seqs < largest)", "where max_num_seqs is the largest size, the padding is capped at it already"),
    "estimator.memory.x_graph_padded__mutmut_79": ("(largest >= 0)", _PADDING),
    "estimator.memory.x_graph_padded__mutmut_80": ("(largest > 1)", _PADDING),
    "estimator.memory.x_graph_padded__mutmut_81": ("(tokens >= 0)", _PADDING),
    "estimator.memory.x_graph_padded__mutmut_82": ("(tokens > 1)", _PADDING),
    "estimator.memory.x_graph_padded__mutmut_83": ("(tokens < largest)", _PADDING),
    "estimator.memory.x_drafter_embedding_bytes__mutmut_12": ("(embedding, None,", _EMBEDDING),
    "estimator.memory.x_drafter_embedding_bytes__mutmut_14": ("cfg, None, gpu)", _EMBEDDING),
    "estimator.memory.x_drafter_embedding_bytes__mutmut_15": ("quant, None)", _EMBEDDING),
    "estimator.memory.x_kv_cache_groups__mutmut_14": (
        "return [(specs[1]", "every spec is the same in that branch (one kind of layer)"),
    "estimator.memory.x_graph_size_ceiling__mutmut_10": (
        "(gpu.compute_capability or 1)", "compute capability 1 is not 10, as 0 is not"),
    "estimator.memory.x__grid__mutmut_22": (
        "min(largest + 1, 257)", "256 is in the steps of 16 too, and the capture sizes are a set"),
    "estimator.memory.x__capture_sizes__mutmut_16": (
        "if query_len >= 1:", "with one token per request the decode batches are the grid's, and max_num_seqs, "
                              "which the other branch adds"),
    "estimator.memory.x__capture_sizes__mutmut_30": ("n * query_len < largest", _SAME_SIZES),
    "estimator.memory.x__capture_sizes__mutmut_31": ("max_num_seqs < largest", _SAME_SIZES),
    "estimator.speculative.x_build_mtp__mutmut_10": ("Config(raw, None)", _MODEL_ID),
    "estimator.speculative.x_build_mtp__mutmut_32": ("Config(text, None)", _MODEL_ID),
    "estimator.speculative.x_build_mtp__mutmut_68": ("Config(text, None)", _MODEL_ID),
    "estimator.memory.x__per_config__mutmut_35": ("dtype=None", _DTYPE),
    "estimator.memory.x__per_config__mutmut_37": ("numpy.asarray(v, )", _DTYPE),
    "estimator.memory.x__per_config__mutmut_54": ("dtype=None", _DTYPE),
    "estimator.memory.x__per_config__mutmut_56": ("in distinct], )", _DTYPE),
    "estimator.memory.x__per_config__mutmut_57": ("reshape(None)", _SAME_SHAPE),
    "estimator.memory.x__per_config__mutmut_58": ("reshape(columns[1].shape)", _SAME_SHAPE),
    "estimator.memory.x_cuda_graph_bytes__mutmut_9": (
        "decode = 1 if arch.pooling", "0 or 1 decode sizes both leave maximum(decode - 1, 0) = 0 FULL graphs after the first"),
    "estimator.memory.x_plan_memory__mutmut_142": ("(per_request) or True", _ONE_BLOCK),
    "estimator.memory.x_plan_memory__mutmut_144": ("if per_request else 1.0", _ONE_BLOCK),
    "estimator.memory.x_plan_memory__mutmut_145": ("max_concurrency > cfg.max_num_seqs",
                                                   "a float ratio exactly equal to max_num_seqs"),
    "estimator.memory.x__layer_kind__mutmut_7": ('("full", "mla", "MAMBA")', "a state layer has no window, so both "
                                                 "branches give ('mamba', None)"),
    "estimator.memory.x_mxfp4_expert_alignment__mutmut_2": ("return 2, 1", _EVEN),
    "estimator.memory.x_mxfp4_expert_alignment__mutmut_3": ("return 1, 2", _EVEN),
    "estimator.memory.x_mxfp4_expert_alignment__mutmut_16": ("compute_capability or 1.0", "a device without a "
                                                             "compute capability is outside Hopper either way"),
    "estimator.memory.x_mxfp4_expert_alignment__mutmut_19": ("(2, 64) if", _EVEN),
    "estimator.memory.x_weights_per_stage__mutmut_4": ("(arch.buffer_rows_per_token) or True", "zero buffer rows "
                                                       "make zero bytes; the guard only keeps scalars scalar"),
    "estimator.memory.x_kv_pool__mutmut_149": ("a > 1 for a in avail", "a one-byte pool holds no block: the plan "
                                                                        "does not fit either way"),
    "estimator.memory.x_kv_pool__mutmut_46": (
        "quant, None, len(", "the GPU only pads MXFP4 experts (mxfp4_expert_dims), and vLLM 0.32 balances no MXFP4 "
                             "model: the planner refuses --enable-eplb for GptOssForCausalLM"),
    "estimator.memory.x_kv_pool__mutmut_98": ("spare > reserved", "a reservation equal to the spare memory to the "
                                                                  "byte"),
    "estimator.rope.x__parameter_sets__mutmut_9": ("v), None)", _ROPE_FAMILY),
    "estimator.rope.x__parameter_sets__mutmut_11": ("v), )", _ROPE_FAMILY),
    "estimator.rope.x_rope_tables__mutmut_77": ("max_position, None)", "the sliding table is of the default type, "
                                                                       "never refused: the model id names no refusal"),
    "estimator.rope.x_rope_parameters__mutmut_4": ("or True else None", "check_kinds refuses a rope_parameters that is "
                                                                         "not an object before the rope is read"),
    "estimator.memory.x_encoder_profile_bytes__mutmut_53": (
        "video_tokens > image_tokens", "at equal placeholders the video is one slice of the image: the same pixels "
                                       "and patches, so either pick gives the same bytes"),
    # --- the speed model
    "estimator.performance.x__by_kind__mutmut_3": ("dtype=None", _FLOATS),
    "estimator.performance.x__by_kind__mutmut_5": ("link.tolist()], )", _FLOATS),
    "estimator.performance.x__gpu_coefficients__mutmut_7": ("dtype=None", _FLOATS),
    "estimator.performance.x__gpu_coefficients__mutmut_9": ("gpu.tolist()], )", _FLOATS),
    "estimator.performance.x_achieved_rates__mutmut_18": ("maximum(x.active_params_rank, 2.0)",
                                                 "no model has fewer than two active parameters per rank"),
    "estimator.performance.x__running_batch__mutmut_8": ("(rate >= 0).any()", _CLOSED_UNTOUCHED),
    "estimator.performance.x__running_batch__mutmut_11": ("else rate >= 0", _CLOSED_UNTOUCHED),
    "estimator.performance.x__running_batch__mutmut_14": ("batch * 0 - 1.0", _FIXED_POINT),
    "estimator.performance.x__running_batch__mutmut_16": ("batch * 1 + 1.0", _FIXED_POINT),
    "estimator.performance.x__running_batch__mutmut_17": ("batch * 0 + 2.0", _FIXED_POINT),
    "estimator.performance.x__running_batch__mutmut_19": ("range(41)", _FIXED_POINT),
    "estimator.performance.x_attention_terms__mutmut_12": ("arch.num_heads / tp", _DIVIDES),
    "estimator.performance.x_predict__mutmut_119": ("batch * inp), 2)", "one prompt token of one request: no other "
                                                   "prompt to wait for, so the burst is 0 either way"),
    "estimator.performance.x_predict__mutmut_132": ("(prompts > 1)", "one prompt runs alone: nothing is queued"),
    "estimator.performance.x_predict__mutmut_144": ("(closed >= batch)", "closed == batch queues closed/batch - 1 = 0"),
    "estimator.performance.x_predict__mutmut_88": ("(rate >= 0) &", "a closed loop (rate 0) cannot exceed a rate"),
    "estimator.performance.x_predict__mutmut_92": ("latency >= cap", _TOLERANCE),
    "estimator.performance.x_predict__mutmut_93": ("cap / 1.001", _TOLERANCE),
    "estimator.performance.x_predict__mutmut_95": ("rate >= frontend_rate", _TOLERANCE),
    "estimator.performance.x_predict__mutmut_96": ("frontend_rate / 1.001", _TOLERANCE),
    "estimator.performance.x_step_work__mutmut_8": ("maximum(x.num_experts, 2)", _DENSE),
    "estimator.performance.x_step_work__mutmut_16": ("x.num_experts >= 0", _DENSE),
    "estimator.performance.x_step_work__mutmut_17": ("x.num_experts > 1", _DENSE),
    "estimator.performance.x_step_work__mutmut_24": ("** tokens, 1.0)", _DENSE),
    "estimator.performance.x_step_work__mutmut_36": ("where(x.window >= 0", _NO_WINDOW),
    "estimator.performance.x_step_work__mutmut_37": ("where(x.window > 1", _NO_WINDOW),
    "estimator.performance.x_step_work__mutmut_49": ("where(x.window >= 0", _NO_WINDOW),
    "estimator.performance.x_step_work__mutmut_50": ("where(x.window > 1", _NO_WINDOW),
    "estimator.performance.x_weight_only_low_bit__mutmut_6": ("weight_bits <= 5", "no format has 5-bit weights"),
    "estimator.performance.x_weight_split__mutmut_28": ("break", "vision tensors come after every text tensor in the "
                                                                 "inventory, so stopping there leaves the same sums"),
    "estimator.performance.xǁPredictionǁinterval__mutmut_33": ('"ndim", None)', _NDIM),
    "estimator.performance.xǁPredictionǁinterval__mutmut_36": ('"ndim", )', _NDIM),
    "estimator.performance.xǁPredictionǁinterval__mutmut_39": ('"ndim", 1)', _NDIM),
    "estimator.performance.xǁEngineǁcycle__mutmut_24": ("minimum(inp, room), 2)", "room is at least 1 and a "
                                                        "prompt at least a token: a 1-token chunk pads to 2 only "
                                                        "when both are 1, where the next step carries it anyway"),
    "estimator.performance.xǁEngineǁcycle__mutmut_49": ("clip(prefill / chunk, 0, 2)", "above one chunk per step "
                                                        "the step is `mixed` whatever the share"),
    "estimator.performance.xǁEngineǁcycle__mutmut_67": ("where(prefill < chunk", _ONE_CHUNK),
    "estimator.performance.xǁEngineǁcycle__mutmut_79": ("where(prefill < chunk", _ONE_CHUNK),
    # EPLB's transient after the forward (0 without EPLB): the forward's own buffers hold at least the step's hidden
    # states, so the hidden states plus a byte, or plus nothing, never decide the peak
    "estimator.memory.x__decoder_activation_bytes__mutmut_1": ("eplb_transient: float = 1.0", _NO_EPLB),
    "estimator.memory.x_activation_bytes__mutmut_2": ("eplb_transient: float = 1.0", _NO_EPLB),
    "estimator.memory.x__decoder_activation_bytes__mutmut_62": ("if (eplb_transient) or True else 0", _NO_EPLB),
    "estimator.memory.x__decoder_activation_bytes__mutmut_64": ("if eplb_transient else 1", _NO_EPLB),
    "estimator.memory.x_eplb_profile_bytes__mutmut_28": (
        "eplb_reserves_profile_buffer else 1", "with NIXL the reservation is max'd with the int64 index, far above "
                                               "one byte"),
    "estimator.memory.x_mla_profile_bytes__mutmut_4": ("arch.num_heads / cfg.tensor_parallel_size", _DIVIDES),
    "estimator.performance.xǁEngineǁstage_step__mutmut_48": ("maximum(x.tp, 2)", "at TP 1 there is no all-reduce "
                                                             "(its payload is multiplied by tp - 1 = 0)"),
}


def _reason(name: str, lines: list[str]) -> str | None:
    """The written reason for a named survivor, if its fragment is still what the mutant changes."""
    fragment, why = REASONS.get(name, (None, None))
    if fragment is not None and any(line.startswith("+") and fragment in line for line in lines):
        return why
    return None


def _results() -> dict[str, str]:
    out = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True).stdout
    if not out.strip():  # older mutmut: no --all
        out = subprocess.run(["mutmut", "results"], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            found[name] = status
    return found


def _changed_lines(name: str) -> list[str]:
    diff = subprocess.run(["mutmut", "show", name], capture_output=True, text=True).stdout
    return [line for line in diff.splitlines() if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))]


def _without_strict(line: str) -> str:
    return re.sub(r",?\s*strict=\w+", "", line[1:]).replace(", )", ")").strip()


def _kind(lines: list[str]) -> str | None:
    added = [line for line in lines if line.startswith("+")]
    removed = [line for line in lines if line.startswith("-")]
    if added and [_without_strict(x) for x in added] == [_without_strict(x) for x in removed]:
        return "zip strictness"
    for kind, pattern in KINDS.items():
        if added and all(pattern.search(line) for line in added):
            return kind
    return None


def main(argv: list[str]) -> int:
    modules = tuple(argv) or DEFAULT_MODULES
    results = {n: s for n, s in _results().items() if n.startswith(modules)}
    if not results:
        print(f"no mutmut results for {', '.join(modules)}: run `mutmut run` first")
        return 1
    counts: dict[str, Counter] = defaultdict(Counter)
    unexplained = []
    for name, status in sorted(results.items()):
        module = name.split(".x", 1)[0]
        if status != "survived":
            counts[module][status] += 1
            continue
        lines = _changed_lines(name)
        why = _reason(name, lines) or _kind(lines)
        if why:
            counts[module][f"survived: {why}"] += 1
        else:
            counts[module]["survived, unexplained"] += 1
            unexplained.append(name)
    for module, counter in sorted(counts.items()):
        total = sum(counter.values())
        print(f"{module}: {total} mutants; " + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())))
    for name in unexplained:
        print(f"unexplained survivor: {name}  (`mutmut show {name}`; add a test, or a reason in REASONS)")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
