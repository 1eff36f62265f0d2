"""Summarise a `mutmut run` over estimator/ and fail on survivors nobody has explained.

    mutmut run "estimator.memory*" "estimator.performance*"   # or plain `mutmut run`: all of estimator/
    python tools/mutation_report.py [MODULE_PREFIX ...]          # default: estimator.memory estimator.performance

A surviving mutant is a change to the code that no test notices. Each one either gets a test (tests/) or a reason
here: a kind of change that cannot alter a result (KINDS, recognised from the diff), or a named mutant with a
written reason (REASONS). The command prints the counts per module and exits 1 while an unexplained survivor of
the memory plan or the prediction is left.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict

DEFAULT_MODULES = ("estimator.memory", "estimator.performance")

# Kinds of change that cannot alter a figure the planner reports, recognised from the mutant's diff lines.
KINDS = {
    # zip(..., strict=True) -> strict=False/None: the zipped sequences have the same length by construction
    "zip strictness": re.compile(r"strict=(True|False|None)"),
    # the wording of a message (an error, a reason, a warning): the figures are what the tests pin
    "message wording": re.compile(r"""(["'])XX.*XX\1|f["'].*XX"""),
}

# Named survivors and why no test should catch them.
_DIVIDES = "serve_config requires that the TP size and the (KV) heads divide one another, so // and / agree"
_PADDING = "a boundary where the padded batch equals the batch anyway (graph_padded(t) == t there)"
REASONS: dict[str, str] = {
    "estimator.memory.xǁGpuMemoryǁto_dict__mutmut_2": "round(n, 4) of the one int field (num_layers) is n",
    "estimator.memory.x__layer_kind__mutmut_3": "a full layer has no window, so both branches give ('full', None)",
    "estimator.memory.x__layer_kind__mutmut_5": "an MLA layer has no window: differs only for MLA beside chunked "
                                                "layers, which no architecture has",
    "estimator.memory.x_activation_bytes__mutmut_8": _DIVIDES,
    "estimator.memory.x_activation_bytes__mutmut_12": _DIVIDES,
    "estimator.memory.x_shard_fraction__mutmut_17": _DIVIDES,
    "estimator.memory.x_graph_padded__mutmut_8": "256 tokens pad to 256 by either rule",
    "estimator.memory.x_graph_padded__mutmut_60": _PADDING,
    "estimator.memory.x_graph_padded__mutmut_61": _PADDING,
    "estimator.memory.x_graph_padded__mutmut_63": _PADDING,
    "estimator.memory.x_graph_padded__mutmut_64": _PADDING,
    "estimator.memory.x_kv_cache_groups__mutmut_14": "every spec is the same in that branch (one kind of layer)",
    "estimator.memory.x_kv_pool__mutmut_23": "KV groups need one page size: every layer's bytes per token agree",
    "estimator.memory.x_kv_pool__mutmut_111": "one byte of the budget",
    "estimator.memory.x_largest_capture_size__mutmut_10": "compute capability 1 is below 10 as 0 is",
    "estimator.memory.x_plan_memory__mutmut_132": "every request takes at least one block, so per_request > 0",
    "estimator.memory.x_plan_memory__mutmut_134": "every request takes at least one block, so per_request > 0",
    "estimator.memory.x_plan_memory__mutmut_135": "a float ratio exactly equal to max_num_seqs",
}


def _results() -> dict[str, str]:
    out = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True).stdout
    if not out.strip():  # older mutmut: no --all
        out = subprocess.run(["mutmut", "results"], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            found[name] = status
    return found


def _changed_lines(name: str) -> list[str]:
    diff = subprocess.run(["mutmut", "show", name], capture_output=True, text=True).stdout
    return [line for line in diff.splitlines() if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))]


def _without_strict(line: str) -> str:
    return re.sub(r",?\s*strict=\w+", "", line[1:]).replace(", )", ")").strip()


def _kind(lines: list[str]) -> str | None:
    added = [line for line in lines if line.startswith("+")]
    removed = [line for line in lines if line.startswith("-")]
    if added and [_without_strict(x) for x in added] == [_without_strict(x) for x in removed]:
        return "zip strictness"
    for kind, pattern in KINDS.items():
        if added and all(pattern.search(line) for line in added):
            return kind
    return None


def main(argv: list[str]) -> int:
    modules = tuple(argv) or DEFAULT_MODULES
    results = {n: s for n, s in _results().items() if n.startswith(modules)}
    if not results:
        print(f"no mutmut results for {', '.join(modules)}: run `mutmut run` first")
        return 1
    counts: dict[str, Counter] = defaultdict(Counter)
    unexplained = []
    for name, status in sorted(results.items()):
        module = name.split(".x", 1)[0]
        if status != "survived":
            counts[module][status] += 1
            continue
        why = REASONS.get(name) or _kind(_changed_lines(name))
        if why:
            counts[module][f"survived: {why}"] += 1
        else:
            counts[module]["survived, unexplained"] += 1
            unexplained.append(name)
    for module, counter in sorted(counts.items()):
        total = sum(counter.values())
        print(f"{module}: {total} mutants; " + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())))
    for name in unexplained:
        print(f"unexplained survivor: {name}  (`mutmut show {name}`; add a test, or a reason in REASONS)")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
