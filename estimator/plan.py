"""`estimator plan` as a library call: resolve model and GPU, complete the flags, plan memory, say what relaxes
the binding limit, and render the `vllm serve` argv."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass

from estimator import architecture, gpus, model_source
from estimator.architecture import REMOTE_CODE, ModelArch
from estimator.coefficients import Coefficients, choose
from estimator.eplb import eplb_json, eplb_settings
from estimator.errors import PlannerError
from estimator.gpus import GpuSpec
from estimator.memory import (
    MemoryPlan,
    expert_padding,
    fitted_max_model_len,
    held_expert_dims,
    longest_fitting,
    plan_memory,
)
from estimator.performance import Prediction, perf_inputs, predict, speed_known
from estimator.serve_config import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    VLLM_REFERENCE_VERSION,
    ServeConfig,
    limit_mm_json,
    limit_per_prompt,
    mm_limits,
    resolve,
    sparse_mla_layout,
)
from estimator.speculative import served, speculative_json, speculative_settings
from estimator.validate import byte_count, fraction, positive_int, positive_number, readable_count
from estimator.workload import REPLICAS_AS, Workload

SCHEMA_VERSION = 1
# --max-model-len auto, as vLLM's parser stores it (human_readable_int_or_auto): the longest length that fits
AUTO_MAX_MODEL_LEN = -1
DEFAULT_GPU = "H100-SXM"
# Flags of `estimator plan` that are `vllm serve` flags, by ServeConfig field.
SERVE_FLAGS = ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "gpu_memory_utilization",
               "dtype", "quantization", "kv_cache_dtype", "max_num_seqs", "max_num_batched_tokens",
               "block_size", "enforce_eager", "runner", "limit_mm_per_prompt", "language_model_only",
               "kv_cache_memory_bytes", "data_parallel_size", "enable_expert_parallel",
               "decode_context_parallel_size", "enable_eplb", "eplb_config", "speculative_config")


@dataclass(frozen=True)
class PlanRequest:
    model: str
    gpu: str | None = None
    gpu_memory_gib: float | None = None
    num_gpus: int | None = None
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    max_model_len: int | str | None = None  # as vLLM takes it: 32768, "32k", "32K", or auto (AUTO_MAX_MODEL_LEN)
    gpu_memory_utilization: float | None = None
    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | str | None = None  # as vLLM takes it: 8192, "8k", "8K"
    block_size: int | None = None
    enforce_eager: bool = False
    revision: str | None = None
    runner: str | None = None  # generate | pooling; None: as vLLM decides (`--runner auto`)
    limit_mm_per_prompt: tuple[tuple[str, int], ...] | str | dict | None = None  # as --limit-mm-per-prompt takes it
    language_model_only: bool = False
    kv_cache_memory_bytes: int | str | None = None  # as --kv-cache-memory-bytes takes it ("64M", "25.6g", ...)
    data_parallel_size: int | None = None
    enable_expert_parallel: bool = False
    decode_context_parallel_size: int | None = None
    enable_eplb: bool = False
    eplb_config: tuple[tuple[str, object], ...] | str | dict | None = None  # as --eplb-config takes it
    speculative_config: tuple[tuple[str, object], ...] | str | dict | None = None  # as --speculative-config takes it
    entrypoint: str | None = None  # serve | llm (serve_config.ENTRYPOINTS); None: vllm serve

    def __post_init__(self):
        if not isinstance(self.enforce_eager, bool) and self.enforce_eager is not None:
            raise PlannerError(f"--enforce-eager is a switch (true or false), got {self.enforce_eager!r}")
        object.__setattr__(self, "enforce_eager", bool(self.enforce_eager))
        if not isinstance(self.language_model_only, bool) and self.language_model_only is not None:
            raise PlannerError(f"--language-model-only is a switch (true or false), got {self.language_model_only!r}")
        object.__setattr__(self, "language_model_only", bool(self.language_model_only))
        if not isinstance(self.enable_expert_parallel, bool) and self.enable_expert_parallel is not None:
            raise PlannerError(f"--enable-expert-parallel is a switch (true or false), got "
                               f"{self.enable_expert_parallel!r}")
        object.__setattr__(self, "enable_expert_parallel", bool(self.enable_expert_parallel))
        if not isinstance(self.enable_eplb, bool) and self.enable_eplb is not None:
            raise PlannerError(f"--enable-eplb is a switch (true or false), got {self.enable_eplb!r}")
        object.__setattr__(self, "enable_eplb", bool(self.enable_eplb))
        object.__setattr__(self, "eplb_config", eplb_settings(self.eplb_config) or None)
        object.__setattr__(self, "speculative_config", speculative_settings(self.speculative_config) or None)
        object.__setattr__(self, "limit_mm_per_prompt", mm_limits(self.limit_mm_per_prompt) or None)
        object.__setattr__(self, "kv_cache_memory_bytes",
                           byte_count("--kv-cache-memory-bytes", self.kv_cache_memory_bytes))
        # --max-model-len as vLLM takes it: a count (32768, "32k", "32K") or auto (-1): the longest that fits
        written = self.max_model_len.strip().lower() if isinstance(self.max_model_len, str) else self.max_model_len
        auto = written in ("auto", str(AUTO_MAX_MODEL_LEN), AUTO_MAX_MODEL_LEN)
        object.__setattr__(self, "max_model_len", AUTO_MAX_MODEL_LEN if auto else
                           readable_count("--max-model-len", self.max_model_len, "32768, 32k, 32K or auto"))
        object.__setattr__(self, "max_num_batched_tokens",
                           readable_count("--max-num-batched-tokens", self.max_num_batched_tokens))
        for name in ("num_gpus", "tensor_parallel_size", "pipeline_parallel_size", "max_num_seqs",
                     "block_size", "data_parallel_size", "decode_context_parallel_size"):
            positive_int(f"--{name.replace('_', '-')}", getattr(self, name))
        positive_number("--gpu-memory-gib", self.gpu_memory_gib)
        if self.runner == "auto":
            object.__setattr__(self, "runner", None)
        if self.runner is not None and self.runner not in architecture.RUNNERS:
            raise PlannerError(f"--runner {self.runner} is not one the planner models; use "
                               f"{' or '.join(architecture.RUNNERS)} (or leave it out for vLLM's choice)")
        fraction("--gpu-memory-utilization", self.gpu_memory_utilization)

    def flags(self) -> dict:
        out = {f: getattr(self, f) for f in SERVE_FLAGS} | {"entrypoint": self.entrypoint}
        out["quantization_method"] = out.pop("quantization")
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PlanRequest:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Relaxation:
    flag: str
    value: str
    max_concurrency: float
    fits: bool

    def to_dict(self) -> dict:
        return {"flag": self.flag, "value": self.value, "max_concurrency": round(self.max_concurrency, 2),
                "fits": self.fits}


@dataclass(frozen=True)
class Plan:
    request: PlanRequest
    source: model_source.ModelSource
    arch: ModelArch
    gpu: GpuSpec
    num_gpus: int
    config: ServeConfig
    memory: MemoryPlan
    relaxations: tuple[Relaxation, ...]
    warnings: tuple[str, ...]
    coefficients: Coefficients
    workload: Workload = Workload()
    performance: Prediction | None = None  # None where the GPU's speed is unknown or the plan does not fit
    search: dict | None = None  # the configuration search's result, when one ran
    quant: object = None  # the QuantScheme the weights use (checkpoint's or online)

    @property
    def data_parallel_size(self) -> int:
        """Engines inside one `vllm serve` (--data-parallel-size)."""
        return self.config.data_parallel_size

    @property
    def serve_argv(self) -> list[str]:
        return serve_argv(self.source.id, self.config, self.arch.architecture in REMOTE_CODE)

    @property
    def replicas(self) -> int:
        """Instances of the configuration: inside one server (data parallel) or as separate servers."""
        return int((self.search or {}).get("best", {}).get("replicas", 1))

    @property
    def serve_command(self) -> str:
        return "vllm serve " + shlex.join(self.serve_argv)

    def limit_summary(self) -> str:
        parts = [self.memory.reason]
        parts += [f"{r.flag} {r.value} gives {r.max_concurrency:.2f}" + ("" if r.fits else " (still does not fit)")
                  for r in self.relaxations]
        return "; ".join(parts)

    def to_dict(self) -> dict:
        a, c = self.arch, self.config
        return {
            "schema_version": SCHEMA_VERSION,
            "model": {
                "id": self.source.id, "source": self.source.kind, "architecture": a.architecture,
                "model_type": a.model_type, "num_params": a.num_params, "active_params": a.active_params,
                "checkpoint_params": self.source.checkpoint_params,
                "generation_config": self.source.generation_config,
                "kv_bytes_per_token": a.kv_bytes_per_token(c.kv_dtype_bytes), "num_layers": a.num_layers,
                "hidden_size": a.hidden_size, "num_attention_heads": a.num_heads, "num_kv_heads": a.num_kv_heads,
                "head_dim": a.head_dim, "vocab_size": a.vocab_size, "max_model_len": a.derived_max_model_len,
                "dtype": a.dtype, "quantization": a.quant.to_dict() if a.quant else None,
                "is_moe": a.is_moe, "num_experts": a.num_experts, "experts_per_token": a.experts_per_token,
                "attention": sorted({layer.kind for layer in a.attention}),
            },
            "hardware": {"gpu": self.gpu.name, "num_gpus": self.num_gpus,
                         "memory_gib_per_gpu": round(self.gpu.memory_gib, 4), "gpu_source": self.gpu.source,
                         "spec": self.gpu.to_dict()},
            "config": {f: getattr(c, f) for f in SERVE_FLAGS} | {"limit_mm_per_prompt": dict(c.limit_mm_per_prompt),
                                                                  "eplb_config": dict(c.eplb_config),
                                                                  "speculative_config": dict(c.speculative_config),
                                                                  "num_redundant_experts": c.num_redundant_experts,
                                                                  "resolved_dtype": c.resolved_dtype,
                                                                  "entrypoint": c.entrypoint,
                                                                  "defaults": list(c.defaults)},
            "memory": self.memory.to_dict() | {"relaxations": [r.to_dict() for r in self.relaxations],
                                               "summary": self.limit_summary()},
            "serve": {"argv": self.serve_argv, "command": self.serve_command,
                      "vllm_version_checked": VLLM_REFERENCE_VERSION},
            "workload": {k: getattr(self.workload, k) for k in ("input_len", "output_len", "concurrency",
                                                                 "request_rate", "ttft_ms", "tpot_ms", "goal")},
            "performance": performance_dict(self.performance, self.workload, self.coefficients, self.gpu.name),
            "coefficients": {"name": self.coefficients.name, "version": self.coefficients.version},
            **({"search": self.search} if self.search is not None else {}),
            "warnings": list(self.warnings),
        }


PERFORMANCE_METRICS = ("output_tokens_per_s", "total_tokens_per_s", "ttft_ms", "tpot_ms", "itl_ms",
                       "request_latency_ms")


def _finite(value) -> float | None:
    value = float(value)
    return round(value, 3) if value == value and value not in (float("inf"), float("-inf")) else None


def performance_dict(p: Prediction | None, workload: Workload, coefficients: Coefficients,
                     gpu_name: str | None = None) -> dict | None:
    if p is None:
        return None
    out = {m: _finite(getattr(p, m)) for m in PERFORMANCE_METRICS}
    out["interval"] = {m: [_finite(v) for v in p.interval(m)] if out[m] is not None else None
                       for m in PERFORMANCE_METRICS}
    out.update(batch=round(float(p.batch), 2), saturated=bool(p.saturated), coefficients_source=coefficients.name,
               mode="offline" if workload.saturated else "serve")
    if gpu_name is not None:
        out["efficiency_basis"] = coefficients.efficiency_basis(gpu_name)
    return out


def serve_argv(model_id: str, c: ServeConfig, remote_code: bool = False) -> list[str]:
    """`vllm serve` arguments, vLLM spellings, leaving out what equals vLLM's default; --trust-remote-code where the
    checkpoint's config is remote code vLLM must run to read it (``remote_code``: architecture.REMOTE_CODE)."""
    argv = [model_id]

    def add(flag: str, value) -> None:
        argv.extend([f"--{flag}", str(value)])

    argv += _parallel_argv(c)
    if c.speculative_config:
        add("speculative-config", speculative_json(c.speculative_config))
    if "max_model_len" in c.explicit:
        add("max-model-len", c.max_model_len)
    if "gpu_memory_utilization" in c.explicit and c.gpu_memory_utilization != DEFAULT_GPU_MEMORY_UTILIZATION:
        add("gpu-memory-utilization", c.gpu_memory_utilization)
    if c.dtype != "auto":
        add("dtype", c.dtype)
    if "quantization" in c.explicit and c.quantization:
        add("quantization", c.quantization)
    if "kv_cache_dtype" in c.explicit and c.kv_cache_dtype != "auto":  # auto may stand for the checkpoint's own
        add("kv-cache-dtype", c.kv_cache_dtype)
    for field in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
        # a plan for the LLM class writes its batch out: vllm serve's own defaults are smaller
        if field in c.explicit or (c.entrypoint == "llm" and field != "block_size"):
            add(field.replace("_", "-"), getattr(c, field))
    if c.kv_cache_memory_bytes:
        add("kv-cache-memory-bytes", c.kv_cache_memory_bytes)
    if c.enforce_eager:
        argv.append("--enforce-eager")
    if "runner" in c.explicit:
        add("runner", c.runner)
    if remote_code:
        argv.append("--trust-remote-code")
    return argv + _multimodal_argv(c)


def _parallel_argv(c: ServeConfig) -> list[str]:
    sizes = (("tensor-parallel-size", c.tensor_parallel_size), ("pipeline-parallel-size", c.pipeline_parallel_size),
             ("data-parallel-size", c.data_parallel_size),
             ("decode-context-parallel-size", c.decode_context_parallel_size))
    argv = [part for flag, size in sizes if size != 1 for part in (f"--{flag}", str(size))]
    argv += ["--enable-expert-parallel"] if c.enable_expert_parallel else []
    argv += ["--enable-eplb"] if c.enable_eplb else []
    return argv + (["--eplb-config", eplb_json(c.eplb_config)] if c.eplb_config else [])


def _multimodal_argv(c: ServeConfig) -> list[str]:
    limits = ["--limit-mm-per-prompt", limit_mm_json(c.limit_mm_per_prompt)] if c.limit_mm_per_prompt else []
    return limits + (["--language-model-only"] if c.language_model_only else [])


def _gpu(request: PlanRequest) -> tuple[GpuSpec, int | None, list[str]]:
    notes = []
    detected_count = None
    if request.gpu and request.gpu.lower() == "auto":
        spec, detected_count = gpus.detect()
    elif request.gpu:
        spec = gpus.lookup(request.gpu)
    elif request.gpu_memory_gib is None:
        spec = gpus.lookup(DEFAULT_GPU)
        notes.append(f"gpu={DEFAULT_GPU} (no --gpu given)")
    else:
        spec = None
    if request.gpu_memory_gib is not None:
        spec = gpus.custom(request.gpu_memory_gib, like=spec)
    return spec, detected_count, notes


def _arch(source: model_source.ModelSource) -> tuple[ModelArch, list[str]]:
    arch = architecture.from_config(source.config, source.id, source.preprocessor)
    warnings = list(source.notes)
    if source.tokenizer_max_length and source.tokenizer_max_length < arch.derived_max_model_len:
        arch = dataclasses.replace(arch, derived_max_model_len=source.tokenizer_max_length,
                                   max_len_key="model_max_length in tokenizer_config.json")
    if source.checkpoint_params and arch.quant is None:
        stored = sum(source.checkpoint_params.values())
        if abs(stored - arch.num_params) > 0.005 * arch.num_params:
            warnings.append(f"the checkpoint holds {stored:,} parameters but the architecture {arch.num_params:,} "
                            "(extra heads such as MTP layers, or weights vLLM does not load); memory uses the "
                            "architecture's tensors")
    return arch, warnings


def estimate(arch, gpu, config, quant, num_blocks, workload: Workload, coefficients: Coefficients):
    if not speed_known(gpu):
        return None
    return predict(perf_inputs(arch, gpu, config, quant, num_blocks, workload), coefficients)


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What a plan starts from: the GPU, the coefficients and the model, each with its notes."""

    gpu: GpuSpec
    detected_count: int | None
    gpu_notes: list
    coefficients: Coefficients
    coefficient_notes: list
    source: model_source.ModelSource
    arch: ModelArch
    warnings: list


def _inputs(request: PlanRequest, coefficients: Coefficients | None, coefficients_choice: str | None) -> _Inputs:
    gpu, detected_count, gpu_notes = _gpu(request)
    coefficient_notes: list[str] = []
    if coefficients is None:
        coefficients = choose(coefficients_choice, gpu.name, notes=coefficient_notes)
    source = model_source.resolve(request.model, request.revision)
    arch, warnings = _arch(source)
    arch = sparse_mla_layout(arch, gpu, warnings)
    arch = served(arch, request.speculative_config)
    unsized = arch.unsized_modality
    if unsized and limit_per_prompt(request.limit_mm_per_prompt, request.language_model_only, unsized):
        raise PlannerError(f"{source.id}: the planner cannot size the {unsized} tower of {arch.architecture} "
                           f"(gemma-3n's is timm's MobileNet-V5); plan it without {unsized}s: --limit-mm-per-prompt "
                           f"'{{\"{unsized}\": 0}}' (vLLM then leaves that tower out) or --language-model-only")
    if arch.tower_modalities and all(limit_per_prompt(request.limit_mm_per_prompt, request.language_model_only, m)
                                     == 0 for m in arch.tower_modalities):
        arch = architecture.without_tower(arch)
    if arch.is_deepseek_v4:
        # memory.DSV4_UNTRACED_HIDDEN_VECTORS: an empirical per-token term, not vLLM's code
        warnings.append("DeepSeek-V4's activation peak is the generic MoE decoder's with its attention's prefill "
                        "workspace, plus a per-token term fitted to two public start-ups for what is not traced (the "
                        "hyper-connection streams, the compressors' and indexer's buffers): the KV pool may be off "
                        "by a GiB or more; the KV layout itself is vLLM 0.32's")
    if arch.multimodal and arch.vision is None:  # a tower vLLM builds, whose profiling pass the plan lacks
        warnings.append("the vision encoder's profiling activations are not modelled; the KV pool may be "
                        "slightly smaller than planned")
    if (request.runner or ("pooling" if source.sentence_transformers else "generate")) == "pooling":
        arch = architecture.as_pooling(arch)
        if request.runner is None:
            warnings.append(f"{source.id} ships a sentence-transformers modules.json: vLLM serves it with --runner "
                            "pooling (an embedding model), so it has no LM head and no sampler")
        warnings.append("a pooling model answers after the prefill: its TTFT is the request latency, and the output "
                        "token rates do not apply")
    return _Inputs(gpu, detected_count, gpu_notes, coefficients, coefficient_notes, source, arch, warnings)


def make_plan(request: PlanRequest, coefficients: Coefficients | None = None, workload: Workload | None = None,
              coefficients_choice: str | None = None) -> Plan:
    """A plan; ``coefficients`` given, or chosen by ``coefficients_choice`` (default|latest|FIT_ID|PATH; left out:
    the latest fit for this GPU, else the defaults)."""
    workload = workload or Workload()
    x = _inputs(request, coefficients, coefficients_choice)
    gpu, gpu_notes, coefficients, coefficient_notes, source, arch, warnings = (
        x.gpu, x.gpu_notes, x.coefficients, x.coefficient_notes, x.source, x.arch, x.warnings)
    num_gpus = request.num_gpus or x.detected_count
    flags = request.flags()
    auto_length = flags["max_model_len"] == AUTO_MAX_MODEL_LEN
    if auto_length:
        flags["max_model_len"] = None  # vLLM profiles at the model's own length, then fits it
    config, quant, config_warnings = resolve(arch, gpu, num_gpus, **flags)
    if auto_length:
        config, quant, config_warnings = _auto_fit(arch, gpu, num_gpus, flags, config, quant, coefficients,
                                                   config_warnings)
    config = dataclasses.replace(config, defaults=tuple(gpu_notes) + config.defaults)
    workload, fitted_note = workload.fitted(config.max_model_len)
    request_tokens = workload.input_len + workload.output_len
    if request_tokens > config.max_model_len:
        raise PlannerError(f"a request of {workload.input_len} + {workload.output_len} tokens is longer than "
                           f"--max-model-len {config.max_model_len}; raise --max-model-len (this model allows "
                           f"{arch.derived_max_model_len}) or shorten --input-len/--output-len")
    memory = plan_memory(arch, config, gpu, quant, coefficients)
    # Alternatives keep the parallel layout this plan resolved to, and change one flag each.
    base = dict(flags, tensor_parallel_size=config.tensor_parallel_size,
                pipeline_parallel_size=config.pipeline_parallel_size)
    if auto_length:  # at the length vLLM fitted, as the command gives it
        base["max_model_len"] = config.max_model_len
    relaxations = tuple(_relaxations(arch, gpu, base, config, memory, coefficients))
    performance = estimate(arch, gpu, config, quant, memory.num_gpu_blocks, workload, coefficients) \
        if memory.fits else None
    notes = list(config_warnings) + list(warnings) + coefficient_notes + ([fitted_note] if fitted_note else [])
    hidden, held_hidden, inter, held_inter = held_expert_dims(arch, config, gpu)
    padding = expert_padding(arch, config, gpu)
    if padding > 1:
        what = [f"each GPU's expert intermediate size from {inter} to {held_inter}"] if held_inter > inter else []
        what += [f"the experts' hidden size from {hidden} to {held_hidden}"] if held_hidden > hidden else []
        notes.append(f"vLLM pads {' and '.join(what)} for FlashInfer's TRTLLM-Gen MoE kernel on {gpu.name}: the routed experts "
                     f"take {100 * (padding - 1):.0f}% more memory than the checkpoint's")
    if not speed_known(gpu):
        notes.append("no speed estimate: a device given only by --gpu-memory-gib has no bandwidth or FLOP/s; "
                     "add --gpu NAME for one")
    elif performance is not None and bool(performance.saturated):
        notes.append(f"--request-rate {workload.request_rate} exceeds what this configuration sustains "
                     f"({float(performance.output_tokens_per_s) / workload.output_len:.2f} requests/s): the "
                     "queue grows without bound, so TTFT and latency are unbounded")
    if config.speculative_config and performance is not None:
        notes.append(f"the speed estimate is without speculative decoding: its gain depends on how many of the "
                     f"{config.num_speculative_tokens} draft token(s) per step the model accepts, which the planner "
                     "cannot know; memory includes the drafter")
    if arch.is_moe and config.data_parallel_size > 1 and performance is not None:
        notes.append("the speed estimate is one data-parallel engine's, with its experts read as if sliced over "
                     "its own tensor-parallel GPUs: the experts' dispatch across engines is not modelled")
    return Plan(request, source, arch, gpu, num_gpus or config.num_gpus, config, memory, relaxations,
                tuple(notes), coefficients, workload, performance, quant=quant)


def _auto_fit(arch, gpu, num_gpus, flags, config, quant, coefficients, config_warnings):
    """--max-model-len auto: the configuration at the length vLLM fits (memory.fitted_max_model_len), with a note
    that says which; the model's own where that fits, or where not one token does (the plan then says why)."""
    longest = fitted_max_model_len(arch, config, gpu, quant, coefficients)
    if longest >= config.max_model_len:
        note = f"--max-model-len auto: the model's full {config.max_model_len:,} tokens fit, and vLLM keeps them"
    elif longest == 0:
        return config, quant, config_warnings
    else:
        note = (f"--max-model-len auto: vLLM lowers the length from the model's {config.max_model_len:,} to "
                f"{longest:,} tokens, the longest of which one request fits in the KV cache, and the command gives that length")
        config, quant, config_warnings = resolve(arch, gpu, num_gpus, **dict(flags, max_model_len=longest))
    return config, quant, tuple(config_warnings) + (note,)


def plan_with_search(request: PlanRequest, workload: Workload, coefficients: Coefficients | None = None,
                     coefficients_choice: str | None = None, replicas_as: str = "data-parallel") -> Plan:
    """Search the flags the request leaves open, then plan the best configuration (one replica's share of
    the workload) and attach the search's result. Spare GPUs run further replicas, rendered as vLLM runs them:
    --data-parallel-size in one server, or separate servers behind a Service (``replicas_as``)."""
    if replicas_as not in REPLICAS_AS:
        raise PlannerError(f"--replicas-as {replicas_as} is not one of {', '.join(REPLICAS_AS)}")
    from estimator.search import search

    if request.data_parallel_size:
        raise PlannerError("--search chooses the data-parallel replicas itself from the GPUs it is given; leave "
                           "--data-parallel-size out and give --num-gpus")
    x = _inputs(request, coefficients, coefficients_choice)
    gpu, coefficients, coefficient_notes, arch = x.gpu, x.coefficients, x.coefficient_notes, x.arch
    num_gpus = request.num_gpus or x.detected_count or 1
    fixed = {f: getattr(request, f) for f in (*SERVE_FLAGS, "entrypoint") if getattr(request, f) not in (None, False)}
    if fixed.get("max_model_len") == AUTO_MAX_MODEL_LEN:  # the search tries the lengths that fit
        del fixed["max_model_len"]
    workload, fitted_note = workload.fitted(fixed.get("max_model_len") or arch.derived_max_model_len)
    result = search(arch, gpu, num_gpus, fixed, workload, coefficients, replicas_as)
    if result.best is None:
        raise PlannerError(result.closest)
    best = result.best
    replicas = best["replicas"]
    # Data-parallel replicas are one server's engines: vLLM spreads a MoE's experts over all of them and gathers
    # every engine's tokens to each GPU; the search sized each candidate so, and the plan of the chosen one agrees.
    engines = replicas if replicas_as == "data-parallel" else 1
    chosen = dataclasses.replace(request, num_gpus=best["gpus_per_replica"] * engines, data_parallel_size=engines, **{
        k: best[k] for k in ("tensor_parallel_size", "pipeline_parallel_size", "quantization", "kv_cache_dtype",
                             "max_model_len", "max_num_seqs", "max_num_batched_tokens")})
    plan = make_plan(chosen, coefficients, workload.per_replica(replicas))
    note = None
    if replicas > 1:
        how = f"--data-parallel-size {replicas} in one vllm serve" if replicas_as == "data-parallel" else \
            f"{replicas} separate servers behind one Service"
        note = (f"{replicas} replicas of this configuration use the {replicas * best['gpus_per_replica']} GPUs "
                f"({how}); the workload is split between them ({_split(workload, replicas)}) and the performance "
                f"above is one replica's; {best['busy_replicas']:g} replica(s) are busy, for "
                f"{best['output_tokens_per_s']:,.0f} output tok/s in all")
    return dataclasses.replace(plan, search=result.to_dict(),
                               warnings=plan.warnings + ((note,) if note else ()) + tuple(coefficient_notes)
                               + ((fitted_note,) if fitted_note else ()))


def _split(workload: Workload, replicas: int) -> str:
    share = workload.per_replica(replicas)
    if share.concurrency:
        return f"at most {share.concurrency} concurrent requests each"
    if share.request_rate:
        return f"{share.request_rate:g} requests/s each"
    return "each runs at saturation"


def largest_fitting_max_model_len(arch, gpu, flags, coefficients) -> int:
    """The longest max_model_len for which vLLM would start (0 if none), by bisection like vLLM's estimate."""
    def fits(length: int) -> bool:
        config, quant, _ = resolve(arch, gpu, None, **dict(flags, max_model_len=length))
        return plan_memory(arch, config, gpu, quant, coefficients).fits

    return longest_fitting(fits, arch.derived_max_model_len)


def _relaxations(arch, gpu, base: dict, config: ServeConfig, memory: MemoryPlan, coefficients):
    """Re-plan with one flag changed at a time, for the flags that most often relax the binding limit."""
    options: list[tuple[str, str, dict]] = []
    if memory.binding_constraint in ("kv_cache", "max_num_seqs") or not memory.fits:
        if not memory.fits and memory.binding_constraint == "kv_cache":
            longest = largest_fitting_max_model_len(arch, gpu, base, coefficients)
            if longest:
                options.append(("--max-model-len", str(longest), {"max_model_len": longest}))
        elif config.max_model_len >= 16384:
            shorter = config.max_model_len // 4
            options.append(("--max-model-len", str(shorter), {"max_model_len": shorter}))
        # (DeepSeek-V4 keeps fp8_ds_mla entries whatever the KV dtype)
        if config.kv_cache_dtype == "auto" and config.kv_dtype_bytes > 1 and not arch.is_deepseek_v4 and \
                (gpu.source == "custom" or gpu.vendor != "nvidia" or (gpu.compute_capability or 0) >= 8.0):
            options.append(("--kv-cache-dtype", "fp8", {"kv_cache_dtype": "fp8"}))
    if not memory.fits and memory.binding_constraint in ("weights", "overheads") and arch.quant is None \
            and config.quantization is None and (gpu.source == "custom" or (gpu.compute_capability or 0) >= 8.0):
        options.append(("--quantization", "fp8", {"quantization_method": "fp8"}))
    tp2 = config.tensor_parallel_size * 2
    if tp2 <= 8 and arch.num_heads % tp2 == 0 and (arch.is_mla or arch.num_kv_heads % tp2 == 0
                                                   or tp2 % arch.num_kv_heads == 0):
        options.append(("--tensor-parallel-size", str(tp2), {"tensor_parallel_size": tp2}))
    if config.gpu_memory_utilization < 0.95 and not config.kv_cache_memory_bytes:
        options.append(("--gpu-memory-utilization", "0.95", {"gpu_memory_utilization": 0.95}))
    out = []
    for flag, value, change in options:
        try:
            alt_config, quant, _ = resolve(arch, gpu, None, **dict(base, **change))
        except PlannerError:
            continue
        alt = plan_memory(arch, alt_config, gpu, quant, coefficients)
        out.append(Relaxation(flag, value, alt.max_concurrency, alt.fits))
    return out
