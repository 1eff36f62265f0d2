"""Fitting the memory plan's overhead terms from the figures vLLM logs at start-up."""

import dataclasses

import pytest

from calibrate.memory_fit import fit_memory
from estimator.coefficients import DEFAULT
from estimator.gpus import GIB
from estimator.memory import activation_bytes, cuda_graph_bytes
from estimator.plan import PlanRequest, make_plan
from estimator.workload import Workload
from store import RunRecord


def runs(activation_scale=1.6, graph_scale=0.7, base=0.3, per_rank=0.2):
    out = []
    for tp in (1, 2, 4):
        for tokens in (2048, 8192, 16384):
            flags = dict(tensor_parallel_size=tp, max_num_batched_tokens=tokens, max_num_seqs=256, max_model_len=8192)
            plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", **flags),
                             workload=Workload(1000, 200, concurrency=8))
            act = activation_bytes(plan.arch, plan.config, DEFAULT, last_stage=True, gpu=plan.gpu) / GIB * activation_scale
            graphs = cuda_graph_bytes(plan.arch, plan.config, plan.gpu, plan.arch.num_layers, DEFAULT) / GIB * graph_scale
            out.append(RunRecord(model="meta-llama/Llama-3.1-8B-Instruct", benchmark="serve", gpu="H100-SXM",
                                 num_gpus=tp, config=flags, workload={"input_len": 1000, "output_len": 200,
                                                                      "concurrency": 8},
                                 metrics={"activation_gib": act, "cuda_graph_gib": graphs,
                                          "non_torch_gib": base + per_rank * (tp - 1)}))
    return out


def test_recovers_the_overhead_terms():
    fitted, values, errors, refused = fit_memory(runs(), DEFAULT)
    assert values["activation_scale"] == pytest.approx(1.6, rel=1e-6)
    assert fitted.act_mlp_buffers == pytest.approx(DEFAULT.act_mlp_buffers * 1.6)
    assert values["cuda_graph_scale"] == pytest.approx(0.7, rel=1e-6)
    assert fitted.non_torch_base_gib == pytest.approx(0.3) and fitted.non_torch_per_tp_rank_gib == pytest.approx(0.2)
    assert refused == []


def test_refuses_what_the_runs_do_not_show():
    one_tp = [r for r in runs() if r.config["tensor_parallel_size"] == 2]
    cpu_like = [dataclasses.replace(r, metrics={}) for r in runs()]
    _, _, _, refused = fit_memory(one_tp, DEFAULT)
    assert refused == ["non_torch_per_tp_rank_gib: runs at one tensor-parallel size only; kept"]
    fitted, values, _, refused = fit_memory(cpu_like, DEFAULT)
    assert values == {} and fitted == DEFAULT and len(refused) == 3
