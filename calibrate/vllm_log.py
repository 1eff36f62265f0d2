"""Memory figures and failure reasons from a vLLM server's log, tolerant of the wording of different versions.

Each figure has patterns for the wordings vLLM has used (V0 and V1 engines, 0.6 to 0.32); the first match wins.
GiB values are returned as floats, token and block counts as ints.
"""

from __future__ import annotations

import re

_NUM = r"([0-9][0-9,]*(?:\.[0-9]+)?)"
PATTERNS: dict[str, tuple[str, ...]] = {
    "weights_gib": (
        rf"Model loading took {_NUM} ?GiB",  # V1: "Model loading took 14.9877 GiB and 4.2 seconds"
        rf"weights memory: {_NUM} ?GiB",  # 0.9+: profiling summary
        rf"model weights take {_NUM} ?GiB",  # 0.6-0.8: profiling summary
        rf"Loading model weights took {_NUM} ?GB",  # 0.4-0.5 (V0)
    ),
    "activation_gib": (
        rf"torch peak memory increase: {_NUM} ?GiB",
        rf"PyTorch activation peak memory takes {_NUM} ?GiB",
        rf"activation peak memory takes {_NUM} ?GiB",
    ),
    "non_torch_gib": (
        rf"non-torch forward increase memory: {_NUM} ?GiB",
        rf"non_torch_memory takes {_NUM} ?GiB",
    ),
    "non_kv_cache_gib": (rf"Total non KV cache memory: {_NUM} ?GiB",),
    "cuda_graph_gib": (
        rf"Graph capturing finished in [0-9.]+ secs?, took {_NUM} ?GiB",
        rf"CUDA graph memory profiling[^\n]*?estimat\w* {_NUM} ?GiB",
        rf"Estimated CUDA graph memory: {_NUM} ?GiB",
    ),
    "kv_cache_gib": (
        rf"Available KV cache memory: {_NUM} ?GiB",
        rf"the rest of the memory reserved for KV Cache is {_NUM} ?GiB",
        rf"Auto set \({_NUM}/[0-9.]+\) GiB for KV cache",  # CPU backend, automatic sizing
        rf"reserved {_NUM} GiB memory for KV Cache",  # --kv-cache-memory-bytes
    ),
    "kv_cache_tokens": (rf"(?:GPU|CPU|XPU|TPU|HPU)(?: \+ host)? KV cache size: {_NUM} tokens",),
    "max_concurrency": (rf"Maximum concurrency for [0-9,]+ tokens per request: {_NUM}x",),
    "num_gpu_blocks": (rf"# (?:GPU|CUDA|CPU) blocks: {_NUM}", rf"num_gpu_blocks(?:=|: ){_NUM}"),
    "vllm_version": (r"vLLM API server version ([0-9][^\s,]*)", r"vLLM version ([0-9][^\s,]*)"),
}
INTEGERS = ("kv_cache_tokens", "num_gpu_blocks")
# Why a server did not start or died, most specific first.
FAILURES = (
    ("out of memory", r"CUDA out of memory|OutOfMemoryError|HIP out of memory"),
    ("no room for the KV cache", r"No available memory for the cache blocks|"
                                 r"To serve at least one request with the model's max seq len"),
    ("model length above the model's limit", r"User-specified max_model_len \([0-9]+\) is greater than"),
    ("unsupported configuration", r"Unsupported CPU attention configuration|not supported|NotImplementedError"),
    ("bad argument", r"error: (?:argument|unrecognized arguments)[^\n]*"),
    # vLLM's ZeroMQ sockets live under TMPDIR, and a socket path may not exceed sockaddr_un's 107 bytes
    ("TMPDIR too long for vLLM's sockets (set TMPDIR to a short directory such as /tmp)",
     r"ipc path \S+ is longer than \d+ characters"),
)


# Where a starting server is, by the last of these lines its log holds (vLLM V1's own messages).
PHASES = (
    ("loading weights", r"Starting to load model|Loading model from scratch|Loading safetensors checkpoint"),
    ("profiling memory", r"Loading weights took|Model loading took|Loading model weights took"),
    ("capturing CUDA graphs", r"Capturing CUDA graph|Capturing cudagraph"),
    ("starting the API server", r"init engine \(profile, create kv cache|Graph capturing finished|KV cache size:"),
    ("serving", r"Starting vLLM API server|Application startup complete|Uvicorn running on"),
)


def phase(text: str) -> str:
    """The start-up phase a vLLM log shows (its latest marker), "starting" before any."""
    latest, where = "starting", -1
    for name, pattern in PHASES:
        for match in re.finditer(pattern, text):
            if match.start() > where:
                latest, where = name, match.start()
    return latest


# The failures that say something about the memory plan; a timeout or a bad flag does not.
MEMORY_FAILURES = ("out of memory", "no room for the KV cache")


def is_memory_failure(reason: str | None) -> bool:
    return bool(reason) and reason.split(":", 1)[0] in MEMORY_FAILURES


def parse(text: str) -> dict:
    """Memory figures found in the log (only those present)."""
    out: dict = {}
    for name, patterns in PATTERNS.items():
        for pattern in patterns:
            match = re.search(pattern, text)
            if match:
                value = match.group(1)
                if name == "vllm_version":
                    out[name] = value
                else:
                    number = float(value.replace(",", ""))
                    out[name] = int(number) if name in INTEGERS else number
                break
    return out


def failure_reason(text: str) -> str | None:
    """The reason a start or a run failed, as a short phrase with the line that says so."""
    for label, pattern in FAILURES:
        match = re.search(pattern, text)
        if match:
            line = text[text.rfind("\n", 0, match.start()) + 1: text.find("\n", match.end()) % (len(text) + 1)]
            return f"{label}: {line.strip()[-300:]}"
    return None


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
