"""The `vllm serve` settings a plan is for: user flags validated and completed with vLLM's own defaults.

Defaults mirror vLLM 0.32 (vllm/engine/arg_utils.py, vllm/config/): each default that the plan fills in
is recorded in ``defaults`` so the report can say so.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from estimator import quantization
from estimator.architecture import PARALLEL_MIXERS, VLLM_REFERENCE_VERSION, ModelArch
from estimator.eplb import DEFAULT_WINDOW_SIZE, IN_PLACE_COMMUNICATORS, eplb_settings, resolve_eplb
from estimator.errors import PlannerError
from estimator.gpus import GIB, GpuSpec
from estimator.inventory import DTYPE_BYTES
from estimator.quantization import QuantScheme
from estimator.speculative import FLAG as SPECULATIVE_FLAG
from estimator.speculative import draft_tokens, speculative_settings
from estimator.speculative import method as drafting_method
from estimator.validate import byte_count, fraction, json_object, positive_int
from estimator.xp import ceil, maximum

DEFAULT_GPU_MEMORY_UTILIZATION = 0.92  # vllm/config/cache.py
DEFAULT_BLOCK_SIZE = 16  # CacheConfig.DEFAULT_BLOCK_SIZE
DTYPE_CHOICES = ("auto", "half", "float16", "bfloat16", "float", "float32")  # vllm ModelDType
_DTYPE_ALIASES = {"half": "float16", "float": "float32"}
KV_CACHE_DTYPE_BYTES = {"auto": None, "float16": 2, "bfloat16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}
# vLLM's kernels for a checkpoint's method (vLLM upgrades awq/gptq to the Marlin kernels on its own).
_QUANT_ALIASES = {"awq_marlin": "awq", "gptq_marlin": "gptq", "compressed_tensors": "compressed-tensors"}


@dataclass(frozen=True)
class ServeConfig:
    tensor_parallel_size: int
    pipeline_parallel_size: int
    max_model_len: int
    gpu_memory_utilization: float
    dtype: str  # the flag as given ("auto" when left out)
    quantization: str | None  # the checkpoint's or the requested method, vLLM spelling
    kv_cache_dtype: str
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    enforce_eager: bool
    resolved_dtype: str = "bfloat16"  # what the weights and activations run in
    runner: str = "generate"  # generate | pooling (--runner), as the model was built (ModelArch.pooling)
    entrypoint: str = "serve"  # how vLLM is started (ENTRYPOINTS): which batch defaults apply
    limit_mm_per_prompt: tuple[tuple[str, int], ...] = ()  # --limit-mm-per-prompt counts given, by modality
    language_model_only: bool = False  # --language-model-only: every modality limited to 0
    kv_cache_memory_bytes: int | None = None  # --kv-cache-memory-bytes: the KV pool per GPU, no budget
    # --data-parallel-size: engines, each with its own attention, KV cache and scheduler over tp x pp GPUs; a MoE
    # model's routed experts are one layer across all of them (expert_parallel_size, moe_tensor_parallel_size)
    data_parallel_size: int = 1
    enable_expert_parallel: bool = False  # --enable-expert-parallel: whole experts per GPU instead of slices
    # --decode-context-parallel-size: TP ranks that split each request's tokens between their KV caches
    decode_context_parallel_size: int = 1
    enable_eplb: bool = False  # --enable-eplb: expert parallel load balancing (estimator/eplb.py)
    eplb_config: tuple[tuple[str, object], ...] = ()  # --eplb-config as given, sorted (key, value) pairs
    num_redundant_experts: int = 0  # the extra expert copies vLLM builds (0 where EPLB changes nothing)
    speculative_config: tuple[tuple[str, object], ...] = ()  # --speculative-config, sorted (key, value) pairs
    explicit: frozenset[str] = field(default_factory=frozenset)  # flags the user gave
    defaults: tuple[str, ...] = ()  # "flag=value (reason)" for each default filled in

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.resolved_dtype]

    @property
    def num_gpus(self) -> int:
        return self.world_size * self.data_parallel_size

    @property
    def num_speculative_tokens(self) -> int:
        """Tokens drafted per request and step (0: no speculative decoding)."""
        return draft_tokens(self.speculative_config)

    @property
    def eplb_window_size(self) -> int:
        return int(dict(self.eplb_config).get("window_size", DEFAULT_WINDOW_SIZE))

    @property
    def eplb_reserves_profile_buffer(self) -> bool:
        """Whether EPLB's communicator reserves a layer of experts for its all_gather in the profiling pass."""
        return dict(self.eplb_config).get("communicator") not in IN_PLACE_COMMUNICATORS

    def mm_limit(self, modality: str) -> int:
        return limit_per_prompt(self.limit_mm_per_prompt, self.language_model_only, modality)

    @property
    def kv_dtype_bytes(self) -> int:
        return KV_CACHE_DTYPE_BYTES[self.kv_cache_dtype] or self.dtype_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["explicit"] = sorted(self.explicit)
        d["defaults"] = list(self.defaults)
        d["eplb_config"] = dict(self.eplb_config)
        d["speculative_config"] = dict(self.speculative_config)
        return d


def moe_ranks(cfg) -> int:
    """GPUs one MoE layer's routed experts are spread over: vLLM flattens TP across the data-parallel ranks for
    them (fused_moe/config.py FusedMoEParallelConfig.flatten_tp_across_dp_and_pcp), with or without expert
    parallelism."""
    return int(cfg.tensor_parallel_size) * int(cfg.data_parallel_size)


def expert_parallel_size(cfg) -> int:
    """GPUs the routed experts are divided between whole (FusedMoEParallelConfig.make: ep_size is the flattened
    TP size when --enable-expert-parallel is given and it exceeds 1); 1 without expert parallelism."""
    ranks = moe_ranks(cfg)
    return ranks if cfg.enable_expert_parallel and ranks > 1 else 1


def moe_tensor_parallel_size(cfg) -> int:
    """The slices each routed expert's intermediate size is cut into: the flattened TP size, or 1 (whole
    experts) under expert parallelism."""
    return 1 if expert_parallel_size(cfg) > 1 else moe_ranks(cfg)


# vLLM's default cap on items of one modality in a prompt (config/multimodal.py get_limit_per_prompt).
MM_ITEMS_PER_PROMPT = 999
# --limit-mm-per-prompt options that resize vLLM's dummy items (config/multimodal.py ImageDummyOptions,
# VideoDummyOptions, AudioDummyOptions); only "count" leaves the profiled item as the processor sizes it.
DUMMY_SIZE_OPTIONS = ("width", "height", "num_frames", "length")


def limit_per_prompt(limits, language_model_only: bool, modality: str) -> int:
    """Items of a modality a prompt may carry (MultiModalConfig.get_limit_per_prompt): none with
    --language-model-only, else the count given, else vLLM's default."""
    return 0 if language_model_only else dict(limits or ()).get(modality, MM_ITEMS_PER_PROMPT)


def mm_limits(value, label: str = "--limit-mm-per-prompt") -> tuple[tuple[str, int], ...]:
    """--limit-mm-per-prompt as vLLM takes it (a JSON object: modality -> count, or -> {"count": N}) as sorted
    (modality, count) pairs; sizes for the dummy items are refused, since they change what vLLM profiles."""
    value = json_object(label, value, "counts per modality, e.g. '{\"image\": 2, \"video\": 0}'")
    if value is None:
        return ()
    pairs = []
    for modality, limit in value.items():
        if isinstance(limit, dict):
            sized = sorted(set(limit) & set(DUMMY_SIZE_OPTIONS))
            if sized:
                raise PlannerError(f"{label}: {modality} sets {', '.join(sized)} for vLLM's dummy items, which "
                                   "changes the profiled item; the planner does not model it: give a count only")
            if set(limit) - {"count"}:
                raise PlannerError(f"{label}: {modality} has options {sorted(limit)}; expected a count")
            limit = limit.get("count", MM_ITEMS_PER_PROMPT)
        if not isinstance(modality, str) or isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise PlannerError(f"{label}: {modality} -> {limit!r}; expected a count >= 0 of items per prompt")
        pairs.append((modality, limit))
    return tuple(sorted(pairs))


def limit_mm_json(pairs) -> str:
    """The --limit-mm-per-prompt value for (modality, count) pairs."""
    return json.dumps(dict(pairs), separators=(",", ":"))


def _positive(name: str, value):
    return positive_int(f"--{name}", value)


CPU_BLOCK_SIZE = 128  # vLLM's CPU attention backend


# vLLM before 0.8, and any version run with VLLM_USE_V1=0 (the V0 engine), ran at most 256 sequences on
# every GPU (SchedulerConfig.max_num_seqs); the per-GPU defaults below came with the V1 engine.
V0_MAX_NUM_SEQS = 256


def is_v0_engine(vllm_version: str | None) -> bool:
    """True for a version string that names the V0 engine or a release before 0.8 ("0.6.6", "0.9.0 V0 engine
    (VLLM_USE_V1=0)", "main (Aug 2024, ~0.5.4)"); unknown versions are taken as current."""
    import re

    if not vllm_version:
        return False
    if re.search(r"\bV0\b|VLLM_USE_V1=0", vllm_version):
        return True
    found = re.search(r"(\d+)\.(\d+)", vllm_version)
    return bool(found) and (int(found.group(1)), int(found.group(2))) < (0, 8)


# How vLLM is started, for its batch defaults (EngineArgs.get_batch_defaults by UsageContext): `vllm serve`
# (OPENAI_API_SERVER), or llm: the Python LLM class, which `vllm bench throughput` and `vllm bench latency` build too
# (LLM_CLASS), and which batches more tokens.
ENTRYPOINTS = ("serve", "llm")


def batch_defaults(gpu: GpuSpec, world_size: int = 1, offline: bool = False) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) that vLLM picks on this GPU (EngineArgs.get_batch_defaults): for
    `vllm serve`, or with ``offline`` for the LLM class (`vllm bench throughput`), which batches more tokens."""
    if gpu.vendor == "cpu":
        return (4096 * world_size, 256 * world_size) if offline else (2048 * world_size, 128 * world_size)
    if gpu.memory_gib >= 160:
        return 16384, 1024
    if gpu.memory_gib >= 70 and "a100" not in gpu.name.lower():
        return (16384 if offline else 8192), 1024
    return (8192 if offline else 2048), 256


def default_block_size(arch: ModelArch, gpu: GpuSpec) -> tuple[int, str]:
    """The KV block size vLLM's attention backend picks when --block-size is not given."""
    if gpu.vendor == "cpu":
        return CPU_BLOCK_SIZE, "vLLM's CPU backend"
    cc = gpu.compute_capability
    if arch.is_sparse_mla and gpu.vendor == "nvidia":
        return SPARSE_MLA_BLOCK_SIZE, "the sparse-attention indexer's backend on NVIDIA GPUs"
    if arch.is_mla and gpu.vendor == "nvidia" and cc is not None:
        if cc >= 10.0:
            return 128, "CUTLASS MLA backend on Blackwell"
        if cc >= 9.0:
            return 64, "FlashMLA backend on Hopper"
    return DEFAULT_BLOCK_SIZE, "vLLM default"


def block_size_multiple(arch: ModelArch, gpu: GpuSpec) -> int:
    """What a KV block size must be a multiple of for some vLLM attention backend on this device to take it
    (get_supported_kernel_block_sizes: MultipleOf(16) for FlashAttention, Triton and FlashAttention-MLA on GPUs;
    MultipleOf(32) for the CPU backend, 16 for its MLA backend)."""
    if gpu.vendor == "cpu":
        return 16 if arch.is_mla else 32
    if arch.is_sparse_mla and gpu.vendor == "nvidia":
        return SPARSE_MLA_BLOCK_SIZE
    return 16


# DeepSeek Sparse Attention's indexer cache takes 64-token blocks on CUDA (DeepseekV32IndexerBackend
# get_supported_kernel_block_sizes), and every sparse MLA backend there takes multiples of 32 or 64.
SPARSE_MLA_BLOCK_SIZE = 64
# DeepSeek's packed fp8 latent (fp8_ds_mla): 512 fp8 NoPE values, 4 fp32 scales, 64 bf16 RoPE values per token
# (MLAAttention.get_kv_cache_spec state_content_bytes; flashmla_sparse.py).
FP8_DS_MLA_BYTES = 656


# Sparse MLA checkpoints whose KV cache vLLM stores in fp8 on data-center Blackwell when --kv-cache-dtype is auto
# (model_executor/models/config.py GlmMoeDsaForCausalLM.verify_and_update_config).
FP8_KV_BY_DEFAULT_ON_BLACKWELL = ("GlmMoeDsaForCausalLM",)


def sparse_mla_layout(arch: ModelArch, gpu: GpuSpec, notes: list | None = None) -> ModelArch:
    """A DSA model's latent cache as the sparse MLA backend vLLM 0.32 picks on this GPU lays it out
    (platforms/cuda.py backend priorities, each backend's KV dtypes): on Hopper FlashAttention-MLA-sparse keeps
    16 bits and fp8 falls to FlashMLA-sparse, which packs fp8_ds_mla; on data-center Blackwell FlashMLA-sparse
    keeps 16 bits and FlashInfer stores plain fp8; consumer Blackwell's FlashInfer backend packs fp8_ds_mla even
    for --kv-cache-dtype auto; ROCm's AITER backend stores the plain layout. Before Hopper vLLM has no sparse
    MLA backend on NVIDIA GPUs. GLM-5's checkpoints take an fp8 cache on data-center Blackwell even for auto
    (said in ``notes``)."""
    if not arch.is_sparse_mla or gpu.vendor != "nvidia" or gpu.compute_capability is None:
        return arch
    cc = gpu.compute_capability
    if cc < 9.0:
        raise PlannerError(f"{arch.architecture} uses DeepSeek Sparse Attention, which vLLM {VLLM_REFERENCE_VERSION} "
                           f"runs on Hopper (compute capability 9.0) or newer NVIDIA GPUs only; {gpu.name} has "
                           f"{cc}: choose an H100/H200/B200-class --gpu")
    plain = arch.attention_layer.head_size
    entry = {9: (2 * plain, FP8_DS_MLA_BYTES), 10: (2 * plain, plain), 12: (FP8_DS_MLA_BYTES, FP8_DS_MLA_BYTES)}
    layout = entry.get(int(cc), (2 * plain, plain))
    if int(cc) == 10 and arch.architecture in FP8_KV_BY_DEFAULT_ON_BLACKWELL:
        layout = (plain, plain)  # auto means fp8_e4m3 here: FlashInfer's plain fp8 latent
        if notes is not None:
            notes.append(f"vLLM stores {arch.architecture}'s KV cache in fp8_e4m3 on {gpu.name} even with "
                         "--kv-cache-dtype auto; the plan sizes it so")
    def laid_out(layers):
        return tuple(replace(a, entry_bytes=layout) if a.indexer_bytes else a for a in layers)

    return replace(arch, attention=laid_out(arch.attention), draft_attention=laid_out(arch.draft_attention))


def hybrid_block_size(arch: ModelArch, gpu: GpuSpec, tp: int, kv_dtype_bytes, state_dtype_bytes: int, block_size):
    """The block size vLLM settles on for a model with linear-attention (state) layers: the smallest multiple of
    the kernel block (at least the configured block size) whose attention page holds one layer's state, since
    every group shares one page size (Platform._align_hybrid_block_size; it may raise a --block-size given).
    Works on arrays of KV dtypes (the search)."""
    state = max(a.state_bytes(state_dtype_bytes, tp) for a in arch.state_layers)
    per_token = arch.attention_layer.bytes_per_token(kv_dtype_bytes, tp)
    kernel = block_size_multiple(arch, gpu)
    align = maximum(kernel, block_size)
    aligned = align * ceil(state / (align * per_token))
    aligned = kernel * ceil(aligned / kernel)
    return maximum(block_size, aligned)


def _resolve_dtype(flag: str, arch: ModelArch, gpu: GpuSpec, warnings: list) -> str:
    """--dtype as vLLM 0.32 resolves it (config/model.py _get_and_verify_dtype): auto takes the checkpoint's dtype
    whatever its quantization (AWQ and GPTQ included: their kernels take bfloat16 and float16 alike)."""
    if flag not in DTYPE_CHOICES:
        raise PlannerError(f"--dtype {flag} is not a vLLM dtype; use one of {', '.join(DTYPE_CHOICES)}")
    if flag != "auto":
        dtype = _DTYPE_ALIASES.get(flag, flag)
    else:
        dtype = arch.dtype
        if dtype == "float32":
            dtype = "bfloat16"  # vLLM runs float32 checkpoints in 16 bits unless asked
    if dtype == "bfloat16" and gpu.source != "custom" and gpu.vendor != "cpu" and not gpu.supports_bf16:
        if flag == "auto":
            warnings.append(f"{gpu.name} has no bfloat16 support: vLLM runs this model in float16")
            dtype = "float16"
        else:
            raise PlannerError(f"--dtype bfloat16 needs compute capability 8.0 or newer; {gpu.name} has "
                               f"{gpu.arch}: use --dtype float16")
    return dtype


def _resolve_quant(flag: str | None, arch: ModelArch) -> tuple[QuantScheme | None, str | None]:
    ckpt = arch.quant
    if flag is None:
        return ckpt, (ckpt.method if ckpt else None)
    if flag not in quantization.VLLM_QUANTIZATION_METHODS and flag not in _QUANT_ALIASES:
        raise PlannerError(f"--quantization {flag} is not a quantization method of vLLM {VLLM_REFERENCE_VERSION}; "
                           f"use one of {', '.join(quantization.VLLM_QUANTIZATION_METHODS)}, or leave it out")
    method = _QUANT_ALIASES.get(flag, flag)
    if ckpt is not None:
        if method != ckpt.method:
            raise PlannerError(f"--quantization {flag} does not match the checkpoint's quantization "
                               f"({ckpt.method}); leave --quantization out to use the checkpoint's")
        return ckpt, flag
    return quantization.online(method), flag


def _parallel_sizes(arch: ModelArch, num_gpus: int | None, tensor_parallel_size: int | None,
                    pipeline_parallel_size: int | None, defaults: list, dp: int = 1) -> tuple[int, int]:
    """(tp, pp): by default every GPU of each data-parallel engine in tensor parallel; refused where vLLM would
    refuse the split."""
    pp = pipeline_parallel_size or 1
    if tensor_parallel_size is None:
        tp = max(1, (num_gpus or 1) // (pp * dp))
        if num_gpus and num_gpus > dp:
            each = f" of each of the {dp} data-parallel engines" if dp > 1 else ""
            defaults.append(f"tensor-parallel-size={tp} (all {num_gpus // dp} GPUs{each} in tensor parallel)")
    else:
        tp = tensor_parallel_size
    if num_gpus is not None and tp * pp * dp > num_gpus:
        times_dp = f" x --data-parallel-size {dp}" if dp > 1 else ""
        raise PlannerError(f"--tensor-parallel-size {tp} x --pipeline-parallel-size {pp}{times_dp} needs "
                           f"{tp * pp * dp} GPUs but --num-gpus is {num_gpus}; raise --num-gpus or lower the "
                           "parallel sizes")
    if arch.num_heads % tp:
        raise PlannerError(f"--tensor-parallel-size {tp} does not divide the {arch.num_heads} attention heads of "
                           f"this model; use a divisor of {arch.num_heads}")
    # every attention layer's KV heads (Gemma 4's global layers have fewer than its sliding ones)
    for kv in sorted({arch.num_kv_heads} | {a.num_kv_heads for a in arch.attention if a.kind not in ("mla", "mamba",
                                                                                                      "none")}):
        if not arch.is_mla and ((kv >= tp and kv % tp) or (kv < tp and tp % kv)):
            raise PlannerError(f"--tensor-parallel-size {tp} and the model's {kv} KV heads: one must divide the other; "
                               f"use a divisor or multiple of {kv}")
    # Mamba2 mixers' B and C groups: split where TP divides them, else one group replicated (MambaMixer2 asserts it)
    for groups in sorted({g for a in arch.attention for _, _, g in a.state if g}):
        if groups % tp and groups != 1:
            raise PlannerError(f"--tensor-parallel-size {tp} does not divide the Mamba mixers' {groups} groups, which "
                               f"vLLM then cannot build; use a divisor of {groups}")
    if pp > arch.num_layers:
        raise PlannerError(f"--pipeline-parallel-size {pp} exceeds the model's {arch.num_layers} layers")
    if pp > 1 and arch.is_deepseek_v4:
        raise PlannerError(f"--pipeline-parallel-size {pp}: the planner lays out DeepSeek-V4's packed KV cache groups "
                           "on one pipeline stage only; use --tensor-parallel-size instead")
    if pp > 1 and arch.architecture in PARALLEL_MIXERS:
        raise PlannerError(f"--pipeline-parallel-size {pp}: {arch.architecture} runs attention and a Mamba mixer side by "
                           "side in each layer, which the planner does not split over pipeline stages; use "
                           "--tensor-parallel-size instead")
    if pp > 1 and arch.shares_kv_caches:
        raise PlannerError(f"--pipeline-parallel-size {pp}: this model's last layers read earlier layers' KV caches "
                           "(KV sharing), which vLLM keeps within one pipeline stage; use --tensor-parallel-size "
                           "instead")
    return tp, pp


def _moe_split(arch: ModelArch, ranks: int, enabled: bool, warnings: list) -> None:
    """How the routed experts are spread over the server's TP x DP GPUs, checked as vLLM checks it: sliced, each
    expert's intermediate size must divide evenly (FusedMoEConfig.__post_init__ asserts it, before any padding of
    the slices for a kernel); whole (--enable-expert-parallel), each GPU must be given at least one expert
    (expert_map_manager.py determine_expert_map), and the flag changes nothing without routed experts or on one
    GPU."""
    if not enabled:
        if arch.is_moe and arch.moe_intermediate_size % ranks:
            raise PlannerError(f"the experts' intermediate size {arch.moe_intermediate_size} does not divide into "
                               f"{ranks} slices (tensor x data parallel); use --enable-expert-parallel, or parallel "
                               f"sizes whose product divides {arch.moe_intermediate_size}")
        return
    if not arch.is_moe:
        warnings.append(f"--enable-expert-parallel has no effect: {arch.architecture} has no routed experts")
    elif ranks == 1:
        warnings.append("--enable-expert-parallel has no effect on one GPU: give --tensor-parallel-size or "
                        "--data-parallel-size above 1")
    elif ranks > arch.num_experts:
        raise PlannerError(f"--enable-expert-parallel over {ranks} GPUs leaves some without any of the model's "
                           f"{arch.num_experts} routed experts; use at most {arch.num_experts} GPUs per model")


def _decode_context_parallel(arch: ModelArch, tp: int, dcp: int) -> int:
    """--decode-context-parallel-size as vLLM takes it: TP ranks it reuses, so it must divide TP
    (config/parallel.py), over attention layers that cache every token (vLLM asserts that sliding-window
    layers do not take it: kv_cache_interface.py SlidingWindowSpec; the planner does not model it beside chunked,
    state or shared-cache layers either)."""
    if dcp == 1:
        return dcp
    if tp % dcp:
        raise PlannerError(f"--decode-context-parallel-size {dcp} does not divide --tensor-parallel-size {tp}: vLLM "
                           "splits each request's tokens over TP ranks; use a divisor of the TP size")
    others = sorted({"shared-cache" if a.shares_kv else a.kind for a in arch.attention
                     if a.kind not in ("full", "mla", "none") or a.shares_kv})
    if others:
        raise PlannerError(f"--decode-context-parallel-size: {arch.architecture} has {', '.join(others)} layers, "
                           "which vLLM (sliding windows) or the planner does not split by decode context "
                           "parallelism; leave it out")
    return dcp


def _speculative(arch: ModelArch, settings: tuple, eplb: bool) -> tuple:
    """--speculative-config, checked against the model as served (speculative.served, which the plan applies
    before it resolves flags) and as vLLM checks it."""
    k, how = draft_tokens(settings), drafting_method(settings)
    if (arch.num_speculative_tokens, arch.speculative_method) != (k, how):
        raise PlannerError(f"internal: the model was built for {arch.num_speculative_tokens} draft tokens "
                           f"({arch.speculative_method}) but {SPECULATIVE_FLAG} asks for {k} ({how}); apply "
                           "speculative.served to the model first")
    if not settings:
        return settings
    if arch.pooling:
        raise PlannerError(f"{SPECULATIVE_FLAG}: a pooling model generates no tokens to draft; leave it out")
    if how == "mtp":
        layers = arch.drafter_layers
        if layers > 1 and k > layers and k % layers:
            raise PlannerError(f"{SPECULATIVE_FLAG}: num_speculative_tokens {k} with {layers} MTP layers; vLLM reuses "
                               f"the layers in turn and needs a multiple of {layers} above it")
        if eplb:
            raise PlannerError(f"{SPECULATIVE_FLAG} with --enable-eplb: the planner does not model EPLB over the MTP "
                               "drafter's experts; leave one of them out")
    return settings


def _max_model_len(arch: ModelArch, max_model_len: int | None, defaults: list) -> int:
    if max_model_len is None:
        max_len = arch.default_max_model_len()
        defaults.append(f"max-model-len={max_len} (the model's {arch.max_len_key})")
        return int(max_len)
    if max_model_len > arch.derived_max_model_len:
        raise PlannerError(f"--max-model-len {max_model_len} exceeds the model's maximum of "
                           f"{arch.derived_max_model_len} ({arch.max_len_key} in config.json); use "
                           f"{arch.derived_max_model_len} or less")
    return int(max_model_len)


def _kv_cache_dtype(flag: str | None, gpu: GpuSpec) -> str:
    kv_dtype = flag or "auto"
    if kv_dtype not in KV_CACHE_DTYPE_BYTES:
        raise PlannerError(f"--kv-cache-dtype {kv_dtype} is not supported by the planner; use one of "
                           f"{', '.join(KV_CACHE_DTYPE_BYTES)}")
    if kv_dtype.startswith("fp8") and gpu.source != "custom" and gpu.vendor == "nvidia" \
            and (gpu.compute_capability or 0) < 8.0:
        raise PlannerError(f"--kv-cache-dtype {kv_dtype} needs compute capability 8.0 or newer; {gpu.name} has "
                           f"{gpu.arch}")
    return kv_dtype


def _checkpoint_kv_cache_dtype(kv_dtype: str, defaults: list) -> str:
    """--kv-cache-dtype auto on a checkpoint that names its KV cache's format: vLLM takes the checkpoint's
    (engine/arg_utils.py create_engine_config, resolve_kv_cache_dtype_string)."""
    if kv_dtype not in KV_CACHE_DTYPE_BYTES:
        raise PlannerError(f"the checkpoint stores its KV cache as {kv_dtype}, which the planner does not size; give "
                           "--kv-cache-dtype fp8 or bfloat16 to plan that instead")
    defaults.append(f"kv-cache-dtype={kv_dtype} (the checkpoint's KV cache quantization; what auto means here)")
    return kv_dtype


def _batch_budget(gpu: GpuSpec, num_gpus_used: int, max_len: int, max_num_seqs: int | None,
                  max_num_batched_tokens: int | None, defaults: list, entrypoint: str = "serve") -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) with vLLM's defaults for the entrypoint filled in as EngineArgs
    does."""
    default_tokens, default_seqs = batch_defaults(gpu, num_gpus_used, offline=entrypoint == "llm")
    whose = "LLM-class" if entrypoint == "llm" else "serve"
    seqs_given = max_num_seqs is not None
    if not seqs_given:
        max_num_seqs = default_seqs
    if max_num_batched_tokens is None:
        # EngineArgs: the default never exceeds what max_num_seqs sequences of max_model_len could use.
        max_num_batched_tokens = min(default_tokens, max_num_seqs * int(max_len))
        defaults.append(f"max-num-batched-tokens={max_num_batched_tokens} (vLLM's {whose} default for {gpu.name})")
    if not seqs_given:
        # ... and a defaulted max_num_seqs never exceeds the tokens a step may hold.
        max_num_seqs = min(default_seqs, max_num_batched_tokens)
        defaults.append(f"max-num-seqs={max_num_seqs} (vLLM's {whose} default for {gpu.name})")
    if max_num_batched_tokens < max_num_seqs:
        raise PlannerError(f"--max-num-batched-tokens {max_num_batched_tokens} is below --max-num-seqs {max_num_seqs}: "
                           "vLLM needs a token per running sequence in every step; raise it to "
                           f"{max_num_seqs} or lower --max-num-seqs")
    return int(max_num_seqs), int(max_num_batched_tokens)


# DeepSeek-V4's sparse MLA backends take 256-token blocks only (deepseek_v4/sparse_mla.py
# get_supported_kernel_block_sizes); vLLM sets that block size whatever else is asked
DEEPSEEK_V4_BLOCK_SIZE = 256


def _block_size(arch: ModelArch, gpu: GpuSpec, block_size: int | None, defaults: list) -> int:
    if arch.is_deepseek_v4:
        if block_size not in (None, DEEPSEEK_V4_BLOCK_SIZE):
            raise PlannerError(f"--block-size {block_size}: DeepSeek-V4's attention backends take "
                               f"{DEEPSEEK_V4_BLOCK_SIZE}-token blocks only; leave it out")
        if block_size is None:
            defaults.append(f"block-size={DEEPSEEK_V4_BLOCK_SIZE} (DeepSeek-V4's attention backends take only that)")
        return DEEPSEEK_V4_BLOCK_SIZE
    if block_size is None:
        block_size, why = default_block_size(arch, gpu)
        defaults.append(f"block-size={block_size} ({why})")
        return block_size
    if block_size == 1 and arch.is_sparse_mla and gpu.vendor == "amd":
        return 1  # ROCm's sparse MLA backend and its indexer take [1, MultipleOf(16)] (rocm_aiter_mla_sparse.py)
    multiple = block_size_multiple(arch, gpu)
    if block_size % multiple:
        lower, upper = block_size - block_size % multiple, block_size - block_size % multiple + multiple
        raise PlannerError(f"--block-size {block_size}: vLLM's attention kernels on {gpu.name} take multiples of "
                           f"{multiple}; use " + (f"{lower} or {upper}" if lower else f"{upper}"))
    return int(block_size)


def resolve(arch: ModelArch, gpu: GpuSpec, num_gpus: int | None, *, tensor_parallel_size: int | None = None,
            pipeline_parallel_size: int | None = None, max_model_len: int | None = None,
            gpu_memory_utilization: float | None = None, dtype: str | None = None,
            quantization_method: str | None = None, kv_cache_dtype: str | None = None,
            max_num_seqs: int | None = None, max_num_batched_tokens: int | None = None,
            block_size: int | None = None, enforce_eager: bool = False,
            runner: str | None = None, limit_mm_per_prompt=None, language_model_only: bool = False,
            kv_cache_memory_bytes=None, data_parallel_size: int | None = None,
            enable_expert_parallel: bool = False,
            decode_context_parallel_size: int | None = None, enable_eplb: bool = False,
            eplb_config=None, speculative_config=None,
            entrypoint: str | None = None) -> tuple[ServeConfig, QuantScheme | None, list]:
    """Validate flags as vLLM would and fill in its defaults. Returns (config, quant scheme, warnings)."""
    warnings: list[str] = []
    defaults: list[str] = []
    given = {k for k, v in dict(tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
                                max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
                                dtype=dtype, quantization=quantization_method, kv_cache_dtype=kv_cache_dtype,
                                max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                                block_size=block_size, runner=runner, entrypoint=entrypoint,
                                data_parallel_size=data_parallel_size,
                                decode_context_parallel_size=decode_context_parallel_size).items() if v is not None}
    if kv_cache_dtype == "auto":
        given.discard("kv_cache_dtype")  # vLLM's default, which a checkpoint may define (rendered as nothing)
    if enforce_eager:
        given.add("enforce_eager")
    if enable_expert_parallel:
        given.add("enable_expert_parallel")
    eplb = eplb_settings(eplb_config)
    given |= {name for name, value in (("enable_eplb", enable_eplb), ("eplb_config", eplb)) if value}
    limits = mm_limits(limit_mm_per_prompt)
    speculative = _speculative(arch, speculative_settings(speculative_config), bool(enable_eplb))
    given |= {"speculative_config"} if speculative else set()
    kv_cache_memory_bytes = byte_count("--kv-cache-memory-bytes", kv_cache_memory_bytes)
    given |= {name for name, value in (("limit_mm_per_prompt", limits), ("language_model_only", language_model_only),
                                       ("kv_cache_memory_bytes", kv_cache_memory_bytes)) if value}
    if kv_cache_memory_bytes and gpu_memory_utilization is not None:
        warnings.append("--gpu-memory-utilization is ignored with --kv-cache-memory-bytes: vLLM then reserves "
                        "exactly that KV cache per GPU and skips the budget (gpu_worker.determine_available_memory)")
    if (limits or language_model_only) and not arch.tower_modalities:
        warnings.append(f"{'--limit-mm-per-prompt' if limits else '--language-model-only'} has no effect: "
                        f"{arch.architecture} takes text only")
    for name, value in (("tensor-parallel-size", tensor_parallel_size), ("pipeline-parallel-size", pipeline_parallel_size),
                        ("max-model-len", max_model_len), ("max-num-seqs", max_num_seqs),
                        ("max-num-batched-tokens", max_num_batched_tokens), ("block-size", block_size),
                        ("num-gpus", num_gpus), ("data-parallel-size", data_parallel_size),
                        ("decode-context-parallel-size", decode_context_parallel_size)):
        _positive(name, value)
    fraction("--gpu-memory-utilization", gpu_memory_utilization)

    model_runner = "pooling" if arch.pooling else "generate"
    if runner is not None and runner != model_runner:
        raise PlannerError(f"--runner {runner} but the model was built for --runner {model_runner}; "
                           "plan it again with the runner you will serve it with")
    dp = data_parallel_size or 1
    tp, pp = _parallel_sizes(arch, num_gpus, tensor_parallel_size, pipeline_parallel_size, defaults, dp)
    _moe_split(arch, tp * dp, bool(enable_expert_parallel), warnings)
    dcp = _decode_context_parallel(arch, tp, decode_context_parallel_size or 1)
    max_len = _max_model_len(arch, max_model_len, defaults)
    quant, quant_method = _resolve_quant(quantization_method, arch)
    redundant = resolve_eplb(arch, quant, bool(enable_eplb), eplb, tp * dp, bool(enable_expert_parallel), gpu)
    resolved_dtype = _resolve_dtype(dtype or "auto", arch, gpu, warnings)
    kv_dtype = _kv_cache_dtype(kv_cache_dtype, gpu)
    if kv_dtype == "auto" and quant is not None and quant.kv_cache_dtype:
        kv_dtype = _checkpoint_kv_cache_dtype(quant.kv_cache_dtype, defaults)
    # A bad block size is reported before a bad batch budget; the defaults are listed budget first.
    block_defaults: list[str] = []
    block = _block_size(arch, gpu, block_size, block_defaults)
    if arch.state_layers:
        kv_bytes = KV_CACHE_DTYPE_BYTES[kv_dtype] or DTYPE_BYTES[resolved_dtype]
        aligned = int(hybrid_block_size(arch, gpu, tp, kv_bytes, DTYPE_BYTES[resolved_dtype], block))
        if aligned != block:
            block = aligned
            block_defaults = [f"block-size={aligned} (vLLM raises the attention block until its page holds one "
                              "linear-attention state)"]
    entrypoint = entrypoint or "serve"
    if entrypoint not in ENTRYPOINTS:
        raise PlannerError(f"--entrypoint {entrypoint} is not one the planner knows; use serve (vllm serve) or llm "
                           "(the LLM class, vllm bench throughput or latency)")
    max_num_seqs, max_num_batched_tokens = _batch_budget(gpu, tp * pp, max_len, max_num_seqs,
                                                         max_num_batched_tokens, defaults, entrypoint)
    defaults.extend(block_defaults)
    if gpu_memory_utilization is None:
        gpu_memory_utilization = DEFAULT_GPU_MEMORY_UTILIZATION
        unused = "; unused with --kv-cache-memory-bytes" if kv_cache_memory_bytes else ""
        defaults.append(f"gpu-memory-utilization={DEFAULT_GPU_MEMORY_UTILIZATION} (vLLM default{unused})")
    if gpu.memory_gib * GIB * gpu_memory_utilization < 1:
        raise PlannerError("--gpu-memory-utilization leaves no memory at all; raise it")

    cfg = ServeConfig(
        tensor_parallel_size=tp, pipeline_parallel_size=pp, max_model_len=max_len,
        gpu_memory_utilization=float(gpu_memory_utilization), dtype=dtype or "auto", quantization=quant_method,
        kv_cache_dtype=kv_dtype, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
        block_size=block, enforce_eager=bool(enforce_eager), resolved_dtype=resolved_dtype, runner=model_runner,
        entrypoint=entrypoint,
        limit_mm_per_prompt=limits, language_model_only=bool(language_model_only),
        kv_cache_memory_bytes=kv_cache_memory_bytes, data_parallel_size=int(dp),
        enable_expert_parallel=bool(enable_expert_parallel), decode_context_parallel_size=int(dcp),
        enable_eplb=bool(enable_eplb), eplb_config=eplb, num_redundant_experts=redundant,
        speculative_config=speculative, explicit=frozenset(given), defaults=tuple(defaults),
    )
    return cfg, quant, warnings
