"""AutoRound checkpoints (quantization_config quant_method "auto-round"), which vLLM 0.32 loads with its INC method
(model_executor/layers/quantization/inc): each layer's bits, group size and symmetry come from the checkpoint's
defaults, its extra_config and its block_name_to_quantize as INCConfigParser._resolve_raw reads them, and its
weights are laid out by the kernel INC hands them to: integer weights packed as GPTQ go to vLLM's GPTQ (Marlin)
method without act-order, packed as AWQ to its AWQ method; FP8 in 2-D blocks to the FP8 block method.

What vLLM refuses, or runs with a layout the planner does not size, fails closed: MXFP4/MXFP8 data, integer widths
other than 4 and 8 (vLLM sends them to the optional humming kernel), asymmetric GPTQ packing, FP8 experts, unknown
packing formats and backends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from estimator.errors import PlannerError
from estimator.quantization import QuantScheme  # quantization imports this module only when it reads a config

# INCConfig's accepted values (inc/inc.py)
SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)
SUPPORTED_FORMATS = ("auto_round:auto_gptq", "auto_round:auto_awq", "auto_round:fp8", "auto_round:llm_compressor")
SUPPORTED_BACKENDS = ("auto", "gptq", "gptq:marlin", "awq", "awq:marlin", "marlin")
DEFAULT_INT_PACKING = "auto_round:auto_gptq"
FP8_BLOCK_PACKING = "auto_round:fp8"
# Integer widths with a Marlin/GPTQ/AWQ kernel on CUDA (inc_wna16_scheme.py); the rest go to humming
MARLIN_BITS = (4, 8)
# The groups Marlin takes (marlin_utils.py MARLIN_SUPPORTED_GROUP_SIZES; -1: one scale per output channel): INC's
# GPTQ packing has no other kernel and refuses the rest, its AWQ packing falls back to the plain AWQ kernel
MARLIN_GROUP_SIZES = (-1, 32, 64, 128)
# The activation settings INC's block FP8 requires where the checkpoint states them (_validate_raw_config); the
# activation group must also equal the weight block's rows
FP8_BLOCK_ACTIVATIONS = {"act_bits": 8, "act_data_type": "fp", "act_sym": True, "act_dynamic": True,
                         "activation_scheme": "dynamic", "fmt": "e4m3"}
# What a regex key is made of (config_parser.py REGEX_SPECIAL_CHARS): a key with none of these is a layer name
REGEX_CHARS = set(r"*+?^$()[]{}|\\")
# How a multimodal checkpoint nests its language model (Hugging Face's names and vLLM's mapped ones); the planner
# names the language model's modules model.layers.N... whatever the nesting, so names are compared without it
TEXT_MODEL_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.", "model.")
# vLLM's fused linears whose checkpoint halves the planner holds as one tensor (qwen3_5.py packed_modules_mapping)
FUSED_PARTS = {"in_proj_qkvz": ("in_proj_qkv", "in_proj_z"), "in_proj_ba": ("in_proj_b", "in_proj_a")}
# vLLM's fused linears whose parts the planner holds apart (QKVParallelLinear, MergedColumnParallelLinear): where a
# layer has every part, vLLM resolves the fused name, and the parts' own entries must agree
PACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def canonical(name: str) -> str:
    """A module name without its language model's nesting (model.language_model.layers.3.mlp -> layers.3.mlp)."""
    for prefix in TEXT_MODEL_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _is_regex(key) -> bool:
    return isinstance(key, str) and any(c in REGEX_CHARS for c in key)


def _finds(key: str, name: str) -> bool:
    """Whether a regex key finds the name (re.search); a key that is not a valid regex finds nothing, as vLLM
    skips it."""
    try:
        return re.search(key, name) is not None
    except re.error:
        return False


def _group(value, where: str):
    """INCConfigParser._normalize_group_size: an int, or a 2-D block as a tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise PlannerError(f"the AutoRound quantization_config gives {where} a group_size of {list(value)!r}; "
                               "vLLM takes an integer or a 2-D block of two integers (fix the checkpoint's "
                               "quantization_config)")
        return tuple(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PlannerError(f"the AutoRound quantization_config gives {where} a group_size of {value!r}; vLLM takes an "
                           "integer or a 2-D block of two integers (fix the checkpoint's quantization_config)")
    return value


@dataclass(frozen=True)
class AutoRoundRules:
    """One AutoRound checkpoint's per-layer settings, as vLLM's INCConfigParser resolves them."""

    bits: int
    group_size: int | tuple[int, int]
    sym: bool
    data_type: str
    gptq: bool  # packed as GPTQ (else as AWQ); INCLayerConfig.is_gptq is checked first
    blocks: tuple[str, ...] | None  # block_name_to_quantize: only layers under these are quantized
    extra: tuple[tuple[str, tuple], ...] = ()  # extra_config: (key, (bits, group_size, sym) with None where unset)
    # (layer, fused linear) where the model holds every part of a PACKED linear (bound to the model's tensors)
    fused: frozenset[tuple[str, str]] = frozenset()

    def bind(self, names) -> AutoRoundRules:
        """These rules for a model with these tensors: which of its layers vLLM builds fused linears for."""
        names = set(names)
        fused = {(head, f) for name in names for head, _, leaf in [name.rpartition(".")]
                 for f, parts in PACKED.items() if leaf in parts and all(f"{head}.{p}" in names for p in parts)}
        return replace(self, fused=frozenset(fused))

    def settings(self, name: str, *, lm_head: bool = False, moe: bool, parts: tuple[str, ...] = ()) -> tuple:
        """(bits, group_size, sym) of the vLLM layer of this name, made of these parts where it is fused
        (config_parser.py _resolve_raw); bits 16: left unquantized."""
        own = canonical(name)
        names = [key for key, _ in self.extra if not _is_regex(key)]
        for key in names:  # the layer's own entry: exactly, then by its short name ("lm_head")
            if canonical(key) == own:
                return self._entry(key, True)
        for key in names:
            if own.endswith("." + canonical(key)):
                return self._entry(key, True)
        quantized = not lm_head
        if self.blocks is not None:
            quantized = any(own.startswith(canonical(block)) for block in self.blocks)
        if moe:  # every entry below a MoE layer (its experts' projections) must agree
            below = {self._entry(key, quantized) for key in names if canonical(key).startswith(own + ".")}
            if len(below) > 1:
                raise PlannerError(f"the AutoRound extra_config gives the experts of {name} different settings, which "
                                   "vLLM refuses (a fused MoE layer needs one); fix the checkpoint's "
                                   "quantization_config")
            if below:
                return below.pop()
        if any(self.explicit(part) for part in parts):  # a fused linear whose parts have entries of their own
            found = {self._config(part, quantized) for part in parts}
            if len(found) > 1:
                raise PlannerError("the AutoRound extra_config gives the parts of a fused linear "
                                   f"({', '.join(parts)}) different settings, which vLLM refuses; fix the "
                                   "checkpoint's quantization_config")
            return found.pop()
        return self._config(name, quantized)

    def _config(self, name: str, quantized: bool) -> tuple:
        """INCConfigParser's get_config: the name's own entry, else the first regex key that finds it (an invalid
        regex is skipped, as vLLM skips it), else the defaults."""
        own = canonical(name)
        for key, _ in self.extra:
            if not _is_regex(key) and canonical(key) == own:
                return self._entry(key, quantized)
        for key, _ in self.extra:
            if _is_regex(key) and _finds(key, name):
                return self._entry(key, quantized)
        return self._default(quantized)

    def _default(self, quantized: bool) -> tuple:
        return (self.bits, self.group_size, self.sym) if quantized else (16, -1, True)

    def _entry(self, key: str, quantized: bool) -> tuple:
        bits, group, sym = dict(self.extra)[key]
        default = self._default(quantized)
        return (default[0] if bits is None else bits, default[1] if group is None else group,
                default[2] if sym is None else sym)

    def explicit(self, name: str) -> bool:
        """Whether extra_config names this layer (exactly, or by a regex that matches it)."""
        own = canonical(name)
        return any(_finds(key, name) if _is_regex(key) else canonical(key) == own for key, _ in self.extra)

    def scheme_for(self, module: str, kind: str) -> QuantScheme | None:
        """The scheme vLLM gives this planner tensor (None: left in the model dtype)."""
        if kind == "expert":
            layer = module.rpartition(".")[0]
            return self.scheme(self.settings(layer, moe=True), layer, expert=True)
        head, _, leaf = module.rpartition(".")
        fused = next((f for f, parts in PACKED.items() if leaf in parts and (head, f) in self.fused), None)
        name, parts = (f"{head}.{fused}", PACKED[fused]) if fused else (module, FUSED_PARTS.get(leaf, ()))
        return self.scheme(self.settings(name, lm_head=module == "lm_head", moe=False,
                                         parts=tuple(f"{head}.{part}" for part in parts)), module)

    def scheme(self, settings: tuple, where: str, expert: bool = False) -> QuantScheme | None:
        """The layout vLLM 0.32 stores a layer of these settings in (INCWna16Scheme, INCFp8Scheme)."""
        bits, group, sym = settings
        if bits >= 16:
            return None
        if self.data_type == "fp":
            if expert:
                raise PlannerError(f"AutoRound FP8 quantizes the experts of {where}, which vLLM 0.32 does not run "
                                   "(INC's FP8 scheme has no MoE method); use an FP8 checkpoint of another format")
            return QuantScheme("fp8", 8, block=group, fp8_compute=True)
        if bits not in MARLIN_BITS:
            raise PlannerError(f"AutoRound {bits}-bit integer weights ({where}) run on vLLM's optional humming "
                               "kernel, whose layout the planner does not size; use a 4- or 8-bit checkpoint")
        if not isinstance(group, int):
            raise PlannerError(f"AutoRound integer weights ({where}) need an integer group_size, not {list(group)!r}; "
                               "fix the checkpoint's quantization_config")
        if self.gptq:
            if not sym:
                raise PlannerError(f"AutoRound asymmetric weights packed as GPTQ ({where}) are refused by vLLM 0.32 "
                                   "(its Marlin GPTQ kernel takes symmetric ones); use a symmetric or AWQ-packed "
                                   "checkpoint")
            if group not in MARLIN_GROUP_SIZES:
                raise PlannerError(f"AutoRound weights packed as GPTQ ({where}) in groups of {group} are refused by "
                                   "vLLM 0.32 (its Marlin GPTQ kernel takes groups of 32, 64 or 128, or one per "
                                   "channel: -1)")
            return QuantScheme("gptq", bits, group if group > 0 else None, zero_points=True)
        if group <= 0:
            raise PlannerError(f"AutoRound weights packed as AWQ ({where}) need a positive group_size, not {group}; "
                               "fix the checkpoint's quantization_config")
        return QuantScheme("awq", bits, group, zero_points=not sym)


def _blocks(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(value.split(","))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PlannerError(f"the AutoRound block_name_to_quantize is {value!r}; expected a comma-separated string or a "
                       "list of module names (fix the checkpoint's quantization_config)")


def _extra(value) -> tuple[tuple[str, tuple], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise PlannerError("the AutoRound extra_config is not an object of per-layer objects; fix the checkpoint's "
                           "quantization_config")
    out = []
    for key, cfg in value.items():
        bits, sym = cfg.get("bits"), cfg.get("sym")
        group = _group(cfg["group_size"], key) if "group_size" in cfg else None
        if bits is not None and (not isinstance(bits, int) or isinstance(bits, bool)):
            raise PlannerError(f"the AutoRound extra_config gives {key} bits={bits!r}; expected an integer (fix the "
                               "checkpoint's quantization_config)")
        out.append((str(key), (bits, group, None if sym is None else bool(sym))))
    return tuple(out)


def from_config(qc: dict):
    """The planner's scheme of an AutoRound quantization_config (vLLM's INCConfig.from_config and its checks)."""
    data_type = qc.get("data_type", "int")
    data_type = "fp" if data_type == "fp8" else data_type
    if "mx_fp" in str(data_type):
        raise PlannerError(f"AutoRound {data_type} (MXFP) checkpoints are not sized by the planner (supported: "
                           "integer weights packed as GPTQ or AWQ, FP8 in 2-D blocks); it will not guess their memory")
    if data_type not in ("int", "fp"):
        raise PlannerError(f"AutoRound data_type {data_type!r} is not one vLLM 0.32 runs (int, fp, mx_fp); fix the "
                           "checkpoint's quantization_config")
    if "bits" not in qc or "group_size" not in qc:
        raise PlannerError("the AutoRound quantization_config has no bits or no group_size, which vLLM requires; fix "
                           "the checkpoint's quantization_config")
    bits, group = qc["bits"], _group(qc["group_size"], "the whole model")
    if bits not in SUPPORTED_BITS:
        raise PlannerError(f"AutoRound bits={bits!r} is not a width vLLM 0.32 runs "
                           f"({', '.join(map(str, SUPPORTED_BITS))}); fix the checkpoint's quantization_config")
    packing = qc.get("packing_format") or (FP8_BLOCK_PACKING if data_type == "fp" and isinstance(group, tuple)
                                           else DEFAULT_INT_PACKING)
    backend = qc.get("backend", qc.get("vllm_backend", "auto"))
    if packing not in SUPPORTED_FORMATS or backend not in SUPPORTED_BACKENDS:
        raise PlannerError(f"AutoRound packing_format {packing!r} with backend {backend!r} is not one vLLM 0.32 loads "
                           f"(formats: {', '.join(SUPPORTED_FORMATS)}; backends: {', '.join(SUPPORTED_BACKENDS)}); "
                           "re-export the checkpoint")
    sym = bool(qc.get("sym", True))
    if data_type == "int" and (not isinstance(group, int) or packing not in (DEFAULT_INT_PACKING,
                                                                             "auto_round:auto_awq")):
        raise PlannerError("AutoRound integer weights need an integer group_size and GPTQ or AWQ packing, not "
                           f"{group!r} and {packing!r}; fix the checkpoint's quantization_config")
    if data_type == "fp":
        block_ok = bits == 8 and isinstance(group, tuple) and sym and packing == FP8_BLOCK_PACKING and \
            backend == "auto"
        expected = dict(FP8_BLOCK_ACTIVATIONS, act_group_size=group[0] if isinstance(group, tuple) else None)
        wrong = sorted(k for k, v in expected.items() if k in qc and qc[k] != v)
        if not block_ok or wrong:
            raise PlannerError("AutoRound FP8 is run by vLLM 0.32 as symmetric 8-bit weights in 2-D blocks, packed "
                               "auto_round:fp8, with dynamic FP8 activations per group of the block's rows; this "
                               f"checkpoint differs{' in ' + ', '.join(wrong) if wrong else ''} (fix its "
                               "quantization_config)")
    gptq = "gptq" in packing or "gptq" in backend  # else AWQ: integer packing is one of the two (checked above)
    rules = AutoRoundRules(bits, group, sym, data_type, gptq,
                           _blocks(qc.get("block_name_to_quantize", qc.get("to_quant_block_names"))),
                           _extra(qc.get("extra_config")))
    base = rules.scheme((bits, group, sym), "the whole model")
    return replace(base, method="inc", rules=rules,
                   quantizes_lm_head=rules.settings("lm_head", lm_head=True, moe=False)[0] < 16)
