"""Profiles: the flags and workload of a plan in a YAML file that `estimator plan --profile` reads back."""

from __future__ import annotations

import math
from pathlib import Path

from estimator.errors import PlannerError

SCHEMA_VERSION = 1
# Keys a profile may carry: `estimator plan`'s own option names.
KEYS = ("model", "revision", "gpu", "gpu_memory_gib", "num_gpus", "tensor_parallel_size", "pipeline_parallel_size",
        "max_model_len", "gpu_memory_utilization", "dtype", "quantization", "kv_cache_dtype", "max_num_seqs",
        "max_num_batched_tokens", "block_size", "enforce_eager", "input_len", "output_len", "concurrency",
        "request_rate", "ttft_ms", "tpot_ms", "goal", "coefficients", "limit_mm_per_prompt",
        "language_model_only", "kv_cache_memory_bytes", "data_parallel_size", "enable_expert_parallel",
        "decode_context_parallel_size", "enable_eplb", "eplb_config", "speculative_config", "entrypoint")


POSITIVE_INTS = ("num_gpus", "tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "max_num_seqs",
                 "max_num_batched_tokens", "block_size", "input_len", "output_len", "concurrency",
                 "data_parallel_size", "decode_context_parallel_size")
POSITIVE_NUMBERS = ("gpu_memory_gib", "gpu_memory_utilization", "request_rate", "ttft_ms", "tpot_ms")
SWITCHES = ("enforce_eager", "language_model_only", "enable_expert_parallel", "enable_eplb")


def _check_kind(path: str, key: str, value) -> None:
    """A profile value of the wrong kind is refused naming the profile and the key (`enforce_eager: "false"` is a
    string, and would otherwise turn eager mode on)."""
    if value is None:
        return
    if key in POSITIVE_INTS:
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        expected = "a positive integer"
    elif key in POSITIVE_NUMBERS:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        expected = "a positive finite number"
    elif key in SWITCHES:
        ok, expected = isinstance(value, bool), "true or false"
    elif key == "kv_cache_memory_bytes":
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
        expected = "a number of bytes (1073741824, 64M, 25.6g)"
    elif key == "limit_mm_per_prompt":
        ok, expected = isinstance(value, (str, dict)), "counts per modality (a mapping, or its JSON)"
    elif key == "eplb_config":
        ok, expected = isinstance(value, (str, dict)), "EPLB's settings (a mapping, or its JSON)"
    elif key == "speculative_config":
        ok, expected = isinstance(value, (str, dict)), "the speculative decoding settings (a mapping, or its JSON)"
    elif key == "coefficients":
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        expected = "default, latest, a fit id or a path"
    else:
        ok, expected = isinstance(value, str), "a string"
    if not ok:
        raise PlannerError(f"profile {path}: {key} is {value!r}; expected {expected} (fix or regenerate it)")


def profile_value(key: str, value):
    """A configuration value as a profile holds it: multimodal limits as the JSON string the flag takes."""
    if key == "limit_mm_per_prompt" and value:
        from estimator.serve_config import limit_mm_json

        return limit_mm_json(value)
    if key == "eplb_config" and value:
        from estimator.eplb import eplb_json

        return eplb_json(value)
    if key == "speculative_config" and value:
        from estimator.speculative import speculative_json

        return speculative_json(value)
    return value


def profile_dict(flags: dict) -> dict:
    return {"schema_version": SCHEMA_VERSION, "flags": {k: flags[k] for k in KEYS if flags.get(k) is not None}}


def load_profile(path: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlannerError(f"profile {path} does not exist; write one with `estimator generate`") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise PlannerError(f"profile {path} is not valid YAML ({str(err).splitlines()[0]}); regenerate it") from None
    if not isinstance(data, dict) or not isinstance(data.get("flags"), dict):
        raise PlannerError(f"profile {path} has no 'flags' mapping; regenerate it with `estimator generate`")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise PlannerError(f"profile {path} has schema_version {data.get('schema_version')!r}, expected "
                           f"{SCHEMA_VERSION}; regenerate it")
    unknown = sorted(set(data["flags"]) - set(KEYS))
    if unknown:
        raise PlannerError(f"profile {path} has unknown keys {', '.join(unknown)}; regenerate it")
    for key, value in data["flags"].items():
        _check_kind(path, key, value)
    flags = dict(data["flags"])
    if isinstance(flags.get("coefficients"), int):
        flags["coefficients"] = str(flags["coefficients"])  # a fit id, as --coefficients takes it
    return flags


def merge(profile: dict, flags: dict) -> dict:
    """Flags given on the command line (not None) override the profile's."""
    merged = dict(flags)
    for key, value in profile.items():
        if merged.get(key) is None:
            merged[key] = value
    return merged
