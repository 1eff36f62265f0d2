"""Deployable files for a plan: serve script, docker-compose, Kubernetes, benchmark command, profile, plan JSON.

YAML is written by PyYAML from plain data; every file carries the same `vllm serve` argv as the plan.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

from estimator.errors import PlannerError
from estimator.paths import write_atomically
from estimator.plan import Plan
from estimator.profile import profile_dict, profile_value
from estimator.serve_config import VLLM_REFERENCE_VERSION

PORT = 8000
HF_CACHE = "/root/.cache/huggingface"
# Model loading plus CUDA-graph capture can take minutes before /health answers.
STARTUP_SECONDS = 900
SHM_SIZE = "16g"  # NCCL and the engine's IPC use /dev/shm; Docker's 64 MB default breaks tensor parallelism


def image(plan: Plan) -> str:
    if plan.gpu.vendor == "amd":
        return f"rocm/vllm:v{VLLM_REFERENCE_VERSION}"
    return f"vllm/vllm-openai:v{VLLM_REFERENCE_VERSION}"


def gpus_per_instance(plan: Plan) -> int:
    """GPUs one server uses: tensor x pipeline parallel, times the data-parallel replicas it runs."""
    return plan.config.world_size * plan.data_parallel_size


def separate_servers(plan: Plan) -> int:
    """Servers to run: the search's replicas as separate servers, or one (which may hold them as data parallel)."""
    return plan.replicas if plan.data_parallel_size == 1 else 1


def comment_text(text: str) -> str:
    """Text safe inside a one-line comment: a model path may hold a newline, which would end the comment and make
    the rest of the path a command; JSON string escapes keep it on one line (and show what it is)."""
    return json.dumps(str(text), ensure_ascii=True)


def serve_script(plan: Plan) -> str:
    argv = shlex.join(plan.serve_argv)  # single-quoted where needed: newlines, $(...), backticks stay literal
    return ("#!/usr/bin/env bash\n"
            f"# {comment_text(plan.source.id)} on {gpus_per_instance(plan)} x {comment_text(plan.gpu.name)}, planned "
            f"by vllm-planner (flags checked against vLLM {VLLM_REFERENCE_VERSION}).\n"
            "set -euo pipefail\n"
            f"exec vllm serve {argv} --host 0.0.0.0 --port \"${{PORT:-{PORT}}}\" \"$@\"\n")


def compose(plan: Plan) -> dict:
    """One service per server; separate replicas each get their own GPUs and port."""
    servers = separate_servers(plan)
    if servers == 1:
        return {"services": {"vllm": _compose_service(plan, PORT, None)}}
    n = gpus_per_instance(plan)
    return {"services": {f"vllm-{i}": _compose_service(plan, PORT + i, [str(g) for g in range(i * n, (i + 1) * n)])
                         for i in range(servers)}}


def _compose_service(plan: Plan, host_port: int, device_ids: list[str] | None) -> dict:
    n = gpus_per_instance(plan)
    service = {
        "image": image(plan),
        "command": plan.serve_argv + ["--port", str(PORT)],
        "ports": [f"{host_port}:{PORT}"],
        "environment": {"HF_TOKEN": "${HF_TOKEN:-}"},
        "volumes": [f"${{HF_HOME:-~/.cache/huggingface}}:{HF_CACHE}"],
        "shm_size": SHM_SIZE,
        "ipc": "host",
        "healthcheck": {"test": ["CMD", "curl", "-fsS", f"http://localhost:{PORT}/health"], "interval": "30s",
                        "timeout": "5s", "retries": 5, "start_period": f"{STARTUP_SECONDS}s"},
        "restart": "unless-stopped",
    }
    if plan.gpu.vendor == "amd":
        service["devices"] = ["/dev/kfd", "/dev/dri"]
        service["group_add"] = ["video"]
        if device_ids:
            service["environment"]["HIP_VISIBLE_DEVICES"] = ",".join(device_ids)
    else:
        device = {"driver": "nvidia", "capabilities": ["gpu"]}
        device.update({"device_ids": device_ids} if device_ids else {"count": n})
        service["deploy"] = {"resources": {"reservations": {"devices": [device]}}}
    return service


def kubernetes(plan: Plan, name: str = "vllm") -> list[dict]:
    n = gpus_per_instance(plan)
    resource = "amd.com/gpu" if plan.gpu.vendor == "amd" else "nvidia.com/gpu"
    probe = {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": "vllm",
        "image": image(plan),
        "args": plan.serve_argv + ["--port", str(PORT)],
        "ports": [{"containerPort": PORT, "name": "http"}],
        "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token",
                                                                   "optional": True}}}],
        "resources": {"limits": {resource: n}, "requests": {resource: n}},
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}, {"name": "hf-cache", "mountPath": HF_CACHE}],
        "startupProbe": dict(probe, failureThreshold=STARTUP_SECONDS // 10),
        "readinessProbe": dict(probe, failureThreshold=3),
        "livenessProbe": dict(probe, failureThreshold=6),
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": separate_servers(plan),
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "containers": [container],
                     "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
                                 {"name": "hf-cache", "emptyDir": {}}]}}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]},
    }
    return [deployment, service]


def bench_argv(plan: Plan) -> list[str]:
    """`vllm bench` arguments that measure the plan's workload: serve against the running server, or
    throughput offline (with the same engine flags) when the plan is for saturation."""
    w = plan.workload
    if w.saturated:
        # one engine: vllm bench throughput measures a single replica's share. It builds vLLM's LLM class, whose
        # batch defaults are larger than vllm serve's (EngineArgs.get_batch_defaults), so the planned batch is
        # written out: the run then has the activation peak, KV pool and batch the plan sized.
        c, given = plan.config, set(plan.serve_argv)
        batch = [part for field in ("max_num_seqs", "max_num_batched_tokens")
                 if f"--{field.replace('_', '-')}" not in given
                 for part in (f"--{field.replace('_', '-')}", str(getattr(c, field)))]
        return ["vllm", "bench", "throughput", "--model", plan.source.id,
                *plan.serve_argv[1:], *batch,
                "--dataset-name", "random", "--input-len", str(w.input_len), "--output-len", str(w.output_len),
                "--num-prompts", "1000", "--output-json", "bench-throughput.json"]
    argv = ["vllm", "bench", "serve", "--backend", "vllm", "--model", plan.source.id, "--host", "127.0.0.1",
            "--port", str(PORT), "--dataset-name", "random", "--random-input-len", str(w.input_len),
            "--random-output-len", str(w.output_len), "--ignore-eos",
            "--percentile-metrics", "ttft,tpot,itl,e2el"]
    if w.concurrency:
        argv += ["--max-concurrency", str(w.concurrency), "--num-prompts", str(max(100, 10 * w.concurrency))]
    else:
        argv += ["--request-rate", f"{w.request_rate:g}",
                 "--num-prompts", str(int(min(5000, max(100, w.request_rate * 120))))]
    return argv + ["--save-result", "--result-dir", "bench-results"]


def _yaml(data, many: bool = False) -> str:
    import yaml

    dump = yaml.safe_dump_all if many else yaml.safe_dump
    return dump(data, sort_keys=False, default_flow_style=False)


MANIFEST = ".vllm-planner-generated.json"  # what generate wrote here last, so it knows what it may overwrite


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(out: Path) -> dict:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_all(plan: Plan, output_dir: str, flags: dict, force: bool = False) -> list[str]:
    """Write the plan's files into ``output_dir``. A file there that generate did not write (or that was edited
    since) is not overwritten unless ``force``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "serve.sh": serve_script(plan),
        "docker-compose.yaml": _yaml(compose(plan)),
        "kubernetes.yaml": _yaml(kubernetes(plan), many=True),
        "bench.sh": "#!/usr/bin/env bash\nset -euo pipefail\n" + shlex.join(bench_argv(plan)) + "\n",
        # The flags the plan set (given, or chosen by a search), so the profile reproduces the same argv.
        "profile.yaml": _yaml(profile_dict(dict(
            flags, model=plan.source.id, num_gpus=plan.config.num_gpus if flags.get("search") else flags.get("num_gpus"),
            gpu=plan.gpu.name if plan.gpu.source == "catalog" else flags.get("gpu"),
            **{k: profile_value(k, getattr(plan.config, k)) for k in plan.config.explicit}))),
        "plan.json": json.dumps(plan.to_dict(), indent=2) + "\n",
    }
    previous = _manifest(out)
    foreign = []
    for name in files:
        path = out / name
        if path.is_dir():
            raise PlannerError(f"{path} is a directory; choose another --output-dir")
        if path.exists() and previous.get(name) != _sha256(path.read_bytes()):
            foreign.append(name)
    if foreign and not force:
        raise PlannerError(f"{out} already holds {', '.join(foreign)}, not written by vllm-planner (or edited since); "
                           "choose another --output-dir or pass --force to overwrite")
    written, manifest = [], {}
    for name, text in files.items():
        data = text.encode("utf-8")
        write_atomically(out / name, data, 0o755 if name.endswith(".sh") else 0o644)
        manifest[name] = _sha256(data)
        written.append(str(out / name))
    write_atomically(out / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return written
