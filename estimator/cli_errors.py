"""One error path for both command-line tools: every failure is one line on stderr and a non-zero exit.

Library errors (PlannerError, and what a tool adds: the store's and the importers' errors) carry a message that
names the problem and the fix. OS errors (a full disk, a read-only directory, a path under a file) are worded
here. Anything else is a bug, still reported in one line (VLLM_PLANNER_DEBUG=1 shows the traceback), so a command
written tomorrow gets the same treatment without doing anything.
"""

from __future__ import annotations

import errno
import json
import math
import os

import click

from estimator.errors import PlannerError
from estimator.redact import mask_secrets

DEBUG_ENV = "VLLM_PLANNER_DEBUG"
SHORT_FLAGS = {"--tensor-parallel-size": "-tp", "--pipeline-parallel-size": "-pp", "--quantization": "-q"}
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}

OS_ADVICE = {
    errno.ENOSPC: "the disk is full; free space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "permission denied; write elsewhere or fix the permissions",
    errno.EPERM: "not permitted; write elsewhere or fix the permissions",
    errno.ENOTDIR: "a part of the path is a file, not a directory; choose another path",
    errno.EISDIR: "it is a directory; give a file",
    errno.ENOENT: "no such file or directory; check the path",
    errno.ENAMETOOLONG: "the name is too long; use a shorter path",
}


def printable(text: str) -> str:
    """One line of text that any terminal can print (undecodable bytes from argv shown as escapes), with no
    password in it."""
    line = " ".join(mask_secrets(str(text)).split())
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def os_error_line(err: OSError) -> str:
    where = err.filename if err.filename is not None else ""
    advice = OS_ADVICE.get(err.errno or 0, err.strerror or str(err))
    return printable(f"{where}: {advice}" if where else f"{advice}")


class OneLineErrors(click.Group):
    """A click group whose subcommands fail in one line. ``expected`` lists the library errors whose messages are
    shown as they are."""

    expected: tuple[type[BaseException], ...] = (PlannerError,)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        super().__init__(*args, **kwargs)

    def expected_errors(self) -> tuple[type[BaseException], ...]:
        return self.expected

    def main(self, args=None, *rest, **kwargs):
        """Arguments whose bytes are not UTF-8 arrive as surrogate escapes: refused here, in one line, before any
        of them is matched leniently against a name (or printed and crashes the terminal's encoder)."""
        import sys

        self.argv = list(sys.argv[1:] if args is None else args)
        for arg in self.argv:
            if isinstance(arg, str) and any(0xDC80 <= ord(ch) <= 0xDCFF for ch in arg):
                click.echo(f"Error: the argument {printable(arg)} is not UTF-8 text; retype it", err=True)
                sys.exit(2)
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, KeyboardInterrupt):
            raise
        except self.expected_errors() as err:
            raise click.ClickException(printable(self.as_typed(str(err)))) from None
        except OSError as err:
            raise click.ClickException(os_error_line(err)) from None
        except RecursionError:
            raise click.ClickException("the input is nested too deeply to read; is it the file you meant?") from None
        except MemoryError:
            raise click.ClickException("the input is too large to read in memory") from None
        except Exception as err:
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(printable(
                f"unexpected {type(err).__name__}: {err} (a bug in vllm-planner; rerun with {DEBUG_ENV}=1 for the "
                "traceback and report it)")) from None

    def as_typed(self, message: str) -> str:
        """The message with each flag spelled as the user typed it (-tp rather than --tensor-parallel-size)."""
        argv = getattr(self, "argv", [])
        for long, short in SHORT_FLAGS.items():
            if short in argv and long not in argv:
                message = message.replace(long, short)
        return message

    def command(self, *args, **kwargs):
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        return super().command(*args, **kwargs)

    def group(self, *args, **kwargs):
        kwargs.setdefault("cls", type(self))
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        return super().group(*args, **kwargs)


# --- parameter types shared by both tools: refused at parse time, before anything starts or is stored ------------

POSITIVE_INT = click.IntRange(min=1)
RECORD_ID = click.IntRange(min=1, max=2**63 - 1)  # what an SQL BIGINT holds


class FiniteFloat(click.ParamType):
    """A float that is not NaN or infinite, at least ``minimum`` (exclusive with ``positive``)."""

    name = "number"

    def __init__(self, minimum: float | None = None, positive: bool = False):
        self.minimum, self.positive = minimum, positive

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number", param, ctx)
        if self.positive and number <= 0:
            self.fail(f"{value} is not positive", param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"{value} is below {self.minimum:g}", param, ctx)
        return number


POSITIVE_FLOAT = FiniteFloat(positive=True)
NON_NEGATIVE_FLOAT = FiniteFloat(minimum=0.0)


def finite_json(data) -> object:
    """``data`` with every NaN or infinity replaced by null: JSON has no such numbers, and tools reading the output
    (jq, JavaScript, most JSON libraries) reject the ``NaN``/``Infinity`` Python would write."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def json_text(data) -> str:
    return json.dumps(finite_json(data), indent=2, allow_nan=False)
