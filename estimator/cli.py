"""`estimator`: thin click commands over the library. PlannerError becomes a one-line error here, only."""

from __future__ import annotations

import click

from estimator.cli_errors import OneLineErrors, json_text
from estimator.errors import PlannerError
from estimator.workload import GOALS, REPLICAS_AS


class _Group(OneLineErrors):
    expected = (PlannerError,)


def _json_out(data) -> None:
    click.echo(json_text(data))


@click.group(cls=_Group)
@click.version_option(package_name="vllm-planner")
def main() -> None:
    """Plan vLLM deployments offline: memory as vLLM allocates it, and the `vllm serve` flags."""


def plan_options(f):
    """The configuration flags, named exactly as `vllm serve` names them (shared with `calibrate run`)."""
    options = [
        click.option("--model", default=None, help="Hugging Face id, local directory, or catalog name."),
        click.option("--revision", default=None, help="Hub revision (branch, tag or commit)."),
        click.option("--gpu", default=None, help="GPU name from `estimator gpus`, an nvidia-smi name, or 'auto'."),
        click.option("--gpu-memory-gib", type=float, default=None, help="Memory per GPU for a custom device."),
        click.option("--num-gpus", type=int, default=None, help="GPUs available (default: TP x PP)."),
        click.option("--tensor-parallel-size", "-tp", type=int, default=None),
        click.option("--pipeline-parallel-size", "-pp", type=int, default=None),
        click.option("--data-parallel-size", "-dp", type=int, default=None,
                     help="Engines in one server, each over TP x PP GPUs; a MoE's experts span all of them."),
        click.option("--enable-expert-parallel", is_flag=True, default=None,
                     help="Whole routed experts per GPU, over TP x DP GPUs, instead of slices of each."),
        click.option("--decode-context-parallel-size", "-dcp", type=int, default=None,
                     help="TP ranks that split each request's tokens between their KV caches."),
        click.option("--enable-eplb", is_flag=True, default=None,
                     help="Expert parallel load balancing (needs --enable-expert-parallel)."),
        click.option("--eplb-config", default=None, metavar="JSON",
                     help="EPLB's settings, as vLLM takes them: '{\"num_redundant_experts\": 32}'."),
        click.option("--speculative-config", default=None, metavar="JSON",
                     help="Speculative decoding, as vLLM takes it: '{\"method\": \"mtp\", \"num_speculative_tokens\": 1}' "
                          "(the checkpoint's MTP layers) or method ngram."),
        click.option("--max-model-len", default=None, metavar="N",
                     help="As vLLM takes it: 32768, 32k, 32K, or auto (the longest that fits)."),
        click.option("--gpu-memory-utilization", type=float, default=None),
        click.option("--dtype", default=None),
        click.option("--quantization", "-q", default=None),
        click.option("--kv-cache-dtype", default=None),
        click.option("--max-num-seqs", type=int, default=None),
        click.option("--max-num-batched-tokens", default=None, metavar="N", help="As vLLM takes it: 8192, 8k, 8K."),
        click.option("--block-size", type=int, default=None),
        click.option("--enforce-eager", is_flag=True, default=None),
        # serve_config.ENTRYPOINTS, spelled out so that the CLI does not import the planner to build its options
        click.option("--entrypoint", type=click.Choice(("serve", "llm")), default=None,
                     help="How vLLM is started: vllm serve (default), or llm: the Python LLM class, which vllm bench "
                          "throughput and latency build too, and whose batch defaults are larger."),
        click.option("--runner", type=click.Choice(("auto", "generate", "pooling")), default=None,
                     help="As `vllm serve --runner`: pooling for embedding models (default: as vLLM decides)."),
        click.option("--limit-mm-per-prompt", default=None, metavar="JSON",
                     help='Items per prompt by modality, as vLLM takes it: \'{"image": 2, "video": 0}\'.'),
        click.option("--language-model-only", is_flag=True, default=None,
                     help="As vLLM: no multimodal inputs, and no vision tower loaded."),
        click.option("--kv-cache-memory-bytes", default=None, metavar="BYTES",
                     help="The KV cache per GPU, as vLLM takes it (64M, 25.6g, ...): no budget, no utilization."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def workload_options(f):
    """The traffic to plan for, and the search's goal and SLOs."""
    options = [
        click.option("--input-len", type=int, default=None, help="Prompt tokens per request (default 1024)."),
        click.option("--output-len", type=int, default=None, help="Output tokens per request (default 128)."),
        click.option("--concurrency", type=int, default=None, help="Requests in flight (closed loop)."),
        click.option("--request-rate", type=float, default=None, help="Requests per second (Poisson)."),
        click.option("--ttft-ms", type=float, default=None, help="SLO on the median time to first token."),
        click.option("--tpot-ms", type=float, default=None, help="SLO on the median time per output token."),
        click.option("--goal", type=click.Choice(GOALS), default=None),
        click.option("--search", is_flag=True, default=None, help="Search the flags left out for the goal."),
        click.option("--replicas-as", type=click.Choice(REPLICAS_AS), default=None,
                     help="With --search, how spare GPUs run further replicas: --data-parallel-size in one vllm "
                          "serve (default), or separate servers behind one Service."),
        click.option("--profile", type=click.Path(dir_okay=False), default=None,
                     help="A profile written by `estimator generate`; flags given here override it."),
        click.option("--coefficients", default=None, metavar="default|latest|FIT_ID|PATH",
                     help="Coefficient set for speed (default: the latest `calibrate fit` for this GPU, if any)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_plan(flags: dict):
    """Flags (and a profile) to a Plan: the one path shared by `plan` and `generate`."""
    from estimator.plan import PlanRequest, make_plan, plan_with_search
    from estimator.profile import load_profile, merge
    from estimator.workload import Workload

    if flags.get("profile"):
        flags = merge(load_profile(flags["profile"]), flags)
    if not flags.get("model"):
        raise click.UsageError("Missing option '--model' (or a --profile that names one).")
    workload_keys = ("input_len", "output_len", "concurrency", "request_rate", "ttft_ms", "tpot_ms", "goal")
    workload = Workload(**{k: flags[k] for k in workload_keys if flags.get(k) is not None})
    request = PlanRequest(**{k: v for k, v in flags.items()
                             if k not in (*workload_keys, "search", "profile", "coefficients", "replicas_as")
                             and v is not None})
    if flags.get("search"):
        return plan_with_search(request, workload, coefficients_choice=flags.get("coefficients"),
                                replicas_as=flags.get("replicas_as") or "data-parallel")
    if flags.get("replicas_as"):
        raise click.UsageError("--replicas-as applies to --search, which chooses the replicas")
    return make_plan(request, workload=workload, coefficients_choice=flags.get("coefficients"))


@main.command()
@plan_options
@workload_options
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
def plan(as_json: bool, **flags) -> None:
    """Will MODEL fit on these GPUs, how much memory goes where, how fast, and with which flags."""
    result = build_plan(flags)
    if as_json:
        _json_out(result.to_dict())
    else:
        from estimator.report import render

        click.echo(render(result))


@main.command()
@plan_options
@workload_options
@click.option("--output-dir", required=True, type=click.Path(file_okay=False),
              help="Where to write serve.sh, docker-compose.yaml, kubernetes.yaml, bench.sh, profile.yaml.")
@click.option("--force", is_flag=True, help="Overwrite files in --output-dir that vllm-planner did not write.")
def generate(output_dir: str, force: bool, **flags) -> None:
    """Write deployable files for the plan: serve script, compose, Kubernetes, benchmark command, profile."""
    from estimator.artifacts import write_all

    result = build_plan(flags)
    for path in write_all(result, output_dir, {k: v for k, v in flags.items() if v is not None and k != "profile"},
                          force=force):
        click.echo(path)


@main.command()
@click.option("--json", "as_json", is_flag=True)
def gpus(as_json: bool) -> None:
    """The bundled GPU catalog."""
    from estimator.gpus import catalog

    specs = catalog()
    if as_json:
        _json_out([g.to_dict() for g in specs])
        return
    for g in specs:
        fp8 = f"{g.fp8_tflops:g}" if g.fp8_tflops else "-"
        bf16 = f"{g.bf16_tflops:g}" if g.bf16_tflops else "-"
        click.echo(f"{g.name:16} {g.memory_gib:7.2f} GiB {g.memory_bandwidth_gbs:6g} GB/s  bf16 {bf16:>6} "
                   f"fp8 {fp8:>6} TFLOP/s  {g.interconnect.kind}{g.interconnect.generation} "
                   f"{g.interconnect.bandwidth_gbs:g} GB/s")


@main.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json: bool) -> None:
    """The bundled model catalog (usable with no network)."""
    from estimator.architecture import from_config
    from estimator.model_source import catalog_configs

    rows = []
    for model_id, config in sorted(catalog_configs().items()):
        arch = from_config(config, model_id)
        rows.append({"id": model_id, "architecture": arch.architecture, "num_params": arch.num_params,
                     "active_params": arch.active_params, "max_model_len": arch.derived_max_model_len,
                     "quantization": arch.quant.method if arch.quant else None})
    if as_json:
        _json_out(rows)
        return
    for r in rows:
        click.echo(f"{r['id']:55} {r['architecture']:32} {r['num_params'] / 1e9:8.2f}B "
                   f"{r['active_params'] / 1e9:7.2f}B active  {r['quantization'] or ''}")
