"""Weight storage of quantized checkpoints, read from config.json's ``quantization_config``.

Byte counts follow each format's tensor layout as vLLM loads it (packed weights, scales, zero points,
act-order indices). Unknown methods fail closed.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace

from estimator.errors import PlannerError

# Methods we can size; anything else in a checkpoint is an error, never a guess.
SUPPORTED_METHODS = ("awq", "gptq", "compressed-tensors", "fp8", "mxfp4", "modelopt", "quark", "auto-round")
# vLLM names for --quantization that make sense on an unquantized bf16/fp16 checkpoint (online quantization).
ONLINE_METHODS = ("fp8",)
# vLLM 0.32's --quantization choices (vllm/model_executor/layers/quantization/__init__.py QUANTIZATION_METHODS; a test
# checks them against the installed vLLM). bitsandbytes and GGUF are not among them any more.
VLLM_QUANTIZATION_METHODS = (
    "awq", "auto_awq", "fp8", "fbgemm_fp8", "fp_quant", "modelopt", "modelopt_fp4", "modelopt_mxfp8", "modelopt_mixed",
    "auto_gptq", "gptq", "gptq_marlin", "awq_marlin", "humming", "compressed-tensors", "experts_int8", "quark",
    "moe_wna16", "torchao", "inc", "mxfp4", "gpt_oss_mxfp4", "deepseek_v4_fp8", "online", "fp8_per_tensor",
    "fp8_per_block", "fp8_per_channel", "int8_per_channel_weight_only", "nvfp4_per_token", "mxfp8")


@dataclass(frozen=True)
class QuantScheme:
    """How quantizable linear weights are stored. ``method`` is vLLM's --quantization spelling."""

    method: str
    weight_bits: int
    group_size: int | None = None  # None: per-channel or per-tensor scales
    zero_points: bool = False
    act_order: bool = False  # GPTQ desc_act: an int32 g_idx per input row
    block: tuple[int, int] | None = None  # fp8 block-wise scales (rows, cols)
    scale_bytes: int = 2
    channel_scales: bool = False  # one fp32 scale per output channel
    experts_only: bool = False  # mxfp4 in gpt-oss: only MoE experts are quantized
    ignore: tuple[str, ...] = field(default_factory=tuple)  # module patterns left in the checkpoint dtype
    online: bool = False  # quantized by vLLM at load time, not by the checkpoint
    fp8_compute: bool = False  # W8A8 FP8: uses FP8 tensor cores where the GPU has them
    int8_compute: bool = False  # W8A8 INT8: int8 tensor cores
    # ModelOpt's exclusion rule: a pattern anywhere in the module's name, or a wildcard matching it
    substring_ignore: bool = False
    quantizes_lm_head: bool = False  # ModelOpt quantizes the LM head too unless its exclusions name it
    kv_cache_dtype: str | None = None  # what --kv-cache-dtype auto means for this checkpoint (vLLM's spelling)
    fp4_activations: bool = False  # NVFP4 W4A4: activations quantized to FP4 too (W4A16 keeps them 16-bit)
    ocp_mx: bool = False  # Quark's OCP MX (MXFP4/6/8) linears: group_size 32, one uint8 e8m0 scale per group
    # FP8 with one static (calibrated) input scale per tensor, as the weights' per-tensor scale: the scheme
    # FlashInfer's FP8 MoE kernels take besides 128-blocks (kFp8StaticTensorSym weights and activations)
    static_activations: bool = False
    # compressed-tensors' config groups: (target, its scheme) in vLLM's lookup order; empty: one scheme for all
    targets: tuple[tuple[str, QuantScheme], ...] = ()
    # ModelOpt MIXED_PRECISION: (layer name, its scheme) from quantized_layers, in the checkpoint's order
    layers: tuple[tuple[str, QuantScheme], ...] = ()
    # AutoRound's per-layer settings (auto_round.AutoRoundRules), which answer scheme_for themselves
    rules: object | None = None

    def to_dict(self) -> dict:
        return {"method": self.method, "weight_bits": self.weight_bits, "group_size": self.group_size,
                "online": self.online}

    @property
    def nvfp4(self) -> bool:
        """NVFP4 weights (ModelOpt's or compressed-tensors'): 4-bit floats, a float8 scale per 16."""
        return self.weight_bits == 4 and self.group_size == 16 and self.scale_bytes == 1

    def scheme_for(self, module: str, kind: str, shard: str = "col") -> QuantScheme | None:
        """The scheme vLLM gives a linear or expert weight that no ignore entry names (None: left unquantized):
        the one scheme, or the config group whose target matches it as CompressedTensorsConfig.get_scheme_dict
        finds it: by name (exact, or a "re:" regex), else by vLLM's layer class containing the target. Experts are
        looked up as vLLM does, by expert 0's gate, up and down projections, which must agree."""
        if self.rules is not None:
            return self.rules.scheme_for(module, kind)
        if self.layers:
            return self._layer(module, kind)
        if not self.targets:
            return self
        if kind == "expert":
            layer = module.rpartition(".")[0]
            found = {self._target(f"{layer}.0.{proj}", "RoutedExperts") for proj in ("gate_proj", "up_proj",
                                                                                     "down_proj")}
            if len(found) > 1:
                raise _fail(f"the experts of {layer} match compressed-tensors config groups of different schemes, "
                            "which vLLM refuses (all MoE projections need the same scheme); fix the checkpoint's "
                            "quantization_config")
            return found.pop()
        return self._target(module, "RowParallelLinear" if shard == "row" else "ColumnParallelLinear")

    def _layer(self, module: str, kind: str) -> QuantScheme | None:
        """ModelOptMixedPrecisionConfig._resolve_quant_algo: the layer's own entry, else the first entry below it;
        routed experts (one vLLM layer, named by their prefix) take the first entry below the experts, else below
        their MLP. A layer no entry names stays unquantized."""
        if kind == "expert":
            experts = module.rpartition(".")[0]
            below = (experts + ".", experts.rsplit(".experts", 1)[0] + ".")
        else:
            exact = next((scheme for name, scheme in self.layers if name == module), None)
            if exact is not None:
                return exact
            below = (module + ".",)
        for prefix in below:
            hit = next((scheme for name, scheme in self.layers if name.startswith(prefix)), None)
            if hit is not None:
                return hit
        return None

    def _target(self, name: str, layer_class: str) -> QuantScheme | None:
        for target, scheme in self.targets:
            if target == name or (target.startswith("re:") and re.match(target[3:], name)):
                return scheme
        for target, scheme in self.targets:  # utils.py find_matched_target: the class name contains the target
            if not target.startswith("re:") and target.lower() in layer_class.lower():
                return scheme
        return None

    def skips(self, module: str) -> bool:
        """True when the checkpoint keeps ``module`` unquantized (vLLM's ignore / modules_to_not_convert)."""
        if self.substring_ignore:
            # modelopt.py ModelOptQuantConfigBase.is_layer_excluded: exact, substring, then wildcard matching
            return any(pattern in module or fnmatch.fnmatchcase(module, pattern) for pattern in self.ignore)
        for pattern in self.ignore:
            if pattern.startswith("re:"):
                if re.match(pattern[3:], module):
                    return True
            elif "*" in pattern:
                if fnmatch.fnmatchcase(module, pattern) or fnmatch.fnmatchcase(module, pattern + ".*"):
                    return True
            elif pattern == module or module.startswith(pattern + ".") or pattern in module.split(".") \
                    or module.endswith("." + pattern):
                return True
        return False

    def linear_bytes(self, rows: int, cols: int, copies: int) -> float:
        """Bytes of one quantized linear weight [rows=out, cols=in] x copies, scales included."""
        numel = rows * cols * copies
        nbytes = numel * self.weight_bits / 8
        if self.group_size:
            groups_per_row = -(-cols // self.group_size)
            scales = rows * groups_per_row * copies
            nbytes += scales * self.scale_bytes
            if self.zero_points:
                nbytes += scales * self.weight_bits / 8  # packed like the weights
        elif self.block:
            br, bc = self.block
            nbytes += (-(-rows // br)) * (-(-cols // bc)) * copies * 4  # fp32 weight_scale_inv per block
        elif self.channel_scales:
            nbytes += rows * copies * 4
        else:
            nbytes += copies * 4  # one per-tensor scale
        if self.act_order:
            nbytes += cols * copies * 4
        return nbytes


def _fail(msg: str) -> PlannerError:
    return PlannerError(msg)


def _ignore_list(qc: dict, *keys: str) -> tuple[str, ...]:
    out: list[str] = []
    for k in keys:
        v = qc.get(k)
        if v:
            out.extend(str(x) for x in v)
    return tuple(out)


# compressed-tensors' 4-bit float layouts vLLM runs (compressed_tensors.py _is_nvfp4_format, _is_mxfp4): NVFP4, one
# float8 scale per 16 values (strategy tensor_group, beside a per-tensor global scale of a few bytes), and MXFP4,
# one e8m0 scale per 32 (strategy group); both symmetric
FP4_LAYOUTS = {("tensor_group", 16): "NVFP4", ("group", 32): "MXFP4"}


def _fp4_group(w: dict) -> int:
    layout = (w.get("strategy"), w.get("group_size"))
    if layout not in FP4_LAYOUTS or not w.get("symmetric", True):
        raise _fail(f"compressed-tensors 4-bit float weights with strategy {layout[0]!r} and group_size "
                    f"{layout[1]!r} are not a layout vLLM runs (NVFP4: tensor_group of 16; MXFP4: group of 32, "
                    "both symmetric); the planner will not guess their memory")
    return layout[1]


def _compressed_tensors(qc: dict) -> QuantScheme:
    """Every config group's scheme by its targets, in the order vLLM looks them up (CompressedTensorsConfig's
    target_scheme_map: a target a later group names again takes that group's scheme, in its first place; groups
    without weights, attention-only ones, are left out; experts match "Linear" through "RoutedExperts")."""
    groups = qc.get("config_groups") or {}
    if not groups:
        raise _fail("compressed-tensors quantization_config has no config_groups; the planner cannot size its weights")
    by_target: dict[str, QuantScheme] = {}
    for g in groups.values():
        w = (g or {}).get("weights")
        if not w:
            continue
        scheme = _compressed_tensors_group(w, (g or {}).get("input_activations"))
        targets = (g or {}).get("targets") or []
        if not isinstance(targets, list):
            raise _fail("a compressed-tensors config group's targets are not a list; fix the checkpoint's "
                        "quantization_config")
        for target in targets:
            by_target[str(target)] = scheme
    if not by_target:
        raise _fail("compressed-tensors quantization_config has no weight scheme with targets; the planner cannot "
                    "size its weights")
    if "Linear" in by_target and "RoutedExperts" not in by_target:
        by_target["RoutedExperts"] = by_target["Linear"]  # _add_fused_moe_to_target_scheme_map
    first = by_target.get("Linear") or next(iter(by_target.values()))
    return replace(first, ignore=_ignore_list(qc, "ignore"), targets=tuple(by_target.items()))


def _compressed_tensors_group(w: dict, act: dict | None) -> QuantScheme:
    bits = int(w.get("num_bits", 0))
    wtype = w.get("type", "int")
    strategy = w.get("strategy", "tensor")
    if bits not in (4, 8) or wtype not in ("int", "float"):
        raise _fail(f"compressed-tensors weights of {bits}-bit {wtype} are not supported by the planner "
                    "(supported: W8A8 int8/fp8, W4A16/W8A16 int, NVFP4 and MXFP4)")
    group = int(w["group_size"]) if strategy == "group" and w.get("group_size") else None
    fp8 = wtype == "float" and bits == 8
    scale_bytes = 2
    fp4_activations = False
    if wtype == "float" and bits == 4:
        group = _fp4_group(w)
        scale_bytes = 1  # NVFP4's float8 e4m3 and MXFP4's e8m0 block scales are one byte each
        fp4_activations = bool(act) and act.get("type") == "float" and act.get("num_bits") == 4
    return QuantScheme(
        method="compressed-tensors", weight_bits=bits, group_size=group,
        zero_points=not w.get("symmetric", True), channel_scales=strategy == "channel",
        scale_bytes=scale_bytes,
        fp8_compute=fp8 and bool(act) and act.get("type") == "float",
        int8_compute=wtype == "int" and bits == 8 and bool(act) and act.get("type", "int") == "int",
        block=tuple(w["block_structure"]) if strategy == "block" and w.get("block_structure") else None,
        fp4_activations=fp4_activations,
        static_activations=fp8 and strategy == "tensor" and bool(act) and act.get("type") == "float"
        and act.get("strategy", "tensor") == "tensor" and act.get("dynamic", False) is False,  # QuantizationArgs
    )


# NVIDIA Model Optimizer (ModelOpt) checkpoints by quant_algo (vLLM 0.32 modelopt.py LINEAR_ALGOS and resolve()):
# the --quantization name vLLM gives each (the configs' override_quantization_method) and how a linear weight is
# stored. FP8 carries one fp32 scale per tensor, per output channel, or per 128x128 block; NVFP4 (W4A4, and W4A16
# for weight-only checkpoints) packs two values a byte with one float8 scale per group of 16 (plus fp32 per-tensor
# scales, a few bytes); MXFP8 keeps one e8m0 scale per 32 values.
MODELOPT_ALGOS = {
    "FP8": ("modelopt", {"weight_bits": 8, "fp8_compute": True, "static_activations": True}),
    "FP8_PER_CHANNEL_PER_TOKEN": ("modelopt", {"weight_bits": 8, "channel_scales": True, "fp8_compute": True}),
    "FP8_PB_WO": ("modelopt", {"weight_bits": 8, "block": (128, 128), "fp8_compute": True}),
    "NVFP4": ("modelopt_fp4", {"weight_bits": 4, "scale_bytes": 1}),
    "W4A16_NVFP4": ("modelopt_fp4", {"weight_bits": 4, "scale_bytes": 1}),
    "MXFP8": ("modelopt_mxfp8", {"weight_bits": 8, "group_size": 32, "scale_bytes": 1, "fp8_compute": True}),
}
NVFP4_DEFAULT_GROUP = 16  # ModelOptNvFp4Config._from_config's default group_size
# The legacy hf_quant_config.json (ModelOpt 0.29 and before, no quant_method) may name only these
# (transformers_utils/model_arch_config_convertor.py _normalize_quantization_config).
MODELOPT_LEGACY_ALGOS = ("FP8", "FP8_PER_CHANNEL_PER_TOKEN", "FP8_PB_WO", "NVFP4")
# The KV cache a ModelOpt checkpoint asks for, in vLLM's --kv-cache-dtype spelling (utils/torch_utils.py
# MODELOPT_TO_VLLM_KV_CACHE_DTYPE_MAP); anything else vLLM ignores, keeping auto.
MODELOPT_KV_CACHE_DTYPES = {"fp8": "fp8_e4m3", "nvfp4": "nvfp4"}


def _modelopt_kv_cache_dtype(qc: dict, inner: dict) -> str | None:
    """get_kv_cache_quant_algo_string: kv_cache_scheme (a compressed-tensors style dict) before
    kv_cache_quant_algo (a string), in the nested "quantization" object first."""
    algo = inner.get("kv_cache_scheme") or qc.get("kv_cache_scheme") or inner.get("kv_cache_quant_algo") \
        or qc.get("kv_cache_quant_algo")
    if isinstance(algo, dict):
        if algo.get("dynamic") is False and algo.get("num_bits") == 8 and algo.get("type") == "float":
            return MODELOPT_KV_CACHE_DTYPES["fp8"]
        if algo.get("num_bits") == 4 and algo.get("type") == "float":
            return MODELOPT_KV_CACHE_DTYPES["nvfp4"]
        return None
    return MODELOPT_KV_CACHE_DTYPES.get(algo.lower()) if isinstance(algo, str) else None


def _modelopt(qc: dict, legacy: bool) -> QuantScheme:
    """A ModelOpt checkpoint: config.json's quantization_config (quant_method modelopt; flat, or its settings under
    "quantization") or the older hf_quant_config.json (producer modelopt), as ModelOptQuantConfigBase.from_config
    reads them."""
    inner = qc.get("quantization")
    if inner is not None and not isinstance(inner, dict):
        raise _fail("the ModelOpt quantization config's \"quantization\" entry is not an object; fix the "
                    "checkpoint's quantization config")
    algo = str((inner or qc).get("quant_algo") or "").upper()
    excluded = (inner or {}).get("exclude_modules", []) if inner is not None else qc.get("ignore", [])
    group = (inner or qc).get("group_size")
    if not algo:
        raise _fail("ModelOpt quantization_config has no quant_algo; the planner cannot size its weights")
    known = MODELOPT_LEGACY_ALGOS if legacy else (*MODELOPT_ALGOS, "MIXED_PRECISION")
    if algo not in known:
        raise _fail(f"ModelOpt quant_algo {algo!r} is not one vLLM loads from this config (supported: "
                    f"{', '.join(known)}); the planner will not guess its memory")
    if not isinstance(excluded, list):
        raise _fail("the ModelOpt exclusion list (exclude_modules / ignore) is not a list; fix the checkpoint's "
                    "quantization config")
    ignore = tuple(str(x) for x in excluded)
    kv_cache_dtype = _modelopt_kv_cache_dtype(qc, inner or {})
    if algo == "MIXED_PRECISION":
        return _modelopt_mixed(inner or qc, ignore, group, kv_cache_dtype)
    required = {"NVFP4": ("group_size", "kv_cache_quant_algo", "exclude_modules"),
                "MXFP8": ("kv_cache_quant_algo", "exclude_modules")}.get(algo, ())
    missing = [key for key in required if inner is not None and key not in inner]
    if missing:  # vLLM refuses such a checkpoint (ModelOptNvFp4Config / ModelOptMxFp8Config._from_config)
        raise _fail(f"ModelOpt {algo} quantization config lacks {', '.join(missing)}, which vLLM requires; fix the "
                    "checkpoint's hf_quant_config.json")
    method, layout = MODELOPT_ALGOS[algo]
    if method == "modelopt_fp4":
        # an NVFP4 checkpoint whose every config group leaves activations unquantized runs as W4A16
        # (ModelOptNvFp4Config._from_config)
        groups = qc.get("config_groups")
        weight_only = algo == "W4A16_NVFP4" or (isinstance(groups, dict) and bool(groups) and all(
            isinstance(g, dict) and g.get("input_activations") is None for g in groups.values()))
        layout = dict(layout, group_size=int(group) if group else NVFP4_DEFAULT_GROUP,
                      fp4_activations=not weight_only)
    scheme = QuantScheme(method, ignore=ignore, substring_ignore=True, kv_cache_dtype=kv_cache_dtype, **layout)
    return replace(scheme, quantizes_lm_head=not scheme.skips("lm_head"))


# MIXED_PRECISION's per-layer algos (ModelOptMixedPrecisionConfig.get_quant_method): the linear ones, and for
# routed experts FP8 (per tensor), NVFP4, W4A16_NVFP4, MXFP8 and 2-D block FP8 (FP8_PB_WO, FP8_BLOCK_SCALES:
# vLLM's own block-FP8 experts, blocks of the entry's group_size, 128 by default)
MIXED_BLOCK_FP8_ALGOS = ("FP8_PB_WO", "FP8_BLOCK_SCALES")


def _modelopt_mixed(settings: dict, ignore: tuple[str, ...], group, kv_cache_dtype: str | None) -> QuantScheme:
    layers = settings.get("quantized_layers")
    if not isinstance(layers, dict) or not layers:
        raise _fail("ModelOpt MIXED_PRECISION needs a non-empty quantized_layers mapping in its quantization config "
                    "(vLLM requires it); fix the checkpoint's config.json or hf_quant_config.json")
    nvfp4_group = group or next((info.get("group_size", NVFP4_DEFAULT_GROUP) for info in layers.values()
                                 if isinstance(info, dict) and str(info.get("quant_algo", "")).upper()
                                 in ("NVFP4", "W4A16_NVFP4")), NVFP4_DEFAULT_GROUP)
    schemes = []
    for name, info in layers.items():
        layer_algo = str(info.get("quant_algo", "")).upper() if isinstance(info, dict) else ""
        if layer_algo in MIXED_BLOCK_FP8_ALGOS:
            size = int(info.get("group_size", 128))
            scheme = QuantScheme("fp8", 8, block=(size, size), fp8_compute=True)
        elif layer_algo in MODELOPT_ALGOS:
            method, layout = MODELOPT_ALGOS[layer_algo]
            if method == "modelopt_fp4":
                layout = dict(layout, group_size=int(nvfp4_group), fp4_activations=layer_algo == "NVFP4")
            scheme = QuantScheme(method, **layout)
        else:
            raise _fail(f"ModelOpt MIXED_PRECISION layer {name} uses quant_algo {layer_algo or None!r}, which the "
                        f"planner does not size (supported: {', '.join(dict.fromkeys((*MODELOPT_ALGOS, *MIXED_BLOCK_FP8_ALGOS)))}); "
                        "it will not guess its memory")
        schemes.append((str(name), scheme))
    # the scheme the checkpoint is known by: the one most of its layers use
    names = [scheme for _, scheme in schemes]
    headline = max(names, key=names.count)
    scheme = replace(headline, method="modelopt_mixed", ignore=ignore, substring_ignore=True,
                     kv_cache_dtype=kv_cache_dtype, layers=tuple(schemes))
    return replace(scheme, quantizes_lm_head=not scheme.skips("lm_head") and scheme._layer("lm_head", "linear")
                   is not None)


def _is_modelopt(qc: dict) -> tuple[bool, bool]:
    """(a ModelOpt config, the legacy hf_quant_config.json form)."""
    method = qc.get("quant_method")
    if isinstance(method, str) and method.lower().startswith("modelopt"):
        return True, False
    producer = qc.get("producer")
    legacy = isinstance(producer, dict) and producer.get("name") == "modelopt" or \
        isinstance(qc.get("quantization"), dict) and "modelopt_quant_config" in qc["quantization"]
    return bool(legacy), bool(legacy)


def from_config(qc: dict | None) -> QuantScheme | None:
    """The checkpoint's own quantization, or None for an unquantized checkpoint."""
    if not qc:
        return None
    if not isinstance(qc, dict):
        raise _fail("quantization_config in config.json is not an object; fix the config.json")
    modelopt, legacy = _is_modelopt(qc)
    if modelopt:
        return _modelopt(qc, legacy)
    method = str(qc.get("quant_method", "")).lower().replace("_", "-")
    if method == "awq":
        bits = int(qc.get("bits", qc.get("w_bit", 4)))
        return QuantScheme("awq", bits, int(qc.get("group_size", qc.get("q_group_size", 128))),
                           zero_points=bool(qc.get("zero_point", True)),
                           ignore=_ignore_list(qc, "modules_to_not_convert"))
    if method == "gptq":
        bits = int(qc.get("bits", 4))
        gs = int(qc.get("group_size", 128))
        return QuantScheme("gptq", bits, gs if gs > 0 else None, zero_points=True,
                           act_order=bool(qc.get("desc_act", False)),
                           ignore=_ignore_list(qc, "modules_to_not_convert"))
    if method == "compressed-tensors":
        return _compressed_tensors(qc)
    if method == "fp8":
        block = qc.get("weight_block_size")
        # Fp8Config: activation_scheme "static" reads a calibrated input scale per tensor (default "dynamic")
        return QuantScheme("fp8", 8, block=tuple(block) if block else None, fp8_compute=True,
                           static_activations=not block and qc.get("activation_scheme", "dynamic") == "static",
                           ignore=_ignore_list(qc, "ignored_layers", "modules_to_not_convert"))
    if method == "quark":
        return _quark(qc)
    if str(qc.get("quant_method")).lower() in ("auto-round", "inc"):  # vLLM's INC method takes both spellings
        from estimator import auto_round

        return auto_round.from_config(qc)
    if method == "mxfp4":
        # 4-bit e2m1 values plus one uint8 e8m0 scale per 32 values (OCP MX spec).
        return QuantScheme("mxfp4", 4, 32, scale_bytes=1, experts_only=True,
                           ignore=_ignore_list(qc, "modules_to_not_convert"))
    raise _fail(f"quantization method {qc.get('quant_method')!r} in config.json is not supported by the planner "
                f"(supported: {', '.join(SUPPORTED_METHODS)}); it will not guess its memory")


# AMD Quark checkpoints (vLLM 0.32 quark/quark.py): the planner sizes Quark's FP8 W8A8 schemes as vLLM's
# QuarkConfig._is_fp8_w8a8 accepts them: static fp8_e4m3 weights with one fp32 scale per tensor or per output
# channel beside fp8_e4m3 inputs (dynamic, or static per tensor), or weights in symmetric 128 x 128 blocks beside
# dynamic inputs per group of 128; AMD's -FP8-KV checkpoints are the first kind. And its OCP MX schemes on dense
# linears (QuarkOCP_MX, AMD's -MXFP4 checkpoints): static MXFP4, MXFP6 or MXFP8 weights in groups of 32 with one
# uint8 e8m0 scale each, beside dynamic inputs or none. Quark's INT8, INT4, NVFP4, MX experts and mixed schemes
# fail closed.
QUARK_FP8_WEIGHT_SCALES = ("per_tensor", "per_channel")
QUARK_FP8_BLOCK = [128, 128]
# OCP MX element widths (quark_ocp_mx.py get_packed_dim: FP4 two to a byte, FP6 four to three bytes, FP8 unpacked)
# and the block one e8m0 scale covers (ocp_mx_utils.py OCP_MX_BLOCK_SIZE)
QUARK_OCP_MX_BITS = {"fp4": 4, "fp6_e3m2": 6, "fp6_e2m3": 6, "fp8_e4m3": 8}
OCP_MX_BLOCK = 32


def _quark_fp8_layout(weight, inputs) -> tuple[str, ...] | None:
    """("per_tensor" | "per_channel" | "per_block",) for an FP8 W8A8 Quark scheme vLLM runs, else None."""
    if not (isinstance(weight, dict) and isinstance(inputs, dict) and weight.get("dtype") == "fp8_e4m3"
            and inputs.get("dtype") == "fp8_e4m3" and not weight.get("is_dynamic")):
        return None
    qscheme = weight.get("qscheme")
    if qscheme == "per_block":
        blocked = list(weight.get("block_size") or []) == QUARK_FP8_BLOCK and weight.get("symmetric") is True \
            and inputs.get("is_dynamic") and inputs.get("qscheme") == "per_group" \
            and inputs.get("group_size") == QUARK_FP8_BLOCK[1] and inputs.get("symmetric") is True
        return (qscheme,) if blocked else None
    if qscheme in QUARK_FP8_WEIGHT_SCALES and (inputs.get("is_dynamic") or inputs.get("qscheme") == "per_tensor"):
        return (qscheme,)
    return None


def _quark_ocp_mx_layout(weight, inputs) -> tuple[str, ...] | None:
    """("ocp_mx", weight dtype, input dtype or "") for an OCP MX Quark scheme vLLM runs on a linear layer (the
    canonical per-group spelling of ocp_mx_weight_dtype_and_rows; inputs unquantized or dynamic MX, as QuarkOCP_MX
    takes them), else None."""
    if not (isinstance(weight, dict) and weight.get("dtype") in QUARK_OCP_MX_BITS and not weight.get("is_dynamic")
            and weight.get("qscheme") == "per_group" and weight.get("group_size") == OCP_MX_BLOCK
            and weight.get("scale_format") == "e8m0"):
        return None
    if inputs is None:
        return "ocp_mx", weight["dtype"], ""
    if not (isinstance(inputs, dict) and inputs.get("is_dynamic") and inputs.get("dtype") in QUARK_OCP_MX_BITS):
        return None
    # FP8 inputs are MXFP8 only per group of 32 (per tensor, QuarkOCP_MX takes no such activation key)
    if inputs["dtype"] == "fp8_e4m3" and (inputs.get("qscheme"), inputs.get("group_size")) != ("per_group",
                                                                                            OCP_MX_BLOCK):
        return None
    return "ocp_mx", weight["dtype"], inputs["dtype"]


def _quark_scheme(settings: dict, where: str) -> tuple[str, ...]:
    """The weight layout of an FP8 W8A8 or OCP MX Quark scheme; anything else is refused."""
    weight, inputs = settings.get("weight"), settings.get("input_tensors")
    layout = _quark_fp8_layout(weight, inputs) or _quark_ocp_mx_layout(weight, inputs)
    if layout:
        return layout

    def described(t):
        return f"{t.get('dtype')} {t.get('qscheme')}" if isinstance(t, dict) else repr(t)
    raise _fail(f"the Quark scheme of {where} (weights {described(weight)}, inputs {described(inputs)}) is not "
                "sized by the planner (supported: FP8 W8A8, fp8_e4m3 weights per tensor, channel or 128 x 128 "
                "block; OCP MX fp4, fp6 or fp8 weights per group of 32 with e8m0 scales); it will not guess its "
                "memory")


def _quark(qc: dict) -> QuantScheme:
    """An AMD Quark checkpoint's FP8 W8A8 scheme. A layer_quant_config entry may only repeat the global weight and
    input schemes (the -FP8-KV checkpoints name k_proj and v_proj there for their KV cache's output scales, which
    --kv-cache-dtype fp8 uses; vLLM keeps auto at the model dtype for Quark)."""
    if not isinstance(qc.get("export"), dict):
        raise _fail("the Quark quantization_config has no export section, which vLLM requires; re-export the "
                    "checkpoint with Quark")
    glob = qc.get("global_quant_config")
    layout = _quark_scheme(glob if isinstance(glob, dict) else {}, "the whole model")
    for pattern, settings in (qc.get("layer_quant_config") or {}).items():
        if not isinstance(settings, dict) or (settings.get("weight"), settings.get("input_tensors")) != \
                (glob.get("weight"), glob.get("input_tensors")):
            raise _fail(f"the Quark layer_quant_config gives {pattern} a scheme of its own; the planner sizes one "
                        "scheme for every layer and will not guess its memory")
    if qc.get("layer_type_quant_config"):
        raise _fail("the Quark layer_type_quant_config gives some layer types a scheme of their own; the planner "
                    "sizes one scheme for every layer and will not guess its memory")
    if layout[0] == "ocp_mx":
        _, weights, inputs = layout
        return QuantScheme("quark", QUARK_OCP_MX_BITS[weights], OCP_MX_BLOCK, scale_bytes=1, ocp_mx=True,
                           fp8_compute=weights == inputs == "fp8_e4m3", fp4_activations=inputs == "fp4",
                           ignore=_ignore_list(qc, "exclude"))
    return QuantScheme("quark", 8, channel_scales=layout[0] == "per_channel", fp8_compute=True,
                       block=tuple(QUARK_FP8_BLOCK) if layout[0] == "per_block" else None,
                       ignore=_ignore_list(qc, "exclude"))


def online(method: str) -> QuantScheme:
    """``--quantization fp8`` on an unquantized checkpoint: vLLM quantizes weights to FP8 at load time."""
    if method == "fp8":
        return QuantScheme("fp8", 8, online=True, fp8_compute=True)
    raise _fail(f"--quantization {method} needs a checkpoint quantized with {method}; "
                f"on an unquantized checkpoint only {', '.join(ONLINE_METHODS)} is applied at load time")


def bind(quant: QuantScheme | None, tensors) -> QuantScheme | None:
    """The checkpoint's scheme for a model of these tensors: per-layer rules that depend on how vLLM builds
    the model (AutoRound's, which resolve fused linears by their fused name) learn which layers it fuses. Quark OCP
    MX experts are refused: vLLM runs them through its MXFP4 MoE oracle, whose kernel (and padding) on ROCm depends
    on AITER and the CDNA generation, which the planner does not model."""
    if quant is not None and quant.ocp_mx and any(t.kind == "expert" and not quant.skips(t.name) for t in tensors):
        raise _fail("the checkpoint's Quark OCP MX scheme quantizes MoE experts; the planner sizes Quark MXFP4/6/8 "
                    "on dense linear layers only and will not guess the experts' kernel layout (choose an FP8 "
                    "checkpoint of this model)")
    if quant is None or quant.rules is None:
        return quant
    return replace(quant, rules=quant.rules.bind([t.name for t in tensors]))


def tensor_scheme(name: str, kind: str, quant: QuantScheme | None, shard: str = "col") -> QuantScheme | None:
    """The scheme the checkpoint (or --quantization) stores a tensor of this name and kind with; None where it is
    left in the model dtype."""
    if quant is not None and quant.quantizes_lm_head and name == "lm_head":
        return quant.scheme_for(name, "linear")
    if not quant or kind not in ("linear", "expert") or quant.skips(name) or (quant.experts_only and kind != "expert"):
        return None
    return quant.scheme_for(name, kind, shard)
