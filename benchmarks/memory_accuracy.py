"""How right the memory plan is on real vLLM start-ups: the public corpus' logged memory, field by field.

    python benchmarks/memory_accuracy.py [--corpus ../shared/corpus/memory_public.csv]

For each logged start-up the planner can represent (a catalog model, named by its id or by its repository name
alone, as a local copy or a re-upload under another organisation is; a GPU it can place or the memory the log
states; the flags the row gives), the plan's per-GPU weights, activation peak, non-torch and CUDA-graph memory
and the KV cache memory available (signed, as vLLM logs "Available KV cache memory"), and the engine's KV
tokens, are printed beside the logged figures; then the median and mean
absolute error per field (relative; CUDA-graph memory, which vLLM logs near zero or negative, in GiB), the KV
error of the rows that leave more than 10% of the GPU to the KV cache (median, mean, worst, and how many exceed
15%), and the rows that cannot be represented, by reason. A start-up that failed is scored on what it logged before failing
(its weights, or the available KV memory that was too little for max_model_len); a GPU the row does not name is placed by the memory the row
writes for it, and where the row writes the memory of a named GPU, that figure is used (as --gpu-memory-gib or
--gpu auto would give it on the host). The plan follows the vLLM version it names (VLLM_REFERENCE_VERSION);
older logs are marked with their version, a start-up that left --gpu-memory-utilization out is planned at its
release's default, one run through the LLM class (a script's LLM(...), `vllm bench`) at that class's batch
defaults (--entrypoint llm), and the KV error is split by era (a row that states only its date, 2025 or earlier, ran a
release before 0.14).
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import re
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # catalog models only

import numpy as np

from calibrate.corpus import self_quantized
from estimator.errors import PlannerError
from estimator.gpus import resolve_written
from estimator.model_source import catalog_ids
from estimator.plan import PlanRequest, make_plan
from estimator.serve_config import VLLM_REFERENCE_VERSION
from estimator.workload import Workload

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "memory_public.csv"
GIB = 2**30
PER_GPU = ("weights_gib", "activation_peak_gib", "non_torch_gib", "cuda_graph_gib", "kv_cache_gib")
PLAN_FIELD = {"weights_gib": "weights_gib", "activation_peak_gib": "activation_gib", "non_torch_gib": "non_torch_gib",
              "cuda_graph_gib": "cuda_graph_gib", "kv_cache_gib": "kv_cache_gib"}
ABSOLUTE = ("cuda_graph_gib",)  # near zero (or negative) in the logs: errors in GiB
REMARK = re.compile(r"\s*\([^)]*\)")
GIB_IN_TEXT = re.compile(r"(\d+(?:\.\d+)?)\s*GiB")  # "(not named; ... shows a 94.97 GiB GPU)"
EXPERT_PARALLEL = re.compile(r"enable-expert-parallel|enable_expert_parallel=True|\+EP\b", re.IGNORECASE)  # "DP8+EP"
# "-dp=8", "--data-parallel-size 8", "DP8+EP", "data_parallel_size=4"
DATA_PARALLEL = re.compile(r"(?:-dp[= ]|--data-parallel-size[= ]|data_parallel_size=|\bDP)(\d+)")
DECODE_CONTEXT_PARALLEL = re.compile(r"decode-context-parallel-size[= ](\d+)", re.IGNORECASE)
EXPERT_LOAD_BALANCING = re.compile(r"enable-eplb|enable_eplb=True", re.IGNORECASE)
REDUNDANT_EXPERTS = re.compile(r"num[_-]redundant[_-]experts\W{0,3}(\d+)", re.IGNORECASE)
# MTP drafting as the notes write it: "MTP 3 tokens", "speculative MTP num_speculative_tokens=3"
MTP_TOKENS = re.compile(r"MTP\D{0,40}?(?:num_speculative_tokens\W{0,3})?(\d+)(?: tokens?|\b)", re.IGNORECASE)
# How many GPUs a cell writes beside the part: "H100 x8", "H200 ×8", "8x H100", "4 × A6000", "8*H200" (the count
# comes from the row's tp/pp columns)
# an embedding model's start-up ("runner=pooling convert=embed", "pooling/embed runner") and one with every
# modality limited to 0 ("mm limits image/video 0")
POOLING = re.compile(r"runner=pooling|pooling/embed runner", re.IGNORECASE)
NO_MULTIMODAL = re.compile(r"mm limits image/video 0", re.IGNORECASE)
# A start-up through vLLM's LLM class (a script's LLM(...), `vllm bench latency|throughput`), whose batch defaults
# differ from `vllm serve`'s (EngineArgs.get_batch_defaults, UsageContext.LLM_CLASS)
OFFLINE_ENGINE = re.compile(r"\bLLM\(|offline LLM|bench (?:latency|throughput)", re.IGNORECASE)
COUNT = re.compile(r"(?:\s+x|\s*[×*])\s*\d+\b|^\s*\d+\s*[x×*]\s*", re.IGNORECASE)
VERSION = re.compile(r"^\s*0\.(\d+)(?:\.|\s|$)")  # 0.22.1, 0.14.0rc1..., or a bare minor ("0.22 (issue title)")
# A start-up that leaves --gpu-memory-utilization out ran at its release's default: 0.9 through the 0.13 releases
# (the corpus' 0.10.2 logs: "Desired GPU memory utilization is (0.9, ...)" with none passed), 0.92 in the release
# the plan assumes (vllm/config/cache.py). The plan is asked for what the start-up ran with.
OLD_DEFAULT_UTILIZATION, OLD_DEFAULT_BEFORE_MINOR = 0.9, 14
# A start-up whose version is not stated but whose date is (the recipes' "(Nov 2025; not stated)") ran a release
# from before 0.14, the first of 2026 (the corpus' own 0.13.0 is NVIDIA's 26.01 container).
DATED_BEFORE_0_14 = re.compile(r"\b20(?:2[3-5])\b")


def release_minor(cell: str) -> int | None:
    """The 0.x minor release a version cell names, 13 for one dated 2025 or earlier, or None."""
    found = VERSION.match(cell or "")
    if found:
        return int(found.group(1))
    return OLD_DEFAULT_BEFORE_MINOR - 1 if DATED_BEFORE_0_14.search(cell or "") else None


# a row whose model cell says the exact checkpoint is unknown (the DGX Spark recipe's DeepSeek-V4-Flash fits one
# 128 GB GB10, which the published checkpoint's 146 GiB of weights cannot)
UNNAMED_CHECKPOINT = re.compile(r"checkpoint not (?:in|stated|named)", re.IGNORECASE)


def bare(cell: str) -> str:
    return REMARK.sub("", cell or "").strip()


def number(cell: str):
    match = re.match(r"^\s*(-?[0-9][0-9,]*\.?[0-9]*)", cell or "")
    return float(match.group(1).replace(",", "")) if match else None


# Counts as people write them: "32k", "128K", "1.26M" (vLLM's human_readable_int: k, m, g decimal; K, M, G binary,
# except that a decimal count with a binary suffix, which vLLM refuses, is read as the decimal one)
COUNT_SUFFIX = re.compile(r"^\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*([kKmMgG])?(?![A-Za-z])")
DECIMAL_SUFFIX, BINARY_SUFFIX = {"k": 10**3, "m": 10**6, "g": 10**9}, {"K": 2**10, "M": 2**20, "G": 2**30}


def count(cell: str) -> float | None:
    match = COUNT_SUFFIX.match(cell or "")
    if not match:
        return None
    value, suffix = float(match.group(1).replace(",", "")), match.group(2)
    if suffix is None:
        return value
    if suffix in BINARY_SUFFIX and "." not in match.group(1):
        return value * BINARY_SUFFIX[suffix]
    return value * DECIMAL_SUFFIX[suffix.lower()]


def utilization(cell: str) -> float | None:
    """--gpu-memory-utilization as a fraction, also where the row writes a percentage ("90%", "90")."""
    value = number(cell)
    if value is not None and ("%" in (cell or "") or 1 < value <= 100):
        return value / 100
    return value


# dtypes as reports spell them, in vLLM's spelling (--dtype, --kv-cache-dtype)
DTYPE_SPELLINGS = {"bf16": "bfloat16", "fp16": "float16", "f16": "float16", "fp32": "float32", "f32": "float32",
                   "torch.bfloat16": "bfloat16", "torch.float16": "float16", "torch.float32": "float32"}


def spelled(cell: str) -> str | None:
    """A dtype or method cell in vLLM's spelling: its first word, lower case, with the usual abbreviations."""
    word = bare(cell).split()[0].strip(",;").lower() if bare(cell) else None
    return DTYPE_SPELLINGS.get(word, word)


def catalog_match(model: str) -> str | None:
    """The catalog id a logged model names: the id itself, or a repository name that exactly one catalog entry
    has, written bare (a local copy's directory) or under another organisation (a re-upload such as
    unsloth/Qwen3-8B, which keeps the original's config.json)."""
    name = model.lower()
    ids = catalog_ids()
    matches = [m for m in ids if m.lower() == name] or \
        [m for m in ids if m.split("/", 1)[-1].lower() == name.split("/", 1)[-1]]
    return matches[0] if len(matches) == 1 else None


def parallel_flags(notes: str) -> dict:
    """--data-parallel-size, --enable-expert-parallel, --decode-context-parallel-size, EPLB's flags, MTP
    drafting, the pooling runner and multimodal limits of 0 as a row's notes give them."""
    flags = {"enable_expert_parallel": True} if EXPERT_PARALLEL.search(notes) else {}
    if EXPERT_LOAD_BALANCING.search(notes):
        flags["enable_eplb"] = True
        redundant = REDUNDANT_EXPERTS.search(notes)
        if redundant:
            flags["eplb_config"] = {"num_redundant_experts": int(redundant.group(1))}
    for key, pattern in (("data_parallel_size", DATA_PARALLEL),
                         ("decode_context_parallel_size", DECODE_CONTEXT_PARALLEL)):
        found = pattern.search(notes)
        if found and int(found.group(1)) > 1:
            flags[key] = int(found.group(1))
    if POOLING.search(notes):
        flags["runner"] = "pooling"
    if NO_MULTIMODAL.search(notes):
        flags["limit_mm_per_prompt"] = {"image": 0, "video": 0}
    drafting = MTP_TOKENS.search(notes)
    if drafting:
        flags["speculative_config"] = {"method": "mtp", "num_speculative_tokens": int(drafting.group(1))}
    return flags


def engine_flags(row: dict, model_id: str) -> dict:
    """The engine's flags a row's columns give: its parallel sizes, lengths and batch, utilization, dtypes, an
    online quantization method and eager mode."""
    flags = {}
    for column, key in (("tp", "tensor_parallel_size"), ("pp", "pipeline_parallel_size"),
                        ("max_model_len", "max_model_len"), ("max_num_seqs", "max_num_seqs"),
                        ("max_num_batched_tokens", "max_num_batched_tokens"), ("block_size", "block_size")):
        value = count(row.get(column))
        if value is not None:
            flags[key] = int(value)
    fraction = utilization(row.get("gpu_memory_utilization"))
    if fraction is not None:
        flags["gpu_memory_utilization"] = fraction
    for column in ("dtype", "kv_cache_dtype"):
        value = spelled(row.get(column))
        if value and value != "auto":
            flags[column] = value
    quantization = spelled(row.get("quantization"))
    # a checkpoint that carries its own quantization is loaded with it: the row's column then describes it (in
    # the log's or the model card's words), and only an online method on a 16-bit checkpoint is a flag
    if quantization and quantization != "none" and not self_quantized(model_id):
        flags["quantization"] = quantization
    if (row.get("enforce_eager") or "").strip().lower() in ("true", "1", "yes"):
        flags["enforce_eager"] = True
    return flags


def request_of(row: dict) -> tuple[PlanRequest | None, str | None]:
    """The plan request a logged start-up describes, or why it cannot be represented."""
    model = bare(row["model"])
    notes = row.get("notes") or ""
    if "FAILED" in notes and all(number(row.get(field)) is None for field in (*PER_GPU, "kv_cache_tokens")):
        return None, "a failed start-up that logged no memory figure (nothing to compare)"
    if UNNAMED_CHECKPOINT.search(row["model"]):
        return None, "the checkpoint is not named (a recipe's own, which may be quantized unlike the published one)"
    model_id = catalog_match(model)
    if model_id is None:
        return None, "model not in the bundled catalog (or only a local path is named)"
    flags = {"model": model_id}
    gpu_cell = COUNT.sub("", bare(row["gpu"]))
    try:
        flags["gpu"] = resolve_written(gpu_cell).name if gpu_cell else None
    except PlannerError:
        flags["gpu"] = None
    written = GIB_IN_TEXT.search(row.get("gpu") or "")
    total = number(row.get("gpu_total_gib")) or (float(written.group(1)) if written else None)
    if flags["gpu"] is None and not total:
        return None, "GPU not named and its memory not logged"
    if total:
        # the memory the log reports wins over the catalog's (drivers and ECC move it by ~0.1 GiB), as
        # --gpu-memory-gib or --gpu auto would on the host; a named part keeps its speed and kernels
        flags["gpu_memory_gib"] = total
    flags.update(engine_flags(row, model_id))
    flags.update(parallel_flags(notes))
    minor = release_minor(row.get("vllm_version"))
    if "gpu_memory_utilization" not in flags and minor is not None and minor < OLD_DEFAULT_BEFORE_MINOR:
        flags["gpu_memory_utilization"] = OLD_DEFAULT_UTILIZATION
    flags["num_gpus"] = flags.get("tensor_parallel_size", 1) * flags.get("pipeline_parallel_size", 1) \
        * flags.get("data_parallel_size", 1)
    if OFFLINE_ENGINE.search(notes):
        flags["entrypoint"] = "llm"
    return PlanRequest(**flags), None


# A row whose logged KV memory is more than this share of its GPU: a model that fits with room to spare, whose KV
# error the issue bounds at 15% (the rows below it are nearly full GPUs, where a few hundred MiB is a large share)
ROOMY_SHARE = 0.10

# The plan subtracts vLLM's CUDA-graph estimate as vLLM has by default since 0.21 (VLLM_MEMORY_PROFILER_ESTIMATE_
# CUDAGRAPHS); start-ups logged by older versions sized their KV cache without it.
GRAPH_ESTIMATE_SINCE = (0, 21)
ERAS = ("before 0.21 (no CUDA-graph estimate subtracted)", "0.21 and later (as the plan assumes)", "version not stated")


def era(version: str) -> str:
    """Which of ERAS a logged version cell ('0.22.1', '0.14.0rc1.dev2+g...', '(Nov 2025; not stated)', '?') falls
    in."""
    minor = release_minor(version)
    if minor is None:
        return ERAS[2]
    return ERAS[1] if (0, minor) >= GRAPH_ESTIMATE_SINCE else ERAS[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    args = parser.parse_args()
    rows = list(csv.DictReader(open(args.corpus, encoding="utf-8")))
    errors: dict[str, list[float]] = collections.defaultdict(list)
    by_era: dict[str, list[float]] = collections.defaultdict(list)
    roomy: list[tuple[float, int]] = []  # (KV error, line) of the rows that fit by more than ROOMY_SHARE
    unrepresented = collections.Counter()
    print(f"{args.corpus}: {len(rows)} start-ups; the plan assumes vLLM {VLLM_REFERENCE_VERSION}\n")
    print(f"{'line':>4} {'model':34} {'gpu':14} {'vLLM':10} " + " ".join(f"{f[:-4]:>16}" for f in PER_GPU)
          + f" {'KV tokens':>22}")
    for line, row in enumerate(rows, start=2):
        try:
            request, why = request_of(row)
            if request is None:
                unrepresented[why] += 1
                continue
            plan = make_plan(request, workload=Workload(min(1024, (request.max_model_len or 2048) // 2), 16,
                                                        concurrency=1))
        except PlannerError as err:
            unrepresented[f"the planner refuses it: {str(err)[:90]}"] += 1
            continue
        gpu = plan.memory.per_gpu
        available_gib = min(plan.memory.available_kv_bytes) / GIB
        cells = []
        for field in PER_GPU:
            logged = number(row.get(field))
            predicted = available_gib if field == "kv_cache_gib" else getattr(gpu, PLAN_FIELD[field])
            if logged is None:
                cells.append(f"{'-':>8}/{predicted:7.2f}")
                continue
            cells.append(f"{logged:8.2f}/{predicted:7.2f}")
            if field in ABSOLUTE:
                errors[field].append(abs(predicted - logged))
            elif logged:
                errors[field].append(abs(predicted / logged - 1))
        logged_tokens = count(row.get("kv_cache_tokens"))
        tokens = plan.memory.kv_cache_tokens
        if logged_tokens:
            errors["kv_cache_tokens"].append(abs(tokens / logged_tokens - 1))
        version = bare(row.get("vllm_version"))[:10] or "?"
        logged_kv = number(row.get("kv_cache_gib"))
        if logged_kv:
            by_era[era(row.get("vllm_version") or "")].append(abs(available_gib / logged_kv - 1))
            if logged_kv > ROOMY_SHARE * plan.gpu.memory_gib:
                roomy.append((abs(available_gib / logged_kv - 1), line))
        print(f"{line:4d} {plan.source.id[:34]:34} {plan.gpu.name[:14]:14} {version:10} " + " ".join(cells)
              + f" {(f'{logged_tokens:,.0f}' if logged_tokens else '-'):>10}/{tokens:,}")
    report(errors, by_era, unrepresented, roomy, len(rows))


def report(errors: dict, by_era: dict, unrepresented: collections.Counter, roomy: list, total: int) -> None:
    print("\nlogged/predicted per GPU (GiB); KV tokens engine-wide\n")
    print("Absolute error: median  mean  (rows)")
    for field in (*PER_GPU, "kv_cache_tokens"):
        e = np.array(errors.get(field, []))
        if not len(e):
            print(f"  {field:22} no logged values among the representable rows")
        elif field in ABSOLUTE:
            print(f"  {field:22} {np.median(e):6.2f} GiB {np.mean(e):6.2f} GiB ({len(e)})")
        else:
            print(f"  {field:22} {100 * np.median(e):6.1f}%  {100 * np.mean(e):6.1f}%  ({len(e)})")
    print("\nKV GiB absolute error by the logging vLLM's era: median  mean  (rows)")
    for name in ERAS:
        e = np.array(by_era.get(name, []))
        if len(e):
            print(f"  {name:52} {100 * np.median(e):6.1f}%  {100 * np.mean(e):6.1f}%  ({len(e)})")
    if roomy:
        e = np.array([err for err, _ in roomy])
        worst, line = max(roomy)
        print(f"\nKV GiB on the rows that leave more than {ROOMY_SHARE:.0%} of the GPU to the KV cache: median "
              f"{100 * np.median(e):.1f}%, mean {100 * np.mean(e):.1f}%, worst {100 * worst:.1f}% (line {line}); "
              f"{sum(err > 0.15 for err, _ in roomy)} of {len(roomy)} above 15%")
    print(f"\nRows the planner cannot represent: {sum(unrepresented.values())} of {total}, by reason")
    for why, count in unrepresented.most_common():
        print(f"  {count:3d}  {why}")


if __name__ == "__main__":
    main()
