"""The memory plan's overhead terms fitted from the figures vLLM logs at start-up (activation peak, non-torch
memory, CUDA graph memory), through the estimator's own memory functions.

Activation and CUDA-graph memory scale their coefficients by the median of measured / predicted (robust to a
stray run); non-torch memory is a line in the number of extra TP ranks, its slope fitted only where two TP sizes
were measured. Standard errors are 1.4826 x MAD / sqrt(n) for the scales and from the regression for the line.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from calibrate.observations import plan_of
from estimator.coefficients import Coefficients
from estimator.errors import PlannerError
from estimator.gpus import GIB
from estimator.memory import activation_bytes, cuda_graph_bytes, stage_layers

ACTIVATION_FIELDS = ("act_hidden_buffers", "act_qkv_buffers", "act_mlp_buffers", "act_moe_buffers",
                     "sampler_fp32_copies")
GRAPH_FIELDS = ("cuda_graph_first_mib", "cuda_graph_mib_per_piece", "cuda_graph_mib_per_full_layer")


def _scale(ratios: list[float]) -> tuple[float, float]:
    r = np.array(ratios)
    scale = float(np.median(r))
    return scale, float(1.4826 * np.median(np.abs(r - scale)) / np.sqrt(len(r)))


def fit_memory(runs, co: Coefficients) -> tuple[Coefficients, dict, dict, list[str]]:
    """(coefficients with fitted memory terms, values, standard errors, refusals)."""
    act, graphs, non_torch = [], [], []
    for run in runs:
        m = run.metrics
        if not any(k in m for k in ("activation_gib", "cuda_graph_gib", "non_torch_gib")):
            continue
        try:
            plan = plan_of(run)
        except PlannerError:
            continue
        cfg, pp = plan.config, plan.config.pipeline_parallel_size
        if m.get("activation_gib"):
            predicted = activation_bytes(plan.arch, cfg, co, last_stage=True, gpu=plan.gpu) / GIB
            act.append(m["activation_gib"] / predicted)
        if m.get("cuda_graph_gib") and not cfg.enforce_eager:
            layers = len(stage_layers(plan.arch, pp)[0])
            predicted = cuda_graph_bytes(plan.arch, cfg, plan.gpu, layers, co) / GIB
            if predicted > 0:
                graphs.append(m["cuda_graph_gib"] / predicted)
        if m.get("non_torch_gib") is not None and pp == 1:
            non_torch.append((cfg.tensor_parallel_size - 1, m["non_torch_gib"]))
    values, errors, refused, changes = {}, {}, [], {}
    scaled = (("activation_scale", act, ACTIVATION_FIELDS,
               "activation terms: no run recorded the activation peak (vLLM logs it on GPUs); kept"),
              ("cuda_graph_scale", graphs, GRAPH_FIELDS,
               "CUDA graph terms: no run with CUDA graphs recorded their memory; kept"))
    for key, ratios, coefficient_fields, refusal in scaled:
        if not ratios:
            refused.append(refusal)
            continue
        values[key], errors[key] = _scale(ratios)
        for f in coefficient_fields:
            changes[f] = getattr(co, f) * values[key]
    if non_torch:
        ranks = np.array([x for x, _ in non_torch], dtype=float)
        measured = np.array([y for _, y in non_torch])
        if len(set(ranks)) >= 2:
            design = np.column_stack([np.ones_like(ranks), ranks])
            coef, *_ = np.linalg.lstsq(design, measured, rcond=None)
            resid = measured - design @ coef
            s2 = float(resid @ resid) / max(len(measured) - 2, 1)
            cov = np.linalg.pinv(design.T @ design) * s2
            changes["non_torch_base_gib"], changes["non_torch_per_tp_rank_gib"] = float(coef[0]), float(coef[1])
            errors["non_torch_base_gib"], errors["non_torch_per_tp_rank_gib"] = (float(np.sqrt(cov[0, 0])),
                                                                                float(np.sqrt(cov[1, 1])))
        else:
            base = float(np.median(measured - ranks * co.non_torch_per_tp_rank_gib))
            changes["non_torch_base_gib"] = base
            errors["non_torch_base_gib"] = float(1.4826 * np.median(np.abs(measured - base)) / np.sqrt(len(measured)))
            refused.append("non_torch_per_tp_rank_gib: runs at one tensor-parallel size only; kept")
        values.update({k: changes[k] for k in ("non_torch_base_gib", "non_torch_per_tp_rank_gib") if k in changes})
    else:
        refused.append("non-torch terms: no run recorded non-torch memory; kept")
    return dataclasses.replace(co, **changes), values, errors, refused
