"""The one named, versioned set of tunable numbers. Defaults come from first principles and vLLM's code;
calibration fits the same fields and stores them under a new name.

Only terms vLLM does not fix exactly are here: what is exact (weights, KV page sizes, block counts, the
budget) is computed, not tuned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

SCHEMA_VERSION = 1
INTERCONNECTS = ("nvlink", "xgmi", "pcie")


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

    # --- Speed. Achieved fractions of the datasheet peaks, for GPUs without an entry in per_gpu.
    # Decode streams the weights: memory-bound GEMMs reach about 75-85% of peak HBM bandwidth.
    bandwidth_efficiency: float = 0.80
    # Prefill is dense GEMMs plus attention: about 55-70% of peak tensor FLOP/s on large token counts.
    compute_efficiency: float = 0.60
    # Small models (per rank) launch short kernels that cannot fill the GPU: both efficiencies scale by
    # min(1, (active parameters per rank / size_reference_params) ** size_exponent).
    size_exponent: float = 0.10
    size_reference_params: float = 8e9
    # Per-GPU baselines (name -> bandwidth efficiency, compute efficiency, step overhead ms), fitted by
    # calibration. ROCm kernels reach a smaller share of the MI300-class peaks in vLLM's published results.
    per_gpu: dict = field(default_factory=lambda: {
        "MI300X": [0.62, 0.45, 2.5],
        "MI325X": [0.62, 0.45, 2.5],
    })
    # Engine work per step that the GPU waits on: scheduling, input preparation, sampling (vLLM V1 with async
    # scheduling hides part of it: 1-3 ms is typical).
    step_overhead_ms: float = 1.5
    # Per running sequence per step: sampler rows, output processing and streaming.
    seq_overhead_us: float = 4.0
    # Per request, on its first token: HTTP handling, tokenization, admission.
    request_overhead_ms: float = 8.0
    # Without CUDA graphs (--enforce-eager) each layer's kernels are launched from Python per step.
    eager_overhead_us_per_layer: float = 40.0
    # Tensor-parallel all-reduce (two per layer): achieved fraction of the link's one-way bandwidth, and the
    # fixed latency of one all-reduce, by interconnect kind (NVLink: custom one-shot all-reduce).
    tp_efficiency: dict = field(default_factory=lambda: {"nvlink": 0.70, "xgmi": 0.55, "pcie": 0.45})
    allreduce_latency_us: dict = field(default_factory=lambda: {"nvlink": 8.0, "xgmi": 12.0, "pcie": 25.0})
    # Pipeline parallelism: activations handed between stages per step.
    pp_transfer_latency_us: float = 30.0
    # Fused MoE kernels read expert weights less efficiently than dense GEMMs.
    moe_bandwidth_factor: float = 0.85

    # --- Uncertainty: log-normal spread of measured / predicted (p10-p90 = exp(-+1.2816 sigma)). Uncalibrated
    # first-principles estimates of LLM serving are typically within +-25-35%.
    log_sigma_throughput: float = 0.25
    log_sigma_latency: float = 0.30

    def gpu_efficiency(self, gpu_name: str) -> tuple[float, float, float]:
        """(bandwidth efficiency, compute efficiency, step overhead ms) for a GPU."""
        value = self.per_gpu.get(gpu_name)
        if value:
            return float(value[0]), float(value[1]), float(value[2])
        return self.bandwidth_efficiency, self.compute_efficiency, self.step_overhead_ms

    def to_dict(self) -> dict:
        return asdict(self)

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    @classmethod
    def from_dict(cls, data: dict) -> "Coefficients":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


DEFAULT = Coefficients()


FILE_SCHEMA_VERSION = 1


def save_fit(co: Coefficients, fit_id: int, inputs_hash: str, scope: dict, created_at: str, directory) -> str:
    """Write a fitted set where `estimator plan` finds it (the estimator never reads the results database).
    Fit ids count per database, so the file name carries the fit's inputs hash too."""
    import json
    from pathlib import Path

    path = Path(directory) / f"fit-{fit_id}-{inputs_hash[:12]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema_version": FILE_SCHEMA_VERSION, "fit_id": fit_id, "created_at": created_at,
                                "scope": scope, "coefficients": co.to_dict()}, indent=2))
    return str(path)


def _read(path) -> dict:
    import json

    from estimator.errors import PlannerError

    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as err:
        raise PlannerError(f"coefficients file {path} cannot be read ({err}); refit with `calibrate fit`") from None
    if not isinstance(data, dict) or data.get("schema_version") != FILE_SCHEMA_VERSION or "coefficients" not in data:
        raise PlannerError(f"coefficients file {path} is not a vllm-planner fit; refit with `calibrate fit`")
    return data


def choose(choice: str | None, gpu: str, vllm_version: str | None = None, directory=None) -> Coefficients:
    """default | latest | FIT_ID | PATH. Left out: the latest fit for this GPU (and vLLM version when known),
    else the defaults."""
    from pathlib import Path

    from estimator.errors import PlannerError
    from estimator.paths import coefficients_dir

    if choice == "default":
        return DEFAULT
    folder = Path(directory) if directory else coefficients_dir()
    if choice and choice not in ("latest",) and not choice.isdigit():
        return Coefficients.from_dict(_read(choice)["coefficients"])
    if choice and choice.isdigit():
        paths = sorted(folder.glob(f"fit-{choice}-*.json")) if folder.exists() else []
        if not paths:
            raise PlannerError(f"fit {choice} has no coefficients file in {folder}; see `calibrate fit`")
        if len(paths) > 1:
            raise PlannerError(f"fit {choice} names {len(paths)} files (fits from different databases): "
                               f"{', '.join(p.name for p in paths)}; pass --coefficients PATH")
        return Coefficients.from_dict(_read(paths[0])["coefficients"])
    matching = []
    for path in sorted(folder.glob("fit-*.json")) if folder.exists() else []:
        data = _read(path)
        scope = data.get("scope") or {}
        if scope.get("gpu") not in (None, gpu):
            continue
        if vllm_version and scope.get("vllm_version") not in (None, vllm_version):
            continue
        matching.append((data.get("created_at") or "", data.get("fit_id") or 0, data))
    if not matching:
        if choice == "latest":
            raise PlannerError(f"no fit for {gpu} in {folder}; measure with `calibrate run` and fit with "
                               "`calibrate fit`, or use --coefficients default")
        return DEFAULT
    return Coefficients.from_dict(max(matching, key=lambda m: (m[0], m[1]))[2]["coefficients"])
