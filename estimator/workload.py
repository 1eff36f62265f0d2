"""The traffic a plan is for: prompt and output lengths, and either a concurrency or a request rate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from estimator.errors import PlannerError
from estimator.validate import positive_int, positive_number

SCHEMA_VERSION = 1
# `vllm bench` defaults for random prompts, used when a plan is asked for saturation without lengths.
DEFAULT_INPUT_LEN = 1024
DEFAULT_OUTPUT_LEN = 128
GOALS = ("throughput", "latency", "balanced")
# How a search's spare GPUs run further replicas: --data-parallel-size in one server, or separate servers.
REPLICAS_AS = ("data-parallel", "separate")


@dataclass(frozen=True)
class Workload:
    input_len: int = DEFAULT_INPUT_LEN
    output_len: int = DEFAULT_OUTPUT_LEN
    concurrency: int | None = None  # closed loop, as `vllm bench serve --max-concurrency`
    request_rate: float | None = None  # open loop, Poisson arrivals per second
    num_prompts: int | None = None  # requests in all: an offline run admits no more than these at once
    ttft_ms: float | None = None  # SLOs, on the median
    tpot_ms: float | None = None
    goal: str = "balanced"
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        for name in ("input_len", "output_len", "concurrency", "num_prompts"):
            positive_int(f"--{name.replace('_', '-')}", getattr(self, name))
        for name in ("request_rate", "ttft_ms", "tpot_ms"):
            positive_number(f"--{name.replace('_', '-')}", getattr(self, name))
        if self.concurrency is not None and self.request_rate is not None:
            raise PlannerError("give --concurrency or --request-rate, not both")
        if self.goal not in GOALS:
            raise PlannerError(f"--goal {self.goal} is not one of {', '.join(GOALS)}")

    @property
    def saturated(self) -> bool:
        """No concurrency and no rate: offline throughput with the largest batch the configuration admits."""
        return self.concurrency is None and self.request_rate is None

    def per_replica(self, replicas: int) -> Workload:
        """The share of this workload one of ``replicas`` identical instances serves."""
        if replicas <= 1 or self.saturated:
            return self
        return replace(self, concurrency=-(-self.concurrency // replicas) if self.concurrency else None,
                       request_rate=self.request_rate / replicas if self.request_rate else None,
                       num_prompts=-(-self.num_prompts // replicas) if self.num_prompts else None)

    def busy_replicas(self, replicas: int) -> float:
        """How many replicas' worth of work the workload gives ``replicas`` identical instances, each priced at
        ``per_replica``'s share: a closed loop of C users keeps at most C of them busy (64 users on 256 replicas
        are 64 replicas' worth, not 256), and C users split as ceil(C / R) per replica count C / ceil(C / R)
        replicas; an open-loop rate splits evenly; a finite set of prompts like a closed loop."""
        if replicas <= 1:
            return 1.0
        total = self.concurrency or self.num_prompts
        if total and not self.request_rate:
            return total / -(-total // replicas)
        return float(replicas)

    def fitted(self, max_model_len: int) -> tuple[Workload, str | None]:
        """This workload, or, where it is `vllm bench`'s default lengths and a request of them does not fit
        max_model_len (GPT-2's 1024 positions), one whose prompts are shortened to fit, with a note saying so. Lengths
        other than the defaults are left as given (a request that does not fit is the caller's error to name)."""
        if self.input_len + self.output_len <= max_model_len or (self.input_len, self.output_len) != (
                DEFAULT_INPUT_LEN, DEFAULT_OUTPUT_LEN) or max_model_len <= self.output_len:
            return self, None
        fitted = replace(self, input_len=max_model_len - self.output_len)
        return fitted, (f"the default request of {DEFAULT_INPUT_LEN} + {DEFAULT_OUTPUT_LEN} tokens is longer than "
                        f"--max-model-len {max_model_len}: speed is for {fitted.input_len} + {self.output_len} "
                        "(give --input-len and --output-len for others)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Workload:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
