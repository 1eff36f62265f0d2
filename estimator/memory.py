"""The memory plan, computed the way vLLM 0.32 allocates it.

Budget (vllm/v1/worker/utils.py request_memory): ceil(total x gpu_memory_utilization).
KV memory (gpu_worker.determine_available_memory): budget - (weights + non-torch + activation peak)
- CUDA graph estimate. KV blocks (v1/core/kv_cache_utils.py): layers grouped by attention type, one block
spans a group's layers, each pipeline stage sizes its own pool and all take the smallest block count;
capacity and "maximum concurrency" count the blocks a max_model_len request needs in every group.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from estimator import deepseek_v4 as dsv4
from estimator.architecture import ModelArch
from estimator.coefficients import Coefficients
from estimator.eplb import MAX_EXPERT_REDUNDANCY
from estimator.gpus import GIB, GpuSpec
from estimator.inventory import ABSORBED_MLA, FP32_BYTES, AttentionLayer, Tensor
from estimator.quantization import QuantScheme, tensor_scheme
from estimator.serve_config import (
    MM_ITEMS_PER_PROMPT,
    ServeConfig,
    expert_parallel_size,
    moe_tensor_parallel_size,
)
from estimator.speculative import DRAFTER_BUFFER_ROWS
from estimator.xp import all_true, ceil, is_array, lcm, maximum, minimum, next_power_of_two, smallest, where

VOCAB_PADDING = 64  # vllm/model_executor/layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE
SAMPLER_LOGITS_BYTES = 4  # the sampler works on float32 logits
# A device whose compute units the catalog lacks (a custom one): an H100's 132 SMs, the commonest serving part.
ASSUMED_COMPUTE_UNITS = 132
INT32_BYTES = 4  # a sparse MLA model's top-k token indices are int32
INT64_BYTES = 8  # torch's default integer type (EPLB's maps)
WORKSPACE_ALIGNMENT = 256  # vllm/v1/worker/workspace.py get_simultaneous rounds each buffer up to 256 bytes
# DeepSeek-V4's profiling-pass workspace (deepseek_v4_workspace_bytes): its attention gathers prefills in chunks of
# PREFILL_CHUNK_SIZE requests (deepseek_v4/attention.py), the context rows in bf16, the top-k and window indices
# padded to a multiple of 128 (nvidia/flashmla.py)
DSV4_PREFILL_CHUNK, DSV4_TOPK_ALIGNMENT, BF16_BYTES = 4, 128, 2
# What DeepSeek-V4's profiling peak holds per batched token beyond what the plan traces in vLLM's source (the
# generic decoder's buffers and the workspace above), on every rank alike: in float32 vectors as wide as the hidden
# size (26 of them: six and a half copies of the four hyper-connection streams, whose mixing, compressors and
# indexer run outside the traced kernels). Fitted to the corpus' two public V4-Flash start-ups, which agree: the
# DGX Spark A/B (MiaAI-Lab/DeepSeek-v4-Flash-One-DGX-Spark#4, TP 1: 1.39 GiB peak at 2,048 batched tokens, 5.30 at
# 8,224, 0.648 MiB a token where the traced buffers give 0.244) and vllm-project/vllm#44376 (vLLM 0.22, TP 2 with
# expert parallelism on GH200: 5.44 GiB left for the KV cache at the LLM class's 16,384 tokens, 6.5 GiB below the
# traced plan, 0.41 MiB a token).
DSV4_UNTRACED_HIDDEN_VECTORS = 26
DEFAULT_MAX_GRAPH_SIZE = 512  # vllm/config/vllm.py _set_cudagraph_sizes (1024 on data-center Blackwell)
MIB = 1024**2
# PyTorch's CUDA caching allocator (c10/core/AllocatorConfig.h): every block a multiple of 512 bytes; blocks up to
# 1 MiB from the small pool; a block of 10 MiB or more gets a segment of its own, rounded up to 2 MiB, whose tail is
# split off as a free block only when it exceeds 1 MiB (should_split), and never when the block is at least
# max_split_size, which vLLM 0.32 sets to 20 MiB while it loads the weights (gpu_worker.load_model,
# _scoped_allocator_max_split). The tail a block keeps counts as allocated, so in "Model loading took".
ALLOC_BLOCK, ALLOC_SMALL, ALLOC_MIN_LARGE, ALLOC_ROUND_LARGE = 512, 1 * MIB, 10 * MIB, 2 * MIB
LOAD_MAX_SPLIT = 20 * MIB
# The parameters vLLM builds fused, one allocation each: q/k/v as QKVParallelLinear, gate and up as
# MergedColumnParallelLinear, an MLA layer's q_a and kv_a as its fused_qkv_a_proj
FUSED_PARAMETERS = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
                    "up_proj": "gate_up_proj", "q_a_proj": "fused_qkv_a_proj",
                    "kv_a_proj_with_mqa": "fused_qkv_a_proj"}


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class GpuMemory:
    """One GPU's memory, in GiB: the budget and where it goes."""

    total_gib: float
    budget_gib: float
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    kv_cache_gib: float
    num_layers: int

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class MemoryPlan:
    per_gpu: GpuMemory  # the pipeline stage that binds (fewest KV blocks, or the one that does not fit)
    per_stage: tuple[GpuMemory, ...]
    num_gpu_blocks: int
    kv_cache_tokens: int
    max_concurrency: float
    fits: bool
    binding_constraint: str  # weights | overheads | kv_cache | max_num_seqs
    reason: str
    block_size: int
    num_kv_cache_groups: int
    bytes_per_block: int
    blocks_per_request: int
    kv_bytes_per_token_per_gpu: float
    available_kv_bytes: tuple[int, ...]  # per pipeline stage: budget minus everything that is not KV cache

    def to_dict(self) -> dict:
        return {
            "per_gpu": self.per_gpu.to_dict(),
            "per_stage": [s.to_dict() for s in self.per_stage],
            "num_gpu_blocks": self.num_gpu_blocks,
            "kv_cache_tokens": self.kv_cache_tokens,
            "max_concurrency": round(self.max_concurrency, 2),
            "fits": self.fits,
            "binding_constraint": self.binding_constraint,
            "reason": self.reason,
            "block_size": self.block_size,
            "num_kv_cache_groups": self.num_kv_cache_groups,
            "bytes_per_block": self.bytes_per_block,
            "blocks_per_request": self.blocks_per_request,
            "kv_bytes_per_token_per_gpu": self.kv_bytes_per_token_per_gpu,
            "available_kv_gib": [round(b / GIB, 4) for b in self.available_kv_bytes],
        }


# --- weights ---------------------------------------------------------------------------------------------


def pp_layer_ranges(num_layers: int, pp: int) -> list[range]:
    """vllm/distributed/utils.py get_pp_indices: even split, the remainder to the stages before the last."""
    sizes = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        sizes[-i] += 1
    out, start = [], 0
    for s in sizes:
        out.append(range(start, start + s))
        start += s
    return out


def stage_layers(arch: ModelArch, pp: int) -> list[list[int]]:
    """The layer indices each pipeline stage holds: the decoder's split (pp_layer_ranges), and on the last stage
    the MTP drafter's layers, which vLLM builds there (speculative.served puts them after the decoder's)."""
    stages = [list(r) for r in pp_layer_ranges(arch.num_layers, pp)]
    stages[-1] += list(range(arch.num_layers, arch.num_layers + arch.drafter_layers))
    return stages


def shard_fraction(t: Tensor, arch: ModelArch, tp: int) -> float:
    if t.shard in ("col", "row"):
        return 1 / tp
    if t.shard == "kv":  # the layer's own KV heads (Gemma 4's global layers have fewer than its sliding ones)
        heads = arch.attention[t.layer].num_kv_heads
        return max(1, heads // tp) / heads
    if t.shard == "groups":  # Mamba2's B and C groups: split where TP divides them, else one whole group a rank
        groups = next(g for _, _, g in arch.attention[t.layer].state if g)
        return 1 / tp if groups % tp == 0 else 1 / groups
    if t.shard == "vocab":  # this table's rows (a per-layer embedding's or a tower's vocabulary may differ)
        padded = cdiv(t.rows, VOCAB_PADDING) * VOCAB_PADDING
        return cdiv(padded, tp) / t.rows
    return 1.0


def quantized(name: str, kind: str, quant: QuantScheme | None) -> bool:
    """Whether the checkpoint's (or --quantization's) scheme applies to a tensor of this name and kind."""
    return tensor_scheme(name, kind, quant) is not None


def tensor_bytes(t: Tensor, dtype_bytes: int, quant: QuantScheme | None) -> float:
    """Bytes of the whole tensor as loaded (before TP sharding)."""
    scheme = tensor_scheme(t.name, t.kind, quant, t.shard)
    if scheme is not None:
        return scheme.linear_bytes(t.rows, t.cols, t.copies)
    return t.numel * (t.fixed_bytes or dtype_bytes)


def experts_scheme(arch: ModelArch) -> QuantScheme | None:
    """The scheme the routed experts are stored with (a mixed checkpoint may quantize them unlike the rest); the
    checkpoint's own for a model described without its tensors."""
    expert = next((t for t in arch.tensors if t.kind == "expert"), None)
    return tensor_scheme(expert.name, "expert", arch.quant) if expert is not None else arch.quant


def held(t: Tensor, quant: QuantScheme | None) -> bool:
    """Whether vLLM holds memory of its own for the tensor. MLA's absorbed decode weights W_UK_T and W_UV are
    views of get_and_maybe_dequant_weights(kv_b_proj) (mla_attention.py process_weights_after_loading): of
    kv_b_proj itself when it is unquantized, of a dequantized copy in the model dtype, kept beside the quantized
    original (which the prefill uses), when it is quantized."""
    if not t.name.endswith(ABSORBED_MLA):
        return True
    return quantized(t.name.removesuffix(ABSORBED_MLA) + ".kv_b_proj", "linear", quant)


def mxfp4_kernel(gpu: GpuSpec | None) -> str | None:
    """The kernel vLLM 0.32 runs MXFP4 experts with on this device (fused_moe/oracle/mxfp4.py
    _get_priority_backends_for_gpt_oss, by the capability's major version): "oai_triton" on Hopper, "trtllm"
    (TRTLLM-Gen) on data-center Blackwell, "marlin" on consumer Blackwell and before Hopper, "rocm" (Triton or
    AITER) on AMD GPUs, "cpu"; None for a device given only by its memory."""
    if gpu is None:
        return None
    if gpu.vendor in ("amd", "cpu"):
        return "rocm" if gpu.vendor == "amd" else "cpu"
    major = int(gpu.compute_capability or 0)
    return "oai_triton" if major == 9 else "trtllm" if major == 10 else "marlin"


# (hidden, intermediate per TP rank) multiples each MXFP4 kernel pads the experts to
# (mxfp4_round_up_hidden_size_and_intermediate_size): 64 on the intermediate size for OAI Triton; 256 and 128 for
# TRTLLM-Gen and Marlin; the generic 256 and 256 on ROCm for gpt-oss's SwiGLU variant; the CPU kernel's 32.
MXFP4_ALIGNMENT = {None: (1, 1), "oai_triton": (1, 64), "trtllm": (256, 128), "marlin": (256, 128),
                   "rocm": (256, 256), "cpu": (32, 32)}


def mxfp4_expert_alignment(gpu: GpuSpec | None) -> tuple[int, int]:
    """(hidden, intermediate per TP rank) multiples vLLM pads MXFP4 expert weights to on this device."""
    return MXFP4_ALIGNMENT[mxfp4_kernel(gpu)]


def _round_up(value: int, multiple: int) -> int:
    return cdiv(value, multiple) * multiple


def mxfp4_expert_dims(arch: ModelArch, tp: int, gpu: GpuSpec | None) -> tuple[int, int]:
    """(hidden, per-rank intermediate) of MXFP4 experts as vLLM pads them for its kernel (the hidden states
    entering them are padded to match)."""
    align_hidden, align_inter = mxfp4_expert_alignment(gpu)
    return _round_up(arch.hidden_size, align_hidden), _round_up(cdiv(arch.moe_intermediate_size, tp), align_inter)


def mxfp4_expert_bias_bytes(gpu: GpuSpec | None) -> int:
    """Bytes per element of MXFP4 experts' biases as vLLM 0.32 holds them after converting the weights for the
    kernel (fused_moe/oracle/mxfp4.py convert_gpt_oss_weight_to_mxfp4_moe_kernel_format, which then replaces the
    parameters): float32 for every kernel but Marlin, which casts them to the 16-bit model dtype
    (marlin_utils_fp4.py); 16 bits, as loaded, on a device whose kernel is unknown."""
    return 2 if mxfp4_kernel(gpu) in (None, "marlin") else 4


def padded_expert_bytes(t: Tensor, arch: ModelArch, tp: int, quant: QuantScheme, gpu: GpuSpec | None) -> float:
    """One TP rank's bytes of an MXFP4 expert tensor (or its bias) after vLLM pads the hidden size and the
    per-rank intermediate size to its kernel's multiples."""
    hidden, inter = mxfp4_expert_dims(arch, tp, gpu)
    gate_up = ".experts.gate_up_proj" in t.name
    if t.kind == "bias":
        return (2 * inter if gate_up else hidden) * t.copies * mxfp4_expert_bias_bytes(gpu)
    rows, cols = (2 * inter, hidden) if gate_up else (hidden, inter)
    return quant.linear_bytes(rows, cols, t.copies)


def stage_tensors(arch: ModelArch, pp: int, stage: int) -> Iterator[Tensor]:
    """The tensors one pipeline stage holds (the one rule the memory plan and the speed model share): its layers',
    the embeddings on the first stage, the final norm and LM head on the last, and with tied embeddings the last
    stage's own copy of the embedding matrix, which is its LM head (vLLM llama.py et al.); tensors a model builds on
    every stage (place "every": Gemma 4's and gemma-3n's embeddings, per-layer tables and final norm) on all."""
    layers = set(stage_layers(arch, pp)[stage])
    last = stage == pp - 1
    for t in arch.tensors:
        if t.layer is not None:
            if t.layer in layers:
                yield t
        elif t.place == "last":
            if last:
                yield t
        elif t.place == "every":
            yield t
        elif stage == 0 or (last and t.name == "model.embed_tokens" and arch.tie_word_embeddings):
            yield t


def routed(t: Tensor) -> bool:
    """A routed experts' tensor (their weights, scales or biases: one copy per expert)."""
    return t.copies > 1 and t.kind in ("expert", "bias")


def local_experts(num_experts: int, cfg) -> int:
    """The routed experts the first GPU of the expert-parallel group holds: vLLM gives each GPU
    num_experts // ep_size and the first num_experts % ep_size GPUs one more (expert_map_manager.py
    determine_expert_map), EPLB's redundant copies counted in; all of them without expert parallelism."""
    return cdiv(num_experts + cfg.num_redundant_experts, expert_parallel_size(cfg))


def rank_bytes(t: Tensor, arch: ModelArch, cfg: ServeConfig, quant: QuantScheme | None, gpu: GpuSpec | None) -> float:
    """One GPU's bytes of a tensor as vLLM holds it: sliced by TP, a routed expert's across every data-parallel
    rank too (or whole, its share of the experts, under expert parallelism), MXFP4 experts padded for their
    kernel."""
    if not routed(t):
        return tensor_bytes(t, cfg.dtype_bytes, quant) * shard_fraction(t, arch, cfg.tensor_parallel_size) \
            + rocm_fp8_row_padding(t, arch, cfg, quant, gpu)
    moe_tp, share = moe_tensor_parallel_size(cfg), local_experts(t.copies, cfg) / t.copies
    # MXFP4 experts: the checkpoint's scheme (gpt-oss), or the experts' own in a mixed one (DeepSeek-V4-Flash)
    mx = quant if quant is None or quant.method == "mxfp4" else tensor_scheme(t.name, t.kind, quant)
    if mx is not None and mx.method == "mxfp4" and ".experts." in t.name:
        return padded_expert_bytes(t, arch, moe_tp, mx, gpu) * share
    padding = expert_padding(arch, cfg, gpu) if t.kind == "expert" else 1.0
    return tensor_bytes(t, cfg.dtype_bytes, quant) * shard_fraction(t, arch, moe_tp) * padding * share


# fp8_utils._maybe_pad_fp8_weight (VLLM_ROCM_FP8_PADDING, on by default): bytes added to each output row, where a
# row's bytes are a multiple of ROCM_FP8_PADDED_ROW_MULTIPLE, so that the rows lie apart in memory
ROCM_FP8_ROW_PADDING, ROCM_FP8_PADDED_ROW_MULTIPLE = 256, 512


def rocm_fp8_row_padding(t: Tensor, arch: ModelArch, cfg: ServeConfig, quant: QuantScheme | None,
                         gpu: GpuSpec | None) -> float:
    """On ROCm vLLM copies a checkpoint's FP8 linear weight with per-tensor or block scales into one whose rows
    are 256 bytes longer than they hold (F.pad then a slice: the padding stays allocated), where a row's bytes
    are a multiple of 512: Fp8LinearMethod's per-tensor and block weights and compressed-tensors' TENSOR and
    BLOCK strategies (process_fp8_weight_tensor_strategy, process_fp8_weight_block_strategy). Per-channel
    scales, ModelOpt's and Quark's FP8, online FP8 and the experts are not padded."""
    if gpu is None or gpu.vendor != "amd" or t.kind != "linear":
        return 0
    scheme = tensor_scheme(t.name, t.kind, quant, t.shard)
    if scheme is None or scheme.method not in ("fp8", "compressed-tensors") or not scheme.fp8_compute \
            or scheme.channel_scales or scheme.online:
        return 0
    tp = cfg.tensor_parallel_size
    rows = t.rows if t.shard == "row" else t.rows * shard_fraction(t, arch, tp)
    cols = t.cols / tp if t.shard == "row" else t.cols
    return rows * ROCM_FP8_ROW_PADDING if cols % ROCM_FP8_PADDED_ROW_MULTIPLE == 0 else 0


def allocated_bytes(nbytes):
    """What the caching allocator counts as allocated for one weight of nbytes, loaded as vLLM 0.32 loads weights:
    512-byte multiples, and a large block's 2 MiB segment whole where its tail is not split off. A block between
    1 and 10 MiB is carved from a shared 20 MiB segment, taken here at its own size."""
    rounded = maximum(ceil(nbytes / ALLOC_BLOCK), 1) * ALLOC_BLOCK
    segment = ceil(rounded / ALLOC_ROUND_LARGE) * ALLOC_ROUND_LARGE
    kept = where(rounded >= LOAD_MAX_SPLIT, segment, where(segment - rounded <= ALLOC_SMALL, segment, rounded))
    return where(rounded >= ALLOC_MIN_LARGE, kept, rounded)


def allocation(name: str) -> str:
    """The parameter a tensor of the inventory is part of as vLLM allocates it (FUSED_PARAMETERS)."""
    head, _, leaf = name.rpartition(".")
    if leaf == "bias":
        return allocation(head) + ".bias"
    return f"{head}.{FUSED_PARAMETERS[leaf]}" if leaf in FUSED_PARAMETERS else name


def weights_per_stage(arch: ModelArch, cfg: ServeConfig, quant: QuantScheme | None,
                      gpu: GpuSpec | None = None, allocated: bool = True) -> list:
    """What model loading takes on one TP rank of each pipeline stage: the weights; on the first stage the
    buffers the model allocates per batched token (ModelArch.buffer_rows_per_token) and a vision tower's rotary
    table (ModelArch.tower_rope_tables); on every stage a sparse MLA model's int32 top-k index buffer
    (ModelArch.index_topk) and the rotary tables (ModelArch.rope_tables); on the last stage an MTP drafter's
    buffers (drafter_buffer_bytes). The weights as the caching allocator counts them (stage_weight_bytes), or, with
    allocated False, the bytes the tensors themselves hold."""
    pp = cfg.pipeline_parallel_size
    buffers = arch.buffer_rows_per_token * cfg.max_num_batched_tokens * arch.hidden_size * cfg.dtype_bytes \
        if arch.buffer_rows_per_token else 0
    topk_indices = arch.index_topk * INT32_BYTES * cfg.max_num_batched_tokens
    rope = sum(elements * (dtype_bytes or cfg.dtype_bytes) for elements, dtype_bytes in arch.rope_tables)
    tower_rope = sum(elements * (dtype_bytes or cfg.dtype_bytes) for elements, dtype_bytes in arch.tower_rope_tables)
    ranges = pp_layer_ranges(arch.num_layers, pp)
    return [stage_weight_bytes(arch, cfg, quant, gpu, stage, allocated)
            + (buffers + tower_rope if stage == 0 else 0) + topk_indices + rope
            + (drafter_buffer_bytes(arch, cfg) + drafter_embedding_bytes(arch, cfg, quant, gpu) if stage == pp - 1
               else 0)
            + eplb_state_bytes(arch, cfg, quant, gpu, len(moe_layers(arch, ranges[stage]))) for stage in range(pp)]


def stage_weight_bytes(arch: ModelArch, cfg: ServeConfig, quant: QuantScheme | None, gpu: GpuSpec | None,
                       stage: int, allocated: bool = True) -> float:
    """One TP rank's weights on a pipeline stage as the allocator counts them: each parameter vLLM allocates
    (fused ones whole) at allocated_bytes. A quantized tensor is counted at its bytes: vLLM repacks or converts it
    after loading (process_weights_after_loading), and where the allocator then places the new tensors among the
    freed ones depends on the order of the whole load."""
    parameters: dict[str, float] = {}  # the parameters counted as the allocator holds them
    as_held = 0.0  # the rest, at their bytes
    for t in stage_tensors(arch, cfg.pipeline_parallel_size, stage):
        if not held(t, quant):
            continue
        nbytes = rank_bytes(t, arch, cfg, quant, gpu)
        quantized = t.kind in ("linear", "expert") and tensor_scheme(t.name, t.kind, quant) is not None
        if allocated and not quantized:
            key = allocation(t.name)
            parameters[key] = parameters.get(key, 0) + nbytes
        else:
            as_held = as_held + nbytes
    return as_held + sum(allocated_bytes(nbytes) for nbytes in parameters.values())


def drafter_embedding_bytes(arch: ModelArch, cfg, quant: QuantScheme | None, gpu: GpuSpec | None) -> float:
    """An MTP drafter shares the target's embedding only where one stage holds both (_maybe_share_embeddings:
    pipeline world size 1); under pipeline parallelism the last stage loads a copy of its own."""
    if not arch.drafter_layers or cfg.pipeline_parallel_size == 1:
        return 0
    embedding = next(t for t in arch.tensors if t.name == "model.embed_tokens")
    return rank_bytes(embedding, arch, cfg, quant, gpu)


def drafter_buffer_bytes(arch: ModelArch, cfg) -> float:
    """An MTP drafter's persistent buffers, allocated with the model runner and held for the server's life: its
    hidden-state and input-embedding rows per batched token (speculative.DRAFTER_BUFFER_ROWS), and a sparse MLA
    draft layer's own top-k index buffer (deepseek_mtp.py DeepSeekMultiTokenPredictorLayer)."""
    if not arch.drafter_layers:
        return 0
    rows = DRAFTER_BUFFER_ROWS * arch.hidden_size * cfg.dtype_bytes + arch.index_topk * INT32_BYTES
    return rows * cfg.max_num_batched_tokens


# --- expert parallel load balancing (estimator/eplb.py) -------------------------------------------------


def moe_layers(arch: ModelArch, layers) -> list[int]:
    """The layers among ``layers`` that hold routed experts."""
    routed_layers = {t.layer for t in arch.tensors if routed(t)}
    return [i for i in layers if i in routed_layers]


def eplb_layer_bytes(arch: ModelArch, cfg: ServeConfig, quant: QuantScheme | None, gpu: GpuSpec | None) -> float:
    """One MoE layer's routed experts on one GPU, as EPLB copies them: its expert buffer is an empty_like of each
    expert weight of the first MoE layer (EplbState.add_model), and the profiling pass reserves the same again
    for its all_gather (rebalance_execute.py rearrange_expert_weights_inplace)."""
    first = min(moe_layers(arch, range(arch.num_layers)))
    return sum(rank_bytes(t, arch, cfg, quant, gpu) for t in arch.tensors if t.layer == first and routed(t))


def eplb_maps_bytes(arch: ModelArch, cfg: ServeConfig, layers: int) -> int:
    """EPLB's load-tracking tensors over a GPU's ``layers`` MoE layers (EplbState.add_model): the logical-to-
    physical map, MAX_EXPERT_REDUNDANCY + 1 int64 slots per expert; the physical-to-logical map, the replica
    counts and the last load, int64; this step's load and a window of past steps' load per physical expert,
    int32."""
    logical, physical = arch.num_experts, arch.num_experts + cfg.num_redundant_experts
    int64 = layers * (logical * (MAX_EXPERT_REDUNDANCY + 1) + physical + 2 * logical) * INT64_BYTES
    return int64 + layers * physical * (1 + cfg.eplb_window_size) * INT32_BYTES


def eplb_state_bytes(arch: ModelArch, cfg: ServeConfig, quant: QuantScheme | None, gpu: GpuSpec | None,
                     layers: int) -> float:
    """What EPLB adds to model loading on a GPU holding ``layers`` MoE layers (0 without it)."""
    if not cfg.enable_eplb or not layers:
        return 0
    return eplb_layer_bytes(arch, cfg, quant, gpu) + eplb_maps_bytes(arch, cfg, layers)


def eplb_profile_bytes(arch: ModelArch, cfg: ServeConfig, quant: QuantScheme | None, gpu: GpuSpec | None,
                       layers: int) -> float:
    """EPLB's transient in the profiling pass, after the forward (EplbState.rearrange with is_profile): the
    load window folded onto logical experts (int32, one more slot for unmapped ones), beside first the int64
    scatter index as wide as the window, then (every communicator but NIXL) the all_gather's layer of experts."""
    if not cfg.enable_eplb or not layers:
        return 0
    physical = arch.num_experts + cfg.num_redundant_experts
    steps = cfg.eplb_window_size * layers
    window = steps * (arch.num_experts + 1) * INT32_BYTES
    index = steps * physical * INT64_BYTES
    reserved = eplb_layer_bytes(arch, cfg, quant, gpu) if cfg.eplb_reserves_profile_buffer else 0
    return window + max(index, reserved)


# --- transient and fixed overheads -----------------------------------------------------------------------


def encoder_items(cfg: ServeConfig, tokens_per_item, mm_limit=MM_ITEMS_PER_PROMPT):
    """Items of the profiled kind the encoder profiling pass runs at once (multimodal/encoder_budget.py
    MultiModalBudget._get_max_items): what the encoder budget holds, at least one, and no more than max_num_seqs
    prompts of up to mm_limit items (--limit-mm-per-prompt) that fit max_model_len carry."""
    budget = maximum(cfg.max_num_batched_tokens, tokens_per_item)
    per_prompt = maximum(1, minimum(mm_limit, cfg.max_model_len // tokens_per_item))
    return maximum(1, minimum(budget // tokens_per_item, cfg.max_num_seqs * per_prompt))


def encoder_profile_bytes(arch: ModelArch, cfg: ServeConfig) -> tuple:
    """(what the vision tower's profiling pass holds while the language model's dummy forward runs, its own peak
    on top of that): vLLM profiles the modality whose item has the most placeholders among those a prompt may
    carry (a video on a tie; encoder_budget.py get_modality_with_max_tokens), runs as many of its items as the
    encoder budget (max_num_batched_tokens, at least one item) and the decoder (max_num_seqs prompts of up to
    the modality's limit that fit max_model_len) allow through the tower at once, and keeps their pixel values
    and encoder outputs to the end of profile_run (gpu_model_runner.profile_run). A video item is several
    slices."""
    v = arch.vision
    if v is None:
        return 0, 0
    passes = []
    for modality, item in (("image", v.image), ("video", v.video)):
        limit = cfg.mm_limit(modality)
        if item is None or limit == 0:
            continue
        slices = item.slices(cfg.max_model_len)
        count = encoder_items(cfg, item.tokens * slices, limit) * slices
        held = count * (item.pixels + item.tokens * v.output_rows * arch.hidden_size) * cfg.dtype_bytes
        tower = count * item.patches * (v.hidden_rows * v.hidden + v.mlp_rows * v.intermediate
                                        / cfg.tensor_parallel_size) * cfg.dtype_bytes
        passes.append((item.tokens * slices, held, tower))
    if not passes:
        return 0, 0
    if len(passes) == 1:
        return passes[0][1:]
    (image_tokens, image_held, image_tower), (video_tokens, video_held, video_tower) = passes
    video = video_tokens >= image_tokens
    return where(video, video_held, image_held), where(video, video_tower, image_tower)


def activation_bytes(arch: ModelArch, cfg: ServeConfig, co: Coefficients, last_stage: bool,
                     first_stage: bool = True, *, gpu: GpuSpec, eplb_transient: float = 0.0) -> float:
    """Peak transient torch memory of vLLM's profile_run: on the first stage of a multimodal model the vision
    tower's pass (encoder_profile_bytes), then one forward over max_num_batched_tokens tokens, then (last stage)
    the dummy sampler over min(max_num_seqs, tokens) requests. A pooling model runs its pooler instead
    (gpu_model_runner._dummy_pooler_run), which keeps one hidden vector per request: no peak of its own. EPLB's
    profiling transient (eplb_profile_bytes) comes between the forward and the sampler."""
    held, tower = encoder_profile_bytes(arch, cfg) if first_stage else (0, 0)
    return held + maximum(tower, _decoder_activation_bytes(arch, cfg, co, last_stage, gpu, eplb_transient))


def sampler_bytes(arch: ModelArch, cfg: ServeConfig, co: Coefficients, gpu: GpuSpec, num_reqs) -> float:
    """Peak of vLLM's dummy sampler run over num_reqs rows of the vocabulary (gpu_model_runner._dummy_sampler_run,
    v1/sample/sampler.py): compute_logits' model-dtype logits stay referenced while Sampler.forward casts them to
    float32 (a float32 model's cast is the same tensor); the float32 working copies (co.sampler_fp32_copies: the
    logits, the softmax probabilities and random_sample's exponential noise, or FlashInfer's masked logits and
    probabilities); and on a GPU the Triton top-k/top-p kernel's scratch buffer, min(next_pow2(min(units, rows)),
    units) float32 rows of the vocabulary, cached for the process's life (topk_topp_triton.py)."""
    vocab = arch.vocab_size
    model_logits = cfg.dtype_bytes if cfg.dtype_bytes < SAMPLER_LOGITS_BYTES else 0
    working = num_reqs * vocab * (SAMPLER_LOGITS_BYTES * co.sampler_fp32_copies + model_logits)
    if gpu.vendor == "cpu":
        return working
    units = gpu.compute_units or ASSUMED_COMPUTE_UNITS
    buffer_rows = minimum(next_power_of_two(minimum(units, num_reqs)), units)
    return working + buffer_rows * vocab * SAMPLER_LOGITS_BYTES


def moe_dispatch(cfg) -> tuple[bool, bool]:
    """(all2all kernels, sequence parallel) as vLLM's FusedMoEParallelConfig works them out with its default
    all2all backend, allgather_reducescatter (fused_moe/config.py use_all2all_kernels; config/parallel.py
    use_sequence_parallel_moe): experts dispatched across data-parallel engines under expert parallelism, and each
    TP rank sending its share of the tokens where TP and DP are both above 1."""
    dispatched = bool(cfg.enable_expert_parallel) and cfg.data_parallel_size > 1
    return dispatched, dispatched and cfg.tensor_parallel_size > 1


def monolithic_allowed(cfg, kernel: str) -> bool:
    """Whether a monolithic kernel of this kind takes the server's parallel layout (its experts class'
    _supports_parallel_config): none takes EPLB; TRTLLM-Gen's unquantized and FP8 kernels take the default
    all-gather dispatch (FP8's not under sequence parallelism), its NVFP4 kernel no dispatch at all, and the
    MXFP4 kernels (TRTLLM-Gen's and OAI Triton's) neither dispatch nor more than one data-parallel engine."""
    dispatched, sequence = moe_dispatch(cfg)
    takes = {"trtllm_bf16": True, "trtllm_fp8": not sequence, "trtllm_nvfp4": not dispatched,
             "mxfp4": not dispatched and cfg.data_parallel_size <= 1}
    return takes[kernel] and not cfg.enable_eplb


def moe_kernel(arch: ModelArch, cfg: ServeConfig, gpu: GpuSpec | None) -> str:
    """The fused-MoE kernel vLLM 0.32 runs the routed experts with on this device and parallel layout
    (fused_moe/oracle/*.py: the first backend whose kernel supports the device, scheme, activation, routing and
    parallel layout, a monolithic kernel ahead of the same backend's modular one):
    "cpu" (vLLM's CPU kernels); "trtllm" (FlashInfer's TRTLLM-Gen, monolithic: unquantized and 128-block FP8
    experts on data-center Blackwell where it takes the routing, and MXFP4 and NVFP4 W4A4 experts there); "oai_triton"
    (the OAI Triton MXFP4 kernel on Hopper, monolithic); "oai_triton_modular" (its modular form, under data
    parallelism or EPLB: the output and the activation in vLLM's workspace); "trtllm_mxfp4_modular" (TRTLLM-Gen's
    modular MXFP4 form likewise: the output only); "flashinfer_cutlass" (unquantized experts on consumer
    Blackwell, and on data-center Blackwell when TRTLLM-Gen does not take the routing or EPLB, with one engine:
    plain softmax top-k or a model's own function; NVFP4 W4A4 experts on consumer Blackwell); "trtllm_modular"
    (TRTLLM-Gen's modular form, for NVFP4 W4A4 experts on data-center Blackwell where its monolithic form does not
    take the routing or the parallel layout: one output buffer in the workspace); "modular" (Triton on Hopper and
    before and on ROCm, and wherever the kernels above step aside; Marlin for AWQ/GPTQ, for NVFP4 before Blackwell
    and for MXFP4 on consumer Blackwell; CUTLASS or DeepGEMM for FP8: kernels that keep both GEMMs' outputs in
    vLLM's workspace, sized as Triton's; DeepGEMM, where installed, takes somewhat more). FlashInfer's CUTLASS
    kernel also runs 128-block FP8 experts on Hopper under expert parallelism, and per-tensor FP8 experts with
    static input scales from Hopper on (TRTLLM-Gen's monolithic kernel ahead of it on data-center Blackwell)."""
    if gpu is None or gpu.vendor == "cpu":
        return "cpu"
    # the capability's major version, as vLLM's is_device_capability_family checks it (AMD's gfx names have none)
    major = int(gpu.compute_capability or 0)
    if cfg.quantization == "mxfp4":
        kernel = mxfp4_kernel(gpu)
        if kernel not in ("trtllm", "oai_triton"):
            return "modular"
        if monolithic_allowed(cfg, "mxfp4"):
            return kernel
        return "trtllm_mxfp4_modular" if kernel == "trtllm" else "oai_triton_modular"
    experts = experts_scheme(arch)
    if experts is not None and experts.nvfp4:
        return _nvfp4_kernel(arch, cfg, experts, major)
    if experts is not None and experts.fp8_compute and experts.weight_bits == 8:
        return _fp8_kernel(arch, cfg, gpu, experts, major)
    if cfg.quantization is None and major in (10, 12):
        return _unquantized_kernel(arch, cfg, major)
    return "modular"


def _nvfp4_kernel(arch: ModelArch, cfg, experts: QuantScheme, major: int) -> str:
    """fused_moe/oracle/nvfp4.py: W4A4 takes TRTLLM-Gen on data-center Blackwell (monolithic where it takes the
    routing and the layout, its modular form otherwise), FlashInfer's CUTLASS kernel on consumer Blackwell;
    W4A16, and every GPU before Blackwell, Marlin (the optional Humming package, which would outrank it on
    Hopper, is not assumed)."""
    if experts.fp4_activations and major == 10:
        monolithic = arch.moe_routing == "renormalize" and monolithic_allowed(cfg, "trtllm_nvfp4")
        return "trtllm" if monolithic else "trtllm_modular"
    return "flashinfer_cutlass" if experts.fp4_activations and major == 12 else "modular"


def _fp8_kernel(arch: ModelArch, cfg, gpu: GpuSpec, experts: QuantScheme, major: int) -> str:
    """fused_moe/oracle/fp8.py for 128-block FP8 experts and per-tensor ones with static input scales (ModelOpt
    FP8, static compressed-tensors and fp8 checkpoints): TRTLLM-Gen's monolithic kernel on data-center Blackwell
    where it takes the routing, the activation and the layout; there too its modular form for blocks (it routes
    outside the kernel, so any routing, but takes no EPLB and no GELU); on Hopper FlashInfer's CUTLASS kernel for
    blocks split whole between GPUs (Triton under tensor parallelism), and from Hopper on for static per-tensor
    scales. The rest (dynamic activations, Ada and before, ROCm) runs Triton, CUTLASS or DeepGEMM."""
    nvidia = gpu.vendor == "nvidia"
    block = experts.block == FP8_MOE_BLOCK and experts.method in ("fp8", "compressed-tensors")
    static = experts.static_activations and experts.block is None
    takes_monolithic = arch.moe_routing == "renormalize" and arch.moe_activation != "gelu" \
        and monolithic_allowed(cfg, "trtllm_fp8")
    if nvidia and major == 10 and (block or static) and takes_monolithic:
        return "trtllm"
    if nvidia and major == 10 and block and not cfg.enable_eplb and arch.moe_activation != "gelu":
        return "trtllm_modular"
    if nvidia and block and gpu.compute_capability == HOPPER_CAPABILITY and expert_parallel_size(cfg) > 1:
        return "flashinfer_cutlass"
    return "flashinfer_cutlass" if nvidia and static and major >= 9 else "modular"


def _unquantized_kernel(arch: ModelArch, cfg, major: int) -> str:
    """oracle/unquantized.py on Blackwell: TRTLLM-Gen's monolithic kernel (data-center Blackwell, where it takes
    the routing and the layout), else FlashInfer's CUTLASS kernel, which steps back behind Triton with more than
    one data-parallel engine; both step back for gpt-oss's SwiGLU."""
    if arch.moe_activation == "swigluoai":
        return "modular"
    if major == 10 and arch.moe_routing == "renormalize" and monolithic_allowed(cfg, "trtllm_bf16"):
        return "trtllm"
    return "flashinfer_cutlass" if cfg.data_parallel_size <= 1 else "modular"


# Hopper's compute capability, which vLLM's FP8 MoE oracle checks exactly (is_device_capability(90))
HOPPER_CAPABILITY = 9.0


# The FP8 weight blocks TRTLLM-Gen's FP8 MoE kernel takes (trtllm_fp8_moe.py: kFp8Static128BlockSym)
FP8_MOE_BLOCK = (128, 128)
# MoE kernels that keep their scratch inside the op, none in vLLM's workspace: the monolithic ones and the CPU's
SCRATCH_INSIDE = ("cpu", "trtllm", "oai_triton")
# TRTLLM-Gen's unquantized experts need the per-rank intermediate size a multiple of this; vLLM pads the weights
# to it (fused_moe/oracle/unquantized.py convert_to_unquantized_kernel_format, align_moe_weights_for_fi).
TRTLLM_BF16_INTERMEDIATE_ALIGNMENT = 128
# Its NVFP4 experts: the hidden size to 256 (trtllm_nvfp4_hidden_alignment), the per-rank intermediate size to 64
# when gated (gate and up rows together a multiple of 128), to 128 when not
# (quantization/utils/flashinfer_fp4_moe.py prepare_nvfp4_moe_layer_for_fi_or_cutlass)
TRTLLM_NVFP4_HIDDEN_ALIGNMENT = 256
TRTLLM_NVFP4_GATED_INTERMEDIATE_ALIGNMENT = 64
TRTLLM_NVFP4_INTERMEDIATE_ALIGNMENT = 128


def held_expert_dims(arch: ModelArch, cfg: ServeConfig, gpu: GpuSpec | None) -> tuple[int, int, int, int]:
    """(hidden size, what vLLM holds of it, per-rank intermediate size, what vLLM holds of it) of the routed
    experts: TRTLLM-Gen pads unquantized experts' intermediate size, and NVFP4 experts' hidden and intermediate
    sizes; every other kernel holds them as loaded (MXFP4's own padding is padded_expert_bytes'). All 0 for a
    dense model."""
    if not arch.is_moe:
        return 0, 0, 0, 0
    hidden, inter = arch.hidden_size, cdiv(arch.moe_intermediate_size, moe_tensor_parallel_size(cfg))
    held = cdiv(model_padded_expert_width(arch, cfg), moe_tensor_parallel_size(cfg))
    kernel = moe_kernel(arch, cfg, gpu)
    experts = experts_scheme(arch)
    if experts is not None and experts.nvfp4 and kernel in ("trtllm", "trtllm_modular"):
        gated = any(".experts.gate_up_proj" in t.name for t in arch.tensors)
        return (hidden, _round_up(hidden, TRTLLM_NVFP4_HIDDEN_ALIGNMENT), inter,
                _round_up(held, TRTLLM_NVFP4_GATED_INTERMEDIATE_ALIGNMENT if gated
                          else TRTLLM_NVFP4_INTERMEDIATE_ALIGNMENT))
    if cfg.quantization is None and kernel == "trtllm":
        return hidden, hidden, inter, _round_up(held, TRTLLM_BF16_INTERMEDIATE_ALIGNMENT)
    return hidden, hidden, inter, held


def model_padded_expert_width(arch: ModelArch, cfg: ServeConfig) -> int:
    """The routed experts' intermediate size as the model's own code builds them: Kimi-Linear's KimiMoE pads it
    to moe_min_intermediate_per_rank x TP where TP (without expert parallelism) would leave each rank less."""
    width, floor, tp = arch.moe_intermediate_size, arch.moe_min_intermediate_per_rank, cfg.tensor_parallel_size
    if floor and tp > 1 and not cfg.enable_expert_parallel and width // tp < floor:
        return floor * tp
    return width


def expert_padding(arch: ModelArch, cfg: ServeConfig, gpu: GpuSpec | None) -> float:
    """How much larger vLLM makes routed expert weights for their kernel (1 where it does not)."""
    hidden, held_hidden, inter, held_inter = held_expert_dims(arch, cfg, gpu)
    return held_hidden / hidden * held_inter / inter if inter else 1.0


def moe_tokens(cfg):
    """Tokens one MoE layer runs in the profiling pass: the step's own, and with data parallelism every engine's,
    which vLLM's default all2all backend (allgather_reducescatter; config/parallel.py) gathers to each GPU before
    the experts (fused_moe/runner/moe_runner.py _maybe_dispatch); every engine profiles a full step at once."""
    return cfg.max_num_batched_tokens * cfg.data_parallel_size


def _workspace_piece(elements, dtype_bytes: int):
    """One buffer of WorkspaceManager.get_simultaneous: its bytes rounded up to 256."""
    return ceil(elements * dtype_bytes / WORKSPACE_ALIGNMENT) * WORKSPACE_ALIGNMENT


def moe_workspace_bytes(arch: ModelArch, cfg: ServeConfig, gpu: GpuSpec):
    """The fused-MoE workspace vLLM keeps for the process's life (v1/worker/workspace.py: it grows to the
    profiling pass's max_num_batched_tokens tokens and is locked after CUDA graph capture), so it stays
    allocated under the sampler's peak. Modular GEMM kernels (TritonExperts.workspace_shapes, MarlinExperts
    likewise): one buffer of M x topk x max(I, H) shared by the first GEMM's output and the final output, one of
    M x topk x max(2I, H) for the activation, I the per-rank intermediate size (both padded as the MXFP4 weights
    are: the hidden states are padded to match); FlashInfer CUTLASS and TRTLLM-Gen's modular forms: one of M x H
    (the MXFP4 one's unpadded); OAI Triton's modular form: its M x H output and an M x topk x I activation."""
    kind = moe_kernel(arch, cfg, gpu) if arch.is_moe else None
    if kind is None or kind in SCRATCH_INSIDE:
        return 0
    tokens, topk, hidden = moe_tokens(cfg), arch.experts_per_token, arch.hidden_size
    if kind == "trtllm_mxfp4_modular":  # TrtLlmMxfp4ExpertsModular.workspace_shapes: (M, hidden_dim_unpadded)
        return _workspace_piece(tokens * hidden, cfg.dtype_bytes)
    inter = cdiv(arch.moe_intermediate_size, moe_tensor_parallel_size(cfg))
    if cfg.quantization == "mxfp4":
        hidden, inter = mxfp4_expert_dims(arch, moe_tensor_parallel_size(cfg), gpu)
    if kind in ("flashinfer_cutlass", "trtllm_modular"):
        # FlashInfer CUTLASS's first GEMM output; TRTLLM-Gen's modular output (TrtLlmNvFp4ExpertsModular.
        # workspace_shapes; NVFP4's packed M x H/2 input fits inside it)
        return _workspace_piece(tokens * hidden, cfg.dtype_bytes)
    if kind == "oai_triton_modular":  # OAITritonExperts.workspace_shapes: (0, 0), (M x topk, I), output (M, H)
        return (_workspace_piece(tokens * hidden, cfg.dtype_bytes)
                + _workspace_piece(tokens * topk * inter, cfg.dtype_bytes))
    return (_workspace_piece(tokens * topk * max(inter, hidden), cfg.dtype_bytes)
            + _workspace_piece(tokens * topk * max(2 * inter, hidden), cfg.dtype_bytes))


# MLACommonMetadataBuilder.determine_chunked_prefill_workspace_size: the context chunk an MLA prefill
# up-projects at once is at most this many tokens
MLA_CHUNK_MAX_TOKENS = 64 * 1024


def mla_context_chunk_tokens(cfg):
    """Tokens of the context chunk an MLA prefill up-projects at once: room for 8 full-length requests or 4
    blocks of every sequence, at most 64K, in whole blocks (under DCP, whole blocks spread over the DCP ranks:
    align_mla_chunked_context_workspace_size, cp_kv_cache_interleave_size 1)."""
    tokens = minimum(maximum(8 * cfg.max_model_len, 4 * cfg.max_num_seqs * cfg.block_size), MLA_CHUNK_MAX_TOKENS)
    alignment = lcm(cfg.block_size, cfg.decode_context_parallel_size)  # block_size an array for a hybrid's search
    return ceil(maximum(tokens, alignment) / alignment) * alignment


def deepseek_v4_workspace_bytes(arch: ModelArch, cfg) -> float:
    """What DeepSeek-V4's attention reserves in vLLM's workspace in the profiling pass, the gather a prefill needs
    (nvidia/flashmla.py and amd/rocm.py, forward without metadata): PREFILL_CHUNK_SIZE x M rows of the head in
    bf16, M the layer's compressed context (max_model_len / ratio) + its window + max_num_batched_tokens, beside
    [tokens, round_up(index_topk + window, 128)] and [tokens] int32 indices. The workspace is one buffer, kept at
    its largest request: the widest layer's, or the MoE kernel's where that is larger."""
    if not arch.is_deepseek_v4:
        return 0
    tokens, widest = cfg.max_num_batched_tokens, 0
    for a in arch.attention:
        ratio = a.compress_ratio
        rows = (cdiv(cfg.max_model_len, ratio) if ratio > 1 else 0) + a.window + tokens
        topk = cdiv((arch.index_topk if ratio > 1 else 0) + a.window, DSV4_TOPK_ALIGNMENT) * DSV4_TOPK_ALIGNMENT
        reserved = (_workspace_piece(DSV4_PREFILL_CHUNK * rows * a.head_size, BF16_BYTES)
                    + _workspace_piece(tokens * topk, INT32_BYTES) + _workspace_piece(tokens, INT32_BYTES))
        widest = maximum(widest, reserved)
    return widest


# vLLM's unfused AWQ linear method (auto_awq.py AutoAWQLinearMethod), which it runs where Marlin is not (on ROCm:
# get_quant_method takes Marlin on CUDA only), dequantizes the whole weight for a GEMM of this many tokens or more
# (FP16_MATMUL_HEURISTIC_CONDITION) and multiplies by it, instead of its 4-bit GEMM
AWQ_DEQUANTIZE_FROM_TOKENS = 256


def unfused_awq_dequant_bytes(arch: ModelArch, cfg, gpu: GpuSpec | None) -> int:
    """The largest weight one rank's unfused AWQ layer dequantizes at once (awq_dequantize: [in, out] in the
    model dtype, a fused q/k/v or gate/up projection whole), where vLLM runs AWQ without Marlin; 0 elsewhere."""
    quant = arch.quant
    if gpu is None or gpu.vendor != "amd" or quant is None or quant.method != "awq":
        return 0
    fused: dict[str, float] = collections.defaultdict(float)
    for t in arch.tensors:
        if t.kind == "linear" and tensor_scheme(t.name, t.kind, quant, t.shard) is not None:
            fused[allocation(t.name)] += t.numel * shard_fraction(t, arch, cfg.tensor_parallel_size)
    return int(max(fused.values(), default=0)) * cfg.dtype_bytes


def mla_profile_bytes(arch: ModelArch, cfg) -> float:
    """What each MLA layer allocates in the profiling pass to stand for a prefill's up-projected context
    (MLAAttention.forward_impl without attention metadata): a chunk of tokens x the GPU's heads x
    (qk_nope_head_dim + v_head_dim), in the model dtype; it lives while the layer runs."""
    if not arch.is_mla:
        return 0
    heads = arch.num_heads // cfg.tensor_parallel_size
    return mla_context_chunk_tokens(cfg) * heads * arch.mla_kv_up_dim * cfg.dtype_bytes


def _attention_token_bytes(arch: ModelArch, cfg: ServeConfig, co: Coefficients) -> float:
    """Per token, the forward's hidden-sized buffers and those as wide as the rank's q/k/v heads."""
    tp = cfg.tensor_parallel_size
    qkv = (arch.num_heads // tp + 2 * max(1, arch.num_kv_heads // tp)) * arch.head_dim
    return (co.act_hidden_buffers * arch.hidden_size + co.act_qkv_buffers * qkv) * cfg.dtype_bytes


def _mlp_token_elements(arch: ModelArch, cfg: ServeConfig, co: Coefficients) -> float:
    """Per token, the dense MLP's buffers (gate_up output and activation) in elements of the model dtype."""
    return co.act_mlp_buffers * arch.intermediate_size / cfg.tensor_parallel_size


def forward_token_bytes(arch: ModelArch, cfg: ServeConfig, co: Coefficients) -> float:
    """The dense forward's buffers per token at its peak (hidden, q/k/v and MLP widths): what the graph pool
    holds for each token of the largest captured batch."""
    return _attention_token_bytes(arch, cfg, co) + _mlp_token_elements(arch, cfg, co) * cfg.dtype_bytes


def _decoder_activation_bytes(arch: ModelArch, cfg: ServeConfig, co: Coefficients, last_stage: bool,
                              gpu: GpuSpec, eplb_transient: float = 0.0) -> float:
    """The language model's part of the peak: a MoE kernel's workspace, which stays allocated, under the larger
    of the forward's transient buffers and the sampler's peak. A MoE kernel that keeps no workspace (a
    monolithic or CPU kernel) allocates its expert buffers inside the forward (co.act_moe_buffers)."""
    tokens = cfg.max_num_batched_tokens
    workspace = maximum(moe_workspace_bytes(arch, cfg, gpu), deepseek_v4_workspace_bytes(arch, cfg))
    mlp = tokens * _mlp_token_elements(arch, cfg, co)
    if arch.is_moe and moe_kernel(arch, cfg, gpu) in SCRATCH_INSIDE:
        per_token = arch.experts_per_token * (co.act_moe_buffers * arch.moe_intermediate_size
                                              / moe_tensor_parallel_size(cfg) + arch.hidden_size)
        mlp = maximum(mlp, moe_tokens(cfg) * per_token)
    # an MLA layer's stand-in for the up-projected context lives in attention, not beside the MLP's buffers
    forward = tokens * _attention_token_bytes(arch, cfg, co) \
        + maximum(mlp * cfg.dtype_bytes, mla_profile_bytes(arch, cfg))
    if arch.is_deepseek_v4:
        forward = forward + tokens * DSV4_UNTRACED_HIDDEN_VECTORS * arch.hidden_size * FP32_BYTES
    # the profiling forward's GEMMs dequantize their AWQ weight whole beside the layer's buffers
    forward = forward + where(tokens >= AWQ_DEQUANTIZE_FROM_TOKENS, unfused_awq_dequant_bytes(arch, cfg, gpu), 0)
    hidden_alive = tokens * arch.hidden_size * cfg.dtype_bytes
    after = hidden_alive + eplb_transient if eplb_transient else 0
    if not last_stage or arch.pooling:
        return workspace + maximum(forward, after)
    num_reqs = minimum(cfg.max_num_seqs, tokens)
    sampler = hidden_alive + sampler_bytes(arch, cfg, co, gpu, num_reqs) + rejection_sampler_bytes(arch, cfg, num_reqs)
    return workspace + maximum(forward, maximum(sampler, after))


def rejection_sampler_bytes(arch: ModelArch, cfg, num_reqs) -> float:
    """With speculative decoding the dummy sampler run ends with the rejection sampler (gpu_model_runner.
    _dummy_sampler_run): one draft token per request, so model-dtype logits for 2 x num_reqs rows, held while the
    bonus tokens' rows go through the plain sampler (rejection_sampler.py), whose peak sampler_bytes is. Greedy
    drafting, vLLM's default, keeps no draft probabilities."""
    if not cfg.num_speculative_tokens:
        return 0
    return 2 * num_reqs * arch.vocab_size * cfg.dtype_bytes


def non_torch_bytes(cfg: ServeConfig, co: Coefficients, moe: bool) -> float:
    """Memory outside torch's allocator: a base, communicator buffers per peer of the largest group a GPU is in
    (TP, or TP across the data-parallel engines, the group a MoE's experts and their dispatch span), and a
    pipeline's point-to-point buffers."""
    peers = cfg.tensor_parallel_size * (cfg.data_parallel_size if moe else 1)
    gib = co.non_torch_base_gib + co.non_torch_per_tp_rank_gib * (peers - 1)
    gib = gib + where(cfg.pipeline_parallel_size > 1, co.non_torch_pp_gib, 0.0)
    return gib * GIB


def graph_size_ceiling(gpu: GpuSpec) -> int:
    """The platform's default cap on the largest capture size: 1024 on data-center Blackwell (compute capability
    10.x: current_platform.is_device_capability_family(100)), else 512."""
    return 1024 if gpu.vendor == "nvidia" and int(gpu.compute_capability or 0) == 10 else DEFAULT_MAX_GRAPH_SIZE


def _grid(largest: int) -> list[int]:
    """1, 2, 4, steps of 8 to 256 and of 16 from there, up to ``largest``."""
    sizes = [s for s in (1, 2, 4) if s <= largest]
    return sizes + list(range(8, min(largest + 1, 256), 8)) + list(range(256, largest + 1, 16))


@functools.lru_cache(maxsize=4096)  # the search asks for a few budgets thousands of times
def _capture_sizes(max_num_seqs: int, max_num_batched_tokens: int, query_len: int, ceiling: int) -> tuple[int, ...]:
    """vLLM 0.32's default capture sizes (config/vllm.py _set_cudagraph_sizes): the grid up to
    min(max_num_seqs x query_len x 2, the platform's ceiling, max_num_batched_tokens), max_num_batched_tokens when it
    is that size, and the uniform decode batches: max_num_seqs, or with speculative decoding (query_len = 1 + draft
    tokens) query_len times each request count of the grid up to max_num_seqs (and max_num_seqs itself) that fits."""
    largest = min(max_num_seqs * query_len * 2, ceiling, max_num_batched_tokens)
    sizes = set(_grid(largest))
    if max_num_batched_tokens <= largest:
        sizes.add(max_num_batched_tokens)
    if query_len > 1:
        requests = min(max_num_seqs, ceiling)
        sizes |= {n * query_len for n in set(_grid(requests)) | {requests} if n * query_len <= largest}
    elif max_num_seqs <= largest:
        sizes.add(max_num_seqs)
    return tuple(sorted(sizes))


def _per_config(cfg: ServeConfig, gpu: GpuSpec, reduce):
    """``reduce(capture sizes, widest uniform decode batch, query length)`` for each configuration (numbers, or
    arrays over the search's batch budgets); no sizes without CUDA graphs (eager mode, or the CPU backend)."""
    query_len, ceiling = 1 + cfg.num_speculative_tokens, graph_size_ceiling(gpu)

    def one(seqs, tokens, eager):
        graphs = gpu.vendor != "cpu" and not eager
        sizes = _capture_sizes(int(seqs), int(tokens), query_len, ceiling) if graphs else ()
        return reduce(sizes, int(seqs) * query_len, query_len)

    values = (cfg.max_num_seqs, cfg.max_num_batched_tokens, cfg.enforce_eager)
    if is_array(*values):
        import numpy

        # thousands of candidates share a few budgets: each distinct one is worked out once
        columns = numpy.broadcast_arrays(*(numpy.asarray(v, dtype=float) for v in values))
        distinct, where_from = numpy.unique(numpy.stack([c.ravel() for c in columns], axis=1), axis=0,
                                            return_inverse=True)
        answers = numpy.array([one(*row) for row in distinct], dtype=float)
        return answers[where_from.ravel()].reshape(columns[0].shape)
    return one(*values)


def cudagraph_capture_sizes(cfg: ServeConfig, gpu: GpuSpec) -> list[int]:
    """The batch sizes vLLM captures CUDA graphs for (none in eager mode or on the CPU backend)."""
    return list(_per_config(cfg, gpu, lambda sizes, *_: sizes))


def largest_capture_size(cfg: ServeConfig, gpu: GpuSpec):
    """The largest batch vLLM captures a CUDA graph for (0: none)."""
    return _per_config(cfg, gpu, lambda sizes, *_: sizes[-1] if sizes else 0)


def graph_padded(tokens, largest, max_num_seqs=0):
    """The batch a CUDA graph runs for ``tokens`` tokens: the next capture size (1, 2, 4, multiples of 8 to 256,
    of 16 above, the largest, and max_num_seqs, which vLLM captures as the widest decode batch), or the tokens
    themselves above the largest size or without graphs. (Speculative decoding's wider decode batches are not
    among them: the speed model is the target model's alone.)"""
    steps = where(tokens <= 256, ceil(tokens / 8) * 8, 256 + ceil((tokens - 256) / 16) * 16)
    padded = minimum(where(tokens <= 1, 1, where(tokens <= 2, 2, where(tokens <= 4, 4, steps))), largest)
    padded = where((tokens <= max_num_seqs) & (max_num_seqs <= largest), minimum(padded, max_num_seqs), padded)
    return where((largest > 0) & (tokens > 0) & (tokens <= largest), padded, tokens)


def num_capture_sizes(cfg: ServeConfig, gpu: GpuSpec):
    """How many batch sizes vLLM captures CUDA graphs for, for one configuration or arrays of them."""
    return _per_config(cfg, gpu, lambda sizes, *_: len(sizes))


def num_decode_capture_sizes(cfg: ServeConfig, gpu: GpuSpec):
    """How many of them also get a FULL graph for uniform decode batches (vLLM 0.32's default cudagraph mode
    FULL_AND_PIECEWISE; cudagraph_dispatcher.initialize_cudagraph_keys): those from the query length up to
    max_num_seqs x the query length."""
    return _per_config(cfg, gpu, lambda sizes, widest, query_len: sum(query_len <= s <= widest for s in sizes))


# vLLM counts each graph after the first at least this much (profile_cudagraph_memory: max(second capture, 1 MiB))
MIN_GRAPH_ESTIMATE_MIB = 1.0


def cuda_graph_bytes(arch: ModelArch, cfg: ServeConfig, gpu: GpuSpec, layers: int, co: Coefficients):
    """vLLM 0.32's CUDA graph estimate (gpu_model_runner.profile_cudagraph_memory), subtracted before the KV cache
    is sized: per mode, PIECEWISE then FULL into one pool, largest size first, the first capture's memory plus the
    second's times the remaining sizes. The first capture: a fixed part and the pool of the largest size's forward
    buffers (forward_token_bytes); each later size, a PIECEWISE graph per piece between the splitting ops of the
    stage's ``layers`` (layers + 1) and a FULL graph over every layer. vLLM samples the second capture in the
    driver's 2 MiB pages, so its own estimate varies by up to 2 MiB x sizes around this expectation. A pooling model captures no FULL
    graphs (VllmConfig.__post_init__ overrides its cudagraph mode to PIECEWISE)."""
    sizes = num_capture_sizes(cfg, gpu)
    decode = 0 if arch.pooling else num_decode_capture_sizes(cfg, gpu)
    largest = largest_capture_size(cfg, gpu)
    first = co.cuda_graph_first_mib * MIB + largest * forward_token_bytes(arch, cfg, co) \
        + where(largest >= AWQ_DEQUANTIZE_FROM_TOKENS, unfused_awq_dequant_bytes(arch, cfg, gpu), 0)
    piecewise = maximum(co.cuda_graph_mib_per_piece * (layers + 1), MIN_GRAPH_ESTIMATE_MIB)
    full = maximum(co.cuda_graph_mib_per_full_layer * layers, MIN_GRAPH_ESTIMATE_MIB)
    later = (maximum(sizes - 1, 0) * piecewise + maximum(decode - 1, 0) * full) * MIB
    return where(sizes > 0, first + later, 0)


# --- KV cache groups and blocks ------------------------------------------------------------------------


# With prefix caching (vLLM's default) a hybrid model's state layers run in mamba_cache_mode 'align'
# (MambaModelConfig.verify_and_update_config): each request holds 2 state blocks per group, and one more per draft
# token with speculative decoding (MambaSpec.max_memory_usage_bytes: num_speculative_blocks; no prefill-checkpoint
# blocks).
STATE_BLOCKS_PER_REQUEST = 2


def _layer_kind(a: AttentionLayer, hybrid: bool) -> tuple[str, int | None]:
    if a.kind in ("full", "mla", "mamba"):
        return a.kind, None
    return (a.kind, a.window) if hybrid else ("full", None)


def kv_cache_groups(arch: ModelArch) -> list[tuple[tuple[str, int | None], list[int]]]:
    """vLLM's KV cache groups: (spec, layer indices). Layers of one attention type share a group; hybrid
    models split each type into groups of equal size (kv_cache_utils._get_kv_cache_groups_uniform_page_size).
    Chunked local attention turns the hybrid manager off by default, so those layers count as full."""
    hybrid = not any(a.kind == "chunked" for a in arch.attention)
    specs = {i: _layer_kind(a, hybrid) for i, a in enumerate(arch.attention) if a.kind != "none" and not a.shares_kv}
    if len(set(specs.values())) == 1:
        return [(next(iter(specs.values())), list(specs))]
    buckets: dict[tuple, list[int]] = {}
    for i, s in specs.items():
        buckets.setdefault(s, []).append(i)
    sizes = [len(v) for v in buckets.values()]
    group_size = min(sizes)
    if max(sizes) < group_size * 1.5:
        group_size = max(sizes)
    groups = []
    for spec, layers in buckets.items():
        n = cdiv(len(layers), group_size)
        groups.extend((spec, layers[i::n]) for i in range(n))
    return groups


def group_pages(arch: ModelArch, cfg, tp: int) -> tuple[float, list]:
    """The page every group's block takes, and each group's block size in tokens. Layers whose KV per token is
    smaller than the largest (Gemma 4's sliding layers beside its wider global ones) keep as many more tokens per
    block as makes their page the same size, or pad their page to it where it does not divide
    (kv_cache_utils.unify_kv_cache_spec_page_size); state layers' pages are padded to it already."""
    groups = kv_cache_groups(arch)
    per_token = [arch.attention[layers[0]].bytes_per_token(cfg.kv_dtype_bytes, tp) for _, layers in groups]
    widest = functools.reduce(maximum, per_token)  # numbers, or arrays over the search's KV dtypes
    sizes = [where((widest % maximum(b, 1) == 0) & (b > 0), cfg.block_size * (widest // maximum(b, 1)), cfg.block_size)
             for b in per_token]
    return cfg.block_size * widest, sizes


def in_flight_tokens(cfg):
    """VllmConfig.max_in_flight_tokens: with async scheduling and the V2 model runner (both vLLM's defaults on
    GPUs) pp + 1 batches of max_num_batched_tokens are in flight."""
    return (cfg.pipeline_parallel_size + 1) * cfg.max_num_batched_tokens


def request_blocks(arch: ModelArch, cfg, tp: int, max_len=None):
    """Blocks one request of ``max_len`` tokens (default max_model_len) takes, summed over the KV cache groups,
    each group with its own block size (group_pages)."""
    if arch.is_deepseek_v4:
        return dsv4.kv_layout(arch.attention).blocks_per_request(cfg.max_model_len if max_len is None else max_len,
                                                                 in_flight_tokens(cfg))
    _, sizes = group_pages(arch, cfg, tp)
    return sum(blocks_per_request(spec, cfg, max_len, bs) for (spec, _), bs in zip(kv_cache_groups(arch), sizes,
                                                                                   strict=True))


def blocks_per_request(spec: tuple[str, int | None], cfg: ServeConfig, max_len=None, block_size=None):
    """Blocks one request of ``max_len`` tokens (default max_model_len) takes in a group whose blocks hold
    ``block_size`` tokens (default the configured one) (KVCacheSpec.max_memory_usage_bytes / page size)."""
    kind, window = spec
    bs = cfg.block_size if block_size is None else block_size
    max_len = cfg.max_model_len if max_len is None else max_len
    in_flight = in_flight_tokens(cfg)
    if kind == "sliding":
        return cdiv(minimum(window - 1 + in_flight, max_len), bs) + 1
    if kind == "chunked":
        return cdiv(minimum(window + in_flight, max_len), bs)
    if kind == "mamba":
        return STATE_BLOCKS_PER_REQUEST + cfg.num_speculative_tokens
    # decode context parallelism splits each request's tokens over its ranks' caches
    # (FullAttentionSpec.max_memory_usage_bytes)
    return cdiv(cdiv(max_len, cfg.decode_context_parallel_size), bs)


@dataclass(frozen=True)
class Pool:
    """The numeric core of the plan. Fields are numbers, or numpy arrays when the configuration's fields
    (other than the parallel sizes) are arrays: the search evaluates thousands of configurations at once."""

    budget: object
    weights: list  # per stage
    activation: list
    non_torch: object
    cuda_graphs: list
    available: list  # per stage: budget minus all that is not KV cache
    bytes_per_block: list
    num_blocks: object
    per_request: object  # blocks a max_model_len request takes, summed over groups
    weights_fit: object
    overheads_fit: object
    kv_fits: object

    @property
    def fits(self):
        return self.weights_fit & self.overheads_fit & self.kv_fits


def kv_pool(arch: ModelArch, cfg, gpu: GpuSpec, co: Coefficients, weights: list[float],
            quant: QuantScheme | None = None) -> Pool:
    """Everything vLLM decides before it starts, for one (TP, PP) layout and weights per stage."""
    tp, pp = int(cfg.tensor_parallel_size), int(cfg.pipeline_parallel_size)
    # --kv-cache-memory-bytes: vLLM still profiles, then reserves exactly that per GPU, whatever the budget
    # (gpu_worker.determine_available_memory); what must fit is then the whole device.
    reserved = cfg.kv_cache_memory_bytes
    budget = gpu.memory_bytes if reserved else ceil(gpu.memory_bytes * cfg.gpu_memory_utilization)
    ranges = stage_layers(arch, pp)
    non_torch = non_torch_bytes(cfg, co, arch.is_moe)
    # One page size for every group: a state layer's page is padded to the attention page (vLLM
    # _align_hybrid_block_size chose the block size so that the attention page holds the state).
    packed = arch.is_deepseek_v4  # its caches side by side in one block id (deepseek_v4.kv_layout); one stage
    if packed:
        page, groups = dsv4.kv_layout(arch.attention).bytes_per_block, []
    else:
        page, _ = group_pages(arch, cfg, tp)
        groups = kv_cache_groups(arch)
    per_request = request_blocks(arch, cfg, tp)
    act, graphs, avail, bpb, blocks = [], [], [], [], []
    kv_fits = True
    for s, layers in enumerate(ranges):
        eplb = eplb_profile_bytes(arch, cfg, quant, gpu, len(moe_layers(arch, layers)))
        act.append(activation_bytes(arch, cfg, co, last_stage=s == pp - 1, first_stage=s == 0, gpu=gpu,
                                    eplb_transient=eplb))
        graphs.append(cuda_graph_bytes(arch, cfg, gpu, len(layers), co))
        spare = budget - weights[s] - non_torch - act[s] - graphs[s]
        avail.append(where(spare >= reserved, reserved, spare - reserved) if reserved else spare)
        in_stage = set(layers)
        bpb.append(page if packed else max(sum(1 for i in members if i in in_stage) for _, members in groups) * page)
        blocks.append(maximum(0, avail[s] // bpb[s]))
        # get_kv_cache_configs checks every worker: one null block held back, then a whole request.
        kv_fits = kv_fits & ((avail[s] - bpb[s]) >= bpb[s] * per_request)
    return Pool(budget, weights, act, non_torch, graphs, avail, bpb, smallest(blocks), per_request,
                all_true([w <= budget for w in weights]), all_true([a > 0 for a in avail]), kv_fits)


def longest_fitting(fits, longest: int) -> int:
    """The longest length from 1 to ``longest`` that ``fits`` accepts, by bisection as vLLM searches for it
    (kv_cache_utils._estimate_max_model_len_from_groups); 0 where none does."""
    low, high, best = 1, longest, 0
    while low <= high:
        middle = (low + high) // 2
        if fits(middle):
            best, low = middle, middle + 1
        else:
            high = middle - 1
    return best


def fitted_max_model_len(arch: ModelArch, cfg: ServeConfig, gpu: GpuSpec, quant: QuantScheme | None,
                         co: Coefficients) -> int:
    """What vLLM makes of --max-model-len auto (kv_cache_utils._auto_fit_max_model_len): with the memory it
    profiled at the model's own length, the longest length of which one request's blocks fit in every stage's KV
    memory less the null block, up to the configured length (which it keeps where that fits); 0 where not even
    one token fits."""
    pool = kv_pool(arch, cfg, gpu, co, weights_per_stage(arch, cfg, quant, gpu), quant)
    tp = int(cfg.tensor_parallel_size)

    def fits(length: int) -> bool:
        need = request_blocks(arch, cfg, tp, max_len=length)
        return all(float(a) - b >= b * need for a, b in zip(pool.available, pool.bytes_per_block, strict=True))

    return longest_fitting(fits, int(cfg.max_model_len)) if fits(1) else 0


def plan_memory(arch: ModelArch, cfg: ServeConfig, gpu: GpuSpec, quant: QuantScheme | None,
                co: Coefficients) -> MemoryPlan:
    pool = kv_pool(arch, cfg, gpu, co, weights_per_stage(arch, cfg, quant, gpu), quant)
    pp = cfg.pipeline_parallel_size
    ranges = stage_layers(arch, pp)
    total, budget = gpu.memory_bytes, float(pool.budget)
    num_blocks = int(pool.num_blocks)
    stage_blocks = [int(max(0, a // b)) for a, b in zip(pool.available, pool.bytes_per_block, strict=True)]
    bind = stage_blocks.index(min(stage_blocks))

    def memory(s: int) -> GpuMemory:
        return GpuMemory(total / GIB, budget / GIB, pool.weights[s] / GIB, float(pool.activation[s]) / GIB,
                         float(pool.non_torch) / GIB, float(pool.cuda_graphs[s]) / GIB,
                         num_blocks * pool.bytes_per_block[s] / GIB, len(ranges[s]))

    fits, binding, reason = True, "kv_cache", ""
    per_request = int(pool.per_request)
    if not pool.weights_fit:
        fits, binding = False, "weights"
        bind = max(range(pp), key=lambda s: pool.weights[s])
        reason = (f"weights need {pool.weights[bind] / GIB:.2f} GiB per GPU but the budget is {budget / GIB:.2f} GiB "
                  f"({cfg.gpu_memory_utilization} x {total / GIB:.2f} GiB)")
    elif not pool.overheads_fit:
        bind = min(range(pp), key=lambda s: float(pool.available[s]))
        fits, binding = False, "overheads"
        reason = (f"no memory left for the KV cache: weights, activation peak, non-torch and CUDA graph memory "
                  f"exceed the {budget / GIB:.2f} GiB budget by {-float(pool.available[bind]) / GIB:.2f} GiB")
        if cfg.kv_cache_memory_bytes:
            reason = (f"the {cfg.kv_cache_memory_bytes / GIB:.2f} GiB of --kv-cache-memory-bytes does not fit: with "
                      f"the weights, activation peak, non-torch and CUDA graph memory it exceeds the GPU's "
                      f"{budget / GIB:.2f} GiB by {-float(pool.available[bind]) / GIB:.2f} GiB")
    elif not pool.kv_fits:
        fits = False
        bpb = pool.bytes_per_block[bind]
        reason = (f"one request of max_model_len {cfg.max_model_len} needs {bpb * per_request / GIB:.2f} GiB of KV "
                  f"cache but {max(0.0, (float(pool.available[bind]) - bpb) / GIB):.2f} GiB is available")
    max_concurrency = num_blocks / per_request if per_request else 0.0
    if fits:
        if max_concurrency >= cfg.max_num_seqs:
            binding = "max_num_seqs"
            reason = (f"the KV pool holds {max_concurrency:.1f} sequences of {cfg.max_model_len} tokens, more than "
                      f"max_num_seqs={cfg.max_num_seqs}: the batch is capped by max_num_seqs")
        else:
            reason = (f"the KV pool holds {max_concurrency:.2f} sequences of {cfg.max_model_len} tokens "
                      f"(max_num_seqs={cfg.max_num_seqs})")
    page = pool.bytes_per_block[bind]
    return MemoryPlan(
        per_gpu=memory(bind), per_stage=tuple(memory(s) for s in range(pp)), num_gpu_blocks=num_blocks,
        kv_cache_tokens=int(max_concurrency * cfg.max_model_len), max_concurrency=max_concurrency, fits=fits,
        binding_constraint=binding, reason=reason, block_size=cfg.block_size,
        num_kv_cache_groups=len(dsv4.kv_layout(arch.attention).groups if arch.is_deepseek_v4 else
                                kv_cache_groups(arch)), bytes_per_block=int(page), blocks_per_request=per_request,
        kv_bytes_per_token_per_gpu=sum(arch.attention[i].bytes_per_token(cfg.kv_dtype_bytes, cfg.tensor_parallel_size)
                                       for i in ranges[bind] if not arch.attention[i].shares_kv),
        available_kv_bytes=tuple(int(a) for a in pool.available),
    )
