"""Expert parallel load balancing (`--enable-eplb`, `--eplb-config`), as vLLM 0.32 takes it.

EPLB keeps `num_redundant_experts` extra copies of the busiest routed experts, spread with the rest over the
expert-parallel GPUs, and moves experts between GPUs as the load shifts. For the memory plan that means more
experts per GPU, one MoE layer's experts more as the buffer the moves land in, the load-tracking tensors, and a
second layer-sized buffer while the profiling pass reserves the moves' communication
(distributed/eplb/eplb_state.py, rebalance_execute.py). This module validates the flags as vLLM does; the bytes
are memory.py's.
"""

from __future__ import annotations

import json

from estimator.architecture import ModelArch
from estimator.errors import PlannerError
from estimator.quantization import QuantScheme, tensor_scheme
from estimator.validate import json_object

# vLLM 0.32 models whose MoE part implements the MixtureOfExperts interface (model_executor/models/interfaces.py;
# a multimodal model through its language model: get_mixture_of_experts_model): only these get redundant experts
# and balancing.
EPLB_ARCHITECTURES = frozenset({
    "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "DeepseekV32ForCausalLM", "GlmMoeDsaForCausalLM",
    "Glm4MoeForCausalLM", "Llama4ForConditionalGeneration", "MixtralForCausalLM", "NemotronHForCausalLM",
    "Qwen3MoeForCausalLM", "Qwen3NextForCausalLM", "Qwen3VLMoeForConditionalGeneration", "Qwen3_5MoeForCausalLM",
    "Qwen3_5MoeForConditionalGeneration", "Gemma4ForCausalLM", "Gemma4ForConditionalGeneration",
    "Glm4MoeLiteForCausalLM", "Ernie4_5_MoeForCausalLM", "KimiLinearForCausalLM",
    "MiMoV2FlashForCausalLM", "Lfm2MoeForCausalLM",
    "HunYuanMoEV1ForCausalLM",  # (vLLM's Transformers MoE backend implements MixtureOfExperts)
})
# EPLBConfig's fields (config/parallel.py); the planner reads num_redundant_experts, window_size and
# communicator, and accepts the rest (they change no memory).
EPLB_CONFIG_KEYS = ("window_size", "step_interval", "num_redundant_experts", "log_balancedness",
                    "log_balancedness_interval", "use_async", "policy", "communicator", "enable_migration_batching")
DEFAULT_WINDOW_SIZE = 1000  # EPLBConfig.window_size: steps of expert load kept per MoE layer and physical expert
MAX_EXPERT_REDUNDANCY = 1023  # eplb_state.py: the most redundant copies; the logical map is this + 1 wide
# The one backend that reads remote experts in place, with no all_gather buffer reserved in the profiling pass
# (NixlEplbCommunicator.needs_profile_buffer_reservation); vLLM picks it by default only where NIXL is installed,
# which the plan does not assume.
IN_PLACE_COMMUNICATORS = ("nixl",)


def eplb_settings(value, label: str = "--eplb-config") -> tuple[tuple[str, object], ...]:
    """--eplb-config as vLLM takes it (a JSON object of EPLBConfig fields) as sorted (key, value) pairs."""
    value = json_object(label, value, "EPLB's settings, e.g. '{\"num_redundant_experts\": 32}'")
    if value is None:
        return ()
    unknown = sorted(set(value) - set(EPLB_CONFIG_KEYS))
    if unknown:
        raise PlannerError(f"{label}: {', '.join(map(str, unknown))} is not an EPLB setting; vLLM takes "
                           f"{', '.join(EPLB_CONFIG_KEYS)}")
    for key, lowest in (("num_redundant_experts", 0), ("window_size", 1)):
        number = value.get(key, lowest)
        if isinstance(number, bool) or not isinstance(number, int) or number < lowest:
            raise PlannerError(f"{label}: {key} is {number!r}; expected a whole number >= {lowest}")
    return tuple(sorted(value.items()))


def eplb_json(pairs) -> str:
    """The --eplb-config value for (key, value) pairs."""
    return json.dumps(dict(pairs), separators=(",", ":"))


def balances(arch: ModelArch) -> bool:
    """Whether vLLM gives this model redundant experts and balances them (its MoE part is a MixtureOfExperts)."""
    return arch.is_moe and arch.architecture in EPLB_ARCHITECTURES


def _experts_balanceable(scheme: QuantScheme | None, gpu) -> bool:
    """Whether the MoE method of routed experts of this scheme takes EPLB (FusedMoEMethodBase.supports_eplb):
    unquantized, FP8 (block, channel or tensor scales; online too), MXFP4, ModelOpt NVFP4, compressed-tensors
    W8A8 FP8, and compressed-tensors NVFP4 W4A4 where its backend is TRTLLM-Gen (data-center Blackwell:
    _EPLB_SUPPORTED_NVFP4_BACKENDS). AWQ, GPTQ, AutoRound, Quark FP8, ModelOpt FP8 and MXFP8 have none, and
    compressed-tensors WNA16 has it only on the Triton kernel, which vLLM picks only where Marlin does not fit."""
    if scheme is None or scheme.method in ("fp8", "mxfp4", "modelopt_fp4"):
        return True
    if scheme.method != "compressed-tensors":
        return False
    if scheme.nvfp4 and scheme.fp4_activations:
        return gpu is not None and gpu.vendor == "nvidia" and int(gpu.compute_capability or 0) == 10
    return scheme.weight_bits == 8 and scheme.fp8_compute


def resolve_eplb(arch: ModelArch, quant: QuantScheme | None, enabled: bool, settings: tuple, ranks: int,
                 expert_parallel: bool, gpu=None) -> int:
    """The redundant experts vLLM builds the model with, after checking the flags as vLLM checks them
    (ParallelConfig.__post_init__, FusedMoEFactory, RoutedExperts): EPLB needs expert parallelism over more
    than one GPU, redundant experts need EPLB, and the physical experts must divide evenly between the GPUs."""
    redundant = dict(settings).get("num_redundant_experts", 0)
    if not enabled:
        if redundant:
            raise PlannerError(f"--eplb-config sets num_redundant_experts to {redundant} but EPLB is not enabled; "
                               "add --enable-eplb or leave num_redundant_experts out")
        return 0
    if not expert_parallel:
        raise PlannerError("--enable-eplb needs --enable-expert-parallel: EPLB moves whole experts between GPUs")
    if ranks <= 1:
        raise PlannerError("--enable-eplb needs tensor or data parallelism above 1: EPLB balances experts between "
                           "GPUs")
    if not balances(arch):
        # vLLM still steps EPLB in its profiling pass, which then has no model to balance (EplbState.rearrange
        # concatenates no load windows and fails)
        what = "has no routed experts" if not arch.is_moe else "is not a model vLLM 0.32 balances"
        raise PlannerError(f"--enable-eplb: {arch.architecture} {what}, and vLLM's EPLB step would find nothing "
                           "to balance; leave --enable-eplb out")
    scheme = tensor_scheme(next(t for t in arch.tensors if t.kind == "expert").name, "expert", quant)
    if not _experts_balanceable(scheme, gpu):
        where = " on this GPU (it balances them only where TRTLLM-Gen runs them: data-center Blackwell)" \
            if scheme.nvfp4 and scheme.fp4_activations else " as this checkpoint stores them"
        raise PlannerError(f"--enable-eplb: vLLM 0.32 has no EPLB for {arch.architecture}'s {quant.method} "
                           f"experts{where}; leave --enable-eplb out")
    if redundant > MAX_EXPERT_REDUNDANCY:
        raise PlannerError(f"--eplb-config: num_redundant_experts {redundant} is above vLLM's "
                           f"{MAX_EXPERT_REDUNDANCY}")
    physical = arch.num_experts + redundant
    if physical % ranks:
        raise PlannerError(f"--enable-eplb: {arch.num_experts} experts and {redundant} redundant ones do not divide "
                           f"evenly over {ranks} GPUs, which vLLM's EPLB requires; choose num_redundant_experts so "
                           f"that their sum is a multiple of {ranks}")
    return int(redundant)
