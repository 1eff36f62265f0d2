"""Stored runs as the fit's inputs: each run's configuration and workload planned again (so the prediction is
exactly the plan's) and its measured metrics, in arrays."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from calibrate.fit import METRICS, stack
from calibrate.importers import ALL_AT_ONCE
from estimator.coefficients import DEFAULT
from estimator.errors import PlannerError
from estimator.performance import PerfInputs, perf_inputs
from estimator.plan import SERVE_FLAGS, PlanRequest, make_plan
from estimator.serve_config import V0_MAX_NUM_SEQS, batch_defaults, is_v0_engine
from estimator.workload import Workload
from store.records import RunRecord


@dataclass(frozen=True)
class Observations:
    inputs: PerfInputs
    measured: dict  # metric -> array (nan where not measured)
    runs: tuple[RunRecord, ...]  # the runs used, in row order
    skipped: tuple[str, ...]  # "run N: why"

    def take(self, index) -> Observations:
        index = np.asarray(index)
        return Observations(self.inputs.take(index), {m: v[index] for m, v in self.measured.items()},
                            tuple(self.runs[i] for i in index), self.skipped)


def plan_of(run: RunRecord):
    """The plan for a stored run's configuration and workload, with the default coefficients."""
    if not run.gpu:
        raise PlannerError("no GPU recorded (import it with --gpu)")
    w = run.workload
    if not w.get("input_len") or not w.get("output_len"):
        raise PlannerError("no input/output length recorded (import it with --input-len and --output-len)")
    flags = {k: v for k, v in run.config.items() if k in SERVE_FLAGS and v is not None}
    if is_v0_engine(run.vllm_version) and "max_num_seqs" not in flags:
        flags["max_num_seqs"] = V0_MAX_NUM_SEQS
    request = PlanRequest(model=run.model, gpu=run.gpu, num_gpus=run.num_gpus, **flags)
    workload = workload_of(run)
    plan = make_plan(request, DEFAULT, workload)
    if run.benchmark == "throughput" and not {"max_num_batched_tokens", "max_num_seqs"} <= set(flags):
        # `vllm bench throughput` runs the LLM class, whose batch defaults are larger than `vllm serve`'s
        tokens, seqs = batch_defaults(plan.gpu, plan.config.world_size, offline=True)
        offline = {"max_num_batched_tokens": tokens, "max_num_seqs": min(seqs, tokens)} | flags
        plan = make_plan(dataclasses.replace(request, max_num_batched_tokens=offline["max_num_batched_tokens"],
                                             max_num_seqs=offline["max_num_seqs"]), DEFAULT, workload)
    cap = run.workload.get("concurrency")
    if workload.request_rate and cap and plan.performance is not None and (
            plan.performance.saturated or plan.performance.batch > int(cap)):
        # Arrivals faster than the --max-concurrency cap lets through: a closed loop at the cap.
        plan = make_plan(request, DEFAULT, Workload(workload.input_len, workload.output_len, concurrency=int(cap),
                                                    num_prompts=workload.num_prompts))
    return plan


def workload_of(run: RunRecord) -> Workload:
    """The traffic a stored run saw. `vllm bench serve` runs its prompts under --max-concurrency when given,
    else at --request-rate, where "inf" (its default) sends all of them at once: a closed loop as wide as
    the number of prompts, of which the engine admits what it can and queues the rest. A finite rate below
    the concurrency cap is an open loop. Fewer prompts than the cap never run more at once than there are."""
    w = run.workload
    inp, out = int(w["input_len"]), int(w["output_len"])
    prompts = int(w["num_prompts"]) if w.get("num_prompts") else None
    if run.benchmark != "serve":
        return Workload(inp, out, num_prompts=prompts)
    rate = w.get("request_rate")
    if rate not in (None, ALL_AT_ONCE) and float(rate) > 0:
        return Workload(inp, out, request_rate=float(rate), num_prompts=prompts)
    concurrency = int(w["concurrency"]) if w.get("concurrency") else prompts
    if concurrency is None:
        raise PlannerError("neither a concurrency, a request rate nor a number of prompts is recorded")
    return Workload(inp, out, concurrency=min(concurrency, prompts or concurrency), num_prompts=prompts)


def _plan_inputs(run: RunRecord) -> PerfInputs:
    plan = plan_of(run)
    if not plan.memory.fits:
        raise PlannerError(f"the plan says it does not fit ({plan.memory.reason})")
    return perf_inputs(plan.arch, plan.gpu, plan.config, plan.quant, plan.memory.num_gpu_blocks, plan.workload)


def from_runs(runs: list[RunRecord]) -> Observations:
    rows, used, skipped = [], [], []
    for run in sorted(runs, key=lambda r: r.id or 0):
        if run.status != "ok" or run.benchmark not in ("serve", "throughput"):
            continue
        try:
            rows.append(_plan_inputs(run))
        except PlannerError as err:
            skipped.append(f"run {run.id}: {err}")
            continue
        used.append(run)
    if not rows:
        raise PlannerError("no run can be fitted" + (f": {skipped[0]}" if skipped else
                                                     "; measure with `calibrate run` or import results first"))
    measured = {m: np.array([float(r.metrics[m]) if r.metrics.get(m) else np.nan for r in used]) for m in METRICS}
    return Observations(stack(rows), measured, tuple(used), tuple(skipped))
