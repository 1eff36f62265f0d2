"""The one named, versioned set of tunable numbers. Defaults come from first principles and vLLM's code;
calibration fits the same fields and stores them under a new name.

Only terms vLLM does not fix exactly are here: what is exact (weights, KV page sizes, block counts, the
budget) is computed, not tuned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Coefficients:
    name: str = "default"
    version: int = SCHEMA_VERSION

    # --- Activation peak of vLLM's profiling forward pass (transient torch peak above what stays allocated).
    # Per batched token, in units of the model dtype: buffers alive at once inside one decoder layer.
    # Hidden-sized: the hidden states, the residual, the attention output and the o_proj/down_proj output.
    act_hidden_buffers: float = 4.0
    # Gated MLP: gate_up output (2 x I/tp) plus the SiLU-and-mul output (I/tp) live together.
    act_mlp_buffers: float = 3.0
    # Fused MoE caches per token and selected expert: w13 output (2 x I/tp), activation (I/tp), and the
    # per-expert outputs before the weighted sum (hidden) (vllm fused_moe intermediate caches).
    act_moe_buffers: float = 3.0
    # The sampler's dummy run: fp32 logits [max_num_seqs, vocab] plus the probability / top-k-top-p
    # working copies alive at its peak (logits, probs, and one scratch copy).
    sampler_fp32_copies: float = 3.0

    # --- Memory outside torch's allocator, grown from the worker's first snapshot to the end of profiling:
    # cuBLAS/cuBLASLt workspaces and allocator slack at TP=1 (vLLM logs 0.1-0.2 GiB on one GPU) ...
    non_torch_base_gib: float = 0.15
    # ... plus NCCL communicator buffers and custom all-reduce IPC buffers per extra TP rank
    # (vLLM logs about 0.3 GiB at TP=2 and 0.9-1.0 GiB at TP=8).
    non_torch_per_tp_rank_gib: float = 0.12
    # ... plus NCCL point-to-point buffers between pipeline stages.
    non_torch_pp_gib: float = 0.1

    # --- CUDA graph memory, estimated by vLLM before sizing the KV cache (subtracted by default since
    # v0.21). Each captured batch size keeps per-layer graph pieces: about 0.5-0.7 GiB for a 32-layer
    # model over vLLM's 51 default capture sizes.
    cuda_graph_mib_per_size: float = 2.0
    cuda_graph_mib_per_size_layer: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Coefficients":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


DEFAULT = Coefficients()
