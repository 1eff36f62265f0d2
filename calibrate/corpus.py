"""The public corpus of vLLM measurements (``shared/corpus/throughput_public.csv``) as fitting data.

The CSV imports like any other (``calibrate import``); this module adds what only its ``notes`` say, read by
fixed rules rather than guessed: a run in eager mode, and runs the planner cannot represent (the V0 engine,
multi-step scheduling), which are left out of fits with the reason. Rows are grouped by source: the points of
one sweep are not independent, so fits weigh them as a group and validation leaves whole sources out.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from calibrate.importers import parse_file
from calibrate.observations import Observations, from_runs
from estimator.performance import roofline_step_seconds
from estimator.serve_config import is_v0_engine
from store.records import RunRecord

EAGER = re.compile(r"enforce-eager|eager mode", re.IGNORECASE)
MULTI_STEP = re.compile(r"--num-scheduler-steps (\d+)")
# The same prompts sent again to a running server are served from vLLM's prefix cache (on by default in V1):
# averaged repeats with one seed measure mostly cached prefills, which the planner does not model.
SEEDED_REPEATS = re.compile(r"repeats \(same seed", re.IGNORECASE)
# "gptq 4-bit" of a catalog model, from a checkpoint the source does not name.
UNNAMED_QUANT = re.compile(r"^(gptq|awq) (\d+)-bit$")
# What GPTQ and AutoAWQ write by default (group size 128, no act-order, symmetric GPTQ / zero-point AWQ): the only
# layout a checkpoint nobody names can be planned with.
DEFAULT_QUANT_CONFIG = {
    "gptq": {"quant_method": "gptq", "group_size": 128, "desc_act": False, "sym": True},
    "awq": {"quant_method": "awq", "group_size": 128, "zero_point": True, "version": "gemm"},
}


@dataclass(frozen=True)
class Corpus:
    observations: Observations
    sources: tuple[str, ...]  # per used row: the source (host and first path element of its URL)
    excluded: tuple[str, ...]  # "line N (model, gpu): why" for every row that is not fitted
    sha256: str
    path: str


def source_of(record: RunRecord) -> str:
    """A source's name as the corpus README lists it: the host, and the owner for github.com."""
    url = record.labels.get("source") or ""
    parts = url.split("/")
    if len(parts) > 3 and parts[2] == "github.com":
        return "/".join(parts[2:4])
    return parts[2] if len(parts) > 2 else url or "unknown"


def readings(record: RunRecord) -> tuple[RunRecord | None, str | None]:
    """The run as the planner should see it, or None with the reason it cannot be represented."""
    notes = record.notes or ""
    if is_v0_engine(record.vllm_version) or "VLLM_USE_V1=0" in notes:
        return None, "the V0 engine (VLLM_USE_V1=0 or vLLM before 0.8); the planner models the V1 engine"
    steps = MULTI_STEP.search(notes)
    if steps and int(steps.group(1)) > 1:
        return None, "multi-step scheduling (--num-scheduler-steps > 1), which the planner does not model"
    unnamed = UNNAMED_QUANT.match(str(record.config.get("quantization") or ""))
    if unnamed:
        record = unnamed_checkpoint(record, unnamed.group(1), int(unnamed.group(2)))
    elif record.config.get("quantization") and self_quantized(record.model):
        # vLLM loads such a checkpoint with its own quantization_config; the column describes it in the source's
        # words ("int4 (native compressed-tensors W4A16 experts)"), not as the --quantization flag it was run with
        record = replace(record, config={k: v for k, v in record.config.items() if k != "quantization"})
    if SEEDED_REPEATS.search(notes):
        return None, ("a mean over repeats of the same prompts (one seed), which later repeats serve from the "
                      "prefix cache; the planner does not model cache hits")
    if EAGER.search(notes) and "enforce_eager" not in record.config:
        record = replace(record, config={**record.config, "enforce_eager": True})
    return record, None


def self_quantized(model: str) -> bool:
    """Whether the catalog's checkpoint of this model carries its own quantization_config."""
    from estimator.model_source import catalog_config

    config = catalog_config(model) or {}
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    return bool(config.get("quantization_config") or text.get("quantization_config"))


def unnamed_checkpoint(record: RunRecord, method: str, bits: int) -> RunRecord:
    """A run of "<method> <bits>-bit" quantization of a catalog model from a checkpoint the source does not name:
    planned from a model directory holding the catalog config with the format's default quantization_config."""
    from estimator.model_source import catalog_config

    base = catalog_config(record.model)
    if base is None:
        return record  # refused when planned, naming the model
    name = f"{record.model.replace('/', '--')}-{method}-{bits}bit"
    directory = Path(tempfile.gettempdir()) / "vllm-planner-corpus" / name
    directory.mkdir(parents=True, exist_ok=True)
    config = {**base, "quantization_config": {**DEFAULT_QUANT_CONFIG[method], "bits": bits}}
    (directory / "config.json").write_text(json.dumps(config, sort_keys=True))
    return replace(record, model=str(directory), config={**record.config, "quantization": method})


def load(path: str | Path) -> Corpus:
    """Every row of the corpus CSV, planned as the fit sees it; rows that cannot be fitted are listed."""
    path = Path(path)
    parsed = parse_file(path)
    excluded = list(parsed.refused)
    kept: list[RunRecord] = []
    for record in parsed.records:
        record = replace(record, id=record.record_index + 2)  # the CSV line, so skip messages name it
        seen, why = readings(record)
        if seen is None:
            excluded.append(f"line {record.id} ({record.model}, {record.gpu}): {why}")
        else:
            kept.append(seen)
    obs = from_runs(kept)
    by_line = {r.id: r for r in kept}
    for message in obs.skipped:
        line = int(message.split(":")[0].split()[1])
        record = by_line[line]
        excluded.append(f"line {line} ({record.model}, {record.gpu}):{message.split(':', 1)[1]}")
    bound = output_rate_bound(obs.inputs)
    measured = obs.measured["output_tokens_per_s"]
    impossible = np.isfinite(measured) & (measured > bound)
    for i in np.flatnonzero(impossible):
        r = obs.runs[i]
        excluded.append(f"line {r.id} ({r.model}, {r.gpu}): {measured[i]:.0f} output tokens/s beats the hardware "
                        f"bound of the stated configuration ({bound[i]:.0f}); the configuration is misstated")
    obs = obs.take(np.flatnonzero(~impossible))
    sources = tuple(source_of(r) for r in obs.runs)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Corpus(obs, sources, tuple(sorted(excluded, key=lambda m: int(m.split()[1]))), digest, str(path))


def output_rate_bound(x) -> np.ndarray:
    """The most output tokens/s each configuration could make: its largest possible running batch decoding
    at the datasheet roofline, with the shortest context and no prefill at all."""
    conc, prompts = np.asarray(x.concurrency, float), np.asarray(x.num_prompts, float)
    cap = np.maximum(np.asarray(x.batch_cap, float), 1.0)
    batch = np.where(conc > 0, np.minimum(conc, cap), np.where(prompts > 0, np.minimum(prompts, cap), cap))
    return batch / np.asarray(roofline_step_seconds(x, batch, np.asarray(x.input_len, float)), float)


def groups(corpus: Corpus) -> np.ndarray:
    return np.array(corpus.sources, dtype=object)


def leave_one_source_out(corpus: Corpus, base, **fitter_args) -> dict:
    """Each row predicted by a fit (MAP from ``base``) on every other source: metric -> held-out predictions,
    plus "log_sigma_*" from those held-out residuals (what a p10-p90 band must span for a new source)."""
    from calibrate.fit import METRICS, THROUGHPUT_METRICS, CoefficientFitter

    obs, labels = corpus.observations, groups(corpus)
    held = {attr: np.full(len(labels), np.nan) for attr in METRICS.values()}
    for source in sorted(set(corpus.sources)):
        test = np.flatnonzero(labels == source)
        train = np.flatnonzero(labels != source)
        fitter = CoefficientFitter(base=base, **fitter_args).fit(
            obs.inputs.take(train), {m: v[train] for m, v in obs.measured.items()}, groups=labels[train])
        pred = fitter.predict(obs.inputs.take(test))
        for attr in held:
            held[attr][test] = np.asarray(getattr(pred, attr), dtype=float)
    spread = {}
    for metric, attr in METRICS.items():
        m = obs.measured[metric]
        ok = np.isfinite(m) & (m > 0) & np.isfinite(held[attr])
        spread[metric] = float(np.sqrt(np.mean(np.log(held[attr][ok] / m[ok]) ** 2))) if ok.any() else None
    thr = [spread[m] for m in THROUGHPUT_METRICS if spread[m] is not None]
    lat = [spread[m] for m in ("mean_ttft_ms", "mean_tpot_ms") if spread[m] is not None]
    return {**held, "log_sigma_throughput": max(thr) if thr else None, "log_sigma_latency": max(lat) if lat else None,
            "spread": spread}
