"""Readers for the benchmark files people already have, each turned into RunRecords with normalised metrics.

Formats: `vllm bench serve --save-result` JSON (and `--append-result` JSON lines, and older key spellings),
`vllm bench throughput --output-json` JSON (configuration from flags, since the file does not record it),
`vllm bench sweep` output directories, guidellm report JSON (v0.3 to v0.8 shapes), and the documented CSV.

Normalised metric names (what fitting and reporting read): request_throughput (requests/s),
output_tokens_per_s, total_tokens_per_s, {mean,median,p99}_{ttft,tpot,itl,e2el}_ms with TPOT excluding the
first token as `vllm bench serve` defines it, completed, failed, duration_s, total_input_tokens,
total_output_tokens, and memory figures (weights_gib, kv_cache_gib, kv_cache_tokens, num_gpu_blocks,
max_concurrency, peak_memory_gib). metric_notes records, per metric, the source field or the derivation.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from stat import S_ISREG

from store.records import RunRecord

CONFIG_KEYS = ("tensor_parallel_size", "pipeline_parallel_size", "dtype", "quantization", "kv_cache_dtype",
               "max_model_len", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization", "block_size",
               "enforce_eager")
CSV_COLUMNS = ("model", "gpu", "num_gpus", "tensor_parallel_size", "pipeline_parallel_size", "dtype", "quantization",
               "kv_cache_dtype", "max_model_len", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
               "benchmark", "input_len", "output_len", "concurrency", "request_rate", "num_prompts",
               "request_throughput", "output_tokens_per_s", "total_tokens_per_s", "mean_ttft_ms", "mean_tpot_ms",
               "mean_itl_ms", "weights_gib", "kv_cache_gib", "kv_cache_tokens", "vllm_version", "source", "notes")
CSV_METRICS = ("request_throughput", "output_tokens_per_s", "total_tokens_per_s", "mean_ttft_ms", "mean_tpot_ms",
               "mean_itl_ms", "weights_gib", "kv_cache_gib", "kv_cache_tokens")
INT_FIELDS = {"num_gpus", "tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "max_num_seqs",
              "max_num_batched_tokens", "input_len", "output_len", "concurrency", "num_prompts", "kv_cache_tokens",
              "block_size"}
# vllm bench serve fields -> normalised name; the first present spelling wins (older vLLM versions first wrote
# "model", "output_token_throughput"; benchmark_serving.py wrote the same per-percentile keys).
SERVE_ALIASES = {
    "request_throughput": ("request_throughput", "requests_per_second"),
    "output_tokens_per_s": ("output_throughput", "output_token_throughput", "output_tokens_per_second"),
    "total_tokens_per_s": ("total_token_throughput", "total_throughput", "tokens_per_second"),
    "completed": ("completed",),
    "failed": ("failed",),
    "duration_s": ("duration",),
    "total_input_tokens": ("total_input_tokens",),
    "total_output_tokens": ("total_output_tokens",),
}
LATENCIES = ("ttft", "tpot", "itl", "e2el")
# `vllm bench serve --request-rate inf` (its default) sends every prompt at once; the result files and the
# corpus write the rate as "inf", which is kept as that string (JSON has no infinity).
ALL_AT_ONCE = "inf"
# Reports write dtypes as the short names; vLLM's --dtype takes the long ones (it refuses "bf16").
DTYPE_SPELLINGS = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class ImportFailure(Exception):
    """A file that cannot be imported; the message starts with the file's name and gives the reason."""


@dataclass(frozen=True)
class Overrides:
    """What the command line says about files that do not record it (model, GPU, configuration, workload)."""

    model: str | None = None
    gpu: str | None = None
    num_gpus: int | None = None
    config: dict | None = None
    input_len: int | None = None
    output_len: int | None = None
    vllm_version: str | None = None
    labels: dict | None = None


@dataclass(frozen=True)
class ParsedFile:
    path: str
    content_hash: str
    records: list[RunRecord]
    refused: tuple[str, ...] = ()  # "line N: why" for records that are not stored (a GPU the catalog lacks)


# --- helpers -------------------------------------------------------------------------------------------------


def _number(value):
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _metric(data: dict, key: str):
    """A result file's number under ``key``: absent or null is None; a numeric string is read as its number; any
    other value is refused with the field (never silently dropped)."""
    value = data.get(key)
    if value is None:
        return None
    number = _number(value)
    if number is None:
        raise ValueError(f"{key} is {value!r}, not a finite number")
    return number


def _flag_value(cell: str) -> str:
    """A flag value as reports write it: a remark in parentheses is dropped ("fp8 (native checkpoint)" is
    fp8) and short dtype names are spelled as vLLM takes them. What is left is not interpreted further: a
    value vLLM does not know is refused when the run is planned, with the reason."""
    bare = re.sub(r"\s*\([^)]*\)\s*$", "", cell).strip() or cell
    if "/" in bare and "auto" in [c.strip() for c in bare.split("/")]:
        # "bf16/auto": the source did not say, and without the flag vLLM takes "auto".
        return "auto"
    return DTYPE_SPELLINGS.get(bare, bare)


# A mean output this much below the stated length, even at the largest request rate the published rounding allows
# (0.97 req/s may be 0.975), is not rounding.
OUTPUT_CAP_MARGIN = 0.05


def half_unit(cell: str) -> float:
    """Half of the last published digit of a number written in a report ("0.97" -> 0.005): how far rounding may
    have moved it."""
    text = cell.strip().lower()
    if "e" in text or not text:
        return 0.0
    decimals = len(text.split(".", 1)[1]) if "." in text else 0
    return 0.5 * 10 ** -decimals


def mean_lengths_from_rates(workload: dict, metrics: dict, notes: dict, rps_rounding: float = 0.0) -> None:
    """Mean input and output lengths where a result states only rates: vLLM's benchmarks divide the tokens
    and the requests by the same duration, so output tokens/s over requests/s is the mean output length and
    (total - output) tokens/s over requests/s the mean input length."""
    rps, out, total = (metrics.get(k) for k in ("request_throughput", "output_tokens_per_s", "total_tokens_per_s"))
    if not rps or rps <= 0 or not out or out <= 0:
        return
    mean_out = out / rps
    if workload.get("output_len") is None:
        workload["output_len"] = max(1, round(mean_out))
        notes["workload.output_len"] = "derived: output_tokens_per_s / request_throughput (a mean)"
    elif out / (rps - rps_rounding) < (1 - OUTPUT_CAP_MARGIN) * workload["output_len"] and rps > rps_rounding:
        # Without --ignore-eos the stated length is only max_tokens: requests that stop early make fewer tokens,
        # and the rates measured are those of the shorter outputs.
        notes["workload.output_len"] = f"derived: output_tokens_per_s / request_throughput (a mean); the " \
                                       f"stated {workload['output_len']} was a limit the outputs stopped short of"
        workload["output_len"] = max(1, round(mean_out))
    if workload.get("input_len") is None and total and total > out:
        workload["input_len"] = max(1, round((total - out) / rps))
        notes["workload.input_len"] = "derived: (total_tokens_per_s - output_tokens_per_s) / request_throughput " \
                                      "(a mean)"


def _rate(value):
    """A request rate: a number, or ALL_AT_ONCE for infinity."""
    if isinstance(value, (str, float)) and str(value).strip().lower() in ("inf", "infinity"):
        return ALL_AT_ONCE
    return _number(value)


MAX_FILE_BYTES = 2 * 1024**3  # read whole: larger results are not benchmark files anyone wrote by hand


def _check_regular_file(path: Path) -> None:
    try:
        info = path.stat()
    except OSError as err:
        raise ImportFailure(f"{path}: cannot read it ({err.strerror})") from None
    if not S_ISREG(info.st_mode):
        # a FIFO or a device would block or never end
        raise ImportFailure(f"{path}: not a regular file; give a benchmark result file")
    if info.st_size == 0:
        raise ImportFailure(f"{path}: the file is empty")


def _read_text(path: Path) -> tuple[str, str]:
    _check_regular_file(path)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImportFailure(f"{path}: {path.stat().st_size / 1024**3:.1f} GiB is too large to read whole; give it "
                            "as CSV or JSON lines (.jsonl), which are read row by row")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ImportFailure(f"{path}: cannot read it ({err.strerror})") from None
    if not raw.strip():
        raise ImportFailure(f"{path}: the file is empty")
    try:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark
        return raw.decode("utf-8-sig"), hashlib.sha256(raw).hexdigest()
    except UnicodeDecodeError as err:
        raise ImportFailure(f"{path}: not UTF-8 text (byte {err.start}); is it a benchmark result?") from None


def _load_json(path: Path, text: str):
    try:
        return json.loads(text)
    except RecursionError:
        raise ImportFailure(f"{path}: JSON nested too deeply to be a benchmark result") from None
    except json.JSONDecodeError as err:
        if "\n" in text.strip() and text.lstrip().startswith("{"):
            return _load_json_lines(path, text)
        raise ImportFailure(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); the file "
                            "may be truncated") from None


def _load_json_lines(path: Path, text: str) -> list:
    return [data for _, data in _json_lines(path, text.splitlines())]


def _json_lines(path: Path, lines) -> Iterator[tuple[int, object]]:
    """(line number, value) for each non-empty line of a JSON-lines file (--append-result)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except (json.JSONDecodeError, RecursionError) as err:
            raise ImportFailure(f"{path}: line {number} is not valid JSON ({getattr(err, 'msg', err)}); the file "
                                "may be truncated") from None


def _started(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value).astimezone()
    for fmt in ("%Y%m%d-%H%M%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(str(value), fmt).astimezone()
        except ValueError:
            continue
    return None


def _config_from(data: dict) -> dict:
    """Serve settings recorded beside a result (vllm bench sweep writes its parameters at top level)."""
    config = {}
    for key in CONFIG_KEYS:
        for spelling in (key, key.replace("_", "-")):
            if spelling in data and data[spelling] is not None:
                config[key] = data[spelling]
    return config


def _apply(record: RunRecord, over: Overrides) -> RunRecord:
    workload = dict(record.workload)
    for key in ("input_len", "output_len"):
        if getattr(over, key) is not None:
            workload[key] = getattr(over, key)
    return replace(record, model=over.model or record.model, gpu=over.gpu or record.gpu,
                   num_gpus=over.num_gpus or record.num_gpus, config={**record.config, **(over.config or {})},
                   workload=workload, vllm_version=over.vllm_version or record.vllm_version,
                   labels={**record.labels, **(over.labels or {})})


# --- vllm bench serve / throughput ----------------------------------------------------------------------------


def _is_serve(data) -> bool:
    return isinstance(data, dict) and ("completed" in data or "mean_ttft_ms" in data) and \
        any(k in data for k in SERVE_ALIASES["request_throughput"])


def _is_throughput(data) -> bool:
    return isinstance(data, dict) and "elapsed_time" in data and "requests_per_second" in data


def serve_record(data: dict, index: int) -> RunRecord:
    metrics, notes = {}, {}
    for name, spellings in SERVE_ALIASES.items():
        for key in spellings:
            value = _metric(data, key)
            if value is not None:
                metrics[name], notes[name] = value, f"vllm bench serve: {key}"
                break
    for latency in LATENCIES:
        for stat in ("mean", "median", "p99"):
            key = f"{stat}_{latency}_ms"
            value = _metric(data, key)
            if value is not None:
                metrics[key], notes[key] = value, f"vllm bench serve: {key}"
    rates = [m for m in ("request_throughput", "output_tokens_per_s", "total_tokens_per_s") if m in metrics]
    if rates and not metrics.get("duration_s"):
        # vllm bench serve divides by the run's duration; a rate without one was not written by it
        raise ValueError(f"{rates[0]} is given but no duration (a vllm bench serve result always has one)")
    if "total_tokens_per_s" not in metrics and metrics.get("duration_s"):
        tokens = (metrics.get("total_input_tokens") or 0) + (metrics.get("total_output_tokens") or 0)
        metrics["total_tokens_per_s"] = tokens / metrics["duration_s"]
        notes["total_tokens_per_s"] = "derived: (total_input_tokens + total_output_tokens) / duration"
    completed = metrics.get("completed") or 0
    workload = {"num_prompts": data.get("num_prompts"), "concurrency": data.get("max_concurrency"),
                "request_rate": _rate(data.get("request_rate"))}
    for name, lens, total in (("input_len", "input_lens", "total_input_tokens"),
                              ("output_len", "output_lens", "total_output_tokens")):
        if isinstance(data.get(lens), list) and data[lens]:
            workload[name] = round(sum(data[lens]) / len(data[lens]))
            notes[f"workload.{name}"] = f"mean of {lens}"
        elif completed and metrics.get(total):
            workload[name] = round(metrics[total] / completed)
            notes[f"workload.{name}"] = f"{total} / completed"
    return RunRecord(
        model=str(data.get("model_id") or data.get("model") or data.get("tokenizer_id") or "unknown"),
        benchmark="serve", config=_config_from(data), workload={k: v for k, v in workload.items() if v is not None},
        metrics=metrics, metric_notes=notes, status="ok" if completed else "failed", record_index=index,
        vllm_version=data.get("vllm_version"), started_at=_started(data.get("date")),
        error=None if completed else "no request completed")


def throughput_record(data: dict, index: int, over: Overrides) -> RunRecord:
    rps, tps = _metric(data, "requests_per_second"), _metric(data, "tokens_per_second")
    metrics = {"request_throughput": rps, "total_tokens_per_s": tps, "duration_s": _metric(data, "elapsed_time"),
               "completed": _metric(data, "num_requests")}
    notes = {"request_throughput": "vllm bench throughput: requests_per_second",
             "total_tokens_per_s": "vllm bench throughput: tokens_per_second",
             "duration_s": "vllm bench throughput: elapsed_time", "completed": "vllm bench throughput: num_requests"}
    workload = {"num_prompts": data.get("num_requests")}
    if over.output_len and rps is not None:
        metrics["output_tokens_per_s"] = rps * over.output_len
        notes["output_tokens_per_s"] = "derived: requests_per_second x --output-len (the file records total tokens only)"
    tokens = _number(data.get("total_num_tokens"))
    if tokens and data.get("num_requests"):
        notes["workload.tokens_per_request"] = f"{tokens / data['num_requests']:.1f} (input + output)"
    return RunRecord(model=str(data.get("model_id") or data.get("model") or "unknown"), benchmark="throughput",
                     config=_config_from(data), workload=workload,
                     metrics={k: v for k, v in metrics.items() if v is not None}, metric_notes=notes,
                     record_index=index)


# --- guidellm ---------------------------------------------------------------------------------------------------


def _g(summary, stat="mean"):
    """A statistic from a guidellm distribution summary (its 'successful' requests where split by status)."""
    if not isinstance(summary, dict):
        return None
    if "successful" in summary and isinstance(summary["successful"], dict):
        summary = summary["successful"]
    if stat.startswith("p"):
        return _number((summary.get("percentiles") or {}).get(stat))
    return _number(summary.get(stat))


def _guidellm_strategy(bench: dict) -> dict:
    for holder in (bench.get("config"), bench.get("args"), bench):
        if isinstance(holder, dict) and isinstance(holder.get("strategy"), dict):
            return holder["strategy"]
    return {}


def _guidellm_model(report: dict, bench: dict) -> str | None:
    for source in (bench.get("worker"), bench.get("backend"), report.get("args"), report.get("metadata"),
                   (bench.get("config") or {}).get("backend") if isinstance(bench.get("config"), dict) else None):
        if isinstance(source, dict):
            for key in ("backend_model", "model"):
                if source.get(key):
                    return str(source[key])
    return None


def _guidellm_lengths(bench: dict, metrics: dict) -> dict:
    out = {}
    loader = bench.get("request_loader") or {}
    data = loader.get("data") if isinstance(loader, dict) else None
    if isinstance(data, str) and "prompt_tokens" in data:
        for part in data.replace(" ", "").split(","):
            key, _, value = part.partition("=")
            if key in ("prompt_tokens", "output_tokens") and value.isdigit():
                out["input_len" if key == "prompt_tokens" else "output_len"] = int(value)
    for name, metric in (("input_len", "prompt_token_count"), ("output_len", "output_token_count")):
        if name not in out and _g(metrics.get(metric)) is not None:
            out[name] = round(_g(metrics.get(metric)))
    return out


def guidellm_records(report: dict) -> list[RunRecord]:
    benches = report.get("benchmarks")
    if not isinstance(benches, list) or not benches:
        raise ValueError("a guidellm report without benchmarks")
    return [_guidellm_record(report, bench, index) for index, bench in enumerate(benches)]


# guidellm's (metric, statistic) for each rate vLLM's benchmark reports.
_GUIDELLM_RATES = (("request_throughput", "requests_per_second", "mean"),
                   ("output_tokens_per_s", "output_tokens_per_second", "mean"),
                   ("total_tokens_per_s", "tokens_per_second", "mean"))


def _guidellm_metrics(metrics_in: dict) -> tuple[dict, dict]:
    """guidellm's metrics under vLLM's benchmark names, with a note saying where each came from."""
    metrics, notes = {}, {}

    def take(name: str, key: str, stat: str, note: str, scale: float = 1.0) -> None:
        value = _g(metrics_in.get(key), stat)
        if value is not None:
            metrics[name], notes[name] = value * scale, note

    for name, key, stat in _GUIDELLM_RATES:
        take(name, key, stat, f"guidellm: {key}.{stat}")
    for stat in ("mean", "median", "p99"):
        for name, key in (("ttft", "time_to_first_token_ms"), ("itl", "inter_token_latency_ms")):
            take(f"{stat}_{name}_ms", key, stat, f"guidellm: {key}.{stat}")
        # vLLM's TPOT excludes the first token, as guidellm's inter-token latency does; guidellm's own
        # time_per_output_token includes it, so it is kept under another name.
        take(f"{stat}_tpot_ms", "inter_token_latency_ms", stat,
             f"guidellm: inter_token_latency_ms.{stat} (first token excluded, as vLLM's TPOT)")
        take(f"{stat}_tpot_incl_first_ms", "time_per_output_token_ms", stat,
             f"guidellm: time_per_output_token_ms.{stat}")
        take(f"{stat}_e2el_ms", "request_latency", stat, f"guidellm: request_latency.{stat} (seconds) x 1000",
             scale=1000)
    return metrics, notes


def _guidellm_record(report: dict, bench: dict, index: int) -> RunRecord:
    metrics_in = bench.get("metrics")
    if not isinstance(metrics_in, dict):
        raise ValueError(f"guidellm benchmark {index} has no metrics")
    metrics, notes = _guidellm_metrics(metrics_in)
    strategy = _guidellm_strategy(bench)
    kind = strategy.get("type_") or strategy.get("type")
    workload = _guidellm_lengths(bench, metrics_in)
    if kind == "synchronous":
        workload["concurrency"] = 1
    elif kind == "concurrent" and strategy.get("streams"):
        workload["concurrency"] = int(strategy["streams"])
    elif kind in ("constant", "poisson", "async") and strategy.get("rate"):
        workload["request_rate"] = float(strategy["rate"])
    totals = bench.get("request_totals") or (bench.get("run_stats") or {}).get("requests_made") or {}
    if isinstance(totals, dict):
        metrics["completed"] = _number(totals.get("successful"))
        metrics["failed"] = _number(totals.get("errored"))
    return RunRecord(
        model=_guidellm_model(report, bench) or "unknown", benchmark="serve", workload=workload,
        metrics={k: v for k, v in metrics.items() if v is not None}, metric_notes=notes, record_index=index,
        started_at=_started(bench.get("start_time") or (bench.get("run_stats") or {}).get("start_time")),
        labels={"strategy": kind} if kind else {})


# --- CSV ---------------------------------------------------------------------------------------------------------


def csv_records(path: Path, text: str) -> list[RunRecord]:
    return list(csv_rows(path, io.StringIO(text)))


def csv_rows(path: Path, lines) -> Iterator[RunRecord]:
    """The documented CSV's rows as records, one at a time (``lines``: any iterable of text lines)."""
    reader = csv.DictReader(lines)
    header = _csv_header(path, reader.fieldnames or [])
    count = 0
    for index, row in enumerate(reader):
        count += 1
        yield _csv_record(path, header, row, index)
    if not count:
        raise ImportFailure(f"{path}: the CSV has a header but no rows")


def _csv_header(path: Path, header: list[str]) -> list[str]:
    missing = [c for c in ("model", "benchmark") if c not in header]
    if missing:
        raise ImportFailure(f"{path}: CSV without the column(s) {', '.join(missing)}; the columns are "
                            f"{', '.join(CSV_COLUMNS)}")
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        raise ImportFailure(f"{path}: unknown CSV column(s) {', '.join(unknown)}; the columns are "
                            f"{', '.join(CSV_COLUMNS)}")
    return header


def _csv_cell(path: Path, line: int, column: str, raw: str | None):
    """One CSV cell as the type its column holds; an empty cell is None."""
    cell = (raw or "").strip()
    if not cell:
        return None
    if column == "request_rate" and _rate(cell) == ALL_AT_ONCE:
        return ALL_AT_ONCE
    if column in INT_FIELDS:
        number = _number(cell)
        if number is None or number != int(number):
            raise ImportFailure(f"{path}: line {line}, column {column}: {cell!r} is not an integer")
        return int(number)
    if column in CSV_METRICS or column in ("gpu_memory_utilization", "request_rate"):
        number = _number(cell)
        if number is None:
            raise ImportFailure(f"{path}: line {line}, column {column}: {cell!r} is not a number")
        return number
    return cell


def _csv_record(path: Path, header: list[str], row: dict, index: int) -> RunRecord:
    line = index + 2  # the header is line 1
    values = {c: _csv_cell(path, line, c, row.get(c)) for c in header}
    if not values.get("model"):
        raise ImportFailure(f"{path}: line {line} has no model")
    if values.get("benchmark") not in ("throughput", "serve"):
        raise ImportFailure(f"{path}: line {line}: benchmark must be throughput or serve, got "
                            f"{values.get('benchmark')!r}")
    config = {k: values[k] for k in CONFIG_KEYS if values.get(k) is not None}
    for key in ("dtype", "quantization", "kv_cache_dtype"):
        if isinstance(config.get(key), str):
            config[key] = _flag_value(config[key])
    workload = {k: values[k] for k in ("input_len", "output_len", "concurrency", "request_rate", "num_prompts")
                if values.get(k) is not None}
    metrics = {k: values[k] for k in CSV_METRICS if values.get(k) is not None}
    metric_notes = {k: f"CSV column {k}" for k in metrics}
    mean_lengths_from_rates(workload, metrics, metric_notes, half_unit(row.get("request_throughput") or ""))
    return RunRecord(
        model=values["model"], benchmark=values["benchmark"], gpu=values.get("gpu"),
        num_gpus=values.get("num_gpus"), config=config, workload=workload, metrics=metrics,
        metric_notes=metric_notes, vllm_version=values.get("vllm_version"),
        record_index=index, labels={"source": values["source"]} if values.get("source") else {},
        notes=values.get("notes"))


def csv_row(record: RunRecord) -> dict:
    """A RunRecord as a row of the documented CSV (what `calibrate runs export --format csv` writes)."""
    row = {"model": record.model, "gpu": record.gpu, "num_gpus": record.num_gpus, "benchmark": record.benchmark,
           "vllm_version": record.vllm_version, "source": record.labels.get("source") or record.source_file,
           "notes": record.notes}
    row.update({k: record.config.get(k) for k in CONFIG_KEYS if k in CSV_COLUMNS})
    row.update({k: record.workload.get(k) for k in ("input_len", "output_len", "concurrency", "request_rate",
                                                     "num_prompts")})
    row.update({k: record.metrics.get(k) for k in CSV_METRICS})
    return {c: ("" if row.get(c) is None else row[c]) for c in CSV_COLUMNS}


# --- dispatch ----------------------------------------------------------------------------------------------------


def _sweep_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("run=*.json") if not p.name.endswith(".failure.json"))


def parse_file(path: Path, over: Overrides = Overrides()) -> ParsedFile:
    """One result file into records (all or nothing). Raises ImportFailure naming the file and the reason."""
    text, digest = _read_text(path)
    where = str(path)
    if path.suffix.lower() == ".csv":
        records = csv_records(path, text)
    else:
        data = _load_json(path, text)
        try:
            if _is_serve(data):
                records = [serve_record(data, 0)]
            elif _is_throughput(data):
                records = [throughput_record(data, 0, over)]
            elif isinstance(data, dict) and "benchmarks" in data:
                records = guidellm_records(data)
            elif isinstance(data, list) and data and all(_is_serve(d) for d in data):
                records = [serve_record(d, i) for i, d in enumerate(data)]  # --append-result lines, sweep summary
            else:
                raise ValueError("not a recognised benchmark result")
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            raise ImportFailure(f"{path}: {err} (expected vllm bench serve or throughput JSON, JSON lines from "
                                "--append-result, a vllm bench sweep directory, guidellm report JSON, or the "
                                "documented CSV)") from None
    kept, refused = [], []
    for record in records:
        finished = _finish(record, path, digest, over, refused)
        if finished is not None:
            kept.append(finished)
    if records and not kept:
        raise _none_stored(path, refused)
    return ParsedFile(where, digest, kept, tuple(refused))


def _none_stored(path: Path, refused: list[str]) -> ImportFailure:
    return ImportFailure(f"{path}: no record can be stored ({refused[0]}{' ...' if len(refused) > 1 else ''})")


def _finish(record: RunRecord, path: Path, digest: str, over: Overrides, refused: list) -> RunRecord | None:
    """A parsed record as it is stored: overrides applied, provenance set, numbers checked, GPU name made the
    catalog's (or None, with the reason added to ``refused``)."""
    csv_file = path.suffix.lower() == ".csv"
    record = replace(_apply(record, over), source="imported", source_file=str(path), content_hash=digest)
    where = f"line {record.record_index + 2}" if csv_file else f"record {record.record_index}"
    check_record(record, f"{path}: {where}")
    kept, why = _canonical_gpus([record], csv_lines=csv_file)
    refused.extend(why)
    return kept[0] if kept else None


STREAM_BATCH = 2000  # records per insert: memory is bounded by a batch, not by the file


@dataclass
class StreamedFile:
    """A result file read as it is stored: its hash first (to skip a file imported before without parsing it),
    then its records in batches. ``refused`` fills as the batches are read."""

    path: str
    content_hash: str
    batches: Iterator[list[RunRecord]]
    refused: list = field(default_factory=list)


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stream_file(path: Path, over: Overrides = Overrides(), batch_size: int = STREAM_BATCH) -> StreamedFile:
    """Like parse_file, for files of any size: the documented CSV and JSON lines (--append-result) are read row by
    row; other formats, which are small, are parsed whole into one batch. Errors (ImportFailure) surface while the
    batches are read, so a caller storing them in one transaction keeps all of the file or nothing."""
    suffix = path.suffix.lower()
    _check_regular_file(path)
    digest = _file_hash(path)
    refused: list[str] = []
    if suffix == ".csv":
        records = _rows_of(path, lambda f: csv_rows(path, f))
    elif suffix in (".jsonl", ".ndjson"):
        records = _rows_of(path, lambda f: _json_lines_rows(path, f))
    else:
        parsed = parse_file(path, over)
        return StreamedFile(parsed.path, parsed.content_hash, iter([parsed.records] if parsed.records else []),
                            list(parsed.refused))

    def batches() -> Iterator[list[RunRecord]]:
        batch, stored = [], 0
        for record in records:
            finished = _finish(record, path, digest, over, refused)
            if finished is not None:
                batch.append(finished)
            if len(batch) >= batch_size:
                stored += len(batch)
                yield batch
                batch = []
        if batch:
            stored += len(batch)
            yield batch
        if not stored and refused:
            raise _none_stored(path, refused)

    return StreamedFile(str(path), digest, batches(), refused)


def _rows_of(path: Path, reader) -> Iterator[RunRecord]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            yield from reader(f)
    except UnicodeDecodeError as err:
        raise ImportFailure(f"{path}: not UTF-8 text (byte {err.start}); is it a benchmark result?") from None


def _json_lines_rows(path: Path, lines) -> Iterator[RunRecord]:
    index = 0
    for number, data in _json_lines(path, lines):
        if not _is_serve(data):
            raise ImportFailure(f"{path}: line {number} is not a vllm bench serve result")
        try:
            yield serve_record(data, index)
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            raise ImportFailure(f"{path}: line {number}: {err}") from None
        index += 1
    if not index:
        raise ImportFailure(f"{path}: the file is empty")


def _canonical_gpus(records: list[RunRecord], csv_lines: bool) -> tuple[list[RunRecord], list[str]]:
    """Every stored GPU name is the catalog's, so a fit's scope matches the GPU a plan names; a name the
    catalog cannot place is refused with the reason rather than stored under a name no plan can use."""
    from estimator.errors import PlannerError
    from estimator.gpus import canonical_name

    kept, refused = [], []
    for record in records:
        if not record.gpu:
            kept.append(record)
            continue
        try:
            kept.append(replace(record, gpu=canonical_name(record.gpu)))
        except PlannerError as err:
            where = f"line {record.record_index + 2}" if csv_lines else f"record {record.record_index}"
            refused.append(f"{where}: {err}")
    return kept, refused


def expand(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files to import (sweep directories become their run files), and why any path gave none."""
    out, problems = [], []
    for p in map(Path, paths):
        if p.is_dir():
            runs = _sweep_files(p)
            if not runs:
                problems.append(f"{p}: a directory without vllm bench sweep results (run=N.json files)")
            out.extend(runs)
        else:
            out.append(p)
    return out, problems


def check_record(record: RunRecord, where: str) -> None:
    """A record is stored only when its numbers can be true: finite and not negative (every metric is a count, a
    rate, a duration or a latency), and consistent."""
    for name, value in record.metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ImportFailure(f"{where}: {name} is {value!r}, not a number; fix or remove it")
        if not math.isfinite(value):
            raise ImportFailure(f"{where}: {name} is {value}, not a finite number; fix or remove it")
        if value < 0:
            raise ImportFailure(f"{where}: {name} is {value:g}, negative; fix or remove it")
    completed, failed = record.metrics.get("completed"), record.metrics.get("failed")
    sent = record.workload.get("num_prompts")
    if completed is not None and sent and completed + (failed or 0) > sent:
        raise ImportFailure(f"{where}: {completed:g} requests completed (and {failed or 0:g} failed) of "
                            f"{sent} sent; the file is inconsistent")
    for name in ("input_len", "output_len", "concurrency", "num_prompts"):
        value = record.workload.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ImportFailure(f"{where}: {name} is {value!r}, not a positive integer; fix or remove it")
